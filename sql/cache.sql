--
-- cache: shared answers.  A table with cache_ttl_ms serves an answer
-- younger than that without a request, with the fetched_at of the answer
-- KIS gave; a table without it always asks.  Only a superuser may empty
-- the cache.
--
CREATE FOREIGN TABLE prices_cached (symbol text, price numeric, fetched_at timestamptz)
  SERVER kis OPTIONS (endpoint 'domestic_price', cache_ttl_ms '60000');

-- the option's range, on the server and the table
ALTER FOREIGN TABLE prices_cached OPTIONS (SET cache_ttl_ms '-1');
ALTER SERVER kis OPTIONS (ADD cache_ttl_ms 'soon');
ALTER SERVER kis OPTIONS (ADD cache_ttl_ms '0');
ALTER SERVER kis OPTIONS (DROP cache_ttl_ms);

-- earlier tests' answers are in the store too: start empty
SELECT kis_fdw_cache_reset() >= 0 AS emptied;

-- first: two requests; then none, both answers from the cache
SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT * FROM prices_cached WHERE symbol IN ('005930', '000660')
$$);
CREATE TEMP TABLE first_answers AS
  SELECT symbol, price, fetched_at FROM prices_cached WHERE symbol IN ('005930', '000660');
SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT * FROM prices_cached WHERE symbol IN ('005930', '000660')
$$);

-- a cached row is the answer KIS gave, and says when KIS gave it
SELECT c.symbol, c.price = f.price AS same_price, c.fetched_at = f.fetched_at AS same_fetched_at
FROM prices_cached c JOIN first_answers f USING (symbol)
WHERE c.symbol IN ('005930', '000660') ORDER BY 1;

-- a table without cache_ttl_ms asks KIS every time (no "KIS Cache Hits")
SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT * FROM kis_prices WHERE symbol IN ('005930', '000660')
$$);

-- the counters: hits per key, and the store's bytes
SELECT cache_hits > 0 AS hits, cache_bytes > 0 AS holds_answers
FROM kis_fdw_stats
WHERE key_hash = left(encode(sha256('PSregressAppKey000000000000000000000'::bytea), 'hex'), 12);

-- emptying it: privileged
CREATE ROLE kis_cache_user;
SET ROLE kis_cache_user;
SELECT kis_fdw_cache_reset();
RESET ROLE;
DROP ROLE kis_cache_user;
SELECT kis_fdw_cache_reset() > 0 AS emptied;
SELECT cache_bytes FROM kis_fdw_stats LIMIT 1;

-- after it, the same query asks KIS again
SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT * FROM prices_cached WHERE symbol IN ('005930', '000660')
$$);

DROP FOREIGN TABLE prices_cached;
