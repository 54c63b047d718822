#!/usr/bin/env bash
# scripts/run.sh - local fleetlm demo server (`make run` / `make stop`).
#
#   scripts/run.sh start    install deps, build, install fleetlm into the system
#                           PostgreSQL (sudo if not root), create the cluster
#                           in .run/data if needed, start it, create database
#                           `fleetlm` + the extension, and run a short demo.
#                           The server is left running.  Safe to rerun.
#   scripts/run.sh stop     stop the server (pg_ctl -m fast)
#   scripts/run.sh status   pg_ctl status (exit 0 if running, 3 if not)
#
# Layout: .run/data (cluster), .run/server.log, unix socket in .run/.  When run
# as root the server runs as `postgres`; if postgres cannot reach the project
# directory (e.g. a checkout under /root), the cluster, log and socket live in
# /var/tmp/fleetlm-run-<uid> and .run/data and .run/server.log are symlinks.
#
# Mock agent: test/mock_agent.pl on 127.0.0.1:<port + 1> (FLEETLM_MOCK_PORT
# overrides), started in the background by `start` (pid in .run/mock.pid, its
# request log in .run/mock.log) and stopped by `stop`; the demo registers an
# agent there and shows one turn.
#
# Server: shared_preload_libraries=fleetlm, fleetlm.database=fleetlm, listens
# on localhost:5499 (FLEETLM_PORT overrides) and on the unix socket.  Socket
# connections are trusted (the socket dir is private, mode 0700); TCP
# connections need the generated password stored in .run/pgpass.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"

RUNDIR=$ROOT/.run
PORT=${FLEETLM_PORT:-5499}
MOCK_PORT=${FLEETLM_MOCK_PORT:-$((PORT + 1))}
DBNAME=fleetlm

say() { printf '== %s\n' "$*"; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1

find_pg_config() {
    PG_CONFIG_BIN=${PG_CONFIG:-$(command -v pg_config || echo /usr/lib/postgresql/15/bin/pg_config)}
}
find_pg_config
bindir() {
    if [ -x "$PG_CONFIG_BIN" ] || command -v "$PG_CONFIG_BIN" >/dev/null 2>&1; then
        "$PG_CONFIG_BIN" --bindir
    else
        echo /usr/lib/postgresql/15/bin
    fi
}

# Locate the server directory (data, log, socket) and the OS user that owns
# the cluster.  Sets SRV_DIR, DATA, LOG, SRV_USER.
locate() {
    if [ -L "$RUNDIR/data" ]; then
        DATA=$(readlink -m "$RUNDIR/data")
        SRV_DIR=$(dirname "$DATA")
    else
        SRV_DIR=$RUNDIR
        DATA=$RUNDIR/data
    fi
    LOG=$SRV_DIR/server.log
    if [ -d "$DATA" ]; then
        SRV_USER=$(stat -c %U "$DATA")
    elif [ "$IS_ROOT" = 1 ]; then
        SRV_USER=postgres
    else
        SRV_USER=$(id -un)
    fi
}

# Run a command as the cluster owner (from /, which the owner can always
# enter even when the project directory is private to root).
as_srv() {
    if [ "$(id -un)" = "$SRV_USER" ]; then
        "$@"
    elif [ "$IS_ROOT" = 1 ]; then
        (cd / && runuser -u "$SRV_USER" -- "$@")
    else
        die "the cluster in $DATA belongs to '$SRV_USER'; run this as root (sudo make ...) or remove $RUNDIR"
    fi
}

is_running() {
    [ -f "$DATA/PG_VERSION" ] && as_srv "$BINDIR/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

# Port and socket dir of the running server, from postmaster.pid.
running_port() { sed -n 4p "$DATA/postmaster.pid"; }
running_sock() { sed -n 5p "$DATA/postmaster.pid"; }

# ---------------------------------------------------------------------------
# Install fleetlm into the system PostgreSQL if the installed copy differs
# from the build.  Our own server is stopped first so that, once started again,
# it runs the new build.
install_if_needed() {
    local stage need=0 f
    stage=$(mktemp -d /tmp/fleetlm-run-stage.XXXXXX)
    make install DESTDIR="$stage" >"$stage.log" 2>&1 \
        || { cat "$stage.log" >&2; rm -rf "$stage" "$stage.log"; die "make install (staging) failed"; }
    while IFS= read -r -d '' f; do
        f=${f#"$stage"}
        case $f in */bitcode/*) continue ;; esac
        cmp -s "$stage$f" "$f" || { need=1; break; }
    done < <(find "$stage" -type f -print0)
    rm -rf "$stage" "$stage.log"
    [ "$need" = 1 ] || return 0

    local sudo=()
    if [ "$IS_ROOT" != 1 ] && [ ! -w "$("$PG_CONFIG_BIN" --pkglibdir)" ]; then
        command -v sudo >/dev/null 2>&1 \
            || die "installing into $("$PG_CONFIG_BIN" --pkglibdir) needs root, and sudo is not available"
        sudo=(sudo)
    fi
    if is_running; then
        say "stopping the running server to install the new build"
        as_srv "$BINDIR/pg_ctl" -D "$DATA" -m fast -w stop
    fi
    say "installing fleetlm into $("$PG_CONFIG_BIN" --pkglibdir)${sudo[*]:+ (with sudo)}"
    # `install` overwrites in place, which would corrupt the library under any
    # other server that has it loaded; unlinking first gives it a new inode.
    "${sudo[@]}" rm -f "$("$PG_CONFIG_BIN" --pkglibdir)/fleetlm.so"
    "${sudo[@]}" make install >/dev/null
}

# Create the server directory and the cluster if they do not exist.
init_cluster() {
    [ -f "$DATA/PG_VERSION" ] && return 0

    mkdir -p "$RUNDIR"
    if [ "$IS_ROOT" = 1 ]; then
        id postgres >/dev/null 2>&1 || die "no 'postgres' user (is postgresql-15 installed?)"
        SRV_USER=postgres
        if runuser -u postgres -- test -x "$ROOT" && [ ! -L "$RUNDIR/data" ]; then
            chown postgres:postgres "$RUNDIR"
        else
            SRV_DIR=/var/tmp/fleetlm-run-$(id -u)
            if [ ! -d "$SRV_DIR" ]; then
                install -d -o postgres -g postgres -m 0700 "$SRV_DIR"
            fi
            [ "$(stat -c %U "$SRV_DIR")" = postgres ] || die "$SRV_DIR exists but is not owned by postgres"
            DATA=$SRV_DIR/data
            LOG=$SRV_DIR/server.log
            ln -sfn "$DATA" "$RUNDIR/data"
            ln -sfn "$LOG" "$RUNDIR/server.log"
            echo "note: user postgres cannot access $ROOT, so the cluster lives in $SRV_DIR"
            echo "      ($RUNDIR/data and $RUNDIR/server.log are symlinks to it)"
        fi
    fi
    chmod 0700 "$SRV_DIR"
    # unix socket paths are limited to ~107 bytes
    [ ${#SRV_DIR} -le 90 ] || die "path too long for a unix socket dir: $SRV_DIR"

    say "initializing cluster in $DATA"
    local pw pwfile
    pw=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    pwfile=$SRV_DIR/.initpw
    (umask 077 && printf '%s\n' "$pw" >"$pwfile")
    [ "$IS_ROOT" = 1 ] && chown "$SRV_USER" "$pwfile"
    as_srv "$BINDIR/initdb" -D "$DATA" -U "$SRV_USER" --auth-local=trust \
        --auth-host=scram-sha-256 --pwfile="$pwfile" -E UTF8 >"$SRV_DIR/initdb.log" 2>&1 \
        || { cat "$SRV_DIR/initdb.log" >&2; rm -f "$pwfile"; die "initdb failed"; }
    rm -f "$pwfile"
    (umask 077 && printf 'localhost:*:*:%s:%s\n' "$SRV_USER" "$pw" >"$RUNDIR/pgpass")
    printf "\n# fleetlm demo settings, rewritten by scripts/run.sh on every start\ninclude_if_exists = 'fleetlm-run.conf'\n" \
        | as_srv tee -a "$DATA/postgresql.conf" >/dev/null
}

write_run_conf() {
    local sock=${SRV_DIR//\'/\'\'}
    as_srv tee "$DATA/fleetlm-run.conf" >/dev/null <<EOF
# Written by scripts/run.sh on every start; put your own settings in
# postgresql.conf (before the include) or postgresql.auto.conf.
port = $PORT
listen_addresses = 'localhost'
unix_socket_directories = '$sock'
shared_preload_libraries = 'fleetlm'
fleetlm.database = '$DBNAME'
fleetlm.agent_url_allowlist = 'http://127.0.0.1:$MOCK_PORT/'
EOF
}

mock_running() { [ -f "$RUNDIR/mock.pid" ] && kill -0 "$(cat "$RUNDIR/mock.pid")" 2>/dev/null; }

# The demo's agent: the tests' mock agent, in the background.
start_mock() {
    if mock_running; then
        return 0
    fi
    rm -f "$RUNDIR/mock.port"
    nohup perl "$ROOT/test/mock_agent.pl" --port "$MOCK_PORT" --port-file "$RUNDIR/mock.port" \
        --log "$RUNDIR/mock.log" >"$RUNDIR/mock.out" 2>&1 &
    echo $! >"$RUNDIR/mock.pid"
    for _ in $(seq 50); do
        [ -s "$RUNDIR/mock.port" ] && return 0
        sleep 0.1
    done
    cat "$RUNDIR/mock.out" >&2
    die "the mock agent did not start on port $MOCK_PORT"
}

stop_mock() {
    if mock_running; then
        kill "$(cat "$RUNDIR/mock.pid")" 2>/dev/null || true
    fi
    rm -f "$RUNDIR/mock.pid" "$RUNDIR/mock.port"
}

# psql as the invoking user (the cluster owner, or root) over the unix socket.
psql_srv() {
    "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$(running_sock)" -p "$(running_port)" -U "$SRV_USER" "$@"
}

demo() {
    say "demo"
    psql_srv -d "$DBNAME" -v mock="http://127.0.0.1:$MOCK_PORT" <<'EOF'
\pset footer on
\echo -- a session with no agent: appends and reads
SELECT fleetlm.create_session('user-1', 'agent-1') AS sid \gset
\echo created session :sid
SELECT fleetlm.append(:'sid', 'user-1', 'text', '{"text":"hello"}') AS seq;
SELECT fleetlm.append(:'sid', 'agent-1', 'text', '{"text":"hi! how can I help?"}') AS seq;
SELECT seq, sender_id, kind, content FROM fleetlm.messages(:'sid');
\echo -- an agent: the mock agent, streaming its reply as SSE, 150 ms per chunk
SELECT agent_id, protocol, status FROM fleetlm.register_agent('demo-agent', :'mock',
       '/sse?delay_ms=150&chunks=3', debounce_ms => 0);
SELECT fleetlm.create_session('user-2', 'demo-agent') AS sid2 \gset
SELECT fleetlm.append(:'sid2', 'user-2', 'text', '{"text":"what is fleetlm?"}') AS turn \gset
\echo the message is seq :turn, so the agent answers turn :turn; its reply streams in:
SELECT chunk_no, chunk, done FROM fleetlm.wait_for_stream(:'sid2', :turn, 0, '5s');
SELECT chunk_no, chunk, done FROM fleetlm.wait_for_stream(:'sid2', :turn, 2, '5s');
\echo and is appended, once, as the next message:
SELECT seq, sender_id, kind, content, metadata
  FROM fleetlm.wait_for_messages(:'sid2', :turn, '10s');
SELECT turns_started, turns_completed, turns_failed, http_time_ms FROM fleetlm.stat;
\x on
SELECT * FROM fleetlm.stat;
EOF
}

cmd_start() {
    say "deps"
    if ! "$ROOT/scripts/deps.sh"; then
        # deps.sh only uses password-less sudo; interactively, ask once and retry.
        if [ "$IS_ROOT" != 1 ] && command -v sudo >/dev/null 2>&1 && [ -t 0 ]; then
            echo "run.sh: asking sudo for your password to install them"
            if ! { sudo -v && "$ROOT/scripts/deps.sh"; }; then
                die "could not install the required packages"
            fi
        else
            die "required packages are missing (see above)"
        fi
    fi
    say "building"
    make --no-print-directory -j"$(nproc)" || die "build failed"
    find_pg_config  # deps.sh may just have installed it

    BINDIR=$(bindir)
    locate
    install_if_needed
    init_cluster

    say "mock agent on 127.0.0.1:$MOCK_PORT (log: $RUNDIR/mock.log)"
    start_mock
    if is_running; then
        say "server already running (port $(running_port))"
        if [ "$(running_port)" != "$PORT" ]; then
            echo "note: FLEETLM_PORT=$PORT ignored; run 'make stop' first to change the port"
        else
            write_run_conf
            psql_srv -d postgres -qAtc "SELECT pg_reload_conf()" >/dev/null
            sleep 0.5
        fi
    else
        write_run_conf
        say "starting server on port $PORT (log: $RUNDIR/server.log)"
        if ! as_srv "$BINDIR/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null; then
            tail -n 30 "$LOG" >&2 || true
            die "server did not start (see $RUNDIR/server.log)"
        fi
    fi

    if [ -z "$(psql_srv -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DBNAME'")" ]; then
        say "creating database $DBNAME"
        psql_srv -d postgres -c "CREATE DATABASE $DBNAME"
    fi
    psql_srv -d "$DBNAME" -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS fleetlm"

    local demo_rc=0 psql_cmd=psql port sock
    demo || demo_rc=$?

    command -v psql >/dev/null 2>&1 || psql_cmd=$BINDIR/psql
    port=$(running_port)
    sock=$(running_sock)
    echo
    say "fleetlm is running"
    echo "connect (unix socket):  $psql_cmd -h $sock -p $port -U $SRV_USER -d $DBNAME"
    if [ -f "$RUNDIR/pgpass" ]; then
        echo "connect (TCP):          PGPASSFILE=$RUNDIR/pgpass $psql_cmd -h localhost -p $port -U $SRV_USER -d $DBNAME"
    fi
    echo "server log:             $RUNDIR/server.log"
    echo "stop it with:           make stop"
    if [ "$demo_rc" -ne 0 ]; then
        echo
        echo "run.sh: the demo failed (psql exit $demo_rc); the server is still running." >&2
        echo "run.sh: last lines of $RUNDIR/server.log:" >&2
        tail -n 15 "$LOG" >&2 || true
        exit 1
    fi
}

cmd_stop() {
    BINDIR=$(bindir)
    locate
    if is_running; then
        as_srv "$BINDIR/pg_ctl" -D "$DATA" -m fast -w stop
    else
        echo "fleetlm server is not running"
    fi
    stop_mock
}

cmd_status() {
    BINDIR=$(bindir)
    locate
    if [ ! -f "$DATA/PG_VERSION" ]; then
        echo "no cluster in $RUNDIR/data (start one with: make run)"
        exit 3
    fi
    as_srv "$BINDIR/pg_ctl" -D "$DATA" status
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
