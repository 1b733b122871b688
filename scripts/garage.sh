# shellcheck shell=bash
# A throw-away Garage (S3-compatible object store) for the test and
# benchmark scripts. Source this file (it runs nothing by itself), then:
#
#   source scripts/garage.sh
#   garage_start || exit 1   # installs Garage if missing, starts one node
#   ...                      # use $FIRMUP_TEST_STORAGE_URL and the AWS_* keys
#   garage_stop              # stops it and deletes its files (safe to repeat)
#
# garage_start exports:
#   FIRMUP_TEST_STORAGE_URL  s3://firmup?endpoint=http://127.0.0.1:PORT&region=garage
#                            (the test harnesses add a prefix of their own)
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
#                            the node's generated key, for the server, the
#                            tests and the aws CLI (the standard AWS chain)
#   AWS_EC2_METADATA_DISABLED=true
#                            so that no client asks an instance-metadata
#                            service for credentials
#   FIRMUP_GARAGE_DIR        its temporary directory (garage.toml, meta/,
#                            data/, log)
#   FIRMUP_GARAGE_S3_PORT, FIRMUP_GARAGE_ADMIN_PORT
#
# Garage: `garage` on PATH or in ~/.cargo/bin; when missing, it is built
# with `cargo install garage --locked` (2.x, about 8 minutes from cold on
# two cores) into ~/.cargo/bin, once. It runs single-node with one bucket
# (`firmup`), listening on 127.0.0.1 only. Both functions return non-zero on
# failure instead of exiting, so callers decide.

_firmup_garage_owned_dir="${_firmup_garage_owned_dir:-}"
_firmup_garage_pid="${_firmup_garage_pid:-}"

_garage_bin() {
  if command -v garage >/dev/null 2>&1; then
    command -v garage
  elif [ -x "$HOME/.cargo/bin/garage" ]; then
    echo "$HOME/.cargo/bin/garage"
  else
    return 1
  fi
}

# A free TCP port on 127.0.0.1 (asked of the kernel through Python).
_garage_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

_garage_hex() {
  python3 -c "import secrets; print(secrets.token_hex($1))"
}

garage_start() {
  if [ -n "$_firmup_garage_pid" ] && kill -0 "$_firmup_garage_pid" 2>/dev/null; then
    echo "garage_start: already running on port $FIRMUP_GARAGE_S3_PORT"
    return 0
  fi
  local bin
  if ! bin="$(_garage_bin)"; then
    echo "installing garage with cargo (2.x, several minutes, once: kept in ~/.cargo/bin)"
    cargo install garage --locked --version '^2' --quiet || {
      echo "garage_start: cargo install garage failed" >&2
      return 1
    }
    bin="$(_garage_bin)" || return 1
  fi

  local d rpc s3 admin
  d="$(mktemp -d "${TMPDIR:-/tmp}/firmup-garage.XXXXXX")" || return 1
  rpc="$(_garage_free_port)" && s3="$(_garage_free_port)" && admin="$(_garage_free_port)" || {
    rm -rf "$d"
    return 1
  }
  cat >"$d/garage.toml" <<EOF
metadata_dir = "$d/meta"
data_dir = "$d/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(_garage_hex 32)"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:$admin"
admin_token = "$(_garage_hex 16)"
EOF
  local key secret
  key="GK$(_garage_hex 12)"
  secret="$(_garage_hex 32)"
  GARAGE_DEFAULT_ACCESS_KEY="$key" GARAGE_DEFAULT_SECRET_KEY="$secret" \
    GARAGE_DEFAULT_BUCKET=firmup RUST_LOG=warn \
    "$bin" -c "$d/garage.toml" server --single-node --default-bucket >"$d/log" 2>&1 &
  local pid=$!
  local i
  for i in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$admin/health" >/dev/null 2>&1; then
      break
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "garage_start: garage exited; its log:" >&2
      cat "$d/log" >&2
      rm -rf "$d"
      return 1
    fi
    sleep 0.1
  done
  if ! curl -fsS "http://127.0.0.1:$admin/health" >/dev/null 2>&1; then
    echo "garage_start: garage did not become healthy in 10 s; its log:" >&2
    cat "$d/log" >&2
    kill "$pid" 2>/dev/null
    rm -rf "$d"
    return 1
  fi
  _firmup_garage_owned_dir="$d"
  _firmup_garage_pid="$pid"
  export FIRMUP_GARAGE_DIR="$d" FIRMUP_GARAGE_S3_PORT="$s3" FIRMUP_GARAGE_ADMIN_PORT="$admin"
  export AWS_ACCESS_KEY_ID="$key" AWS_SECRET_ACCESS_KEY="$secret" AWS_EC2_METADATA_DISABLED=true
  export FIRMUP_TEST_STORAGE_URL="s3://firmup?endpoint=http://127.0.0.1:$s3&region=garage"
  echo "garage: S3 on 127.0.0.1:$s3, bucket firmup"
}

garage_stop() {
  if [ -n "$_firmup_garage_pid" ]; then
    kill "$_firmup_garage_pid" 2>/dev/null
    wait "$_firmup_garage_pid" 2>/dev/null
  fi
  if [ -n "$_firmup_garage_owned_dir" ]; then
    rm -rf "$_firmup_garage_owned_dir"
  fi
  _firmup_garage_pid=""
  _firmup_garage_owned_dir=""
  unset FIRMUP_TEST_STORAGE_URL FIRMUP_GARAGE_DIR FIRMUP_GARAGE_S3_PORT FIRMUP_GARAGE_ADMIN_PORT
  return 0
}
