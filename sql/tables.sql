--
-- tables: the tables of issue 14 part 2, as IMPORT FOREIGN SCHEMA makes
-- them: market_holidays (chk-holiday, real accounts only), domestic_minute
-- (today's minute bars).  The mock's calendar closes weekends, 01-01, 03-01,
-- 05-05, 06-06, 08-15, 10-03, 10-09, 12-25, and does not trade on 12-31
-- (test/mock_kis.py).
--
CREATE SCHEMA kis_new;
IMPORT FOREIGN SCHEMA kis LIMIT TO (market_holidays, domestic_minute)
  FROM SERVER kis INTO kis_new;
\d kis_new.market_holidays
\d kis_new.domestic_minute
SET search_path = kis_new, public;

-- market_holidays: a date range; 24 days a page in the mock as in KIS, so 1 page
-- (trading_day is KIS's tr_day_yn: Y on weekends and holidays too, as in real
-- answers; market_open says whether the exchange trades)
SELECT date, weekday, business_day, trading_day, market_open, settlement_day
FROM market_holidays WHERE date BETWEEN '2025-12-24' AND '2026-01-05' ORDER BY date;
SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT * FROM market_holidays WHERE date >= '2025-01-01' AND date < '2025-03-01'
$$);
SELECT count(*), count(*) FILTER (WHERE market_open) AS open_days
FROM market_holidays WHERE date >= '2025-01-01' AND date < '2025-03-01';
-- the days the market is closed in a year (no weekends)
SELECT date FROM market_holidays
WHERE date >= '2025-01-01' AND date <= '2025-12-31' AND NOT market_open
  AND extract(isodow FROM date) < 6
ORDER BY date;
-- date IN: the range from the first to the last, filtered
SELECT date, market_open FROM market_holidays
WHERE date IN ('2025-12-25', '2025-12-26', '2026-01-01') ORDER BY date;
-- a reversed range is empty, as for daily tables
SELECT count(*) FROM market_holidays WHERE date > '2026-01-10' AND date < '2026-01-05';
-- before today without a lower bound: the calendar starts today
SELECT count(*) FROM market_holidays WHERE date < '2020-01-01';
-- without an upper bound the calendar pages to KIS's last day, 50 pages at most
-- (24 days a page: a lower bound six years back needs more)
SELECT count(*) FROM market_holidays WHERE date >= '2020-01-01';
-- the virtual environment has no holiday inquiry
CREATE SERVER kis_virtual FOREIGN DATA WRAPPER kis_fdw
  OPTIONS (environment 'virtual', base_url 'http://127.0.0.1:1');
CREATE FOREIGN TABLE virtual_holidays (date date, market_open boolean)
  SERVER kis_virtual OPTIONS (endpoint 'market_holidays');
SELECT * FROM virtual_holidays WHERE date >= '2025-01-01' AND date < '2025-02-01';
-- nor multi-symbol prices (intstock-multprice is real only, docs/kis-api.md)
CREATE FOREIGN TABLE virtual_multi (symbol text, price numeric)
  SERVER kis_virtual OPTIONS (endpoint 'domestic_multi_price');
SELECT * FROM virtual_multi WHERE symbol = '005930';
DROP SERVER kis_virtual CASCADE;

-- domestic_minute: a symbol is needed; bars depend on the time of day (kis_fdw
-- asks for those up to now), so only their shape is checked here
-- (test/behaviour/tables.py counts the pages).  The mock's session runs all day
-- (--minute-session 0000-2359, as test/run-tests.sh starts it): there is a
-- bar at whatever hour the test runs.
SELECT * FROM domestic_minute;
EXPLAIN (COSTS OFF) SELECT * FROM domestic_minute WHERE symbol = '005930';
SELECT count(*) = count(DISTINCT time) AS one_bar_a_minute,
       bool_and(low <= least(open, close) AND high >= greatest(open, close)) AS bars_consistent,
       bool_and(symbol = '005930' AND market = 'J') AS keys,
       count(*) > 0 AND count(DISTINCT date) = 1 AS one_day
FROM domestic_minute WHERE symbol = '005930';
SELECT count(*) FROM domestic_minute WHERE symbol = '991234';
SELECT symbol FROM domestic_minute WHERE symbol = '981234';
SELECT * FROM domestic_minute WHERE symbol = '005930' AND market = 'X';

RESET search_path;
DROP SCHEMA kis_new CASCADE;

-- domestic_symbols: the stock master files, one download per market (the
-- mock serves them under the same URL, /common/master)
\getenv mock_url KIS_MOCK_URL
\set master_url :mock_url '/common/master'
ALTER SERVER kis OPTIONS (ADD master_url :'master_url');
CREATE SCHEMA kis_sym;
IMPORT FOREIGN SCHEMA kis LIMIT TO (domestic_symbols) FROM SERVER kis INTO kis_sym;
\d kis_sym.domestic_symbols
SET search_path = kis_sym, public;
SELECT market, count(*), count(DISTINCT symbol), min(symbol), max(symbol)
FROM domestic_symbols GROUP BY market ORDER BY market;
-- names in the database encoding; useful flags
SELECT symbol, standard_code, name, market, group_code, base_price, lot_size, halted,
       administrative, par_value, preferred_code
FROM domestic_symbols WHERE name LIKE '삼성%' ORDER BY symbol;
-- a market condition limits the downloads (kept in the answer store for
-- 10 minutes: forgotten first, so that they show as requests)
SELECT FROM kis_fdw_cache_reset();
SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT * FROM domestic_symbols WHERE market = 'KOSDAQ'
$$);
SELECT FROM kis_fdw_cache_reset();
SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT * FROM domestic_symbols
$$);
-- the same again: served from the store, nothing downloaded
SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT * FROM domestic_symbols
$$);
SELECT market, count(*) FROM domestic_symbols WHERE market IN ('KONEX', 'KOSDAQ')
GROUP BY market ORDER BY market;
SELECT symbol, name FROM domestic_symbols WHERE market = 'KONEX' AND symbol = '217320';
-- names joined to quotes (domestic_price has no name)
SELECT s.symbol, s.name, p.price > 0 AS priced
FROM domestic_symbols s JOIN kis_all.domestic_price p ON p.symbol = s.symbol
WHERE s.market = 'KOSPI' AND s.name LIKE '삼성%'
  AND p.symbol = ANY (ARRAY(SELECT symbol FROM domestic_symbols
                            WHERE market = 'KOSPI' AND name LIKE '삼성%'))
ORDER BY 1;
SELECT * FROM domestic_symbols WHERE market = 'J';
ALTER SERVER kis OPTIONS (SET master_url 'http://example.com/master');
ALTER SERVER kis OPTIONS (DROP master_url);
RESET search_path;
DROP SCHEMA kis_sym CASCADE;
