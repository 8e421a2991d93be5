#!/usr/bin/env bash
# test/run-tests.sh: the whole kis_fdw test suite, from a fresh machine.
#
# Installs what is missing (Debian packages), builds and installs the
# extension, starts the mock KIS server over TLS and a throwaway cluster
# (as the postgres user), then runs
#   1. pg_regress: the SQL surface, deterministic (sql/, expected/)
#   2. test/test_fdw.py: behaviour seen through the mock's counters (the tests
#      are test/behaviour/*.py, one file per area:
#      concurrency, rate, tokens, faults, cancel and descriptors, pg_cron, ...)
#   3. test/soak.py: 10,000 scans in one session must not grow RSS or descriptors
#   4. the fuzz harness (fuzz/): past findings' reproducers, then 20 s of fuzzing
#   5. sqlsmith: past findings' reproducers, then random queries with a fixed
#      seed against kis tables on a cluster of their own (test/sqlsmith/)
#   6. test/demo.sh, so that the README's first command cannot rot
# and stops everything again, also on failure or Ctrl-C.  Run as root.
# Before any suite, make headerscheck checks the rules of src/'s headers.
# A suite during which the server log tells of a crash, an assertion failure
# (TRAP:) or a PANIC fails, whatever its own count says.
#
# While working on one part: KIS_ONLY="regress behaviour" runs only those
# suites (of: mock regress behaviour soak fuzz sqlsmith demo), and
# KIS_BEHAVIOUR="name ..." only those behaviour tests.  The full run is CI's.
#
# PG_MAJOR=NN runs it against that PostgreSQL major (scripts/get-pg.sh obtains
# it from Debian's archive and caches it in /var/cache/kis_fdw): built from source and
# used from here, or installed in a chroot of a newer Debian release, where
# this script then runs.  Without PG_MAJOR: $PG_CONFIG, else pg_config on PATH.
# Warnings are errors here (KIS_WERROR=0 to turn that off).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="$PWD"
export KIS_WERROR="${KIS_WERROR:-1}"

pg_config_major() {
    "$1" --version 2>/dev/null | sed -n 's/^PostgreSQL \([0-9]*\).*/\1/p'
}
if [ -n "${PG_MAJOR:-}" ] && [ "$(pg_config_major "${PG_CONFIG:-pg_config}")" != "$PG_MAJOR" ]; then
    got="$(bash scripts/get-pg.sh "$PG_MAJOR")"
    where="${got#* }"
    case "$got" in
    package\ *) export PG_CONFIG="$where" KIS_DEPS_MAJOR="$PG_MAJOR" ;;
    source\ *)  export PG_CONFIG="$where" KIS_DEPS_MAJOR="-" ;;
    chroot\ *)
        echo "== PostgreSQL $PG_MAJOR: running the suite inside the chroot $where"
        exec bash scripts/in-chroot.sh "$where" \
            PG_MAJOR= PG_CONFIG="/usr/lib/postgresql/$PG_MAJOR/bin/pg_config" KIS_DEPS_MAJOR="$PG_MAJOR" \
            bash test/run-tests.sh ;;
    esac
fi
only=" ${KIS_ONLY:-mock regress behaviour soak fuzz sqlsmith demo} "
want() { [[ "$only" == *" $1 "* ]]; }

source test/lib.sh
kis_prepare
kis_make_certs
# minute bars all day: pg_regress's domestic_minute has bars whatever the hour
kis_start_mock --token-interval 0 --minute-session 0000-2359
# pg_cron where this major has it (the scheduled-refresh test skips otherwise)
KIS_PG_CRON=0
[ -f "$("$KIS_PG_CONFIG" --pkglibdir)/pg_cron.so" ] && KIS_PG_CRON=1
export KIS_PG_CRON
if [ "$KIS_PG_CRON" = 1 ]; then
    preload="shared_preload_libraries = 'kis_fdw,pg_cron'
cron.database_name = 'postgres'
cron.use_background_workers = on"
else
    preload="shared_preload_libraries = 'kis_fdw'"
fi
kis_start_cluster <<CONF
$preload
log_min_messages = debug1
kis_fdw.token_issue_interval = 0
# small, so that the behaviour tests can flood it (test_cache_bounded)
kis_fdw.cache_size = '1MB'
CONF
server_version="$(kis_psql -Atc 'SELECT version()' postgres)"
echo "== server: $server_version"

status=0
passed=0
failed=0
skipped=0
count() {   # count "N passed, M failed[, K skipped]" style results of one suite
    passed=$((passed + $1)); failed=$((failed + $2)); skipped=$((skipped + ${3:-0}))
}
# crash_check NAME FROM: the suite NAME, which began at server log byte FROM,
# fails if the log tells of a crash since
crash_check() {
    if ! kis_log_crashes "$2"; then
        echo "FAIL $1: the server crashed or failed an assertion during it"
        count 0 1; status=1
    fi
}

# not a suite: the header rules hold in every run (a few seconds)
echo "== headerscheck: each src/*.h alone after postgres.h, the private slot layout, fetch.h"
if make -s PG_CONFIG="$KIS_PG_CONFIG" headerscheck >"$KIS_WORK/headerscheck.log" 2>&1; then
    tail -1 "$KIS_WORK/headerscheck.log"
    count 1 0
else
    echo "FAIL headerscheck"; cat "$KIS_WORK/headerscheck.log"
    count 0 1; status=1
fi

if want mock; then
echo "== mock server self-check"
if "$KIS_PYTHON" test/test_mock_kis.py >"$KIS_WORK/mock-selfcheck.log" 2>&1; then
    count "$(sed -n 's/^Ran \([0-9]*\) tests.*/\1/p' "$KIS_WORK/mock-selfcheck.log")" 0
else
    count 0 1; status=1
    tail -30 "$KIS_WORK/mock-selfcheck.log"
fi
fi

if want regress; then
echo "== pg_regress"
mark=$(kis_log_size)
if ! kis_pg_regress; then
    status=1
    head -300 "$KIS_WORK/regress/regression.diffs" 2>/dev/null || true
fi
# pg_regress 16+ prints TAP ("ok 1 - setup", "not ok 2 - scan"), older ones
# "test setup ... ok" / "scan ... FAILED"
count "$(grep -cE '^(ok [0-9]+ |(test|     ) .* \.\.\. ok)' "$KIS_WORK/regress.log" || true)" \
      "$(grep -cE '^not ok [0-9]+ |\.\.\. FAILED' "$KIS_WORK/regress.log" || true)"
crash_check regress "$mark"
fi

# a suite that ends with "N passed, M failed": run it, show it, count it
run_counted() {
    local name="$1" log="$KIS_WORK/$1.log" mark
    mark=$(kis_log_size)
    shift
    if ! "$@" 2>&1 | tee "$log"; then
        status=1
    fi
    local summary
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1 || true)
    if [ -n "$summary" ]; then
        count "$(echo "$summary" | cut -d' ' -f1)" "$(echo "$summary" | cut -d' ' -f3)" \
            "$(echo "$summary" | sed -n 's/.*, \([0-9]*\) skipped.*/\1/p')"
    else
        count 0 1; status=1
    fi
    crash_check "$name" "$mark"
}

if want behaviour; then
    echo "== behaviour tests (mock counters)"
    # shellcheck disable=SC2086  # test names, one per word
    run_counted behaviour "$KIS_PYTHON" test/test_fdw.py ${KIS_BEHAVIOUR:-}
fi

if want soak; then
    echo "== soak: 10,000 scans in one session, RSS/descriptors/memory contexts must not grow"
    run_counted soak "$KIS_PYTHON" test/soak.py
fi

if want fuzz; then
echo "== fuzz: the reproducers of past findings, then a short run (make fuzz for longer)"
if make -s PG_CONFIG="$KIS_PG_CONFIG" fuzz-build >"$KIS_WORK/fuzz-build.log" 2>&1 &&
    KIS_FUZZ_STRICT=1 fuzz/kis_fuzz fuzz/repro/* >"$KIS_WORK/fuzz-repro.log" 2>&1 &&
    KIS_FUZZ_STRICT=1 bash fuzz/run.sh 20 >"$KIS_WORK/fuzz.log" 2>&1; then
    echo "ok fuzz ($(grep -o 'stat::number_of_executed_units: *[0-9]*' "$KIS_WORK/fuzz.log" | grep -o '[0-9]*$') executions)"
    count 1 0
else
    echo "FAIL fuzz"; tail -30 "$KIS_WORK/fuzz-build.log" "$KIS_WORK/fuzz-repro.log" "$KIS_WORK/fuzz.log" 2>/dev/null || true
    count 0 1; status=1
fi
fi

if want sqlsmith; then
    echo "== sqlsmith: the reproducers of past findings, then ${SQLSMITH_QUERIES:-10000} random queries, seed ${SQLSMITH_SEEDS:-1} (make fuzz-sql for more)"
    run_counted sqlsmith bash test/sqlsmith/run.sh "${SQLSMITH_QUERIES:-10000}" "${SQLSMITH_SEEDS:-1}"
fi

if want demo; then
echo "== demo (the README's first command, on its own cluster and mock)"
# both refreshes' answers, not the echoed queries: the header, its rule, then "N | t"
refetched() {
    grep -A2 -E '^ *symbols \| every_row_refetched *$' "$KIS_WORK/demo.log" |
        grep -cE '^ +[1-9][0-9]* \| t$' || true
}
if bash test/demo.sh >"$KIS_WORK/demo.log" 2>&1 && grep -q "^Demo finished" "$KIS_WORK/demo.log" &&
    [ "$(refetched)" = 2 ] && ! grep -q "ERROR" "$KIS_WORK/demo.log"; then
    echo "ok demo"
    count 1 0
else
    echo "FAIL demo"; tail -40 "$KIS_WORK/demo.log"
    count 0 1; status=1
fi
fi

# anything between the suites (setup included) too
[ $status -ne 0 ] || crash_check "the run as a whole" 0
if [ $status -ne 0 ]; then
    echo "-- last lines of the server log:"
    tail -40 "$KIS_WORK/server.log"
fi
echo "== ran against: $server_version"
if [ "$skipped" -gt 0 ]; then
    echo "kis_fdw: $passed passed, $failed failed, $skipped skipped"
else
    echo "kis_fdw: $passed passed, $failed failed"
fi
exit $status
