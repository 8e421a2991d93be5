#!/usr/bin/env bash
# bench/run.sh: the kis_fdw benchmark suite in one command (`make bench`).
#
# Installs what is missing (Debian packages, gnuplot-nox for the plot), builds
# and installs the extension, starts the mock KIS server over TLS and a
# throwaway PostgreSQL 15 cluster with kis_fdw preloaded, runs the scenarios
# of bench/bench.py (rate limit, latency, shared key, batching, CPU overhead,
# cancel, and the seed's Python pattern through bench/seed_pattern.py), and
# stops everything again, also on failure or Ctrl-C.  Run as root.
#
# Prints the results table and writes bench/out/: results.json, results.md,
# timeline.png (requests started per 100 ms against the limit) and the data
# and gnuplot script behind it.  Figures, not pass/fail: it exits 0 whether or
# not the targets are met, non-zero if a step could not run (that step's row
# says why; the other steps keep their figures).
#
# BENCH_QUICK=1 runs every step on fewer symbols and repetitions: the same
# code paths and the same table in about a minute, for CI (PostgreSQL 15 by
# default; PG_CONFIG picks another build, e.g. PG_CONFIG=/path/bin/pg_config
# KIS_DEPS_MAJOR=- for one built from source).  The full run (no BENCH_QUICK)
# gives the figures to quote.
#
# BENCH_PROFILE=1 also samples the backend with perf (linux-perf) during the
# overhead scenarios and writes bench/out/profile-*.txt (slows those runs).
set -euo pipefail
cd "$(dirname "$0")/.."
export BENCH_T0="$(date +%s.%N)"

source test/lib.sh
kis_prepare      # deps, build, install, $KIS_WORK, the cleanup trap
# bench.py's own plumbing first (a step's failure is its row, the exit status)
"$KIS_PYTHON" bench/test_bench.py >"$KIS_WORK/test_bench.log" 2>&1 ||
    { cat "$KIS_WORK/test_bench.log"; exit 1; }
if ! command -v gnuplot >/dev/null; then
    echo "installing: gnuplot-nox"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
        gnuplot-nox >/dev/null
fi
# the floor beside the overhead figure: the same requests without kis_fdw
gcc -O2 -Wall -o "$KIS_WORK/floor" bench/floor.c -lcurl -lssl -lcrypto
export BENCH_FLOOR="$KIS_WORK/floor"
kis_make_certs
kis_start_mock --token-interval 0
kis_start_cluster <<CONF
shared_preload_libraries = 'kis_fdw'
kis_fdw.token_issue_interval = 0
CONF

mkdir -p bench/out
rc=0
"$KIS_PYTHON" bench/bench.py bench/out || rc=$?
# a crash or an assertion failure during the run fails it, whatever the figures
kis_log_crashes 0 || rc=1
exit $rc
