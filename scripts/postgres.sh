# shellcheck shell=bash
# A throw-away PostgreSQL cluster for the test and benchmark scripts.
# Source this file (it runs nothing by itself), then:
#
#   source scripts/postgres.sh
#   pg_start || exit 1    # installs PostgreSQL if missing, starts a cluster
#   ...                   # use $FIRMUP_TEST_DATABASE_URL
#   pg_stop               # stops it and deletes its files (safe to repeat)
#
# pg_start exports:
#   FIRMUP_TEST_DATABASE_URL  postgres://postgres@127.0.0.1:PORT/postgres, the
#                             maintenance database of the cluster (the test
#                             harnesses create one database per test on it)
#   FIRMUP_PG_PORT            its TCP port (it listens on 127.0.0.1 only)
#   FIRMUP_PG_DIR             its temporary directory (data/, log, socket)
#   FIRMUP_PG_BIN             the directory of the PostgreSQL binaries
# The cluster trusts every local connection (no passwords) and runs with
# fsync off: fast, and only fit for data that may be lost.
#
# The PostgreSQL binaries: $FIRMUP_PG_BIN when it is set before pg_start,
# else the newest /usr/lib/postgresql/*/bin (Debian), else initdb on PATH;
# when none is found, the Debian package is installed with apt-get (through
# sudo unless root). initdb refuses to run as root, so as root the cluster
# runs as the `postgres` user. Both functions return non-zero on failure
# instead of exiting, so callers decide (e.g. under `set -e`, or `if pg_start`).

# The directory this shell's pg_start created; pg_stop only ever removes that
# one (never a FIRMUP_PG_DIR inherited from elsewhere). Not exported, and kept
# when this file is sourced again.
_firmup_pg_owned_dir="${_firmup_pg_owned_dir:-}"

# Runs a command as the cluster's user: `postgres` when we are root (initdb
# and postgres refuse to run as root), else ourselves; from the directory $1,
# so that user never starts in a directory it may not enter.
_pg_run_as() {
  local dir="$1"
  shift
  (
    cd "$dir" || exit 1
    if [ "$(id -u)" -ne 0 ]; then
      exec "$@"
    elif command -v runuser >/dev/null 2>&1; then
      exec runuser -u postgres -- "$@"
    else
      exec su postgres -s /bin/bash -c "$(printf '%q ' "$@")"
    fi
  )
}

# Runs a PostgreSQL binary (a name in $FIRMUP_PG_BIN, e.g. pg_ctl) as the
# cluster's user, from the cluster's directory.
pg_ctl_as() {
  local prog="$1"
  shift
  _pg_run_as "${FIRMUP_PG_DIR:-/}" "$FIRMUP_PG_BIN/$prog" "$@"
}

# Sets FIRMUP_PG_BIN to a directory holding initdb, pg_ctl and psql, if any.
_pg_find_bin() {
  local dir
  for dir in "${FIRMUP_PG_BIN:-}" \
    "$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -1)" \
    "$(dirname "$(command -v initdb 2>/dev/null || echo .)")"; do
    if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/psql" ]; then
      FIRMUP_PG_BIN="$dir"
      return 0
    fi
  done
  return 1
}

# Installs the Debian PostgreSQL server (and client) packages.
_pg_install() {
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "pg_start: not root and no sudo: cannot install PostgreSQL" >&2; return 1; }
    sudo="sudo"
  fi
  command -v apt-get >/dev/null 2>&1 || { echo "pg_start: no apt-get: install PostgreSQL yourself (or set FIRMUP_PG_BIN)" >&2; return 1; }
  echo "installing postgresql (for the PostgreSQL tests)"
  $sudo apt-get update -qq || return 1
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null || return 1
}

# Is something listening on 127.0.0.1:$1?
_pg_port_busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pg_start() {
  if [ -n "$_firmup_pg_owned_dir" ]; then
    if pg_ctl_as pg_ctl -D "$FIRMUP_PG_DIR/data" status >/dev/null 2>&1; then
      echo "pg_start: already running on port $FIRMUP_PG_PORT"
      return 0
    fi
    pg_stop
  fi

  if ! _pg_find_bin; then
    if ! _pg_install || ! _pg_find_bin; then
      echo "pg_start: PostgreSQL is not installed and could not be installed" >&2
      return 1
    fi
  fi
  export FIRMUP_PG_BIN

  local root=0
  [ "$(id -u)" -ne 0 ] || root=1
  if [ "$root" -eq 1 ] && ! id postgres >/dev/null 2>&1; then
    echo "pg_start: running as root but there is no postgres user to run the cluster as" >&2
    return 1
  fi

  local d
  d="$(mktemp -d "${TMPDIR:-/tmp}/firmup-pg.XXXXXX")" || return 1
  if [ "$root" -eq 1 ]; then
    chown postgres: "$d" || { rm -rf "$d"; return 1; }
    # The postgres user must be able to reach it (a private TMPDIR would not do).
    if ! _pg_run_as / test -w "$d" 2>/dev/null; then
      rm -rf "$d"
      d="$(mktemp -d /tmp/firmup-pg.XXXXXX)" || return 1
      chown postgres: "$d" || { rm -rf "$d"; return 1; }
    fi
  fi
  _firmup_pg_owned_dir="$d"
  export FIRMUP_PG_DIR="$d"

  if ! pg_ctl_as initdb -D "$d/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >"$d/initdb.log" 2>&1; then
    echo "pg_start: initdb failed:" >&2
    tail -n 30 "$d/initdb.log" >&2
    pg_stop
    return 1
  fi
  # Everything but the port, which the loop below picks.
  cat >>"$d/data/postgresql.conf" <<EOF || { pg_stop; return 1; }

# firmup throw-away test cluster
listen_addresses = '127.0.0.1'
unix_socket_directories = '${d//\'/\'\'}'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
EOF

  # Try ports from 54329 up; another cluster (or a parallel run) may win a
  # port between our check and the bind, so a failed bind moves on too.
  local port started=0 tries=0
  for port in $(seq 54329 54429); do
    _pg_port_busy "$port" && continue
    tries=$((tries + 1))
    : >"$d/log"
    [ "$root" -eq 0 ] || chown postgres: "$d/log"
    if pg_ctl_as pg_ctl -D "$d/data" -o "-p $port" -l "$d/log" -t 60 -w start >/dev/null 2>&1; then
      started=1
      break
    fi
    grep -q 'could not bind\|Address already in use' "$d/log" || break
    [ "$tries" -lt 10 ] || break
  done
  if [ "$started" -ne 1 ]; then
    echo "pg_start: the PostgreSQL cluster did not start; the end of its log:" >&2
    tail -n 30 "$d/log" >&2
    pg_stop
    return 1
  fi

  export FIRMUP_PG_PORT="$port"
  export FIRMUP_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"

  # pg_ctl -w waited for it to accept connections; check TCP as the tests will.
  local version
  for _ in $(seq 1 50); do
    if version="$("$FIRMUP_PG_BIN/psql" -X -q -At -h 127.0.0.1 -p "$port" -U postgres -d postgres \
      -c 'SHOW server_version' 2>/dev/null)"; then
      echo "PostgreSQL $version on 127.0.0.1:$port (cluster in $d)"
      return 0
    fi
    sleep 0.2
  done
  echo "pg_start: the cluster on port $port does not answer on 127.0.0.1; the end of its log:" >&2
  tail -n 30 "$d/log" >&2
  pg_stop
  return 1
}

pg_stop() {
  local d="$_firmup_pg_owned_dir"
  if [ -n "$d" ]; then
    if [ -f "$d/data/postmaster.pid" ]; then
      pg_ctl_as pg_ctl -D "$d/data" -m fast -t 60 -w stop >/dev/null 2>&1 ||
        pg_ctl_as pg_ctl -D "$d/data" -m immediate -w stop >/dev/null 2>&1 ||
        echo "pg_stop: warning: could not stop the cluster in $d" >&2
    fi
    rm -rf "$d"
    _firmup_pg_owned_dir=""
    unset FIRMUP_PG_DIR FIRMUP_PG_PORT FIRMUP_TEST_DATABASE_URL
  fi
  return 0
}
