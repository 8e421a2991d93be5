--
-- endpoints: the tables IMPORT FOREIGN SCHEMA made (schema kis_all), read
-- against the mock.  The mock's "today" is 2025-12-30 and its bars are
-- weekdays from 2015-01-02 on (test/mock_kis.py).
--
SET search_path = kis_all, public;

-- domestic_multi_price: same prices as domestic_price, up to 30 symbols a request
SELECT m.symbol, m.name, m.price, m.price = p.price AS same_as_single
FROM domestic_multi_price m JOIN domestic_price p USING (symbol)
WHERE m.symbol IN ('005930', '000660', '035420') AND p.symbol IN ('005930', '000660', '035420')
ORDER BY 1;
-- 90 symbols: 3 requests
SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT * FROM domestic_multi_price
WHERE symbol = ANY (ARRAY(SELECT lpad((100000 + 7 * i)::text, 6, '0') FROM generate_series(1, 90) i))
$$);
SELECT count(*), count(DISTINCT symbol)
FROM domestic_multi_price
WHERE symbol = ANY (ARRAY(SELECT lpad((100000 + 7 * i)::text, 6, '0') FROM generate_series(1, 90) i));
-- one symbol on two markets: batches name rows by symbol only, so each market
-- goes in its own batch and gets its own price (NX is 10 above J in the mock)
SELECT m.symbol, m.market, m.price, m.price = p.price AS same_as_single
FROM domestic_multi_price m JOIN domestic_price p USING (symbol, market)
WHERE m.symbol = '005930' AND m.market IN ('J', 'NX') AND p.symbol = '005930' AND p.market IN ('J', 'NX')
ORDER BY 2;
-- KIS documents J and NX for intstock-multprice, no UN: refused before sending
SELECT symbol, price FROM domestic_multi_price WHERE symbol = '005930' AND market = 'UN';
-- an unknown symbol in a batch is that symbol's failure only
SELECT symbol, price, error FROM domestic_multi_price
WHERE symbol IN ('005930', '991234') ORDER BY 1;
ALTER FOREIGN TABLE domestic_multi_price OPTIONS (ADD on_error 'row');
SELECT symbol, price, error FROM domestic_multi_price
WHERE symbol IN ('005930', '991234') ORDER BY 1;

-- overseas_price: exchange from the table option (NAS) or a condition
SELECT symbol, exchange, price, change_rate, realtime_symbol
FROM overseas_price WHERE symbol IN ('AAPL', 'MSFT') ORDER BY 1;
SELECT symbol, exchange, price FROM overseas_price WHERE symbol = 'IBM' AND exchange = 'NYS';
SELECT symbol, exchange, price FROM overseas_price WHERE symbol = 'IBM';
ALTER FOREIGN TABLE overseas_price OPTIONS (ADD on_error 'skip');
SELECT symbol, exchange, price FROM overseas_price
WHERE symbol IN ('IBM', 'AAPL') AND exchange IN ('NAS', 'NYS') ORDER BY 1;
-- real answers send diff without its sign: the direction comes from sign
-- (5 down, 2 up, 0 flat) or rate ("-1.41", "+1.52", " 0.00" with a blank)
SELECT symbol, change, change_sign, change_rate, price - change AS base, base_price
FROM overseas_price WHERE symbol IN ('AAPL', 'MSFT', 'AGO') AND exchange = 'NAS' ORDER BY 1;
CREATE FOREIGN TABLE overseas_diff_text (symbol text, diff text OPTIONS (field 'diff'),
  rate text OPTIONS (field 'rate'))
  SERVER kis OPTIONS (endpoint 'overseas_price');
SELECT symbol, diff, rate FROM overseas_diff_text WHERE symbol IN ('AAPL', 'AGO') ORDER BY 1;
SELECT * FROM overseas_price WHERE symbol = 'AAPL' AND exchange = 'NASDAQ';
SELECT * FROM overseas_price WHERE symbol = 'aapl';

-- domestic_daily: a month of weekdays, newest first from KIS, ordered here
SELECT symbol, date, open, high, low, close, volume, name
FROM domestic_daily WHERE symbol = '005930' AND date BETWEEN '2025-01-01' AND '2025-01-10'
ORDER BY date;
SELECT count(*) FROM domestic_daily
WHERE symbol = '005930' AND date >= '2025-01-01' AND date < '2025-02-01';
-- 300 weekdays: 3 pages of 100 for each symbol, no duplicates, all present
SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT * FROM domestic_daily
WHERE symbol IN ('005930', '000660') AND date BETWEEN '2024-11-04' AND '2025-12-26'
$$);
SELECT symbol, count(*), count(DISTINCT date), min(date), max(date)
FROM domestic_daily
WHERE symbol IN ('005930', '000660') AND date BETWEEN '2024-11-04' AND '2025-12-26'
GROUP BY symbol ORDER BY symbol;
-- a year of bars: how many requests
SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT * FROM domestic_daily WHERE symbol = '005930' AND date >= '2025-01-01' AND date <= '2025-12-30'
$$);
-- no date condition: every bar, back to the first
SELECT count(*), max(date) FROM domestic_daily WHERE symbol = '005930';
-- one day, an open range, a reversed range, a range after today
SELECT date, close FROM domestic_daily WHERE symbol = '005930' AND date = '2025-06-02';
SELECT count(*) FROM domestic_daily WHERE symbol = '005930' AND date > '2025-12-24';
SELECT * FROM domestic_daily WHERE symbol = '005930' AND date BETWEEN '2025-02-01' AND '2025-01-01';
SELECT count(*) FROM domestic_daily WHERE symbol = '005930' AND date >= '2031-01-01';
-- comparisons with a timestamp or timestamptz bound the range by their day
-- (and stay local filters): the same rows as the date comparison
SELECT count(*) FROM domestic_daily WHERE symbol = '005930' AND date >= '2024-01-01';
SELECT count(*) FROM domestic_daily WHERE symbol = '005930' AND date >= '2024-01-01'::timestamp;
SELECT count(*) FROM domestic_daily WHERE symbol = '005930' AND '2024-01-01 12:00'::timestamptz <= date
  AND date < '2024-02-01'::timestamp;
SELECT count(*) FROM domestic_daily
WHERE symbol = '005930' AND date > '2025-12-30'::timestamptz - interval '1 month';
-- bounds given as parameters are checked like constants (custom and generic plans)
PREPARE bars(date, date) AS
  SELECT count(*) FROM domestic_daily WHERE symbol = '005930' AND date BETWEEN $1 AND $2;
EXECUTE bars('2025-02-01', '2025-01-01');
EXECUTE bars('2025-01-01', '2025-01-31');
SET plan_cache_mode = force_generic_plan;
EXECUTE bars('2025-02-01', '2025-01-01');
RESET plan_cache_mode;
DEALLOCATE bars;
-- bounds that come from other rows and cross match nothing, as in any SQL
CREATE TEMP TABLE windows (d1 date, d2 date);
INSERT INTO windows VALUES ('2025-01-01', '2025-01-31'), ('2025-02-01', '2025-01-01');
SELECT d1, d2, (SELECT count(*) FROM domestic_daily d
                WHERE d.symbol = '005930' AND d.date >= w.d1 AND d.date <= w.d2) AS bars
FROM windows w ORDER BY d1;
-- weekly bars, and original (unadjusted) prices
CREATE FOREIGN TABLE daily_weekly (symbol text, date date, close numeric)
  SERVER kis OPTIONS (endpoint 'domestic_daily', period 'W');
SELECT date, extract(isodow FROM date) AS dow FROM daily_weekly
WHERE symbol = '005930' AND date BETWEEN '2025-01-01' AND '2025-01-31' ORDER BY date;
CREATE FOREIGN TABLE daily_original (symbol text, date date, close numeric)
  SERVER kis OPTIONS (endpoint 'domestic_daily', adjusted 'false');
SELECT a.date, o.close / a.close AS ratio
FROM domestic_daily a JOIN daily_original o USING (symbol, date)
WHERE a.symbol = '005930' AND o.symbol = '005930'
  AND a.date BETWEEN '2024-12-30' AND '2025-01-02' AND o.date BETWEEN '2024-12-30' AND '2025-01-02'
ORDER BY 1;

-- overseas_daily: paged by BYMD, rows outside the range dropped
SELECT count(*), count(DISTINCT date), min(date), max(date)
FROM overseas_daily WHERE symbol = 'AAPL' AND date BETWEEN '2025-01-01' AND '2025-12-30';
SELECT date, open, high, low, close FROM overseas_daily
WHERE symbol = 'IBM' AND exchange = 'NYS' AND date BETWEEN '2025-03-03' AND '2025-03-05' ORDER BY date;
-- each bar's change is its close minus the previous close, down days negative
SELECT count(*) AS bars, count(*) FILTER (WHERE change < 0) > 0 AS has_down_days,
       count(*) FILTER (WHERE change = close - prev) AS change_right,
       count(*) FILTER (WHERE sign(change) = sign(change_rate)) AS rate_agrees
FROM (SELECT change, change_rate, close, lag(close) OVER (ORDER BY date) AS prev
      FROM overseas_daily WHERE symbol = 'AAPL' AND date BETWEEN '2025-06-02' AND '2025-07-31') d
WHERE prev IS NOT NULL;
-- the first bar has no previous close: flat, sign 3, rate " 0.00"
SELECT date, change, change_sign, change_rate FROM overseas_daily
WHERE symbol = 'AAPL' AND date BETWEEN '2015-01-01' AND '2015-01-05' ORDER BY date;
CREATE FOREIGN TABLE overseas_yearly (symbol text, date date)
  SERVER kis OPTIONS (endpoint 'overseas_daily', period 'Y');
SELECT * FROM overseas_yearly WHERE symbol = 'AAPL';

-- domestic_orderbook: ten levels and the expected execution from output2
SELECT symbol, ask1, ask10, bid1, bid10, ask_qty1 > 0 AS has_qty,
       total_ask_qty > 0 AS has_total, expected_price, price
FROM domestic_orderbook WHERE symbol = '005930';

-- a symbol KIS does not know has no order book: not a row of zeros
SELECT symbol, ask1, bid1 FROM domestic_orderbook WHERE symbol = '991234';

-- domestic_holdings: needs the mapping's account; pages of 50 until tr_cont says last
SELECT count(*) FROM domestic_holdings;
ALTER USER MAPPING FOR CURRENT_USER SERVER kis OPTIONS (ADD account '12345678-01');
SELECT neutral_explain($$EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT * FROM domestic_holdings$$);
SELECT count(*), count(DISTINCT symbol), sum(qty) FROM domestic_holdings;
SELECT symbol, name, qty, avg_price, price, value FROM domestic_holdings ORDER BY symbol LIMIT 3;
-- reconcile: holdings valued at current quotes, in one batch
SELECT count(*) AS positions, sum(h.qty * q.price) = sum(h.value) AS values_agree
FROM domestic_holdings h
JOIN domestic_multi_price q ON q.symbol = h.symbol
WHERE q.symbol = ANY (ARRAY(SELECT symbol FROM domestic_holdings));
ALTER USER MAPPING FOR CURRENT_USER SERVER kis OPTIONS (SET account '99999999-01');
SELECT count(*) FROM domestic_holdings;
-- an account with no positions: KIS answers KIOK0560 with output1 [], zero rows
ALTER USER MAPPING FOR CURRENT_USER SERVER kis OPTIONS (SET account '00000000-01');
SELECT count(*) FROM domestic_holdings;
ALTER USER MAPPING FOR CURRENT_USER SERVER kis OPTIONS (DROP account);
RESET search_path;
