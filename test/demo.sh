#!/usr/bin/env bash
# test/demo.sh: the main job, end to end, on a throwaway cluster.
#
# With KIS_APP_KEY and KIS_APP_SECRET in the environment (KIS_ENV=real|virtual,
# default real) it queries the real KIS Open API; otherwise it starts the
# bundled mock KIS server and says so: the data is then simulated.
# Everything it starts is stopped at the end, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

source test/lib.sh
kis_prepare
kis_start_cluster <<< "shared_preload_libraries = 'kis_fdw'"

if [ -n "${KIS_APP_KEY:-}" ] && [ -n "${KIS_APP_SECRET:-}" ]; then
    env_name="${KIS_ENV:-real}"
    echo "Using the REAL KIS Open API (${env_name}); app key and secret from the environment."
    server_opts="environment '${env_name}'"
    app_key="$KIS_APP_KEY"
    app_secret="$KIS_APP_SECRET"
    account="${KIS_ACCOUNT:-}"
else
    kis_make_certs
    kis_start_mock --token-interval 0 --latency-ms 30 --jitter-ms 10
    echo "No KIS_APP_KEY/KIS_APP_SECRET in the environment: using the bundled MOCK KIS server."
    echo "All prices below are SIMULATED."
    server_opts="base_url '$KIS_MOCK_URL', ca_file '$KIS_MOCK_CA', ws_url '$KIS_MOCK_WS_URL', rate_limit '19'"
    app_key="PSdemoAppKey0000000000000000000000000"
    app_secret="demo-secret"
    account="12345678-01"
fi

account_opt=""
[ -n "$account" ] && account_opt=", account '$account'"

kis_psql -d postgres -v ON_ERROR_STOP=1 -q -v has_account="$([ -n "$account" ] && echo 1 || echo 0)" \
    -v app_key="$app_key" -v app_secret="$app_secret" <<SQL
\set ECHO queries
CREATE EXTENSION kis_fdw;
CREATE SERVER kis FOREIGN DATA WRAPPER kis_fdw OPTIONS ($server_opts);
\set ECHO none
CREATE USER MAPPING FOR CURRENT_USER SERVER kis OPTIONS (app_key :'app_key', app_secret :'app_secret'$account_opt);
\set ECHO queries
CREATE FOREIGN TABLE kis_prices (symbol text, price numeric, change numeric,
  change_rate numeric, volume bigint, fetched_at timestamptz)
  SERVER kis OPTIONS (endpoint 'domestic_price');

CREATE TABLE portfolio (symbol text PRIMARY KEY, qty int);
INSERT INTO portfolio VALUES ('005930', 10), ('000660', 3), ('035420', 7), ('051910', 2);

SELECT symbol, price, change_rate, volume
FROM kis_prices WHERE symbol IN ('005930', '000660', '035420') ORDER BY symbol;

SELECT p.symbol, p.qty, q.price, p.qty * q.price AS value
FROM portfolio p JOIN kis_prices q ON q.symbol = p.symbol ORDER BY value DESC;

SELECT sum(p.qty * q.price) AS portfolio_value
FROM portfolio p JOIN kis_prices q USING (symbol);

-- the join batches: the portfolio first, then all its symbols concurrently, with the counters
EXPLAIN (ANALYZE, COSTS OFF, SUMMARY OFF)
SELECT p.symbol, p.qty * q.price AS value FROM portfolio p JOIN kis_prices q USING (symbol);

-- a materialized view of quotes, refreshed (e.g. by cron or pg_cron)
CREATE MATERIALIZED VIEW quotes AS
  SELECT q.symbol, q.price, q.change_rate, q.fetched_at
  FROM portfolio p JOIN kis_prices q USING (symbol);
CREATE UNIQUE INDEX ON quotes (symbol);
SELECT symbol, price, change_rate FROM quotes ORDER BY symbol;
SELECT max(fetched_at) AS last_fetch FROM quotes \gset
REFRESH MATERIALIZED VIEW CONCURRENTLY quotes;
SELECT count(*) AS symbols, min(fetched_at) > :'last_fetch' AS every_row_refetched FROM quotes;
SELECT max(fetched_at) AS last_fetch FROM quotes \gset
REFRESH MATERIALIZED VIEW quotes;
SELECT count(*) AS symbols, min(fetched_at) > :'last_fetch' AS every_row_refetched FROM quotes;

-- every endpoint as a table, then the account's holdings (with KIS_ACCOUNT, or the mock's)
CREATE SCHEMA kis;
IMPORT FOREIGN SCHEMA kis FROM SERVER kis INTO kis;
SELECT endpoint, key_columns, symbols_per_request, paging FROM kis_fdw_endpoints();
\if :has_account
SELECT count(*) AS positions, sum(value) AS account_value, sum(profit) AS profit
FROM kis.domestic_holdings;
SELECT symbol, name, qty, avg_price, price, profit_rate
FROM kis.domestic_holdings ORDER BY value DESC LIMIT 5;
\endif

-- live quotes from KIS's WebSocket: the first read subscribes and waits for the first tick,
-- later reads come from shared memory without a request (source 'rest' outside trading hours)
SELECT p.symbol, p.qty, l.price, p.qty * l.price AS value, l.source
FROM portfolio p JOIN kis.domestic_live l USING (symbol) ORDER BY value DESC;
SELECT socket, subscriptions, ticks > 0 AS ticking FROM kis_fdw_live;

-- every request this cluster made, per app key (a hash prefix, never the key)
SELECT key_hash, shared, scans, requests, retries, rate_limited, tokens_issued,
       round(rate_wait_ms) AS rate_wait_ms
FROM kis_fdw_stats;
SQL
# a crash or an assertion failure in the server is the demo's failure too
kis_log_crashes 0
echo "Demo finished; the cluster and the mock are being stopped."
