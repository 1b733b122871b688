#!/usr/bin/env bash
# Runs the whole Firmup test suite: formatting, lints, docs and every test.
#
#   scripts/test.sh
#
# Works on a fresh Debian machine with the Rust toolchain from
# rust-toolchain.toml; it installs anything else it needs itself.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "rustfmt"
cargo fmt --all --check

step "clippy (-D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

step "build the binaries the end-to-end tests drive"
cargo build --workspace --bins --locked --quiet

step "tests"
cargo test --workspace --locked
