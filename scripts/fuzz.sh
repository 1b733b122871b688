#!/usr/bin/env bash
# Runs each cargo-fuzz target for a bounded time, seeded from the fixtures,
# and prints one line of figures per target.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   # default: 60 s, every target
#
# Installs cargo-fuzz into ~/.cargo/bin when it is missing. The targets run
# without a sanitizer (`-s none`): the project's code forbids `unsafe`, and
# the sanitizers need a nightly compiler, which the pinned toolchain is not.
# Findings land in fuzz/artifacts/TARGET/ and make the script fail.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
shift || true

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi

cargo run --quiet --locked -p firmup-fixtures --example fuzz_seeds -- fuzz/seeds >/dev/null

cd fuzz
cargo fuzz build -s none >/dev/null
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

failed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "seeds/$t"
  log="$(mktemp)"
  if cargo fuzz run -s none "$t" "corpus/$t" "seeds/$t" -- \
      -max_total_time="$secs" -print_final_stats=1 -max_len=65536 >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed=1
  fi
  stat() { grep -m1 "^stat::$1:" "$log" | awk '{print $2}'; }
  printf '%-14s %-6s %4ss  execs %-10s exec/s %-7s corpus %-5s peak_rss_mb %s\n' \
    "$t" "$status" "$secs" "$(stat number_of_executed_units)" "$(stat average_exec_per_sec)" \
    "$(find "corpus/$t" -type f | wc -l)" "$(stat peak_rss_mb)"
  if [ "$status" = FAILED ]; then
    tail -n 40 "$log"
  fi
  rm -f "$log"
done
exit "$failed"
