#!/usr/bin/env bash
# Runs Synapse on its own PostgreSQL cluster, on loopback only, as a reference server for
# benchmarks.
#
#   bench/synapse.sh start  <workdir> <port>   install (first time), start, wait until ready
#   bench/synapse.sh stop   <workdir>          stop Synapse and its PostgreSQL cluster
#   bench/synapse.sh rss    <workdir>          Synapse's peak RSS (VmHWM) in KiB
#   bench/synapse.sh dbsize <workdir>          size of Synapse's database in bytes
#
# Everything lives under <workdir>: venv/, pg/ (cluster), media_store/, homeserver.yaml,
# homeserver.log. The registration shared secret is in <workdir>/registration_shared_secret.
#
# Environment:
#   PYTHON=python3          interpreter the venv is made from
#   SYNAPSE_PG_DURABLE=1    0 turns off fsync/synchronous_commit in the cluster (faster,
#                           but then it is not comparable with a durable axon)
#   SYNAPSE_READY_TIMEOUT=300  seconds to wait for the first /versions answer
set -euo pipefail

# Pinned so runs compare against the same server; 1.163.2 was PyPI's newest when this was
# written and installs from wheels plus a psycopg2 build on Debian 12 / Python 3.11.
SYNAPSE_VERSION=1.163.2
PG_PORT=5432 # only names the unix socket file; the cluster has no TCP listener
DB=synapse

die() { echo "synapse.sh: $*" >&2; exit 1; }
log() { echo "synapse.sh: $*" >&2; }
is_root() { [ "$(id -u)" = 0 ]; }

apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2
}

usage() {
  sed -n '5,8p' "$0" | sed 's/^# *//' >&2
  exit 2
}

# ---- paths ------------------------------------------------------------------------------

set_paths() {
  [ -n "${1:-}" ] || usage
  mkdir -p "$1"
  W=$(cd "$1" && pwd -P)
  VENV=$W/venv
  PY=$VENV/bin/python
  PGROOT=$W/pg # may be a symlink, see pg_root
  CONFIG=$W/homeserver.yaml
  PIDFILE=$W/synapse.pid
}

# ---- PostgreSQL ---------------------------------------------------------------------------

find_pg_bindir() {
  local d
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null || true)
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  fi
  # Debian's server package puts the binaries here and only a wrapper on PATH.
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n | tail -n1 || true)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
  return 1
}

ensure_pg_bindir() {
  if PGBIN=$(find_pg_bindir); then return 0; fi
  if is_root; then
    log "PostgreSQL server binaries not found; installing them with apt-get"
    apt_install postgresql
    PGBIN=$(find_pg_bindir) || die "postgresql installed but initdb still not found"
  else
    die "PostgreSQL server binaries not found. Install them with: sudo apt-get install -y postgresql"
  fi
}

# initdb and postgres refuse to run as root, so as root the cluster belongs to `postgres`
# (created by Debian's package) or `nobody`, like axon's embedded cluster.
pg_owner() {
  PGUSER_OS=
  is_root || return 0
  local u
  for u in postgres nobody; do
    if id -u "$u" >/dev/null 2>&1; then PGUSER_OS=$u; return 0; fi
  done
  die "running as root, but neither the postgres nor the nobody user exists"
}

# Runs a PostgreSQL binary as the cluster's owner, from / because the owner may not be
# able to read our cwd.
pg_run() {
  local prog=$1; shift
  if [ -n "$PGUSER_OS" ]; then
    (cd / && env -u PGDATA LC_ALL=C.UTF-8 runuser -u "$PGUSER_OS" -- "$PGBIN/$prog" "$@")
  else
    (cd / && env -u PGDATA LC_ALL=C.UTF-8 "$PGBIN/$prog" "$@")
  fi
}

# The owner must be able to traverse every directory above the cluster. When it can't
# (a workdir under /root), the cluster lives under /var/lib/synapse-bench and
# <workdir>/pg links to it, as axon does with /var/lib/axon.
pg_root() {
  if [ -L "$PGROOT" ]; then PGROOT=$(readlink "$PGROOT"); return 0; fi
  if [ -n "$PGUSER_OS" ] && ! (cd / && runuser -u "$PGUSER_OS" -- test -x "$W"); then
    local target
    target=/var/lib/synapse-bench/$(printf '%s' "$W" | sha256sum | cut -c1-16)
    mkdir -p "$target"
    chmod 755 /var/lib/synapse-bench "$target"
    ln -s "$target" "$W/pg"
    log "$W is not reachable by $PGUSER_OS; cluster kept in $target"
    PGROOT=$target
  fi
}

pg_prepare_dir() {
  mkdir -p "$1"
  [ -z "$PGUSER_OS" ] || chown "$PGUSER_OS:" "$1"
  chmod 700 "$1"
}

pg_setup_paths() {
  ensure_pg_bindir
  pg_owner
  pg_root
  PGDATA_DIR=$PGROOT/data
  PGSOCK=$PGROOT/run
  # unix socket paths are limited to 107 bytes
  [ ${#PGSOCK} -le 90 ] || die "socket directory path too long: $PGSOCK (use a shorter workdir)"
}

psql_q() {
  pg_run psql -h "$PGSOCK" -p "$PG_PORT" -U "$DB" -d "${2:-$DB}" -X -q -v ON_ERROR_STOP=1 -tAc "$1"
}

pg_start() {
  pg_setup_paths
  # the owner needs to create files in PGROOT (log) as well as data/ and run/
  pg_prepare_dir "$PGROOT"
  pg_prepare_dir "$PGSOCK"
  if [ ! -f "$PGDATA_DIR/PG_VERSION" ]; then
    pg_prepare_dir "$PGDATA_DIR"
    log "initdb $PGDATA_DIR"
    pg_run initdb -D "$PGDATA_DIR" -U "$DB" --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if pg_run pg_ctl -D "$PGDATA_DIR" status >/dev/null 2>&1; then
    log "PostgreSQL already running"
  else
    local durability="-c fsync=on"
    if [ "${SYNAPSE_PG_DURABLE:-1}" = 0 ]; then
      durability="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    fi
    # No TCP listener: nothing to clash with other clusters on this machine.
    pg_run pg_ctl -D "$PGDATA_DIR" start -w -t 60 -s -l "$PGROOT/postgres.log" \
      -o "-c listen_addresses='' -c unix_socket_directories='$PGSOCK' -c unix_socket_permissions=0700 -p $PG_PORT $durability" \
      || { tail -n 20 "$PGROOT/postgres.log" >&2 || true; die "pg_ctl start failed"; }
  fi
  # Synapse refuses a database whose collation is not C.
  if [ "$(psql_q "SELECT 1 FROM pg_database WHERE datname = '$DB'" postgres)" != 1 ]; then
    psql_q "CREATE DATABASE $DB ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0" postgres
  fi
}

pg_stop() {
  pg_setup_paths
  [ -f "$PGDATA_DIR/PG_VERSION" ] || return 0
  if pg_run pg_ctl -D "$PGDATA_DIR" status >/dev/null 2>&1; then
    pg_run pg_ctl -D "$PGDATA_DIR" stop -w -s -m fast \
      || pg_run pg_ctl -D "$PGDATA_DIR" stop -w -s -m immediate
  fi
}

# ---- Python / Synapse ---------------------------------------------------------------------

ensure_venv() {
  local python=${PYTHON:-python3}
  command -v "$python" >/dev/null 2>&1 || die "$python not found"
  if [ -x "$PY" ] && "$PY" -c "import synapse, psycopg2; assert synapse.__version__ == '$SYNAPSE_VERSION'" 2>/dev/null; then
    return 0
  fi
  # A venv made while ensurepip was missing has no pip: start it over.
  if [ -x "$PY" ] && ! "$PY" -m pip --version >/dev/null 2>&1; then rm -rf "$VENV"; fi
  if [ ! -x "$PY" ]; then
    # Debian splits venv/ensurepip into python3-venv; without it `-m venv` leaves a
    # half-made venv with no pip.
    if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
      if is_root; then
        local v; v=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
        log "python venv module missing; installing python3-venv"
        apt_install python3-venv "python$v-venv" || apt_install python3-venv
      else
        die "the python venv module is missing. Install it with: sudo apt-get install -y python3-venv"
      fi
    fi
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
  fi
  local start=$SECONDS
  log "installing matrix-synapse[postgres]==$SYNAPSE_VERSION into $VENV"
  "$PY" -m pip install -q --upgrade pip wheel >&2
  # psycopg2 has no wheels for Linux: it builds against libpq, needing a C compiler,
  # Python headers and pg_config (libpq-dev).
  if ! "$PY" -m pip install -q "matrix-synapse[postgres]==$SYNAPSE_VERSION" >&2; then
    if is_root; then
      log "pip install failed; installing psycopg2's build dependencies and retrying"
      apt_install gcc libc6-dev libpq-dev python3-dev
      "$PY" -m pip install -q "matrix-synapse[postgres]==$SYNAPSE_VERSION" >&2
    else
      die "pip install failed; psycopg2 needs: sudo apt-get install -y gcc libpq-dev python3-dev"
    fi
  fi
  log "installed Synapse $SYNAPSE_VERSION in $((SECONDS - start))s"
}

# Secrets are made once so a restart keeps sessions and access tokens valid.
ensure_secrets() {
  local f
  for f in macaroon_secret_key form_secret registration_shared_secret; do
    if [ ! -s "$W/$f" ]; then
      (umask 077 && "$PY" -c 'import secrets; print(secrets.token_urlsafe(32))' >"$W/$f")
    fi
  done
}

write_config() {
  local port=$1
  mkdir -p "$W/media_store"
  cat >"$W/log.config" <<EOF
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
handlers:
  file:
    class: logging.handlers.RotatingFileHandler
    formatter: precise
    filename: "$W/homeserver.log"
    maxBytes: 104857600
    backupCount: 3
    filters: [context]
    encoding: utf8
filters:
  context:
    (): synapse.logging.context.LoggingContextFilter
    request: ""
loggers:
  synapse.storage.SQL:
    level: WARNING
root:
  level: WARNING
  handlers: [file]
disable_existing_loggers: false
EOF

  # Rate limits are set far above anything a benchmark can reach so Synapse never answers
  # 429; the benchmark measures the server, not its throttling. The keys are every limiter
  # synapse/config/ratelimiting.py reads in the pinned version.
  local R='{per_second: 1000000, burst_count: 1000000}'
  cat >"$CONFIG" <<EOF
# Written by bench/synapse.sh on every start; edit the script, not this file.
server_name: "localhost"
public_baseurl: "http://127.0.0.1:$port/"
pid_file: "$W/homeserver.pid"
report_stats: false
listeners:
  - port: $port
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: psycopg2
  args:
    user: "$DB"
    dbname: "$DB"
    host: "$PGSOCK"
    port: $PG_PORT
    cp_min: 5
    cp_max: 10
log_config: "$W/log.config"
media_store_path: "$W/media_store"
signing_key_path: "$W/localhost.signing.key"
# No network here: never ask matrix.org for keys.
trusted_key_servers: []
suppress_key_server_warning: true
enable_registration: true
enable_registration_without_verification: true
registration_shared_secret: "$(cat "$W/registration_shared_secret")"
macaroon_secret_key: "$(cat "$W/macaroon_secret_key")"
form_secret: "$(cat "$W/form_secret")"
presence:
  enabled: true
url_preview_enabled: false
enable_metrics: false

rc_message: $R
rc_registration: $R
rc_registration_token_validity: $R
rc_login:
  address: $R
  account: $R
  failed_attempts: $R
rc_admin_redaction: $R
rc_joins:
  local: $R
  remote: $R
rc_joins_per_room: $R
rc_3pid_validation: $R
rc_invites:
  per_room: $R
  per_user: $R
  per_issuer: $R
rc_third_party_invite: $R
rc_media_create: $R
rc_presence:
  per_user: $R
rc_delayed_event_mgmt: $R
rc_reports: $R
rc_room_creation: $R
rc_key_requests: $R
rc_user_directory: $R
rc_profile: $R
rc_federation:
  window_size: 1000
  sleep_limit: 1000000
  sleep_delay: 0
  reject_limit: 1000000
  concurrent: 1000000
federation_rr_transactions_per_room_per_second: 1000000
EOF
  if [ ! -s "$W/localhost.signing.key" ]; then
    "$PY" -m synapse.app.homeserver -c "$CONFIG" --generate-keys >&2
  fi
}

synapse_pid() {
  local pid
  [ -s "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE")
  # A pid file left by a killed run may now name some other process.
  grep -qa synapse.app.homeserver "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

port_free() {
  "$PY" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
# as Twisted does, so connections in TIME_WAIT from a previous run don't count
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}

wait_ready() {
  local port=$1 pid=$2
  # Python rather than curl: a fresh Debian box may not have curl.
  "$PY" - "$port" "$pid" "${SYNAPSE_READY_TIMEOUT:-300}" <<'EOF' || { tail -n 30 "$W/homeserver.log" "$W/synapse.out" >&2 2>/dev/null || true; die "Synapse did not become ready"; }
import os, sys, time, urllib.request
port, pid, timeout = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + timeout
url = f"http://127.0.0.1:{port}/_matrix/client/versions"
while time.monotonic() < deadline:
    if not os.path.exists(f"/proc/{pid}"):
        sys.exit("Synapse exited during start-up")
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.5)
sys.exit(f"no answer from {url} after {timeout:.0f}s")
EOF
}

# ---- subcommands --------------------------------------------------------------------------

cmd_start() {
  [ $# -eq 2 ] || usage
  local port=$2
  [[ $port =~ ^[0-9]+$ ]] || die "port must be a number: $port"
  set_paths "$1"
  local t0=$SECONDS
  ensure_venv
  pg_start
  ensure_secrets
  write_config "$port"
  local pid
  if pid=$(synapse_pid); then
    log "Synapse already running (pid $pid)"
  else
    port_free "$port" || die "127.0.0.1:$port is already in use"
    # nohup: Synapse must outlive this script and the terminal it was started from.
    nohup "$PY" -m synapse.app.homeserver -c "$CONFIG" >>"$W/synapse.out" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PIDFILE"
  fi
  wait_ready "$port" "$pid"
  log "Synapse $SYNAPSE_VERSION ready on http://127.0.0.1:$port (pid $pid, $((SECONDS - t0))s)"
}

cmd_stop() {
  [ $# -eq 1 ] || usage
  set_paths "$1"
  local pid i
  if pid=$(synapse_pid); then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 300); do
      [ -e "/proc/$pid" ] || break
      sleep 0.1
    done
    if [ -e "/proc/$pid" ]; then
      log "Synapse did not exit in 30s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$PIDFILE"
  pg_stop
  log "stopped"
}

cmd_rss() {
  [ $# -eq 1 ] || usage
  set_paths "$1"
  local pid
  pid=$(synapse_pid) || die "Synapse is not running"
  awk '/^VmHWM:/ {print $2}' "/proc/$pid/status"
}

cmd_dbsize() {
  [ $# -eq 1 ] || usage
  set_paths "$1"
  pg_setup_paths
  pg_run pg_ctl -D "$PGDATA_DIR" status >/dev/null 2>&1 || die "PostgreSQL is not running (start first)"
  psql_q "SELECT pg_database_size('$DB')"
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  rss) shift; cmd_rss "$@" ;;
  dbsize) shift; cmd_dbsize "$@" ;;
  *) usage ;;
esac
