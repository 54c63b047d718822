#!/usr/bin/env bash
# scripts/test.sh - build fleetlm and run the whole test suite (`make test`).
#
# Nothing is installed into the system.  Instead the script builds a private,
# relocated PostgreSQL installation in a fresh temporary directory $T:
#
#   $T/inst/<bindir>      copy of the system PostgreSQL bin dir (copied, not
#                         symlinked: PostgreSQL finds its share and lib dirs
#                         relative to the resolved path of the running binary)
#   $T/inst/<pkglibdir>   fleetlm.so (+ bitcode) and symlinks to the rest
#   $T/inst/<sharedir>    symlinks to the system share dir, except extension/,
#                         a real dir with fleetlm's and fleetlm_proxy's files
#                         and symlinks to the system extension files (among
#                         them PL/Proxy's, which fleetlm_proxy requires)
#   $T/work               copy of the source tree: the test inputs
#
# and runs, against servers started from $T/inst:
#
#   phase 1  pg_regress  the tests named in the Makefile's REGRESS
#   phase 2  TAP         test/t/*.pl with prove and PostgreSQL::Test::Cluster
#
# When run as root, $T is chowned to `postgres` and both phases run as that
# user (PostgreSQL refuses to run as root; the checkout need not be readable
# by postgres).
#
# As root, a 4 MB tmpfs is mounted for the disk-full TAP test
# (FLEETLM_TEST_TMPFS) and unmounted at the end.
#
# Environment:
#   REGRESS_ONLY=1       run only the pg_regress phase
#   TAP_ONLY=1           run only the TAP phase
#   PROVE_TESTS="..."    TAP tests to run (default: test/t/*.pl)
#   PROVE_FLAGS="..."    extra flags for prove (e.g. "-v")
#   KEEP_TMP=1           keep $T even on success (it is always kept on failure)
#   PG_CONFIG            pg_config to build against (default: the one on PATH)
#
# Exit status is non-zero if the build or any phase fails.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"

say() { printf '== %s\n' "$*"; }
die() { printf 'test.sh: %s\n' "$*" >&2; exit 1; }

REGRESS_ONLY=${REGRESS_ONLY:-0}
TAP_ONLY=${TAP_ONLY:-0}
KEEP_TMP=${KEEP_TMP:-0}
if [ "$REGRESS_ONLY" = 1 ] && [ "$TAP_ONLY" = 1 ]; then
    die "REGRESS_ONLY=1 and TAP_ONLY=1 together would run nothing"
fi

# Servers started below must not pick up a caller's connection settings.
unset PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGDATA PGSERVICE || true

# ---------------------------------------------------------------------------
say "deps"
"$ROOT/scripts/deps.sh"

say "building"
make --no-print-directory -j"$(nproc)" || die "build failed"

PG_CONFIG_BIN=${PG_CONFIG:-$(command -v pg_config || echo /usr/lib/postgresql/15/bin/pg_config)}
SYS_BIN=$("$PG_CONFIG_BIN" --bindir)
SYS_PKGLIB=$("$PG_CONFIG_BIN" --pkglibdir)
SYS_SHARE=$("$PG_CONFIG_BIN" --sharedir)
PGXS_ROOT=$(cd "$(dirname "$("$PG_CONFIG_BIN" --pgxs)")/../.." && pwd)
PG_REGRESS=$PGXS_ROOT/src/test/regress/pg_regress
PG_PERL=$PGXS_ROOT/src/test/perl
[ -x "$PG_REGRESS" ] || die "pg_regress not found at $PG_REGRESS"
[ -d "$PG_PERL" ] || die "PostgreSQL TAP modules not found at $PG_PERL"

# ---------------------------------------------------------------------------
# Temp dir and cleanup.  Resolve symlinks (e.g. /tmp -> /private/tmp) because
# PostgreSQL reports paths based on the resolved location of its binaries.
T=$(mktemp -d /tmp/fleetlm-test.XXXXXX)
T=$(cd "$T" && pwd -P)
cleanup() {
    local rc=$?
    if [ -n "${WALFS:-}" ] && mountpoint -q "$WALFS"; then
        umount "$WALFS" || true
    fi
    if [ "$rc" -eq 0 ] && [ "$KEEP_TMP" != 1 ]; then
        rm -rf "$T"
    else
        echo "test.sh: temp dir kept: $T" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT

INST=$T/inst
R_BIN=$INST$SYS_BIN
R_PKGLIB=$INST$SYS_PKGLIB
R_SHARE=$INST$SYS_SHARE
WORK=$T/work

# overlay SRC DST: make every entry of SRC visible in DST as a symlink, unless
# DST already has an entry of that name; directories present in both (e.g.
# extension/, bitcode/) are real in DST and are overlaid recursively.
overlay() {
    local src=$1 dst=$2 e name
    mkdir -p "$dst"
    while IFS= read -r -d '' e; do
        name=${e##*/}
        if [ -d "$e" ] && [ -d "$dst/$name" ] && [ ! -L "$dst/$name" ]; then
            overlay "$e" "$dst/$name"
        elif [ ! -e "$dst/$name" ] && [ ! -L "$dst/$name" ]; then
            ln -s "$e" "$dst/$name"
        fi
    done < <(find "$src" -mindepth 1 -maxdepth 1 -print0)
}

say "relocated install in $INST"
make install DESTDIR="$INST" >"$T/install.log" 2>&1 \
    || { cat "$T/install.log" >&2; die "make install DESTDIR=$INST failed"; }
mkdir -p "$R_BIN" "$R_PKGLIB" "$R_SHARE/extension"
cp -a "$SYS_BIN/." "$R_BIN/"
overlay "$SYS_PKGLIB" "$R_PKGLIB"
overlay "$SYS_SHARE" "$R_SHARE"

got=$("$R_BIN/pg_config" --sharedir)
[ "$got" = "$R_SHARE" ] || die "relocation failed: pg_config --sharedir says $got, expected $R_SHARE"
got=$("$R_BIN/pg_config" --pkglibdir)
[ "$got" = "$R_PKGLIB" ] || die "relocation failed: pg_config --pkglibdir says $got, expected $R_PKGLIB"
ls "$R_PKGLIB"/fleetlm.so "$R_SHARE"/extension/fleetlm.control \
    "$R_SHARE"/extension/fleetlm_proxy.control "$R_SHARE"/extension/fleetlm_proxy--1.0.sql >/dev/null \
    || die "fleetlm files missing from the relocated install"
# fleetlm_proxy requires PL/Proxy (scripts/deps.sh installs it): the system's
# files are reached through the overlay above.
ls "$R_PKGLIB"/plproxy.so "$R_SHARE"/extension/plproxy.control >/dev/null \
    || die "PL/Proxy (postgresql-15-plproxy) missing from the relocated install"

# ---------------------------------------------------------------------------
# Test inputs: a copy of the source tree minus VCS data, build/test leftovers
# and the `make run` server directory.
mkdir -p "$WORK"
tar -C "$ROOT" \
    --exclude=./.git --exclude=./.run --exclude=./tmp_check --exclude=./log \
    --exclude=./results --exclude=./regression.diffs --exclude=./regression.out \
    --exclude=./bench/results --exclude=./test/tmp \
    -cf - . | tar -C "$WORK" -xf -

# Scratch space for the test programs (socket dirs, File::Temp dirs), so that
# nothing is left behind in /tmp.
mkdir -p "$T/tmp"
export TMPDIR=$T/tmp

RUN=()
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user"
    chown -hR postgres:postgres "$T"
    RUN=(runuser -u postgres --)
fi

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null || [ -e "/tmp/.s.PGSQL.$1" ]
}
free_port() {
    local p=$((40000 + $$ % 20000)) i
    for ((i = 0; i < 200; i++)); do
        port_in_use "$p" || { echo "$p"; return 0; }
        p=$((p + 1))
    done
    die "no free port found"
}

failed=()

# ---------------------------------------------------------------------------
run_regress() {
    local tests opts o port status=0
    local tempconf=$WORK/test/regress.conf dbname=contrib_regression extra=()
    tests=$(make -s --no-print-directory print-regress)
    if [ -z "$tests" ]; then
        say "pg_regress: REGRESS is empty, skipping"
        return 0
    fi
    # Honour the Makefile's REGRESS_OPTS (e.g. --load-extension), with paths
    # mapped into $WORK; the options this script controls are dropped.
    # shellcheck disable=SC2016  # $(REGRESS_OPTS) is for make, not the shell
    opts=$(make -s --no-print-directory --eval 'fleetlm-print-regress-opts: ; @echo $(REGRESS_OPTS)' \
        fleetlm-print-regress-opts)
    for o in $opts; do
        case $o in
            --temp-config=*)
                o=${o#--temp-config=}; o=${o#"$ROOT"/}
                while [ "${o#./}" != "$o" ] || [ "${o#/}" != "$o" ]; do o=${o#./}; o=${o#/}; done
                tempconf=$WORK/$o ;;
            --dbname=*) dbname=${o#--dbname=} ;;
            --inputdir=* | --outputdir=* | --bindir=* | --temp-instance=* | --port=* | --host=* | --user=*) ;;
            *) extra+=("$o") ;;
        esac
    done
    port=$(free_port)
    rm -rf "$ROOT/regression.diffs" "$ROOT/regression.out" "$ROOT/results" 2>/dev/null || true

    say "pg_regress ($tests) on port $port"
    # shellcheck disable=SC2086  # $tests is a word list
    (cd "$WORK" && "${RUN[@]}" "$PG_REGRESS" \
        --temp-instance="$WORK/tmp_check_regress" \
        --bindir="$R_BIN" \
        --inputdir="$WORK" --outputdir="$WORK" \
        --temp-config="$tempconf" \
        --dbname="$dbname" \
        --port="$port" \
        "${extra[@]}" $tests) || status=$?
    if [ "$status" -ne 0 ]; then
        if [ -f "$WORK/regression.diffs" ]; then
            echo "---- regression.diffs (first 300 lines) ----"
            head -n 300 "$WORK/regression.diffs"
            echo "---- end of regression.diffs ----"
        fi
        # The server log only matters if a backend crashed.
        if grep -qsE "terminated by signal|PANIC|TRAP:" "$WORK/tmp_check_regress/log/postmaster.log"; then
            echo "---- tmp_check_regress/log/postmaster.log (last 50 lines) ----"
            tail -n 50 "$WORK/tmp_check_regress/log/postmaster.log"
            echo "---- end of postmaster.log ----"
        fi
        if [ -w "$ROOT" ]; then
            cp "$WORK/regression.diffs" "$WORK/regression.out" "$ROOT/" 2>/dev/null || true
            if [ -d "$WORK/results" ]; then
                rm -rf "$ROOT/results"
                cp -r "$WORK/results" "$ROOT/results" || true
            fi
            echo "pg_regress: diffs copied to $ROOT/regression.diffs (outputs in $ROOT/results/)"
        fi
        failed+=(pg_regress)
    fi
}

# ---------------------------------------------------------------------------
run_tap() {
    local tests=() pflags=() t status=0 log base bad
    if [ -n "${PROVE_TESTS:-}" ]; then
        for t in $PROVE_TESTS; do tests+=("${t#"$ROOT"/}"); done
    else
        for t in "$WORK"/test/t/*.pl; do
            [ -e "$t" ] && tests+=("${t#"$WORK"/}")
        done
    fi
    if [ ${#tests[@]} -eq 0 ]; then
        say "TAP: no test/t/*.pl, skipping"
        return 0
    fi
    read -r -a pflags <<<"${PROVE_FLAGS:-}"

    # The disk-full test needs a small file system of its own: as root, mount
    # a 4 MB tmpfs for it (the test skips itself without one).
    local fsenv=()
    if [ "$(id -u)" -eq 0 ]; then
        WALFS=$T/walfs
        mkdir -p "$WALFS"
        if mount -t tmpfs -o "size=4m,mode=0700,uid=$(id -u postgres),gid=$(id -g postgres)" tmpfs "$WALFS"; then
            fsenv=(FLEETLM_TEST_TMPFS="$WALFS")
        else
            WALFS=
            echo "test.sh: could not mount a tmpfs; the disk-full test will be skipped" >&2
        fi
    fi

    say "TAP (${tests[*]})"
    (cd "$WORK" && "${RUN[@]}" env "${fsenv[@]}" \
        TESTDIR="$WORK" \
        PATH="$R_BIN:$PATH" \
        PG_REGRESS="$PG_REGRESS" \
        prove -I "$PG_PERL" -I "$WORK/test" --timer "${pflags[@]}" "${tests[@]}") \
        2>&1 | tee "$T/prove.out" || status=$?
    if [ "$status" -ne 0 ]; then
        # Failed scripts are listed in prove's "Test Summary Report".
        mapfile -t bad < <(sed -n 's/^\([^ ]*\.pl\) *(Wstat:.*/\1/p' "$T/prove.out" | sort -u)
        [ ${#bad[@]} -gt 0 ] || bad=("${tests[@]}")
        for t in "${bad[@]}"; do
            base=$(basename "$t" .pl)
            for log in "$WORK/tmp_check/log/regress_log_$base" "$WORK/tmp_check/log/${base}"_*.log; do
                [ -f "$log" ] || continue
                echo "---- ${log#"$WORK"/} (last 200 lines) ----"
                tail -n 200 "$log"
                echo "---- end of ${log##*/} ----"
            done
        done
        failed+=(TAP)
    fi
}

[ "$TAP_ONLY" = 1 ] || run_regress
[ "$REGRESS_ONLY" = 1 ] || run_tap

if [ ${#failed[@]} -ne 0 ]; then
    say "FAILED: ${failed[*]}"
    exit 1
fi
say "all tests passed"
