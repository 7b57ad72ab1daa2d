#!/usr/bin/env bash
# A throwaway PostgreSQL server for factorflow's tests (CI and developers).
#
#   bash scripts/postgres.sh [start]   install Debian's postgresql if the server binaries are
#                                      missing (root, apt-get), create the cluster if needed,
#                                      start it, create role/database "factorflow", and print
#                                        export FACTORFLOW_TEST_POSTGRES_URL=postgresql+asyncpg://...
#                                      (already running: only prints that line)
#   bash scripts/postgres.sh url       print the URL only (no export, nothing started)
#   bash scripts/postgres.sh stop      stop the server (the cluster directory is kept)
#   bash scripts/postgres.sh running   exit 0 when the server of the cluster runs
#
#   eval "$(bash scripts/postgres.sh)"   # then: .venv/bin/python -m pytest ...
#
# Environment: FACTORFLOW_PG_DIR (default /tmp/factorflow-pg: cluster in data/, log in
# postgres.log, Unix socket), FACTORFLOW_PG_PORT (default 55432). The server listens on
# 127.0.0.1 only; role "factorflow" / password "factorflow" is a test-only credential and the
# cluster runs with fsync off: never put data you want to keep in it. Progress goes to
# stderr; stdout carries only the export line (or the URL), so it can be eval'ed.
set -euo pipefail

PG_DIR="${FACTORFLOW_PG_DIR:-/tmp/factorflow-pg}"
PG_PORT="${FACTORFLOW_PG_PORT:-55432}"
DATA="$PG_DIR/data"
LOG="$PG_DIR/postgres.log"
ROLE=factorflow
PASSWORD=factorflow  # test-only
SUPERUSER=postgres
# Our own explicit flags only: a developer's libpq settings must not redirect the script.
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSERVICE PGOPTIONS PGPASSWORD PGSSLMODE

START_TIME=$(date +%s)
log() { echo "postgres.sh: $*" >&2; }
die() { echo "postgres.sh: error: $*" >&2; exit 1; }

url_for() { echo "postgresql+asyncpg://$ROLE:$PASSWORD@127.0.0.1:$1/$ROLE"; }

case "$PG_PORT" in
  ''|*[!0-9]*) die "FACTORFLOW_PG_PORT must be a port number, got '$PG_PORT'" ;;
esac
case "$PG_DIR" in
  /*) ;;
  *) PG_DIR="$PWD/$PG_DIR"; DATA="$PG_DIR/data"; LOG="$PG_DIR/postgres.log" ;;
esac

# --- server binaries ------------------------------------------------------------------------
BINDIR=""

find_bindir() {
  BINDIR=""
  local d
  # Debian/Ubuntu keep the server outside PATH: /usr/lib/postgresql/<major>/bin (newest wins).
  for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
    if [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] && [ -x "$d/postgres" ]; then
      BINDIR="$d"; return 0
    fi
  done
  if command -v pg_ctl >/dev/null 2>&1; then
    d="$(dirname "$(readlink -f "$(command -v pg_ctl)")")"
    if [ -x "$d/initdb" ] && [ -x "$d/postgres" ]; then BINDIR="$d"; return 0; fi
  fi
  return 1
}

install_server() {
  [ "$(id -u)" -eq 0 ] || die "PostgreSQL server binaries not found (pg_ctl, initdb, postgres);
  run this script as root to install Debian's 'postgresql', or install it yourself"
  command -v apt-get >/dev/null 2>&1 || die "PostgreSQL server binaries not found and no apt-get"
  log "installing Debian's postgresql (apt-get, non-interactive)..."
  # No default 'main' cluster on port 5432: this script runs its own throwaway cluster.
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" \
    > /etc/postgresql-common/createcluster.d/factorflow-no-main-cluster.conf
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends postgresql >&2
  log "installed in $(( $(date +%s) - START_TIME )) s"
}

# --- who runs the server (postgres refuses to run as root) ----------------------------------
RUN_AS=""

as_server_user() {
  if [ -n "$RUN_AS" ]; then
    runuser -u "$RUN_AS" -- "$@"
  else
    "$@"
  fi
}

choose_user() {
  if [ "$(id -u)" -ne 0 ]; then RUN_AS=""; return; fi
  RUN_AS=postgres
  if ! id -u "$RUN_AS" >/dev/null 2>&1; then
    log "creating system user '$RUN_AS' to run the server"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$RUN_AS"
  fi
}

prepare_dir() {
  mkdir -p "$PG_DIR"
  if [ -n "$RUN_AS" ]; then
    chown "$RUN_AS": "$PG_DIR"
  fi
  chmod 700 "$PG_DIR"
  as_server_user test -w "$PG_DIR" -a -x "$PG_DIR" || die "$PG_DIR is not writable by \
${RUN_AS:-$(id -un)} (a parent directory may be private): choose another FACTORFLOW_PG_DIR"
}

# --- state ----------------------------------------------------------------------------------
running() {  # the postmaster of our data directory is alive
  local pid
  pid="$(sed -n 1p "$DATA/postmaster.pid" 2>/dev/null || true)"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
    && [ "$(readlink -f "/proc/$pid/cwd" 2>/dev/null || echo "$DATA")" = "$(readlink -f "$DATA")" ]
}

running_port() {  # line 4 of postmaster.pid is the port
  sed -n 4p "$DATA/postmaster.pid" 2>/dev/null || true
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

psql_super() {
  as_server_user "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR" -p "$1" \
    -U "$SUPERUSER" -d postgres
}

init_cluster() {
  local major
  major="$("$BINDIR/postgres" --version | sed -E 's/.* ([0-9]+)(\.[0-9]+)?.*/\1/')"
  if [ -f "$DATA/PG_VERSION" ] && [ "$(cat "$DATA/PG_VERSION")" != "$major" ]; then
    log "cluster in $DATA is version $(cat "$DATA/PG_VERSION"), server is $major: recreating"
    rm -rf "$DATA"
  elif [ -d "$DATA" ] && [ ! -f "$DATA/PG_VERSION" ]; then
    log "removing the incomplete cluster in $DATA"
    rm -rf "$DATA"
  fi
  if [ ! -f "$DATA/PG_VERSION" ]; then
    log "creating cluster in $DATA (PostgreSQL $major)"
    as_server_user "$BINDIR/initdb" -D "$DATA" -U "$SUPERUSER" --encoding=UTF8 --locale=C \
      --auth-local=trust --auth-host=scram-sha-256 --no-sync >"$PG_DIR/initdb.log" 2>&1 \
      || { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
    echo "include_if_exists = 'factorflow.conf'" >>"$DATA/postgresql.conf"
  fi
  # Rewritten on every start so FACTORFLOW_PG_PORT / FACTORFLOW_PG_DIR changes apply.
  # A throwaway test cluster: durability is traded for speed (fsync off).
  cat >"$DATA/factorflow.conf" <<EOF
# written by scripts/postgres.sh on each start
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
  if [ -n "$RUN_AS" ]; then chown "$RUN_AS": "$DATA/factorflow.conf"; fi
}

ensure_role_and_database() {
  psql_super "$1" <<SQL
SET client_min_messages = warning;
SELECT format('CREATE ROLE %I', '$ROLE')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') \gexec
ALTER ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD';
-- tests drop their databases WITH (FORCE): that must be able to stop autovacuum workers too
GRANT pg_signal_backend TO $ROLE;
SELECT format('CREATE DATABASE %I OWNER %I', '$ROLE', '$ROLE')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$ROLE') \gexec
SQL
}

wait_ready() {
  local _
  for _ in $(seq 1 120); do
    if "$BINDIR/pg_isready" -q -h 127.0.0.1 -p "$1" -d postgres >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.5
  done
  tail -n 30 "$LOG" >&2 || true
  die "the server did not accept connections on 127.0.0.1:$1 within 60 s (log: $LOG)"
}

# --- commands -------------------------------------------------------------------------------
cmd_start() {
  find_bindir || { install_server; find_bindir || die "no server binaries after installing"; }
  choose_user
  if running; then
    local port
    port="$(running_port)"
    if [ "$port" != "$PG_PORT" ]; then
      log "warning: the cluster in $DATA already runs on port $port (not $PG_PORT)"
    fi
    echo "export FACTORFLOW_TEST_POSTGRES_URL=$(url_for "$port")"
    return 0
  fi
  if port_in_use "$PG_PORT"; then
    die "127.0.0.1:$PG_PORT is in use by another process: set FACTORFLOW_PG_PORT"
  fi
  prepare_dir
  cd "$PG_DIR"  # the server user may not be allowed into the caller's directory
  init_cluster
  log "starting PostgreSQL on 127.0.0.1:$PG_PORT (log: $LOG)"
  if [ -n "$RUN_AS" ]; then touch "$LOG"; chown "$RUN_AS": "$LOG"; fi
  as_server_user "$BINDIR/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null \
    || { tail -n 30 "$LOG" >&2 || true; die "pg_ctl start failed (log: $LOG)"; }
  wait_ready "$PG_PORT"
  ensure_role_and_database "$PG_PORT"
  log "ready in $(( $(date +%s) - START_TIME )) s"
  echo "export FACTORFLOW_TEST_POSTGRES_URL=$(url_for "$PG_PORT")"
}

cmd_stop() {
  if running; then
    find_bindir || die "the server runs but its pg_ctl is gone"
    choose_user
    ( cd "$PG_DIR" && as_server_user "$BINDIR/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null )
    log "stopped (cluster kept in $DATA; remove that directory to discard it)"
  else
    log "not running"
  fi
}

cmd_url() {
  local port="$PG_PORT"
  if running; then port="$(running_port)"; fi
  url_for "$port"
}

case "${1:-start}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  url) cmd_url ;;
  running) running ;;
  -h|--help|help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" ;;
  *) die "unknown command '$1' (use start, stop, url or running)" ;;
esac
