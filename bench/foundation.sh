#!/usr/bin/env bash
# bench/foundation.sh: the figures of the foundation issue, measured on the
# mock in one run (numbers, not pass/fail):
#   - throughput: 200 symbols, no rate limit, no latency -> rows/s
#   - latency-bound: 200 symbols, 50 ms latency, max_concurrency 8 -> time vs
#     the ideal 200*0.05/8 s, and the mock's max in flight
#   - rate-bound: 60 symbols, mock limit 20/s, rate_limit 19 -> achieved rate, violations
set -euo pipefail
cd "$(dirname "$0")/.."
make -s && make -s install >/dev/null
source test/lib.sh
kis_workdir
trap kis_stop_all EXIT INT TERM
kis_make_certs
kis_start_mock --token-interval 0
kis_start_cluster </dev/null

mock() {  # mock control: mock PATH [JSON]
    "$KIS_PYTHON" - "$KIS_MOCK_URL" "$KIS_MOCK_CA" "$@" <<'PY'
import json, ssl, sys, urllib.request
url, ca, path = sys.argv[1:4]
body = sys.argv[4].encode() if len(sys.argv) > 4 else None
req = urllib.request.Request(url + path, data=body, method="POST" if body is not None else "GET")
print(urllib.request.urlopen(req, context=ssl.create_default_context(cafile=ca)).read().decode())
PY
}
stat() { mock /__mock/stats | "$KIS_PYTHON" -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
symbols() { "$KIS_PYTHON" -c "print('{' + ','.join('%06d' % (100000 + $1 + i) for i in range($2)) + '}')"; }

kis_psql -d postgres -q <<SQL
CREATE EXTENSION kis_fdw;
CREATE SERVER kis FOREIGN DATA WRAPPER kis_fdw
  OPTIONS (base_url '$KIS_MOCK_URL', ca_file '$KIS_MOCK_CA', rate_limit '0', max_concurrency '8');
CREATE USER MAPPING FOR CURRENT_USER SERVER kis OPTIONS (app_key 'PSbenchAppKey000000000000000000000000', app_secret 'bench');
CREATE FOREIGN TABLE kis_prices (symbol text, price numeric, volume bigint)
  SERVER kis OPTIONS (endpoint 'domestic_price');
SQL

# execution time (ms) of one scan, from EXPLAIN ANALYZE
run_ms() {
    kis_psql -d postgres -At -c "EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM kis_prices WHERE symbol = ANY ('$1')" |
        "$KIS_PYTHON" -c "import json,sys; print(json.load(sys.stdin)[0]['Execution Time'])"
}

echo "| scenario | figure |"
echo "|---|---|"

# throughput: five runs in fresh sessions (each issues its token first), best and median
mock /__mock/config '{"latency_ms": 0, "rate_limit": 0}' >/dev/null
times=()
for i in 1 2 3 4 5; do times+=("$(run_ms "$(symbols $((i * 1000)) 200)")"); done
"$KIS_PYTHON" - "${times[@]}" <<'PY'
import statistics, sys
t = sorted(float(x) for x in sys.argv[1:])
print(f"| 200 symbols, rate 0, latency 0: rows/s (median of 5) | {200 / statistics.median(t) * 1000:.0f} (median {statistics.median(t):.1f} ms, best {t[0]:.1f} ms) |")
PY

# latency-bound
mock /__mock/reset '{}' >/dev/null
mock /__mock/config '{"latency_ms": 50, "rate_limit": 0}' >/dev/null
ms=$(run_ms "$(symbols 20000 200)")
"$KIS_PYTHON" -c "print(f'| 200 symbols, 50 ms latency, concurrency 8: time / ideal 1250 ms | {$ms:.0f} ms ({1250 / $ms:.2f} of ideal), mock max in flight $(stat max_in_flight) |')"

# rate-bound
mock /__mock/reset '{}' >/dev/null
mock /__mock/config '{"latency_ms": 0, "rate_limit": 20}' >/dev/null
kis_psql -d postgres -q -c "ALTER SERVER kis OPTIONS (SET rate_limit '19')"
ms=$(run_ms "$(symbols 30000 60)")
"$KIS_PYTHON" -c "print(f'| 60 symbols, mock limit 20/s, rate_limit 19: achieved rate | {59 / ($ms / 1000):.2f}/s ({59 / ($ms / 1000) / 19:.3f} of 19), violations $(stat violations), requests $(stat requests) |')"
