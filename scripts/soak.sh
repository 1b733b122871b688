#!/usr/bin/env bash
# Soak test: a release build of firmup-server under steady load for a while.
#
#   scripts/soak.sh [SECONDS] [IMAGE_MIB]      # default: 600 s, 16 MiB
#
# 100 update checks per second from 200 provisioned devices, 4 clients
# downloading the image over and over (a third of the downloads cut at a
# random byte and resumed with Range), and 2 slow clients reading at
# 64 KiB/s. Every 30 s it prints requests, errors, the p99 check latency and
# the server's RSS. Fails if any request failed or the RSS grew (more than
# 20% + 8 MiB from the first report to the last). Needs python3, curl, jq.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
secs=${1:-600}
image_mib=${2:-16}

need() { command -v "$1" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }
need curl curl
need jq jq

cargo build --release --locked --quiet -p firmup-server -p firmup-signer
server_bin=$repo/target/release/firmup-server
signer=$repo/target/release/firmup-signer

work=$(mktemp -d "${TMPDIR:-/tmp}/firmup-soak.XXXXXX")
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port

head -c "$((image_mib * 1024 * 1024))" /dev/urandom > image.bin
for k in root rel; do "$signer" keygen --out "$k" >/dev/null; done
"$signer" root init --root-key root.pub --threshold 1 --out root.json >/dev/null
"$signer" delegate --root root.json --product-line soak --key rel.pub --threshold 1 >/dev/null
"$signer" root sign --key root.key root.json >/dev/null
"$signer" sign --key rel.key --image image.bin --product-line soak --hw-id soak-r1 \
  --channel stable --version 2.0.0 --manifest-version 1 --security-counter 1 \
  --out image.manifest.json >/dev/null 2>&1

srv=("$server_bin" --data-dir "$work/data" --trust-root "$work/root.json")
admin=$("${srv[@]}" token create --role admin --label soak 2>/dev/null)
releng=$("${srv[@]}" token create --role release_engineer --label soak 2>/dev/null)
# Every simulated device shares this machine's address, as a fleet behind
# one NAT would: the address limit is off, the per-token limit is on.
# The one download link must outlive the run.
FIRMUP_LOG=warn FIRMUP_ADDRESS_RATE_PER_SEC=0 FIRMUP_GRANT_TTL_SECS=$((secs + 600)) \
  "${srv[@]}" serve --listen "127.0.0.1:$port" 2>server.log &
server_pid=$!
for _ in $(seq 100); do curl -fs "$base/readyz" >/dev/null && break; sleep 0.1; done

api() { curl -fsS -X "$1" "$base$2" -H "authorization: Bearer $admin" -H 'content-type: application/json' ${3:+-d "$3"}; }
api PUT /v1/admin/product-lines/soak '{"name":"Soak","kind":"hardware"}' >/dev/null
api PUT /v1/admin/models/S1 '{"product_line":"soak","name":"Soak 1","hw_ids":["soak-r1"]}' >/dev/null
seq 1 200 | jq -R '{serial: ("SOAK-" + .), model_id: "S1", hw_id: "soak-r1"}' \
  | jq -s '{devices: ., issue_tokens: true}' > devices.json
curl -fsS -X POST "$base/v1/admin/devices" -H "authorization: Bearer $admin" \
  -H 'content-type: application/json' --data-binary @devices.json > tokens.json
FIRMUP_TOKEN=$releng "$signer" publish --server "$base" --manifest image.manifest.json --image image.bin >/dev/null 2>&1
device=$(jq -r '.devices[0].token' tokens.json)
curl -fsS -X POST "$base/v1/device/check" -H "authorization: Bearer $device" \
  -H 'content-type: application/json' \
  -d '{"serial":"SOAK-1","hw_id":"soak-r1","current_version":"1.0.0","security_counter":1,"channel":"stable","root_version":1}' > check.json
url=$(jq -r '.update.images[0].url' check.json)
[ "$url" != null ] || { echo "the check offered no update: $(cat check.json)" >&2; exit 1; }
sha=$(sha256sum image.bin | cut -d' ' -f1)

echo "soak: ${secs}s against $base (server pid $server_pid), ${image_mib} MiB image"
python3 "$repo/scripts/soak.py" "$base" "$server_pid" tokens.json "$url" "$sha" "$secs"
