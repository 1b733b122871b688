#!/usr/bin/env bash
# Benchmark: firmup-server next to nginx, in one run, on this machine.
#
#   scripts/bench-server.sh [IMAGE_MIB] [SECONDS] [DEVICES]
#                                     (defaults: 64 MiB, 10 s, 2000 devices)
#
# Measures, each side by side with nginx serving the same bytes:
#   1. update checks per second at 64 connections (POST /v1/device/check),
#      each request from one of DEVICES provisioned devices in turn (so the
#      token and device caches hold a fleet, not one entry), vs nginx
#      answering a static file holding the same response body;
#   2. download throughput of the image at 8 connections;
#   3. firmup-server's peak RSS while serving 256 concurrent downloads.
# Prints the figures and the ratios. Targets (server issue): checks >= 40% of
# nginx's rate, downloads >= 80% of nginx's throughput, RSS < 100 MiB.
# The machine may be shared and noisy: quote the ratios of one run.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

image_mib=${1:-64}
secs=${2:-10}
devices=${3:-2000}

need() { command -v "$1" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }
need wrk wrk
need nginx nginx-light
need curl curl
need jq jq

cargo build --release --locked --quiet -p firmup-server -p firmup-signer
server_bin=$repo/target/release/firmup-server
signer=$repo/target/release/firmup-signer

work=$(mktemp -d "${TMPDIR:-/tmp}/firmup-bench-server.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/nginx/nginx.pid" ] && kill "$(cat "$work/nginx/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# nginx workers run unprivileged: let them read the files they serve.
chmod 755 "$work"
cd "$work"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)); }
fport=$(port); nport=$(port)
base=http://127.0.0.1:$fport

echo "preparing keys, a signed ${image_mib} MiB release and a server in $work" >&2
head -c "$((image_mib * 1024 * 1024))" /dev/urandom > image.bin
for k in root rel; do "$signer" keygen --out "$k" >/dev/null; done
"$signer" root init --root-key root.pub --threshold 1 --out root.json >/dev/null
"$signer" delegate --root root.json --product-line bench --key rel.pub --threshold 1 >/dev/null
"$signer" root sign --key root.key root.json >/dev/null
"$signer" sign --key rel.key --image image.bin --product-line bench --hw-id bench-r1 \
  --channel stable --version 2.0.0 --manifest-version 1 --security-counter 1 \
  --out image.manifest.json >/dev/null 2>&1

srv=("$server_bin" --data-dir "$work/data" --trust-root "$work/root.json")
admin=$("${srv[@]}" token create --role admin --label bench 2>/dev/null)
releng=$("${srv[@]}" token create --role release_engineer --label bench 2>/dev/null)
# The rate limits are off: wrk sends every device's checks from one address
# and far faster than a real device polls; this measures the server, not
# the limiter.
FIRMUP_LOG=warn FIRMUP_TOKEN_RATE_PER_SEC=0 FIRMUP_ADDRESS_RATE_PER_SEC=0 \
  "${srv[@]}" serve --listen "127.0.0.1:$fport" 2>server.log &
pids+=($!); server_pid=$!
for _ in $(seq 100); do curl -fs "$base/readyz" >/dev/null && break; sleep 0.1; done

api() { curl -fsS -X "$1" "$base$2" -H "authorization: Bearer $admin" -H 'content-type: application/json' ${3:+-d "$3"}; }
api PUT /v1/admin/product-lines/bench '{"name":"Bench","kind":"hardware"}' >/dev/null
api PUT /v1/admin/models/B1 '{"product_line":"bench","name":"Bench 1","hw_ids":["bench-r1"]}' >/dev/null
seq 1 "$devices" | jq -R '{serial: ("BENCH-" + .), model_id: "B1", hw_id: "bench-r1"}' \
  | jq -s '{devices: ., issue_tokens: true}' > devices.json
curl -fsS -X POST "$base/v1/admin/devices" -H "authorization: Bearer $admin" \
  -H 'content-type: application/json' --data-binary @devices.json > tokens.json
device=$(jq -r '.devices[0].token' tokens.json)
FIRMUP_TOKEN=$releng "$signer" publish --server "$base" --manifest image.manifest.json --image image.bin >/dev/null 2>&1

check_body='{"serial":"BENCH-1","hw_id":"bench-r1","current_version":"1.0.0","security_counter":1,"channel":"stable","root_version":1}'
curl -fsS -X POST "$base/v1/device/check" -H "authorization: Bearer $device" \
  -H 'content-type: application/json' -d "$check_body" > check.json
url=$(jq -r '.update.images[0].url' check.json)
[ "$url" != null ] || { echo "the check offered no update: $(cat check.json)" >&2; exit 1; }

# nginx serving the same bytes: the check answer and the image.
mkdir -p nginx/logs www
cp check.json www/check.json
ln image.bin www/image.bin
cat > nginx/nginx.conf <<NGINX
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$nport;
    root $work/www;
    default_type application/octet-stream;
  }
}
NGINX
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf"
for _ in $(seq 50); do curl -fs -o /dev/null "http://127.0.0.1:$nport/check.json" && break; sleep 0.1; done

# Each request is a check from the next device of the fleet.
{
  echo 'local fleet = {'
  jq -r '.devices[] | "{\"" + .serial + "\", \"" + .token + "\"},"' tokens.json
  echo '}'
  cat <<'LUA'
local i = 0
request = function()
  i = i % #fleet + 1
  local d = fleet[i]
  local body = '{"serial":"' .. d[1] .. '","hw_id":"bench-r1","current_version":"1.0.0",'
    .. '"security_counter":1,"channel":"stable","root_version":1}'
  return wrk.format("POST", "/v1/device/check",
    { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. d[2] }, body)
end
LUA
} > check.lua
rps() { awk '/^Requests\/sec/ {print $2}'; }
mibps() { awk '/^Transfer\/sec/ { v=$2; u=substr(v, length(v)-1); n=v+0; if (u=="GB") n*=1024; else if (u=="KB") n/=1024; print n }'; }
errors() { awk '/Non-2xx|Socket errors/ {print}'; }
# A benchmark of error answers is no benchmark: stop on any non-2xx.
ok_only() {
  if grep -q 'Non-2xx' <<<"$2"; then
    echo "$1 answered errors during the run:" >&2; grep 'Non-2xx' <<<"$2" >&2; exit 1
  fi
}

echo "1/3 update checks, 64 connections, ${secs}s each" >&2
f_out=$(wrk -t2 -c64 -d"${secs}s" -s check.lua "$base/v1/device/check")
n_out=$(wrk -t2 -c64 -d"${secs}s" "http://127.0.0.1:$nport/check.json")
ok_only firmup-server "$f_out"; ok_only nginx "$n_out"
f_rps=$(rps <<<"$f_out"); n_rps=$(rps <<<"$n_out")
errors <<<"$f_out" >&2

echo "2/3 downloads, 8 connections, ${secs}s each" >&2
f_out=$(wrk -t2 -c8 -d"${secs}s" "$base$url")
n_out=$(wrk -t2 -c8 -d"${secs}s" "http://127.0.0.1:$nport/image.bin")
ok_only firmup-server "$f_out"; ok_only nginx "$n_out"
f_mib=$(mibps <<<"$f_out"); n_mib=$(mibps <<<"$n_out")
errors <<<"$f_out" >&2

echo "3/3 peak RSS during 256 concurrent downloads, ${secs}s" >&2
rss_before=$(awk '/VmRSS/ {print $2}' "/proc/$server_pid/status")
wrk -t2 -c256 -d"${secs}s" "$base$url" > wrk256.out &
wrk_pid=$!
peak=0
while kill -0 "$wrk_pid" 2>/dev/null; do
  r=$(awk '/VmRSS/ {print $2}' "/proc/$server_pid/status")
  [ "$r" -gt "$peak" ] && peak=$r
  sleep 0.2
done
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")
ok_only "firmup-server (256 connections)" "$(cat wrk256.out)"
f256_mib=$(mibps < wrk256.out)

calc() { awk "BEGIN { printf \"%.${2:-0}f\", $1 }"; }
echo
printf '%-44s %14s %14s %8s\n' measure firmup-server nginx ratio
printf '%-44s %14s %14s %7s%%\n' "update checks/s (64 conns, $devices devices)" "$(calc "$f_rps")" "$(calc "$n_rps")" "$(calc "100*$f_rps/$n_rps")"
printf '%-44s %14s %14s %7s%%\n' "download MiB/s (8 conns, ${image_mib} MiB image)" "$(calc "$f_mib")" "$(calc "$n_mib")" "$(calc "100*$f_mib/$n_mib")"
printf '%-44s %14s\n' "download MiB/s (256 conns)" "$(calc "$f256_mib")"
printf '%-44s %14s\n' "server RSS before load (MiB)" "$(calc "$rss_before/1024" 1)"
printf '%-44s %14s\n' "server peak RSS, 256 downloads (MiB)" "$(calc "$peak/1024" 1)"
printf '%-44s %14s\n' "server VmHWM after all runs (MiB)" "$(calc "$hwm/1024" 1)"
echo "targets: checks >= 40%, downloads >= 80% of nginx; peak RSS < 100 MiB"
