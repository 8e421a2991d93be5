#!/usr/bin/env bash
# test/sqlsmith/run.sh [QUERIES [SEED,...]]: sqlsmith's random queries against
# kis tables over the mock, on a cluster of their own (test/sqlsmith/run.py
# says what is checked).  Default: 1000 queries, seed 1.
#
# Inside test/run-tests.sh (suite "sqlsmith") it uses that run's mock and
# cluster (the latter for sqlsmith's error log); alone (make fuzz-sql) it
# builds and starts them itself.  The target cluster runs with kis_fdw
# preloaded; a crash there restarts only its own sessions.
set -euo pipefail
cd "$(dirname "$0")/../.."
queries="${1:-1000}"
seeds="${2:-1}"

source test/lib.sh
alone=0
if [ -z "${KIS_MOCK_URL:-}" ]; then
    alone=1
    kis_prepare
    kis_make_certs
    kis_start_mock --token-interval 0 --minute-session 0000-2359
    kis_start_cluster </dev/null
fi
command -v sqlsmith >/dev/null || { echo "sqlsmith is not installed (scripts/install-deps.sh)" >&2; exit 1; }

# the target cluster, beside the run's own
dir="$KIS_WORK/smith"
mkdir -p "$dir"
chown postgres: "$dir" 2>/dev/null || true
port="$(kis_free_port)"
kis_as_postgres "$KIS_PGBIN/initdb" -D "$dir/data" --auth=trust --no-sync -E UTF8 --locale=C -U postgres \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
kis_as_postgres tee -a "$dir/data/postgresql.conf" >/dev/null <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$KIS_WORK'
fsync = off
shared_preload_libraries = 'kis_fdw'
kis_fdw.token_issue_interval = 0
# the log keeps crashes and TRAPs, not each random query's ERROR
log_min_messages = log
log_min_error_statement = panic
restart_after_crash = on
CONF
kis_as_postgres "$KIS_PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
stop_target() {
    kis_as_postgres "$KIS_PGBIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
}
finish() {
    local rc=$?
    set +e
    stop_target
    # alone: everything else too, the work directory kept when this failed
    if [ "$alone" = 1 ]; then
        (exit "$rc")
        kis_stop_all
    fi
}
trap finish EXIT INT TERM

export KIS_SMITH_HOST="$KIS_WORK" KIS_SMITH_PORT="$port" KIS_SMITH_LOG="$dir/server.log"
KIS_MOCK_URL="$KIS_MOCK_URL" KIS_MOCK_CA="$KIS_MOCK_CA" KIS_MOCK_WS_URL="$KIS_MOCK_WS_URL" \
    "$KIS_PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$KIS_WORK" -p "$port" -U postgres -d postgres \
    -c "CREATE DATABASE kis_smith" >/dev/null
KIS_MOCK_URL="$KIS_MOCK_URL" KIS_MOCK_CA="$KIS_MOCK_CA" KIS_MOCK_WS_URL="$KIS_MOCK_WS_URL" \
    "$KIS_PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$KIS_WORK" -p "$port" -U postgres -d kis_smith \
    -f test/sqlsmith/schema.sql >/dev/null

"$KIS_PYTHON" test/sqlsmith/run.py --queries "$queries" --seeds "$seeds" \
    ${SQLSMITH_SAMPLE:+--sample "$SQLSMITH_SAMPLE"}
