#!/usr/bin/env bash
# Benchmark: `firmup-signer verify` of a large image against
# `openssl dgst -sha256` of the same file, side by side in one run.
#
#   scripts/bench-verify.sh [SIZE_MIB] [ROUNDS]     (defaults: 1024 MiB, 5 rounds)
#
# Prints wall time, throughput and peak RSS of each tool per round, then the
# best of each and the ratio. The machine may be shared and noisy, so the
# ratio of the best runs, interleaved in one run, is the figure to quote.
# Targets (issue: trust core): verify at >= 80% of openssl's speed, peak RSS
# under 32 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."

size_mib=${1:-1024}
rounds=${2:-5}

if [ ! -x /usr/bin/time ]; then
  echo "installing GNU time (for peak RSS)" >&2
  apt-get update -qq && apt-get install -y -qq time >/dev/null
fi
command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }

cargo build --release --locked --quiet -p firmup-signer
signer=$PWD/target/release/firmup-signer

work=$(mktemp -d "${TMPDIR:-/tmp}/firmup-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

echo "preparing a ${size_mib} MiB image and a 2-of-3 root in $work" >&2
head -c "$((size_mib * 1024 * 1024))" /dev/urandom > image.bin
for k in root1 root2 root3 rel1 rel2; do "$signer" keygen --out "$k" >/dev/null; done
"$signer" root init --root-key root1.pub --root-key root2.pub --root-key root3.pub \
  --threshold 2 --out root.json >/dev/null
"$signer" delegate --root root.json --product-line bench --key rel1.pub --key rel2.pub \
  --threshold 2 >/dev/null
"$signer" root sign --key root1.key --key root2.key root.json >/dev/null
"$signer" sign --key rel1.key --key rel2.key --image image.bin --product-line bench \
  --hw-id bench-r1 --channel stable --version 1.0.0 --manifest-version 1 \
  --security-counter 1 --out image.manifest.json >/dev/null 2>&1
cat image.bin > /dev/null # warm the page cache for both tools alike

calc() { awk "BEGIN { print $* }"; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a < b) ? a : b }'; }

measure() { # prints "seconds max_rss_kib"
  /usr/bin/time -f '%e %M' -o time.out "$@" >/dev/null 2>&1
  cat time.out
}

best_o=999999 best_f=999999 rss_o=0 rss_f=0
printf '%-6s %-28s %10s %12s %14s\n' round tool seconds 'MiB/s' 'peak RSS MiB'
for i in $(seq 1 "$rounds"); do
  read -r t_o m_o < <(measure openssl dgst -sha256 image.bin)
  read -r t_f m_f < <(measure "$signer" verify --root root.json \
    --manifest image.manifest.json --image image.bin --hw-id bench-r1)
  for row in "openssl dgst -sha256|$t_o|$m_o" "firmup-signer verify|$t_f|$m_f"; do
    IFS='|' read -r name t m <<<"$row"
    printf '%-6s %-28s %10s %12.0f %14.1f\n' "$i" "$name" "$t" \
      "$(calc "$size_mib / $t")" "$(calc "$m / 1024")"
  done
  best_o=$(min "$t_o" "$best_o")
  best_f=$(min "$t_f" "$best_f")
  [ "$m_o" -gt "$rss_o" ] && rss_o=$m_o
  [ "$m_f" -gt "$rss_f" ] && rss_f=$m_f
done

# The verifier must also have said OK: a fast rejection is no result.
"$signer" verify --root root.json --manifest image.manifest.json --image image.bin \
  --hw-id bench-r1 2>/dev/null | grep -q '^OK' || { echo "verify did not accept the image" >&2; exit 1; }

echo
printf 'best openssl dgst -sha256 : %6.2f s  (%5.0f MiB/s), peak RSS %5.1f MiB\n' \
  "$best_o" "$(calc "$size_mib / $best_o")" "$(calc "$rss_o / 1024")"
printf 'best firmup-signer verify : %6.2f s  (%5.0f MiB/s), peak RSS %5.1f MiB\n' \
  "$best_f" "$(calc "$size_mib / $best_f")" "$(calc "$rss_f / 1024")"
printf 'verify speed relative to openssl: %.0f%% (target >= 80%%)\n' \
  "$(calc "100 * $best_o / $best_f")"
