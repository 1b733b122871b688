#!/usr/bin/env bash
# Runs the whole Firmup test suite: formatting, lints, docs and every test.
#
#   scripts/test.sh
#
# Every test runs on SQLite with images in a local directory; then the
# server and end-to-end suites run again on PostgreSQL with images in Garage,
# an S3-compatible object store: a throw-away cluster and a single-node
# Garage this script starts on 127.0.0.1 and removes at the end
# (scripts/postgres.sh, scripts/garage.sh; the tests find them through
# FIRMUP_TEST_DATABASE_URL and FIRMUP_TEST_STORAGE_URL). With CI set, a
# service that cannot be installed or started fails the run; without CI that
# step is skipped with a warning (e.g. a laptop without apt).
#
# Works on a fresh Debian machine with the Rust toolchain from
# rust-toolchain.toml and Python 3; it installs anything else it needs
# itself (curl and jq, PostgreSQL, Garage and cargo-fuzz into ~/.cargo/bin,
# schemathesis into a virtual environment under ~/.cache/firmup).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/postgres.sh
source scripts/postgres.sh
# shellcheck source=scripts/garage.sh
source scripts/garage.sh
# The SQLite runs must not pick up a PostgreSQL server from the environment.
unset FIRMUP_TEST_DATABASE_URL FIRMUP_TEST_STORAGE_URL

step() { printf '\n==> %s\n' "$*"; }

# Installs a Debian package when its command is missing (fresh machines).
need() {
  command -v "$1" >/dev/null 2>&1 && return
  echo "installing $2 (for $1)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$2" >/dev/null
}

# A fresh CI clone builds once; incremental caches would only take disk.
[ -z "${CI:-}" ] || export CARGO_INCREMENTAL=0

step "system packages"
need curl curl
need jq jq
need python3 python3

step "rustfmt"
cargo fmt --all --check
rustfmt --edition 2024 --check fuzz/fuzz_targets/*.rs

step "clippy (-D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

step "build the binaries the end-to-end tests drive"
cargo build --workspace --bins --locked --quiet

step "tests"
test_log="$(mktemp)"
trap 'rm -f "$test_log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$test_log"

step "tests on PostgreSQL and Garage (server and end-to-end suites)"
trap 'rm -f "$test_log"; pg_stop; garage_stop' EXIT
if pg_start && garage_start; then
  # The test binaries the workspace run built are run again, each from its
  # package's directory as cargo runs them. `cargo test -p firmup-server -p
  # firmup-tests` would resolve dependency features for those packages alone
  # and so build every test binary a second time: twice the time and disk.
  mapfile -t pg_tests < <(cargo test --workspace --locked --no-run --message-format=json 2>/dev/null |
    jq -r 'select(.reason == "compiler-artifact" and .executable != null and .profile.test
                  and (.manifest_path | test("/(server|tests)/Cargo.toml$")))
           | "\(.manifest_path | rtrimstr("/Cargo.toml"))\t\(.executable)"')
  [ "${#pg_tests[@]}" -gt 0 ] || { echo "error: no server or end-to-end test binaries found" >&2; exit 1; }
  pg_failed=0
  for entry in "${pg_tests[@]}"; do
    dir="${entry%%$'\t'*}"
    exe="${entry#*$'\t'}"
    echo "     Running $(basename "$exe") (PostgreSQL and Garage)"
    (cd "$dir" && FIRMUP_TEST_DATABASE_URL="$FIRMUP_TEST_DATABASE_URL" \
      FIRMUP_TEST_STORAGE_URL="$FIRMUP_TEST_STORAGE_URL" "$exe") 2>&1 | tee -a "$test_log" ||
      pg_failed=1
  done
  [ "$pg_failed" -eq 0 ] || { echo "error: a test failed on PostgreSQL and Garage" >&2; exit 1; }
  pg_stop
  garage_stop
elif [ -n "${CI:-}" ]; then
  echo "error: CI is set and PostgreSQL or Garage could not be installed or started; failing (not skipping)" >&2
  exit 1
else
  cat >&2 <<'EOF'

!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!! WARNING: PostgreSQL or Garage could not be installed or started (see   !!
!! above), so that test step was SKIPPED: this run does NOT cover the      !!
!! PostgreSQL backend nor the S3 store (CI never skips it). To run it      !!
!! here, install the PostgreSQL server (initdb, pg_ctl, psql) or set       !!
!! FIRMUP_PG_BIN to its bin directory, let `cargo install garage --locked` !!
!! put garage in ~/.cargo/bin, and run this script again.                  !!
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!

EOF
fi

step "schemathesis: the OpenAPI document against the live server"
scripts/schemathesis.sh 120

step "fuzz targets (a few seconds each, so they keep building and running)"
scripts/fuzz.sh 5

# One closing line for the whole suite: every cargo test binary's counts.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$test_log"
