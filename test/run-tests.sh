#!/usr/bin/env bash
# test/run-tests.sh: the whole kis_fdw test suite, from a fresh machine.
#
# Installs what is missing (Debian packages), builds and installs the
# extension, starts the mock KIS server over TLS and a throwaway cluster
# (as the postgres user), then runs
#   1. pg_regress: the SQL surface, deterministic (sql/, expected/)
#   2. test/test_fdw.py: behaviour seen through the mock's counters
#      (concurrency, rate, tokens, faults, cancel and descriptors, pg_cron)
#   3. test/soak.py: 10,000 scans in one session must not grow RSS or descriptors
#   4. the fuzz harness (fuzz/): past findings' reproducers, then 20 s of fuzzing
#   5. test/demo.sh, so that the README's first command cannot rot
# and stops everything again, also on failure or Ctrl-C.  Run as root.
#
# While working on one part: KIS_ONLY="regress behaviour" runs only those
# suites (of: mock regress behaviour soak fuzz demo), and
# KIS_BEHAVIOUR="name ..." only those behaviour tests.  The full run is CI's.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="$PWD"
only=" ${KIS_ONLY:-mock regress behaviour soak fuzz demo} "
want() { [[ "$only" == *" $1 "* ]]; }

source test/lib.sh
kis_prepare
kis_make_certs
kis_start_mock --token-interval 0
kis_start_cluster <<CONF
shared_preload_libraries = 'kis_fdw,pg_cron'
cron.database_name = 'postgres'
cron.use_background_workers = on
log_min_messages = debug1
kis_fdw.token_issue_interval = 0
CONF

status=0
passed=0
failed=0
count() {   # count "N passed, M failed" style results of one suite
    passed=$((passed + $1)); failed=$((failed + $2))
}

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
if ! kis_pg_regress; then
    status=1
    cat "$KIS_WORK/regress/regression.diffs" 2>/dev/null | head -300
fi
count "$(grep -cE '^(test|     ) .* \.\.\. ok' "$KIS_WORK/regress.log" || true)" \
      "$(grep -cE '\.\.\. FAILED' "$KIS_WORK/regress.log" || true)"
fi

# a suite that ends with "N passed, M failed": run it, show it, count it
run_counted() {
    local log="$KIS_WORK/$1.log"
    shift
    if ! "$@" 2>&1 | tee "$log"; then
        status=1
    fi
    local summary
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1 || true)
    if [ -n "$summary" ]; then
        count "$(echo "$summary" | cut -d' ' -f1)" "$(echo "$summary" | cut -d' ' -f3)"
    else
        count 0 1; status=1
    fi
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
    echo "FAIL fuzz"; tail -30 "$KIS_WORK/fuzz-build.log" "$KIS_WORK/fuzz-repro.log" "$KIS_WORK/fuzz.log" 2>/dev/null
    count 0 1; status=1
fi
fi

if want demo; then
echo "== demo (the README's first command, on its own cluster and mock)"
if bash test/demo.sh >"$KIS_WORK/demo.log" 2>&1 && grep -q "^Demo finished" "$KIS_WORK/demo.log" &&
    grep -q "every_row_refetched" "$KIS_WORK/demo.log" && ! grep -q "ERROR" "$KIS_WORK/demo.log"; then
    echo "ok demo"
    count 1 0
else
    echo "FAIL demo"; tail -40 "$KIS_WORK/demo.log"
    count 0 1; status=1
fi
fi

if [ $status -ne 0 ]; then
    echo "-- last lines of the server log:"
    tail -40 "$KIS_WORK/server.log"
fi
echo "kis_fdw: $passed passed, $failed failed"
exit $status
