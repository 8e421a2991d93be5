#!/usr/bin/env bash
# test/installcheck.sh: `make installcheck` (the pg_regress tests) against a
# kis_fdw that is already installed, e.g. from the Debian package, in the
# PostgreSQL that $PG_CONFIG names (default: pg_config on PATH).  Nothing is
# built or installed here: it starts the TLS mock KIS server and a fresh
# throwaway cluster of that PostgreSQL (kis_fdw preloaded), runs installcheck
# against it and stops both.  Run as root.  docs/testing.md says how to run
# installcheck against a server of your own instead.
set -euo pipefail
cd "$(dirname "$0")/.."
source test/lib.sh
KIS_PGBIN="$("$KIS_PG_CONFIG" --bindir)"
kis_workdir
trap kis_stop_all EXIT INT TERM
kis_make_certs
kis_start_mock --token-interval 0 --minute-session 0000-2359
kis_start_cluster <<CONF
shared_preload_libraries = 'kis_fdw'
kis_fdw.token_issue_interval = 0
CONF
echo "== installcheck against $(kis_psql -Atc 'SELECT version()' postgres)"
echo "   kis_fdw from $("$KIS_PG_CONFIG" --pkglibdir)/kis_fdw.so"
# pg_regress writes results/ here: a copy of the tests the postgres user owns
dir="$KIS_WORK/installcheck"
mkdir -p "$dir"
cp -r Makefile sql expected test "$dir/"
mkdir -p "$dir/src"
chown -R postgres: "$dir"
status=0
kis_as_postgres env KIS_MOCK_URL="$KIS_MOCK_URL" KIS_MOCK_CA="$KIS_MOCK_CA" KIS_MOCK_WS_URL="$KIS_MOCK_WS_URL" \
    PGHOST="$KIS_PGHOST" PGPORT="$KIS_PGPORT" PGUSER=postgres \
    make -C "$dir" -s PG_CONFIG="$KIS_PG_CONFIG" installcheck >"$KIS_WORK/installcheck.log" 2>&1 || status=1
cat "$KIS_WORK/installcheck.log"
[ $status -eq 0 ] || cat "$dir/regression.diffs" 2>/dev/null | head -200
passed=$(grep -cE '^(ok [0-9]+ |(test|     ) .* \.\.\. ok)' "$KIS_WORK/installcheck.log" || true)
failed=$(grep -cE '^not ok [0-9]+ |\.\.\. FAILED' "$KIS_WORK/installcheck.log" || true)
[ "$passed" -gt 0 ] || status=1
if ! kis_log_crashes 0; then
    failed=$((failed + 1)); status=1
fi
echo "installcheck: $passed passed, $failed failed"
exit $status
