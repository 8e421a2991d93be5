#!/usr/bin/env bash
# Installs the Debian packages kis_fdw needs to build and test, if any are
# missing: PostgreSQL 15 server and headers, libcurl, jansson, OpenSSL,
# Python 3 (the mock server), pg_cron (the scheduled-refresh recipe test),
# clang with its libFuzzer runtime (the fuzz harness).
# Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(postgresql-15 postgresql-server-dev-15 postgresql-15-cron libcurl4-openssl-dev libjansson-dev
          libssl-dev python3 openssl make gcc clang libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
