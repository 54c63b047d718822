#!/usr/bin/env bash
# scripts/deps.sh - install the Debian packages fleetlm needs to build and test.
#
#   build-essential           gcc, make
#   postgresql-15             server binaries (initdb, postgres, pg_ctl, psql)
#   postgresql-server-dev-15  headers, pg_config, PGXS, pg_regress, TAP modules
#   libkrb5-dev               gssapi headers that PostgreSQL's libpq-be.h includes
#   libipc-run-perl           IPC::Run, required by PostgreSQL::Test::Cluster
#   libcurl4-openssl-dev      libcurl (multi interface) for the agent dispatcher
#   postgresql-15-plproxy     PL/Proxy, which fleetlm_proxy (the scale-out
#                             coordinator) requires; used by TAP 030_proxy
#   pgbouncer                 the connection pooler, in front of a shard in
#                             TAP 031_proxy_move
#   perl                      perl and prove
#
# Idempotent and quiet: does nothing (and prints nothing) when everything is
# already installed.  As root it uses apt-get directly; otherwise it uses
# `sudo -n` when that works without a password, and if it does not, it prints
# the missing packages and exits 1.  `apt-get update` is only run when an
# install is needed and fails without it.
set -euo pipefail

PACKAGES=(build-essential postgresql-15 postgresql-server-dev-15 libkrb5-dev libipc-run-perl libcurl4-openssl-dev
          postgresql-15-plproxy pgbouncer perl)

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "deps.sh: dpkg-query not found; this script supports Debian/Ubuntu only." >&2
    echo "deps.sh: needed: ${PACKAGES[*]}" >&2
    exit 1
fi

pkg_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

missing=()
for p in "${PACKAGES[@]}"; do
    pkg_installed "$p" || missing+=("$p")
done
# Belt and braces: the tools themselves must be on PATH too.
for c in gcc make perl prove; do
    command -v "$c" >/dev/null 2>&1 || { missing+=(build-essential perl); break; }
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
# de-duplicate, keeping order
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++')

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "deps.sh: missing packages: ${missing[*]}" >&2
    echo "deps.sh: not root and no password-less sudo; install them with:" >&2
    echo "    sudo apt-get install ${missing[*]}" >&2
    exit 1
fi

echo "deps.sh: installing ${missing[*]}"
log=$(mktemp /tmp/fleetlm-deps.XXXXXX)
trap 'rm -f "$log"' EXIT
apt_install() {
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$log" 2>&1
}
if ! apt_install; then
    # Usually a fresh machine with empty/stale package lists.
    if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$log" 2>&1 \
        || ! apt_install; then
        cat "$log" >&2
        echo "deps.sh: apt-get failed installing: ${missing[*]}" >&2
        exit 1
    fi
fi

still=()
for p in "${missing[@]}"; do
    pkg_installed "$p" || still+=("$p")
done
if [ ${#still[@]} -ne 0 ]; then
    cat "$log" >&2
    echo "deps.sh: still missing after install: ${still[*]}" >&2
    exit 1
fi
