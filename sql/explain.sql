--
-- explain: the endpoint and the planned work, which query shapes batch,
-- and (with ANALYZE) the request counters.  Never a URL or a credential.
--
EXPLAIN (COSTS OFF)
SELECT * FROM kis_prices WHERE symbol IN ('005930', '000660', '035420');

EXPLAIN (COSTS OFF, VERBOSE)
SELECT symbol, price FROM kis_prices WHERE symbol = '005930' AND price > 0;

-- an InitPlan: one scan, symbols computed at scan start
SELECT neutral_explain($$
EXPLAIN (COSTS OFF)
SELECT * FROM kis_prices WHERE symbol = ANY (ARRAY(SELECT symbol FROM portfolio))
$$);

-- a join: the portfolio is read first, its symbols fetched in one batch
EXPLAIN (COSTS OFF)
SELECT p.symbol, q.price FROM portfolio p JOIN kis_prices q ON q.symbol = p.symbol;

-- with symbols given, the scan reads them in one batch itself
EXPLAIN (COSTS OFF)
SELECT p.symbol, q.price FROM portfolio p JOIN kis_prices q ON q.symbol = p.symbol
WHERE q.symbol IN ('005930', '000660');

-- estimated rows follow the number of symbols
EXPLAIN SELECT * FROM kis_prices WHERE symbol IN ('005930', '000660', '035420', '051910');

-- counters: one request per symbol, no retries; timings only with TIMING on
SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT * FROM kis_prices WHERE symbol IN ('005930', '000660', '035420')
$$);

SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT p.symbol, q.price FROM portfolio p JOIN kis_prices q ON q.symbol = p.symbol
$$);

-- a failing symbol is retried max_retries (1) times before on_error applies
CREATE FOREIGN TABLE prices_explain (symbol text, price numeric, error text)
  SERVER kis OPTIONS (endpoint 'domestic_price', on_error 'row');
SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT * FROM prices_explain WHERE symbol IN ('005930', '971234')
$$);

-- JSON format carries the same properties
SELECT neutral_explain($$
EXPLAIN (FORMAT JSON, COSTS OFF)
SELECT * FROM kis_prices WHERE symbol = '005930'
$$);

-- a UNION ALL of foreign scans: the branches run at the same time (async)
EXPLAIN (COSTS OFF)
SELECT symbol, price FROM kis_prices WHERE symbol IN ('005930', '000660')
UNION ALL
SELECT symbol, price FROM prices_explain WHERE symbol = '035420';

SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT symbol, price FROM kis_prices WHERE symbol IN ('005930', '000660')
UNION ALL
SELECT symbol, price FROM prices_explain WHERE symbol = '035420'
$$);

-- async_capable 'false' on a table (or its server) keeps it synchronous
ALTER FOREIGN TABLE prices_explain OPTIONS (ADD async_capable 'false');
EXPLAIN (COSTS OFF)
SELECT symbol, price FROM kis_prices WHERE symbol IN ('005930', '000660')
UNION ALL
SELECT symbol, price FROM prices_explain WHERE symbol = '035420';
