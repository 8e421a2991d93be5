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

-- every custom property, in every format, with one type each.  The JSON
-- plan's KIS properties (and the batched join's filters), node by node,
-- with their JSON types; timings read "N"
CREATE FUNCTION kis_explain_properties(query text)
RETURNS TABLE (node text, property text, type text, value text)
LANGUAGE plpgsql AS $fn$
DECLARE
  plan jsonb;
BEGIN
  EXECUTE query INTO plan;
  RETURN QUERY
  WITH RECURSIVE nodes(n, path) AS (
    SELECT plan -> 0 -> 'Plan', '0'
    UNION ALL
    SELECT c.value, nodes.path || '.' || c.ordinality
    FROM nodes, jsonb_array_elements(nodes.n -> 'Plans') WITH ORDINALITY c
  )
  SELECT nodes.path || ' ' || (nodes.n ->> 'Node Type'), p.key, jsonb_typeof(p.value),
         CASE WHEN p.key IN ('KIS Rate Wait', 'KIS HTTP Time') THEN 'N' ELSE p.value #>> '{}' END
  FROM nodes, jsonb_each(nodes.n) p
  WHERE p.key LIKE 'KIS %'
     OR (nodes.n ->> 'Node Type' = 'Custom Scan' AND p.key IN ('One-Time Filter', 'Join Filter', 'Filter'))
  ORDER BY nodes.path, p.key;
END
$fn$;

CREATE FOREIGN TABLE daily_explain (symbol text, date date, close numeric)
  SERVER kis OPTIONS (endpoint 'domestic_daily');
CREATE FOREIGN TABLE prices_explain_cached (symbol text, price numeric)
  SERVER kis OPTIONS (endpoint 'domestic_price', cache_ttl_ms '60000');
CREATE TABLE prices_explain_parts (symbol text, price numeric) PARTITION BY LIST (symbol);
CREATE FOREIGN TABLE prices_explain_a PARTITION OF prices_explain_parts
  FOR VALUES IN ('005930', '000660') SERVER kis OPTIONS (endpoint 'domestic_price');
CREATE FOREIGN TABLE prices_explain_b PARTITION OF prices_explain_parts
  DEFAULT SERVER kis OPTIONS (endpoint 'domestic_price');
SELECT kis_fdw_cache_reset() >= 0 AS emptied;

CREATE TEMP TABLE explain_shapes (shape text, query text);
INSERT INTO explain_shapes VALUES
  ('scan', $$SELECT * FROM kis_prices WHERE symbol IN ('005930', '000660')$$),
  ('scan, symbols at scan start',
   $$SELECT * FROM kis_prices WHERE symbol = ANY (ARRAY(SELECT symbol FROM portfolio))$$),
  ('scan, paged by date', $$SELECT * FROM daily_explain
    WHERE symbol = '005930' AND date BETWEEN '2025-12-01' AND '2025-12-05'$$),
  ('scan, cached', $$SELECT * FROM prices_explain_cached WHERE symbol IN ('005930', '000660')$$),
  ('batched join', $$SELECT p.symbol, q.price FROM portfolio p
    LEFT JOIN kis_prices q ON q.symbol = p.symbol AND q.price > p.qty
    WHERE q.price IS NULL OR q.price > p.qty * 1000$$),
  ('batched join, reused', $$SELECT n, (SELECT sum(q.price) FROM portfolio p
    JOIN kis_prices q ON q.symbol = p.symbol WHERE p.qty > n) FROM generate_series(0, 2) n$$),
  ('batched join, partitions', $$SELECT p.symbol, q.price FROM portfolio p
    JOIN prices_explain_parts q USING (symbol)$$);
CREATE TEMP TABLE explain_props AS
SELECT s.shape, a.analyzed, e.*
FROM explain_shapes s, (VALUES ('OFF'), ('ON')) a(analyzed),
  LATERAL kis_explain_properties(format('EXPLAIN (FORMAT JSON, ANALYZE %s, TIMING %s, '
    'BUFFERS OFF, COSTS OFF, SUMMARY OFF) %s', a.analyzed, a.analyzed, s.query)) e;
SELECT shape, analyzed, node, property, type, value FROM explain_props
ORDER BY shape, analyzed, node, property;
-- one type per property, whatever the plan (a property of two types
-- would list both)
SELECT property, string_agg(DISTINCT type, ', ') AS types, count(DISTINCT shape) AS shapes
FROM explain_props GROUP BY property ORDER BY property;

-- the same properties in the four formats, with TIMING ON: a scan and a
-- batched join into partitions
SELECT e.line AS explain
FROM (VALUES (1, 'TEXT'), (2, 'JSON'), (3, 'YAML'), (4, 'XML')) formats(n, f)
CROSS JOIN explain_shapes s
CROSS JOIN LATERAL neutral_explain(format('EXPLAIN (FORMAT %s, ANALYZE, TIMING ON, BUFFERS OFF, '
                                          'COSTS OFF, SUMMARY OFF) %s', f, s.query))
  WITH ORDINALITY e(line, n)
WHERE s.shape IN ('scan', 'batched join, partitions')
ORDER BY s.shape, formats.n, e.n;

DROP TABLE prices_explain_parts;
DROP FOREIGN TABLE daily_explain, prices_explain_cached;
