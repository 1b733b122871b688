#!/usr/bin/env bash
# Checks the served OpenAPI document against the server's behaviour with
# schemathesis: every check, against a live server with a catalogue, a
# provisioned device and a published release, once with a device token and
# once with an admin token. Any failure fails the run.
#
#   scripts/schemathesis.sh [SECONDS_PER_PASS]    (default 120)
#
# Expects the debug binaries (`cargo build --workspace --bins`). Installs
# schemathesis (pinned below) into a virtual environment cached under
# ~/.cache/firmup, so only the first run downloads it.
set -euo pipefail
cd "$(dirname "$0")/.."
root_dir="$PWD"
budget="${1:-120}"

ST_VERSION=4.32.5
venv="${FIRMUP_SCHEMATHESIS_VENV:-$HOME/.cache/firmup/schemathesis-$ST_VERSION}"
if [ ! -x "$venv/bin/st" ]; then
  echo "installing schemathesis $ST_VERSION into $venv"
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$ST_VERSION"
fi

bin="$root_dir/target/debug"
work="$(mktemp -d)"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
export FIRMUP_DATA_DIR="$work/data" FIRMUP_LISTEN="127.0.0.1:$port"
export FIRMUP_TRUST_ROOT="$root_dir/fixtures/golden/root.v1.json"
# Schemathesis sends thousands of requests from one address and one token:
# the limits would answer most of them with 429 and hide the rest.
export FIRMUP_TOKEN_RATE_PER_SEC=0 FIRMUP_ADDRESS_RATE_PER_SEC=0
"$bin/firmup-server" serve >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
  curl -fs "$base/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "$base/readyz" >/dev/null

admin="$("$bin/firmup-server" token create --role admin --label schemathesis 2>/dev/null)"
api() {
  curl -fsS -X "$1" "$base$2" -H "authorization: Bearer $admin" \
    -H 'content-type: application/json' ${3:+-d "$3"}
}
api PUT /v1/admin/product-lines/encoders '{"name":"Encoders","kind":"hardware","warranty_months":12}' >/dev/null
api PUT /v1/admin/models/E4K '{"product_line":"encoders","name":"E4K","hw_ids":["enc-4k-r2"]}' >/dev/null
device="$(api POST /v1/admin/devices \
  '{"devices":[{"serial":"SN-0001","model_id":"E4K","hw_id":"enc-4k-r2"}],"issue_tokens":true}' |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["devices"][0]["token"])')"
FIRMUP_TOKEN="$("$bin/firmup-server" token create --role release_engineer --label schemathesis 2>/dev/null)" \
  "$bin/firmup-signer" publish --server "$base" --manifest fixtures/golden/manifest.valid.json \
  --image fixtures/golden/firmware.img >/dev/null 2>&1

status=0
run() {
  local who="$1" token="$2"
  shift 2
  echo "schemathesis ($who token, at most $budget s):"
  # One worker, so the server has the other core. It runs from the scratch
  # directory because schemathesis keeps its caches in the working one.
  if ! (cd "$work" && timeout $((budget + 60)) "$venv/bin/st" --config-file "$root_dir/scripts/schemathesis.toml" run \
    "$base/openapi.json" --checks all -H "Authorization: Bearer $token" \
    --workers 1 --max-time "$budget" --no-color "$@") >"$work/st-$who.txt" 2>&1; then
    status=1
    cut -c1-1000 "$work/st-$who.txt"   # reproductions can hold megabytes of body
  else
    sed -n '/SUMMARY/,$p' "$work/st-$who.txt"
  fi
}
# The device pass first, and token revocation alone at the end: a pass that
# may revoke tokens may revoke the one it runs with.
run device "$device"
run admin "$admin" --exclude-name 'DELETE /v1/admin/tokens/{id}'
admin2="$("$bin/firmup-server" token create --role admin --label schemathesis-revoke 2>/dev/null)"
budget=20 run admin-revoke "$admin2" --include-name 'DELETE /v1/admin/tokens/{id}'
if [ "$status" -ne 0 ]; then
  echo "schemathesis found failures; the server log follows" >&2
  tail -50 "$work/server.log" >&2
fi
exit "$status"
