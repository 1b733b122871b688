#!/usr/bin/env bash
# Benchmark: image downloads in the two delivery modes, next to nginx, in
# one run, with images in a throw-away Garage (S3-compatible store).
#
#   scripts/bench-download.sh [IMAGE_MIB] [PARALLEL] [ROUNDS]
#                                         (defaults: 256 MiB, 4, 3)
#
# One release is published to a server whose images live in Garage. Then,
# each ROUNDS times, PARALLEL `curl -L` downloads of the whole image run at
# once against:
#   - stream:   a server that streams the bytes from Garage itself;
#   - redirect: a second server on the same database and bucket that
#               answers 307 to a presigned Garage URL (curl follows it);
#   - nginx:    nginx serving the same file from disk (sendfile).
# For each mode it prints the throughput (MiB/s, all downloads together)
# and the CPU seconds per GiB served of the server process and of Garage,
# from their /proc/PID/stat (utime + stime) before and after, each the
# median of the rounds. The machine may be shared and noisy: compare the
# modes of one run.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
# shellcheck source=scripts/garage.sh
source scripts/garage.sh

image_mib=${1:-256}
parallel=${2:-4}
rounds=${3:-3}

need() { command -v "$1" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }
need nginx nginx-light
need curl curl
need jq jq

cargo build --release --locked --quiet -p firmup-server -p firmup-signer
server_bin=$repo/target/release/firmup-server
signer=$repo/target/release/firmup-signer

work=$(mktemp -d "${TMPDIR:-/tmp}/firmup-bench-download.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/nginx/nginx.pid" ] && kill "$(cat "$work/nginx/nginx.pid")" 2>/dev/null || true
  garage_stop
  rm -rf "$work"
}
trap cleanup EXIT
chmod 755 "$work"
cd "$work"

garage_start >&2
garage_pid=$(pgrep -f "garage -c $FIRMUP_GARAGE_DIR/garage.toml" | head -1)

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sport=$(port); rport=$(port); nport=$(port)

echo "preparing a signed ${image_mib} MiB release in $work" >&2
head -c "$((image_mib * 1024 * 1024))" /dev/urandom > image.bin
for k in root rel; do "$signer" keygen --out "$k" >/dev/null; done
"$signer" root init --root-key root.pub --threshold 1 --out root.json >/dev/null
"$signer" delegate --root root.json --product-line bench --key rel.pub --threshold 1 >/dev/null
"$signer" root sign --key root.key root.json >/dev/null
"$signer" sign --key rel.key --image image.bin --product-line bench --hw-id bench-r1 \
  --channel stable --version 2.0.0 --manifest-version 1 --security-counter 1 \
  --out image.manifest.json >/dev/null 2>&1

export FIRMUP_STORAGE_URL="$FIRMUP_TEST_STORAGE_URL" FIRMUP_LOG=warn \
  FIRMUP_TOKEN_RATE_PER_SEC=0 FIRMUP_ADDRESS_RATE_PER_SEC=0
srv=("$server_bin" --data-dir "$work/data" --trust-root "$work/root.json")
admin=$("${srv[@]}" token create --role admin --label bench 2>/dev/null)
releng=$("${srv[@]}" token create --role release_engineer --label bench 2>/dev/null)
"${srv[@]}" serve --listen "127.0.0.1:$sport" 2>stream.log &
pids+=($!); stream_pid=$!
FIRMUP_DOWNLOAD_DELIVERY=redirect "${srv[@]}" serve --listen "127.0.0.1:$rport" 2>redirect.log &
pids+=($!); redirect_pid=$!
for p in "$sport:stream" "$rport:redirect"; do
  ok=0
  for _ in $(seq 300); do curl -fs "http://127.0.0.1:${p%%:*}/readyz" >/dev/null && { ok=1; break; }; sleep 0.1; done
  [ "$ok" = 1 ] || { echo "the ${p#*:} server did not become ready; its log:" >&2; cat "${p#*:}.log" >&2; exit 1; }
done

base=http://127.0.0.1:$sport
api() { curl -fsS -X "$1" "$base$2" -H "authorization: Bearer $admin" -H 'content-type: application/json' ${3:+-d "$3"}; }
api PUT /v1/admin/product-lines/bench '{"name":"Bench","kind":"hardware"}' >/dev/null
api PUT /v1/admin/models/B1 '{"product_line":"bench","name":"Bench 1","hw_ids":["bench-r1"]}' >/dev/null
device=$(api POST /v1/admin/devices \
  '{"devices":[{"serial":"BENCH-1","model_id":"B1","hw_id":"bench-r1"}],"issue_tokens":true}' \
  | jq -r '.devices[0].token')
FIRMUP_TOKEN=$releng "$signer" publish --server "$base" --manifest image.manifest.json --image image.bin >/dev/null 2>&1
curl -fsS -X POST "$base/v1/device/check" -H "authorization: Bearer $device" \
  -H 'content-type: application/json' \
  -d '{"serial":"BENCH-1","hw_id":"bench-r1","current_version":"1.0.0","security_counter":1,"root_version":1}' \
  > check.json
path=$(jq -r '.update.images[0].url' check.json)
[ "$path" != null ] || { echo "the check offered no update: $(cat check.json)" >&2; exit 1; }

mkdir -p nginx/logs www
ln image.bin www/image.bin
cat > nginx/nginx.conf <<NGINX
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  server {
    listen 127.0.0.1:$nport;
    root $work/www;
    default_type application/octet-stream;
  }
}
NGINX
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf"
nginx_master=$(cat nginx/nginx.pid)

# CPU ticks (utime + stime) of a process and its threads.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# ... of nginx: its master and workers.
nginx_ticks() {
  local t=0 p
  for p in $nginx_master $(pgrep -P "$nginx_master"); do t=$((t + $(ticks "$p"))); done
  echo "$t"
}
hz=$(getconf CLK_TCK)
expected=$(sha256sum image.bin | cut -c1-64)

# One round: PARALLEL downloads of URL at once; prints "MiB/s cpu_s_per_GiB
# garage_cpu_s_per_GiB" for the process whose ticks command is $2.
round() {
  local url=$1 ticks_cmd=$2 t0 t1 s0 s1 g0 g1 i p curls=()
  s0=$($ticks_cmd); g0=$(ticks "$garage_pid"); t0=$(date +%s.%N)
  for i in $(seq "$parallel"); do
    curl -fsS -L -o "dl.$i" "$url" &
    curls+=($!)
  done
  for p in "${curls[@]}"; do wait "$p"; done
  t1=$(date +%s.%N); s1=$($ticks_cmd); g1=$(ticks "$garage_pid")
  for i in $(seq "$parallel"); do
    [ "$(sha256sum "dl.$i" | cut -c1-64)" = "$expected" ] || { echo "download $i differs" >&2; exit 1; }
    rm -f "dl.$i"
  done
  awk -v mib="$((image_mib * parallel))" -v t0="$t0" -v t1="$t1" \
    -v s="$((s1 - s0))" -v g="$((g1 - g0))" -v hz="$hz" \
    'BEGIN { gib = mib / 1024; printf "%.1f %.3f %.3f\n", mib / (t1 - t0), s / hz / gib, g / hz / gib }'
}

median() { sort -n | awk '{a[NR]=$1} END { print a[int((NR+1)/2)] }'; }
declare -A res
for mode in stream redirect nginx; do
  case $mode in
    stream) url="$base$path"; tc="ticks $stream_pid" ;;
    redirect) url="http://127.0.0.1:$rport$path"; tc="ticks $redirect_pid" ;;
    nginx) url="http://127.0.0.1:$nport/image.bin"; tc=nginx_ticks ;;
  esac
  echo "$mode: $rounds rounds of $parallel x ${image_mib} MiB" >&2
  : > "$mode.rounds"
  for _ in $(seq "$rounds"); do round "$url" "$tc" >> "$mode.rounds"; done
  res[$mode]="$(cut -d' ' -f1 "$mode.rounds" | median) $(cut -d' ' -f2 "$mode.rounds" | median) $(cut -d' ' -f3 "$mode.rounds" | median)"
done

echo
printf '%-10s %12s %12s %22s %22s\n' mode 'MiB/s' 'vs nginx' 'server CPU s/GiB' 'Garage CPU s/GiB'
read -r n_mib _ _ <<<"${res[nginx]}"
for mode in stream redirect nginx; do
  read -r mib cpu gcpu <<<"${res[$mode]}"
  printf '%-10s %12s %11s%% %22s %22s\n' "$mode" "$mib" "$(awk "BEGIN { printf \"%.0f\", 100*$mib/$n_mib }")" "$cpu" "$gcpu"
done
echo "(medians of $rounds rounds; nginx's CPU is its master and workers'; Garage serves nothing in the nginx mode)"
