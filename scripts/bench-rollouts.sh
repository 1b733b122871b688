#!/usr/bin/env bash
# Benchmark: the update check with 10 active staged rollouts against the
# same check without any, side by side in one run.
#
#   scripts/bench-rollouts.sh [SECONDS] [DEVICES] [RUNS]
#                                  (defaults: 10 s, 2000 devices, 3 runs)
#
# Two servers on this machine, each with its own database and the same
# fleet of DEVICES devices:
#   A: one release, no rollout;
#   B: the same release and 10 newer ones, each under an active rollout at
#      1% (half of them limited to a dynamic group), so that nearly every
#      check judges all 10 memberships before it falls back to the oldest.
# wrk drives each in turn, A B A B ..., RUNS times, 64 connections, every
# request a check from the next device of the fleet. Prints per run and the
# medians: checks per second and the server's CPU time per check (from
# /proc/PID/stat over the run, which noise moves far less than throughput).
# Target (rollouts issue): B's rate at least 90% of A's.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

secs=${1:-10}
devices=${2:-2000}
runs=${3:-3}

need() { command -v "$1" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }
need wrk wrk
need curl curl
need jq jq

cargo build --release --locked --quiet -p firmup-server -p firmup-signer
server_bin=$repo/target/release/firmup-server
signer=$repo/target/release/firmup-signer

work=$(mktemp -d "${TMPDIR:-/tmp}/firmup-bench-rollouts.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "preparing keys and 11 signed releases in $work" >&2
head -c $((64 * 1024)) /dev/urandom > image.bin
for k in root rel; do "$signer" keygen --out "$k" >/dev/null; done
"$signer" root init --root-key root.pub --threshold 1 --out root.json >/dev/null
"$signer" delegate --root root.json --product-line bench --key rel.pub --threshold 1 >/dev/null
"$signer" root sign --key root.key root.json >/dev/null
for n in $(seq 0 10); do
  "$signer" sign --key rel.key --image image.bin --product-line bench --hw-id bench-r1 \
    --channel stable --version "2.0.$n" --manifest-version $((n + 1)) --security-counter 1 \
    --out "r$n.json" >/dev/null 2>&1
done

# start NAME: a server with its own data directory and fleet; sets
# ${NAME}_base, ${NAME}_pid, ${NAME}_releng, ${NAME}_admin and writes
# NAME.lua.
start() {
  local name=$1 p srv admin releng base
  p=$(port)
  srv=("$server_bin" --data-dir "$work/$name" --trust-root "$work/root.json")
  admin=$("${srv[@]}" token create --role admin --label bench 2>/dev/null)
  releng=$("${srv[@]}" token create --role release_engineer --label bench 2>/dev/null)
  FIRMUP_LOG=warn FIRMUP_TOKEN_RATE_PER_SEC=0 FIRMUP_ADDRESS_RATE_PER_SEC=0 \
    "${srv[@]}" serve --listen "127.0.0.1:$p" 2>"$name.log" &
  pids+=($!)
  printf -v "${name}_pid" %s "$!"
  base=http://127.0.0.1:$p
  for _ in $(seq 100); do curl -fs "$base/readyz" >/dev/null && break; sleep 0.1; done
  local api=(curl -fsS -H "authorization: Bearer $admin" -H 'content-type: application/json')
  "${api[@]}" -X PUT "$base/v1/admin/product-lines/bench" -d '{"name":"Bench","kind":"hardware"}' >/dev/null
  "${api[@]}" -X PUT "$base/v1/admin/models/B1" -d '{"product_line":"bench","name":"Bench 1","hw_ids":["bench-r1"]}' >/dev/null
  seq 1 "$devices" | jq -R '{serial: ("BENCH-" + .), model_id: "B1", hw_id: "bench-r1"}' \
    | jq -s '{devices: ., issue_tokens: true}' > "$name.devices.json"
  "${api[@]}" -X POST "$base/v1/admin/devices" --data-binary @"$name.devices.json" > "$name.tokens.json"
  FIRMUP_TOKEN=$releng "$signer" publish --server "$base" --manifest r0.json --image image.bin >/dev/null 2>&1
  {
    echo 'local fleet = {'
    jq -r '.devices[] | "{\"" + .serial + "\", \"" + .token + "\"},"' "$name.tokens.json"
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
  } > "$name.lua"
  printf -v "${name}_base" %s "$base"
  printf -v "${name}_admin" %s "$admin"
  printf -v "${name}_releng" %s "$releng"
}

start A
start B
# B: a dynamic group and 10 newer releases, each under a rollout at 1%.
curl -fsS -X POST "$B_base/v1/groups" -H "authorization: Bearer $B_releng" \
  -H 'content-type: application/json' -d '{"name":"fleet","filter":"model = B1 and version < 9.0.0"}' >/dev/null
# The image is stored already (every release carries the same one), so the
# manifests are published directly, each with its rollout.
for n in $(seq 1 10); do
  query="rollout=1,100"
  [ $((n % 2)) -eq 0 ] && query="$query&rollout_group=fleet"
  curl -fsS -X POST "$B_base/v1/product-lines/bench/releases?$query" \
    -H "authorization: Bearer $B_releng" -H 'content-type: application/json' \
    --data-binary @"r$n.json" >/dev/null
done
active=$(curl -fsS "$B_base/v1/rollouts?state=active&limit=1000" -H "authorization: Bearer $B_admin" | jq '.rollouts | length')
[ "$active" -eq 10 ] || { echo "expected 10 active rollouts on B, found $active" >&2; exit 1; }
# Every check of A offers 2.0.0; of B, 2.0.0 for the 99% outside the
# rollouts (checked on the first device of each).
for s in A B; do
  b=${s}_base; tok=$(jq -r '.devices[0].token' "$s.tokens.json")
  curl -fsS -X POST "${!b}/v1/device/check" -H "authorization: Bearer $tok" -H 'content-type: application/json' \
    -d '{"serial":"BENCH-1","hw_id":"bench-r1","current_version":"1.0.0","security_counter":1,"root_version":1}' \
    | jq -e '.status == "update_available"' >/dev/null || { echo "$s offered no update" >&2; exit 1; }
done

ticks=$(getconf CLK_TCK)
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
declare -a a_rps a_us b_rps b_us
measure() { # NAME -> "rps us_per_check"
  local name=$1 pid base out before after rps n
  pid=${name}_pid; base=${name}_base
  before=$(cpu "${!pid}")
  out=$(wrk -t2 -c64 -d"${secs}s" -s "$name.lua" "${!base}/v1/device/check")
  after=$(cpu "${!pid}")
  if grep -q 'Non-2xx' <<<"$out"; then echo "$name answered errors:" >&2; grep 'Non-2xx' <<<"$out" >&2; exit 1; fi
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "$rps $(awk "BEGIN { printf \"%.1f\", ($after - $before) * 1e6 / $ticks / $n }")"
}
# A short warm-up of each, so both measure warm caches.
wrk -t2 -c64 -d2s -s A.lua "$A_base/v1/device/check" >/dev/null
wrk -t2 -c64 -d2s -s B.lua "$B_base/v1/device/check" >/dev/null
for r in $(seq 1 "$runs"); do
  read -r x y < <(measure A); a_rps+=("$x"); a_us+=("$y")
  read -r x y < <(measure B); b_rps+=("$x"); b_us+=("$y")
  echo "run $r: no rollouts ${a_rps[-1]} checks/s (${a_us[-1]} us CPU each); 10 rollouts ${b_rps[-1]} checks/s (${b_us[-1]} us CPU each)" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ma=$(median "${a_rps[@]}"); mb=$(median "${b_rps[@]}")
ua=$(median "${a_us[@]}"); ub=$(median "${b_us[@]}")
echo
printf '%-40s %14s %14s %8s\n' "median of $runs runs, $devices devices" "no rollouts" "10 rollouts" ratio
printf '%-40s %14.0f %14.0f %7.1f%%\n' "update checks/s (64 connections)" "$ma" "$mb" "$(awk "BEGIN { print 100 * $mb / $ma }")"
printf '%-40s %14.1f %14.1f %7.1f%%\n' "server CPU per check (us)" "$ua" "$ub" "$(awk "BEGIN { print 100 * $ub / $ua }")"
echo "target: checks with 10 rollouts >= 90% of the rate without"
