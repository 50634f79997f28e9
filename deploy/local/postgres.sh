#!/usr/bin/env bash
# Local PostgreSQL for development and CI (run as root).
#
#   deploy/local/postgres.sh start|stop|restart|status
#
# start: installs the Debian `postgresql` package if its binaries are missing,
# creates (once) a cluster dedicated to this project, owned by the `postgres`
# OS user, in ${LIFECYCLE_PG_DATA:-/var/lib/postgresql/lifecycle-<major>},
# listening on 127.0.0.1:${LIFECYCLE_PG_PORT:-5432} and /var/run/postgresql,
# starts it, and makes sure role `lifecycle` (password `lifecycle`, LOGIN
# CREATEDB) and database `lifecycle` owned by it exist.
# If some other PostgreSQL (e.g. Debian's "main" cluster) already accepts
# connections on that port, it is used instead and left running on `stop`.
#
# Settings are in <data>/lifecycle.conf, rewritten on every start.
# Log: /var/log/postgresql/lifecycle-<major>.log.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PGPORT_="${LIFECYCLE_PG_PORT:-5432}"
HOST=127.0.0.1
SOCKDIR=/var/run/postgresql
ROLE=lifecycle
PASSWORD=lifecycle
DB=lifecycle

log() { echo "postgres: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

pg_bindir() {
    local d best=""
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]] || continue
        if [[ -z "$best" ]] || [[ "$(basename "$(dirname "$d")")" -gt "$(basename "$(dirname "$best")")" ]]; then
            best="$d"
        fi
    done
    [[ -n "$best" ]] && echo "$best"
}

ensure_installed() {
    if BIN="$(pg_bindir)" && [[ -x "$BIN/psql" ]]; then
        return 0
    fi
    [[ $EUID -eq 0 ]] || die "postgresql is not installed and we are not root"
    log "installing postgresql with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    BIN="$(pg_bindir)" || die "postgresql installed but no server binaries found"
}

setup_paths() {
    MAJOR="$(basename "$(dirname "$BIN")")"
    PGDATA_="${LIFECYCLE_PG_DATA:-/var/lib/postgresql/lifecycle-$MAJOR}"
    PGLOG="/var/log/postgresql/lifecycle-$MAJOR.log"
}

# Run a command as the postgres OS user, from a directory it can enter.
as_pg() {
    if [[ "$(id -un)" == postgres ]]; then
        (cd / && "$@")
    else
        [[ $EUID -eq 0 ]] || die "must run as root (or as postgres)"
        (cd / && runuser -u postgres -- "$@")
    fi
}

ready() {  # accepting connections on 127.0.0.1:PORT?
    "$BIN/pg_isready" -q -h "$HOST" -p "$PGPORT_" -t 3 2>/dev/null
}

# pid of our postmaster, or failure.
our_postmaster() {
    local pidfile="$PGDATA_/postmaster.pid" pid
    [[ -s "$pidfile" ]] || return 1
    pid="$(head -n1 "$pidfile")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" == "$PGDATA_" ]] || return 1
    [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo X)" != Z ]] || return 1
    echo "$pid"
}

# Processes (backends, checkpointer, ...) still running in our data dir.
leftover_pids() {
    local p pid
    for p in /proc/[0-9]*; do
        pid="${p#/proc/}"
        [[ "$(readlink "$p/cwd" 2>/dev/null)" == "$PGDATA_" ]] || continue
        [[ "$(readlink "$p/exe" 2>/dev/null)" == */postgres ]] || continue
        echo "$pid"
    done
}

# After a SIGKILL: kill orphaned children and drop lock files whose owner is gone.
clean_stale() {
    local pids lock pid
    pids="$(leftover_pids)"
    if [[ -n "$pids" ]]; then
        log "killing leftover processes of a dead postmaster: $(echo $pids)"
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        sleep 1
    fi
    if [[ -e "$PGDATA_/postmaster.pid" ]]; then
        log "removing stale $PGDATA_/postmaster.pid"
        rm -f "$PGDATA_/postmaster.pid"
    fi
    lock="$SOCKDIR/.s.PGSQL.$PGPORT_.lock"
    if [[ -s "$lock" ]]; then
        pid="$(head -n1 "$lock")"
        if ! [[ "$pid" =~ ^[0-9]+$ ]] || [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" != */postgres ]]; then
            log "removing stale $lock"
            rm -f "$lock" "$SOCKDIR/.s.PGSQL.$PGPORT_"
        fi
    fi
}

init_cluster() {
    if [[ -s "$PGDATA_/PG_VERSION" ]]; then
        return 0
    fi
    log "creating cluster in $PGDATA_ (PostgreSQL $MAJOR)"
    rm -rf "$PGDATA_"
    install -d -o postgres -g postgres -m 0700 "$PGDATA_"
    as_pg "$BIN/initdb" -D "$PGDATA_" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=peer --auth-host=scram-sha-256 >/tmp/lifecycle-initdb.log 2>&1 \
        || { cat /tmp/lifecycle-initdb.log >&2; die "initdb failed"; }
    echo "include_if_exists = 'lifecycle.conf'" >>"$PGDATA_/postgresql.conf"
    chown postgres:postgres "$PGDATA_/postgresql.conf"
}

write_conf() {
    cat >"$PGDATA_/lifecycle.conf" <<EOF
# Written by deploy/local/postgres.sh on every start; edits are overwritten.
listen_addresses = '$HOST'
port = $PGPORT_
unix_socket_directories = '$SOCKDIR'
max_connections = 200
shared_buffers = 256MB
password_encryption = 'scram-sha-256'
dynamic_shared_memory_type = mmap
log_timezone = 'UTC'
timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
log_min_messages = warning
EOF
    chown postgres:postgres "$PGDATA_/lifecycle.conf"
    # pg_hba from initdb already has scram-sha-256 for 127.0.0.1/32 and ::1.
}

psql_admin() {  # psql as superuser over the unix socket (peer auth)
    as_pg "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCKDIR" -p "$PGPORT_" -U postgres -d postgres "$@"
}

ensure_role_db() {
    if ! psql_admin -c 'select 1' >/dev/null 2>&1; then
        # Not our cluster and no peer access: accept it if the role already works.
        if PGPASSWORD="$PASSWORD" "$BIN/psql" -X -q -h "$HOST" -p "$PGPORT_" -U "$ROLE" -d "$DB" \
                -c 'select 1' >/dev/null 2>&1; then
            return 0
        fi
        die "cannot connect as superuser via $SOCKDIR:$PGPORT_ to create role/database $ROLE"
    fi
    psql_admin <<EOF
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$ROLE') THEN
    CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD';
  ELSE
    ALTER ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD';
  END IF;
END
\$\$;
SELECT 'CREATE DATABASE $DB OWNER $ROLE'
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$DB') \gexec
EOF
}

lock() {
    exec 9>"/tmp/lifecycle-postgres-$PGPORT_.lock"
    flock -w 300 9 || die "could not take the control lock"
}

cmd_start() {
    ensure_installed
    setup_paths
    lock
    local pid
    if pid="$(our_postmaster)"; then
        if ! ready; then
            log "postmaster $pid is up but not accepting connections yet; waiting"
            local i
            for ((i = 0; i < 120; i++)); do ready && break; sleep 1; done
            ready || die "postmaster $pid not accepting connections (log: $PGLOG)"
        fi
        log "already running (pid $pid) on $HOST:$PGPORT_"
    elif ready; then
        log "another PostgreSQL already accepts connections on $HOST:$PGPORT_; using it"
    else
        install -d -o postgres -g postgres -m 2775 "$SOCKDIR"
        install -d -o postgres -g postgres -m 0775 "$(dirname "$PGLOG")"
        init_cluster
        write_conf
        clean_stale
        log "starting cluster $PGDATA_ on $HOST:$PGPORT_ (log $PGLOG)"
        # 9>&- : the server must not inherit our control lock.
        if ! as_pg "$BIN/pg_ctl" -D "$PGDATA_" -l "$PGLOG" -w -t 120 start >/dev/null 9>&-; then
            tail -n 30 "$PGLOG" >&2 || true
            die "pg_ctl start failed"
        fi
        ready || { tail -n 30 "$PGLOG" >&2 || true; die "started but not accepting on $HOST:$PGPORT_"; }
    fi
    ensure_role_db
    log "ready: postgresql://$ROLE:$PASSWORD@$HOST:$PGPORT_/$DB"
}

cmd_stop() {
    BIN="$(pg_bindir)" || { log "not installed"; return 0; }
    setup_paths
    lock
    local pid
    if pid="$(our_postmaster)"; then
        log "stopping cluster $PGDATA_ (pid $pid)"
        if ! as_pg "$BIN/pg_ctl" -D "$PGDATA_" -m fast -w -t 30 stop >/dev/null 2>&1; then
            log "fast shutdown did not finish in 30s; immediate shutdown"
            as_pg "$BIN/pg_ctl" -D "$PGDATA_" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
        fi
    fi
    if [[ -n "$(leftover_pids)" ]] || [[ -e "$PGDATA_/postmaster.pid" ]]; then
        clean_stale
    fi
    if ready; then
        log "stopped ours; another PostgreSQL on $HOST:$PGPORT_ is left alone"
    else
        log "stopped"
    fi
}

cmd_status() {
    BIN="$(pg_bindir)" || { echo "postgres: not installed"; return 3; }
    setup_paths
    if ready; then
        if pid="$(our_postmaster)"; then
            echo "postgres: running (pid $pid, $PGDATA_) on $HOST:$PGPORT_"
        else
            echo "postgres: running on $HOST:$PGPORT_ (not started by this script)"
        fi
        return 0
    fi
    echo "postgres: not accepting connections on $HOST:$PGPORT_"
    return 3
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop; cmd_start ;;
    status) cmd_status ;;
    *) echo "usage: $0 start|stop|restart|status" >&2; exit 2 ;;
esac
