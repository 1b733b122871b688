#!/usr/bin/env bash
# Benchmark: update checks at fleet scale, on PostgreSQL and SQLite, next to
# nginx, in one run, on this machine.
#
#   scripts/bench-scale.sh [SECONDS]          (default: 10 s per measurement)
#
# Environment (optional):
#   BENCH_SMALL=10000       the small fleet (devices)
#   BENCH_LARGE=1000000     the large fleet (devices)
#   BENCH_BACKENDS="postgres sqlite"   the backends to measure, in order
# e.g. `BENCH_SMALL=1000 BENCH_LARGE=20000 scripts/bench-scale.sh 3` for a
# quick try.
#
# For each backend and each fleet size, on a fresh database: the catalogue
# is set up through the API (product line, model, a release signed and
# published with firmup-signer, so every check answers update_available);
# then the server is stopped and the devices, with one device token each,
# are loaded in bulk straight into the database (PostgreSQL: COPY with
# psql; SQLite: the sqlite3 CLI's .import, one transaction), and the server
# is started again with empty caches. Measured: update checks per second at
# 64 connections (POST /v1/device/check, wrk -t2 -c64), after a 1 s
# warm-up, each request from a device drawn at random over the WHOLE fleet
# (seeded), so the token and device caches cannot serve a large fleet from
# memory; with p50 and p99 latency. The anchor is nginx answering a static
# file holding the same check answer, measured the same way in the same run.
# A run with any non-2xx answer is refused.
#
# Targets (scale issue): checks/s at the large fleet >= 80% of the small
# fleet's, per backend; and >= 50% of nginx's rate.
# The machine may be shared and noisy: run it three times and quote the
# median of each figure.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

secs=${1:-10}
small=${BENCH_SMALL:-10000}
large=${BENCH_LARGE:-1000000}
backends=${BENCH_BACKENDS:-postgres sqlite}
conns=64
min_scale=80   # percent: large fleet vs small fleet
min_nginx=50   # percent: large fleet vs nginx

need() { command -v "$1" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }
need wrk wrk
need nginx nginx-light
need curl curl
need jq jq
need python3 python3
case " $backends " in *" sqlite "*) need sqlite3 sqlite3 ;; esac

cargo build --release --locked --quiet -p firmup-server -p firmup-signer
server_bin=$repo/target/release/firmup-server
signer=$repo/target/release/firmup-signer

work=$(mktemp -d "${TMPDIR:-/tmp}/firmup-bench-scale.XXXXXX")
server_pid=""
pg_started=0
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  if [ -f "$work/nginx/nginx.pid" ]; then kill "$(cat "$work/nginx/nginx.pid")" 2>/dev/null || true; fi
  [ "$pg_started" -eq 0 ] || pg_stop
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# nginx workers run unprivileged: let them read the files they serve.
chmod 755 "$work"

case " $backends " in
  *" postgres "*)
    # shellcheck source=scripts/postgres.sh disable=SC1091
    source scripts/postgres.sh
    pg_started=1
    pg_start >&2
    psql=("$FIRMUP_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$FIRMUP_PG_PORT" -U postgres)
    ;;
esac
cd "$work"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)); }
fport=$(port); nport=$(port)
base=http://127.0.0.1:$fport
human() { awk -v n="$1" 'BEGIN { if (n >= 1e6 && n % 1e6 == 0) printf "%dM", n/1e6; else if (n >= 1e3 && n % 1e3 == 0) printf "%dk", n/1e3; else printf "%d", n }'; }
calc() { awk "BEGIN { printf \"%.${2:-0}f\", $1 }"; }
now() { date +%s.%N; }

echo "preparing keys and a signed release in $work" >&2
head -c $((1024 * 1024)) /dev/urandom > image.bin
for k in root rel; do "$signer" keygen --out "$k" >/dev/null; done
"$signer" root init --root-key root.pub --threshold 1 --out root.json >/dev/null
"$signer" delegate --root root.json --product-line bench --key rel.pub --threshold 1 >/dev/null
"$signer" root sign --key root.key root.json >/dev/null
"$signer" sign --key rel.key --image image.bin --product-line bench --hw-id bench-r1 \
  --channel stable --version 2.0.0 --manifest-version 1 --security-counter 1 \
  --out image.manifest.json >/dev/null 2>&1

# The rows of the bulk load, tab-separated (COPY's text format; sqlite3's
# .mode tabs): `devices N TS` or `tokens N TS`. Device i has serial BENCH-i
# and the token secret fu_bench<i, 37 digits>A: "fu_" and 43 base64url
# characters, the shape of the server's own secrets (32 bytes, base64url
# without padding, the last character carrying no stray bits). Its stored
# hash is the hex sha256 of the secret, as auth::hash_token computes it.
# check.lua recomputes the same secrets.
cat > gen.py <<'PY'
import hashlib, sys
kind, n, ts = sys.argv[1], int(sys.argv[2]), sys.argv[3]
out, rows = sys.stdout, []
for i in range(1, n + 1):
    if kind == "devices":
        rows.append(f"BENCH-{i}\tB1\tbench-r1\tstable\t{ts}\n")
    else:
        h = hashlib.sha256(f"fu_bench{i:037d}A".encode()).hexdigest()
        rows.append(f"00000000-0000-4000-8000-{i:012d}\t{h}\tdevice\tBENCH-{i}\tbench-scale\t{ts}\n")
    if len(rows) == 10000:
        out.write("".join(rows)); rows = []
out.write("".join(rows))
PY

# Each request: a check from a device drawn at random over 1..N (wrk passes
# N after `--`); each thread has its own fixed seed. done() prints the
# latency percentiles in microseconds.
cat > done.lua <<'LUA'
function done(summary, latency, requests)
  io.write(string.format("latency_us p50 %d p99 %d\n", latency:percentile(50), latency:percentile(99)))
end
LUA
{
  cat <<'LUA'
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
end
local fleet = 1
function init(args)
  fleet = tonumber(args[1])
  math.randomseed(20240601 + thread_no)
end
local headers = { ["Content-Type"] = "application/json" }
request = function()
  local i = math.random(fleet)
  headers["Authorization"] = string.format("Bearer fu_bench%037dA", i)
  local body = '{"serial":"BENCH-' .. i .. '","hw_id":"bench-r1","current_version":"1.0.0",'
    .. '"security_counter":1,"channel":"stable","root_version":1}'
  return wrk.format("POST", "/v1/device/check", headers, body)
end
LUA
  cat done.lua
} > check.lua

rps() { awk '/^Requests\/sec/ {print $2}'; }
requests() { awk '/requests in/ {print $1}'; }
pct() { awk -v p="$1" '/^latency_us/ { for (i = 2; i < NF; i++) if ($i == p) printf "%.2f", $(i+1) / 1000 }'; }
# A benchmark of error answers is no benchmark: stop on any non-2xx.
ok_only() {
  if grep -q 'Non-2xx' <<<"$2"; then
    echo "$1 answered errors during the run:" >&2; grep 'Non-2xx' <<<"$2" >&2; exit 1
  fi
  grep -q '^Requests/sec' <<<"$2" || { echo "$1: wrk failed:" >&2; echo "$2" >&2; exit 1; }
}

# Cache capacity: if the server has a setting for it, set it below the
# large fleet; if not, say what bounds the caches and rely on the random
# draws (the expected hit rate is printed with the results).
cache_env=()
cache_keys=$("$server_bin" --data-dir "$work/probe" config 2>/dev/null | awk -F' = ' '/^[a-z_]*cache[a-z_]*(capacity|entries|size)[a-z_]* = / {print $1}') || true
rm -rf "$work/probe"
if [ -n "$cache_keys" ]; then
  cap=$((large / 10))
  for k in $cache_keys; do cache_env+=("FIRMUP_${k^^}=$cap"); done
  cache_note="cache capacity set to $cap entries (${cache_keys//$'\n'/, }), below the large fleet"
else
  caps=$(grep -rho 'max_capacity([0-9_]*)' "$repo/server/src" 2>/dev/null | sed 's/[^0-9]//g' | sort -u | paste -sd/ -) || true
  cache_note="the token and device caches have no capacity setting (\`firmup-server config\` lists none; server/src caps them at ${caps:-an unknown number of} entries): at the large fleet only the random draws keep them from holding every device"
fi
echo "$cache_note" >&2

start_server() { # label
  # The rate limits are off: wrk sends every device's checks from one
  # address and far faster than a real device polls; this measures the
  # server, not the limiter.
  env FIRMUP_LOG=warn FIRMUP_TOKEN_RATE_PER_SEC=0 FIRMUP_ADDRESS_RATE_PER_SEC=0 ${cache_env[@]+"${cache_env[@]}"} \
    "${srv[@]}" serve --listen "127.0.0.1:$fport" 2>>"$dir/server.log" &
  server_pid=$!
  for _ in $(seq 300); do
    curl -fs "$base/readyz" >/dev/null && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "$1: the server did not start; the end of its log:" >&2; tail -n 20 "$dir/server.log" >&2; exit 1
}
stop_server() {
  kill "$server_pid"; wait "$server_pid" || true; server_pid=""
}
api() { curl -fsS -X "$1" "$base$2" -H "authorization: Bearer $admin" -H 'content-type: application/json' ${3:+-d "$3"}; }
check_as() { # device number -> its check answer
  curl -fsS -X POST "$base/v1/device/check" -H "authorization: Bearer $(printf 'fu_bench%037dA' "$1")" \
    -H 'content-type: application/json' \
    -d '{"serial":"BENCH-'"$1"'","hw_id":"bench-r1","current_version":"1.0.0","security_counter":1,"channel":"stable","root_version":1}'
}

bulk_load() { # backend devices
  local ts
  # RFC 3339 UTC, as sqlx writes OffsetDateTime to SQLite; PostgreSQL reads
  # it as a timestamptz.
  ts=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
  case "$1" in
    postgres)
      python3 gen.py devices "$2" "$ts" | "${psql[@]}" -d "$db" \
        -c 'COPY devices (serial, model_id, hw_id, channel, created_at) FROM STDIN'
      python3 gen.py tokens "$2" "$ts" | "${psql[@]}" -d "$db" \
        -c 'COPY tokens (id, token_hash, role, serial, label, created_at) FROM STDIN'
      "${psql[@]}" -d "$db" -c 'ANALYZE devices; ANALYZE tokens'
      ;;
    sqlite)
      sqlite3 -bail "$dir/firmup.db" <<SQL
PRAGMA temp_store = MEMORY;
PRAGMA cache_size = -262144;
PRAGMA synchronous = OFF;
CREATE TEMP TABLE devices_in (serial TEXT, model_id TEXT, hw_id TEXT, channel TEXT, created_at TEXT);
CREATE TEMP TABLE tokens_in (id TEXT, token_hash TEXT, role TEXT, serial TEXT, label TEXT, created_at TEXT);
.mode tabs
.import --schema temp '|python3 gen.py devices $2 $ts' devices_in
.import --schema temp '|python3 gen.py tokens $2 $ts' tokens_in
BEGIN;
INSERT INTO devices (serial, model_id, hw_id, channel, created_at) SELECT * FROM temp.devices_in;
INSERT INTO tokens (id, token_hash, role, serial, label, created_at) SELECT * FROM temp.tokens_in;
COMMIT;
ANALYZE;
SQL
      ;;
  esac
}

# Results, by "backend size".
declare -A res_rps res_p50 res_p99 res_load
notes=()
have_answer=0

measure() { # backend devices
  local backend=$1 n=$2 label out t0 t1 total warm
  label="$backend, $(human "$n") devices"
  dir=$work/$backend-$n
  mkdir -p "$dir"
  srv=("$server_bin" --data-dir "$dir" --trust-root "$work/root.json")
  if [ "$backend" = postgres ]; then
    db=firmup_bench_$n
    "${psql[@]}" -d postgres -c "CREATE DATABASE $db"
    srv+=(--database-url "postgres://postgres@127.0.0.1:$FIRMUP_PG_PORT/$db")
  fi

  echo "$label: catalogue through the API" >&2
  admin=$("${srv[@]}" token create --role admin --label bench 2>>"$dir/server.log")
  releng=$("${srv[@]}" token create --role release_engineer --label bench 2>>"$dir/server.log")
  start_server "$label"
  api PUT /v1/admin/product-lines/bench '{"name":"Bench","kind":"hardware"}' >/dev/null
  api PUT /v1/admin/models/B1 '{"product_line":"bench","name":"Bench 1","hw_ids":["bench-r1"]}' >/dev/null
  FIRMUP_TOKEN=$releng "$signer" publish --server "$base" --manifest image.manifest.json --image image.bin >/dev/null 2>&1
  stop_server

  echo "$label: bulk provisioning of $n devices and tokens" >&2
  t0=$(now)
  bulk_load "$backend" "$n"
  t1=$(now)
  res_load[$backend $n]=$(calc "$t1 - $t0" 1)
  echo "$label: provisioned in ${res_load[$backend $n]} s" >&2

  start_server "$label"
  # The loaded rows read back through the API (their timestamps decode),
  # and the first and last devices are offered the release.
  if [ "$(api GET "/v1/devices/BENCH-$n" | jq -r .serial)" != "BENCH-$n" ] ||
    [ "$(api GET "/v1/admin/tokens?role=device&limit=2" | jq length)" != 2 ]; then
    echo "$label: the bulk-loaded devices or tokens do not read back" >&2; exit 1
  fi
  for i in 1 "$n"; do
    check_as "$i" > "check-$i.json"
    [ "$(jq -r .status "check-$i.json")" = update_available ] ||
      { echo "$label: device $i was offered no update: $(cat "check-$i.json")" >&2; exit 1; }
  done
  if [ "$have_answer" -eq 0 ]; then cp check-1.json "$work/www/check.json"; have_answer=1; fi

  echo "$label: update checks, $conns connections, ${secs}s" >&2
  out=$(wrk -t2 -c$conns -d1s -s check.lua "$base/v1/device/check" -- "$n")
  ok_only "firmup-server ($label, warm-up)" "$out"
  warm=$(requests <<<"$out")
  out=$(wrk -t2 -c$conns -d"${secs}s" -s check.lua "$base/v1/device/check" -- "$n")
  ok_only "firmup-server ($label)" "$out"
  awk '/Socket errors/' <<<"$out" >&2
  res_rps[$backend $n]=$(rps <<<"$out")
  res_p50[$backend $n]=$(pct p50 <<<"$out")
  res_p99[$backend $n]=$(pct p99 <<<"$out")
  total=$(requests <<<"$out")
  # Random draws with replacement: after k requests, N(1-(1-1/N)^k) devices
  # have been seen. The measured requests that drew a device seen before
  # (the most the caches could answer, whatever their size):
  notes+=("$label: $total checks; at most $(calc "100 * (1 - $n * (exp($warm * log(1 - 1 / $n)) - exp(($warm + $total) * log(1 - 1 / $n))) / $total)" 1)% of them could come from the caches (a device drawn before, the 1 s warm-up included)")
  stop_server
  if [ "$backend" = postgres ]; then "${psql[@]}" -d postgres -c "DROP DATABASE $db"; fi
  rm -rf "$dir"
}

mkdir -p nginx/logs www
cat > nginx/nginx.conf <<NGINX
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$nport;
    root $work/www;
    default_type application/json;
  }
}
NGINX

for backend in $backends; do
  case "$backend" in postgres | sqlite) ;; *) echo "unknown backend $backend" >&2; exit 2 ;; esac
  for n in "$small" "$large"; do measure "$backend" "$n"; done
done

# nginx serving the same check answer, measured the same way.
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf"
for _ in $(seq 50); do curl -fs -o /dev/null "http://127.0.0.1:$nport/check.json" && break; sleep 0.1; done
echo "nginx: the same answer as a static file, $conns connections, ${secs}s" >&2
out=$(wrk -t2 -c$conns -d1s -s done.lua "http://127.0.0.1:$nport/check.json")
ok_only "nginx (warm-up)" "$out"
out=$(wrk -t2 -c$conns -d"${secs}s" -s done.lua "http://127.0.0.1:$nport/check.json")
ok_only nginx "$out"
n_rps=$(rps <<<"$out"); n_p50=$(pct p50 <<<"$out"); n_p99=$(pct p99 <<<"$out")

s=$(human "$small"); l=$(human "$large")
mark() { awk -v v="$1" -v t="$2" 'BEGIN { printf "%d%%%s", v + 0.5, (v + 0.5 < t ? " *" : "") }'; }
echo
echo "update checks/s at $conns connections, ${secs}s each, devices drawn at random over the fleet; latency in ms"
printf '%-15s %12s %8s %8s %12s %8s %8s %10s %10s\n' backend "$s checks/s" p50 p99 "$l checks/s" p50 p99 "$l/$s" "$l/nginx"
for backend in $backends; do
  a=${res_rps[$backend $small]}; b=${res_rps[$backend $large]}
  printf '%-15s %12s %8s %8s %12s %8s %8s %10s %10s\n' "$backend" \
    "$(calc "$a")" "${res_p50[$backend $small]}" "${res_p99[$backend $small]}" \
    "$(calc "$b")" "${res_p50[$backend $large]}" "${res_p99[$backend $large]}" \
    "$(mark "$(calc "100 * $b / $a" 1)" "$min_scale")" "$(mark "$(calc "100 * $b / $n_rps" 1)" "$min_nginx")"
done
printf '%-15s %12s %8s %8s\n' "nginx (static)" "$(calc "$n_rps")" "$n_p50" "$n_p99"
echo "targets: $l/$s >= ${min_scale}% per backend; $l/nginx >= ${min_nginx}% (* = below target)"
echo "bulk provisioning (devices + tokens):$(for backend in $backends; do printf ' %s %s %s s, %s %s s;' "$backend" "$s" "${res_load[$backend $small]}" "$l" "${res_load[$backend $large]}"; done)"
echo "$cache_note"
printf '%s\n' "${notes[@]}"
echo "the machine may be noisy: run three times and quote the median"
