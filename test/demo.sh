#!/usr/bin/env bash
# test/demo.sh: the main job, end to end, on a throwaway cluster.
#
# With KIS_APP_KEY and KIS_APP_SECRET in the environment (KIS_ENV=real|virtual,
# default real) it queries the real KIS Open API; otherwise it starts the
# bundled mock KIS server and says so: the data is then simulated.
# Everything it starts is stopped at the end, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
make -s
make -s install >/dev/null

source test/lib.sh
kis_workdir
trap kis_stop_all EXIT INT TERM
kis_start_cluster </dev/null

if [ -n "${KIS_APP_KEY:-}" ] && [ -n "${KIS_APP_SECRET:-}" ]; then
    env_name="${KIS_ENV:-real}"
    echo "Using the REAL KIS Open API (${env_name}); app key and secret from the environment."
    server_opts="environment '${env_name}'"
    app_key="$KIS_APP_KEY"
    app_secret="$KIS_APP_SECRET"
else
    kis_make_certs
    kis_start_mock --token-interval 0 --latency-ms 30 --jitter-ms 10
    echo "No KIS_APP_KEY/KIS_APP_SECRET in the environment: using the bundled MOCK KIS server."
    echo "All prices below are SIMULATED."
    server_opts="base_url '$KIS_MOCK_URL', ca_file '$KIS_MOCK_CA', rate_limit '19'"
    app_key="PSdemoAppKey0000000000000000000000000"
    app_secret="demo-secret"
fi

kis_psql -d postgres -v ON_ERROR_STOP=1 -q \
    -v app_key="$app_key" -v app_secret="$app_secret" <<SQL
\set ECHO queries
CREATE EXTENSION kis_fdw;
CREATE SERVER kis FOREIGN DATA WRAPPER kis_fdw OPTIONS ($server_opts);
\set ECHO none
CREATE USER MAPPING FOR CURRENT_USER SERVER kis OPTIONS (app_key :'app_key', app_secret :'app_secret');
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
FROM portfolio p
JOIN kis_prices q ON q.symbol = p.symbol
WHERE q.symbol = ANY (ARRAY(SELECT symbol FROM portfolio));

EXPLAIN (ANALYZE, COSTS OFF, SUMMARY OFF)
SELECT * FROM kis_prices WHERE symbol = ANY (ARRAY(SELECT symbol FROM portfolio));
SQL
echo "Demo finished; the cluster and the mock are being stopped."
