--
-- daily: a daily table's result never depends on which date conditions were
-- pushed down.  Without a lower bound on "date" the scan pages back to the
-- first bar (the mock's bars are weekdays from 2015-01-02 to its "today",
-- 2025-12-30: 2868 of them); "date IN (...)" is pushed down as a set of days.
--
SET search_path = kis_all, public;

-- no date condition, an upper bound only, conditions not pushed down:
-- every bar, not the newest 100
SELECT count(*), min(date), max(date) FROM domestic_daily WHERE symbol = '005930';
SELECT count(*), min(date), max(date) FROM domestic_daily
WHERE symbol = '005930' AND date <= '2024-12-31';
SELECT count(*), min(date), max(date) FROM domestic_daily
WHERE symbol = '005930' AND date::timestamp >= '2020-01-01';
SELECT count(*), min(date), max(date) FROM domestic_daily
WHERE symbol = '005930' AND extract(year FROM date) = 2020;
SELECT count(*), min(date), max(date) FROM overseas_daily
WHERE symbol = 'AAPL' AND date < '2016-01-01';
-- 29 pages: the last one short
SELECT neutral_explain($$
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, BUFFERS OFF)
SELECT * FROM domestic_daily WHERE symbol = '005930' AND date <= '2025-12-30'
$$);
-- weekly bars: the whole history, 6 pages
CREATE FOREIGN TABLE daily_weekly_all (symbol text, date date, close numeric)
  SERVER kis OPTIONS (endpoint 'domestic_daily', period 'W');
SELECT count(*), min(date), max(date) FROM daily_weekly_all WHERE symbol = '000660';

-- date IN (...): days far apart are asked one by one (a day after today
-- not at all); days close together by one request over their range, the
-- IN list filtering it
SELECT symbol, date, close FROM domestic_daily
WHERE symbol = '005930' AND date IN ('2020-01-02', '2026-06-01');
SELECT neutral_explain($$
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, BUFFERS OFF)
SELECT symbol, date FROM domestic_daily
WHERE symbol IN ('005930', '000660') AND date IN ('2016-03-02', '2020-01-02', '2024-07-01')
$$);
SELECT symbol, date FROM domestic_daily
WHERE symbol IN ('005930', '000660') AND date IN ('2016-03-02', '2020-01-02', '2024-07-01')
ORDER BY 1, 2;
SELECT neutral_explain($$
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, BUFFERS OFF)
SELECT date FROM domestic_daily
WHERE symbol = '005930' AND date = ANY ('{2025-12-01,2025-12-03,2025-12-05,2025-12-06}')
$$);
SELECT date FROM domestic_daily
WHERE symbol = '005930' AND date = ANY ('{2025-12-01,2025-12-03,2025-12-05,2025-12-06}')
ORDER BY date;
-- the same rows as the days asked alone
SELECT (SELECT close FROM domestic_daily WHERE symbol = '005930' AND date = '2020-01-02') =
       (SELECT close FROM domestic_daily
        WHERE symbol = '005930' AND date IN ('2020-01-02', '2026-06-01')) AS same_close;
-- with other bounds: days outside them match nothing; NULLs and an empty
-- list match nothing; two IN lists must both hold
SELECT count(*) FROM domestic_daily
WHERE symbol = '005930' AND date >= '2025-01-01' AND date IN ('2020-01-02', '2021-01-04');
SELECT date FROM domestic_daily
WHERE symbol = '005930' AND date >= '2020-01-01' AND date IN ('2019-12-31', '2020-01-02', NULL);
SELECT count(*) FROM domestic_daily WHERE symbol = '005930' AND date = ANY ('{}'::date[]);
SELECT date FROM domestic_daily
WHERE symbol = '005930' AND date IN ('2020-01-02', '2020-01-03')
  AND date = ANY ('{2020-01-03,2021-01-04}');
-- a parameter, in a generic plan; overseas too
PREPARE days(date[]) AS
  SELECT symbol, date FROM overseas_daily WHERE symbol = 'AAPL' AND date = ANY ($1) ORDER BY date;
SET plan_cache_mode = force_generic_plan;
EXECUTE days('{2015-01-02,2025-12-30}');
RESET plan_cache_mode;
DEALLOCATE days;

-- bounds with no day between them match nothing, as when they are not
-- pushed down, whether they cross as written or only once > and < are days
SELECT count(*) FROM domestic_daily
WHERE symbol = '005930' AND date > '2024-01-05' AND date < '2024-01-06';
SELECT count(*) FROM domestic_daily
WHERE symbol = '005930' AND date > '2024-01-05' AND date + 0 < '2024-01-06';
SELECT count(*) FROM domestic_daily
WHERE symbol = '005930' AND date >= '2024-01-05' AND date < '2024-01-05';
SELECT count(*) FROM domestic_daily
WHERE symbol = '005930' AND date > '2024-01-06' AND date < '2024-01-05';
