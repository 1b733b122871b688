#!/usr/bin/env bash
# Benchmark: one full `firmup-device update` of a large image from a local
# server, next to `curl -o` + `openssl dgst -sha256` of the same file from
# the same server, in one run.
#
#   scripts/bench-device.sh [IMAGE_MIB] [ROUNDS]      (defaults: 256 MiB, 3)
#
# The agent does more than the baseline, by design: it verifies the manifest,
# downloads to a resumable partial file while hashing, writes the inactive
# slot while hashing again, reads the slot back and hashes it a third time
# before marking it bootable, then simulates the reboot and commits. The
# figure to quote is the ratio of the best runs, and the agent's peak RSS.
# Targets (device issue): at most 1.5x the baseline's time, RSS < 32 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

image_mib=${1:-256}
rounds=${2:-3}

need() { command -v "$1" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }
need curl curl
need jq jq
need openssl openssl
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }

cargo build --release --locked --quiet -p firmup-server -p firmup-signer -p firmup-device
bin=$repo/target/release

work=$(mktemp -d "${TMPDIR:-/tmp}/firmup-bench-device.XXXXXX")
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"

port=$(( 20000 + RANDOM % 20000 ))
base=http://127.0.0.1:$port

echo "preparing a signed ${image_mib} MiB release and a server in $work" >&2
head -c "$((image_mib * 1024 * 1024))" /dev/urandom > image.bin
for k in root rel; do "$bin/firmup-signer" keygen --out "$k" >/dev/null; done
"$bin/firmup-signer" root init --root-key root.pub --threshold 1 --out root.json >/dev/null
"$bin/firmup-signer" delegate --root root.json --product-line bench --key rel.pub --threshold 1 >/dev/null
"$bin/firmup-signer" root sign --key root.key root.json >/dev/null
"$bin/firmup-signer" sign --key rel.key --image rootfs=image.bin --product-line bench \
  --hw-id bench-r1 --channel stable --version 2.0.0 --manifest-version 1 --security-counter 1 \
  --out image.manifest.json >/dev/null 2>&1

srv=("$bin/firmup-server" --data-dir "$work/data" --trust-root "$work/root.json")
admin=$("${srv[@]}" token create --role admin --label bench 2>/dev/null)
releng=$("${srv[@]}" token create --role release_engineer --label bench 2>/dev/null)
FIRMUP_LOG=warn "${srv[@]}" serve --listen "127.0.0.1:$port" 2>server.log &
server_pid=$!
for _ in $(seq 100); do curl -fs "$base/readyz" >/dev/null && break; sleep 0.1; done

api() { curl -fsS -X "$1" "$base$2" -H "authorization: Bearer $admin" -H 'content-type: application/json' ${3:+-d "$3"}; }
api PUT /v1/admin/product-lines/bench '{"name":"Bench","kind":"hardware"}' >/dev/null
api PUT /v1/admin/models/B1 '{"product_line":"bench","name":"Bench 1","hw_ids":["bench-r1"]}' >/dev/null
seq 1 "$rounds" | jq -R '{serial: ("DEV-" + .), model_id: "B1", hw_id: "bench-r1"}' \
  | jq -s '{devices: ., issue_tokens: true}' > devices.json
curl -fsS -X POST "$base/v1/admin/devices" -H "authorization: Bearer $admin" \
  -H 'content-type: application/json' --data-binary @devices.json > tokens.json
FIRMUP_TOKEN=$releng "$bin/firmup-signer" publish --server "$base" --manifest image.manifest.json \
  --image image.bin >/dev/null 2>&1

measure() { /usr/bin/time -f '%e %M' -o time.out "$@" >/dev/null 2>&1; cat time.out; }
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }

best_agent=999999 best_base=999999 best_durable=999999 rss_agent=0
printf '%-6s %9s %10s %8s %10s %8s %11s %14s\n' round 'agent s' 'agent MiB' 'curl s' 'openssl s' 'sync s' 'baseline s' 'durable base s'
for i in $(seq 1 "$rounds"); do
  serial=DEV-$i
  token=$(jq -r --arg s "$serial" '.devices[] | select(.serial == $s) | .token' tokens.json)
  state=$work/device-$i
  FIRMUP_DEVICE_TOKEN=$token "$bin/firmup-device" --state-dir "$state" provision --server "$base" \
    --serial "$serial" --hw-id bench-r1 --product-line bench --root root.json --version 1.0.0 \
    --security-counter 1 >/dev/null
  # Baseline: the same image over the same server, fetched with a grant from a check.
  url=$(curl -fsS -X POST "$base/v1/device/check" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' \
    -d "{\"serial\":\"$serial\",\"hw_id\":\"bench-r1\",\"current_version\":\"1.0.0\",\"security_counter\":1,\"root_version\":1}" \
    | jq -r '.update.images[0].url')
  rm -f fetched.bin
  read -r t_curl _ < <(measure curl -fsS -o fetched.bin "$base$url")
  read -r t_ssl _ < <(measure openssl dgst -sha256 fetched.bin)
  read -r t_sync _ < <(measure sync fetched.bin)
  read -r t_agent m_agent < <(measure "$bin/firmup-device" --state-dir "$state" update)
  "$bin/firmup-device" --state-dir "$state" status | grep -q '^version: 2.0.0' \
    || { echo "round $i: the agent did not install 2.0.0" >&2; exit 1; }
  t_base=$(calc "$t_curl + $t_ssl")
  t_durable=$(calc "$t_curl + $t_ssl + $t_sync")
  printf '%-6s %9s %10s %8s %10s %8s %11s %14s\n' "$i" "$t_agent" "$(calc "$m_agent/1024" 1)" \
    "$t_curl" "$t_ssl" "$t_sync" "$t_base" "$t_durable"
  best_agent=$(awk -v a="$t_agent" -v b="$best_agent" 'BEGIN { print (a < b) ? a : b }')
  best_base=$(awk -v a="$t_base" -v b="$best_base" 'BEGIN { print (a < b) ? a : b }')
  best_durable=$(awk -v a="$t_durable" -v b="$best_durable" 'BEGIN { print (a < b) ? a : b }')
  [ "$m_agent" -gt "$rss_agent" ] && rss_agent=$m_agent
  rm -rf "$state/work" fetched.bin
done
echo
printf 'best agent update           : %6.2f s, peak RSS %.1f MiB\n' "$best_agent" "$(calc "$rss_agent/1024" 1)"
printf 'best curl -o + openssl dgst : %6.2f s\n' "$best_base"
printf 'best ... + sync FILE         : %6.2f s\n' "$best_durable"
printf 'agent time / baseline time  : %.2fx (target <= 1.5x)\n' "$(calc "$best_agent/$best_base")"
printf 'agent time / durable baseline: %.2fx\n' "$(calc "$best_agent/$best_durable")"
