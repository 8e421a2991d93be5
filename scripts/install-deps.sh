#!/usr/bin/env bash
# scripts/install-deps.sh [MAJOR]: installs the Debian packages kis_fdw needs
# to build and test, if any are missing: PostgreSQL MAJOR's server and headers
# (default 15; "-" for none, when PostgreSQL was built from source), libcurl,
# jansson, OpenSSL, wslay (WebSocket framing for the live tables), Python 3 (the mock server), clang with its libFuzzer
# runtime (the fuzz harness), sqlsmith (random queries), and pg_cron (the scheduled-refresh recipe test)
# where the release has it for that major.
# Needs root (or sudo) only when something is missing.
set -euo pipefail
major="${1:-15}"

packages=(libcurl4-openssl-dev libjansson-dev libssl-dev libwslay-dev python3 openssl make gcc clang libclang-rt-dev
          sqlsmith)
[ "$major" = "-" ] || packages+=("postgresql-$major" "postgresql-server-dev-$major")
optional=()
[ "$major" = "-" ] || optional+=("postgresql-$major-cron")

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=()
for p in "${packages[@]}"; do
    installed "$p" || missing+=("$p")
done
for p in "${optional[@]}"; do
    installed "$p" || missing+=("$p?")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -q
want=()
for p in "${missing[@]}"; do
    if [ "${p%\?}" != "$p" ]; then
        # optional: only if this release has it
        apt-cache show "${p%\?}" >/dev/null 2>&1 && want+=("${p%\?}")
    else
        want+=("$p")
    fi
done
[ ${#want[@]} -eq 0 ] && exit 0
echo "installing: ${want[*]}"
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${want[@]}"
