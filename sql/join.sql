--
-- join: a kis table joined on symbol to another relation fetches the other
-- side's distinct symbols in one batch (Custom Scan "KIS Batched Join") and
-- answers exactly as the symbol = ANY (ARRAY(SELECT ...)) form, whatever
-- on_error says.  Each shape below is run both ways; "same" compares the
-- sorted rows.
--
CREATE TABLE holdings (id int, symbol text, qty int);
-- duplicates, a NULL, an unlisted (99...) and a malformed symbol
INSERT INTO holdings VALUES
  (1, '005930', 10), (2, '000660', 3), (3, '005930', 5), (4, NULL, 1),
  (5, '035420', 7), (6, '991234', 2), (7, 'bad!', 4);
ANALYZE holdings;
CREATE FOREIGN TABLE jp_error (symbol text, price numeric, error text)
  SERVER kis OPTIONS (endpoint 'domestic_price', on_error 'error');
CREATE FOREIGN TABLE jp_skip (symbol text, price numeric, error text)
  SERVER kis OPTIONS (endpoint 'domestic_price', on_error 'skip');
CREATE FOREIGN TABLE jp_row (symbol text, price numeric, error text)
  SERVER kis OPTIONS (endpoint 'domestic_price', on_error 'row');

-- the plans: each shape is one batched join (or a scan of the ANY form)
EXPLAIN (COSTS OFF)
SELECT h.id, q.price FROM holdings h JOIN jp_skip q ON q.symbol = h.symbol;
EXPLAIN (COSTS OFF)
SELECT h.id, q.price FROM holdings h LEFT JOIN jp_skip q ON q.symbol = h.symbol;
EXPLAIN (COSTS OFF)
SELECT h.id FROM holdings h WHERE EXISTS (SELECT 1 FROM jp_skip q WHERE q.symbol = h.symbol);
EXPLAIN (COSTS OFF)
SELECT h.id FROM holdings h WHERE NOT EXISTS (SELECT 1 FROM jp_skip q WHERE q.symbol = h.symbol);
EXPLAIN (COSTS OFF)
SELECT q.symbol, q.price FROM jp_skip q WHERE q.symbol IN (SELECT symbol FROM holdings);
EXPLAIN (COSTS OFF)
SELECT h.id, l.price FROM holdings h, LATERAL (SELECT price FROM jp_skip q WHERE q.symbol = h.symbol) l;

-- both forms of each shape, under each on_error mode
CREATE FUNCTION join_shapes(t text) RETURNS TABLE (shape text, batched text, any_form text)
LANGUAGE sql AS $$
  SELECT * FROM (VALUES
    ('inner',
     format('SELECT h.id, q.symbol, q.price, q.error FROM holdings h JOIN %s q ON q.symbol = h.symbol', t),
     format('SELECT h.id, q.symbol, q.price, q.error FROM holdings h JOIN (SELECT * FROM %s WHERE symbol = ANY (ARRAY(SELECT symbol FROM holdings))) q ON q.symbol = h.symbol', t)),
    ('left',
     format('SELECT h.id, q.symbol, q.price, q.error FROM holdings h LEFT JOIN %s q ON q.symbol = h.symbol', t),
     format('SELECT h.id, q.symbol, q.price, q.error FROM holdings h LEFT JOIN (SELECT * FROM %s WHERE symbol = ANY (ARRAY(SELECT symbol FROM holdings))) q ON q.symbol = h.symbol', t)),
    ('exists',
     format('SELECT h.id FROM holdings h WHERE EXISTS (SELECT 1 FROM %s q WHERE q.symbol = h.symbol)', t),
     format('SELECT h.id FROM holdings h WHERE EXISTS (SELECT 1 FROM %s q WHERE q.symbol = h.symbol AND q.symbol = ANY (ARRAY(SELECT symbol FROM holdings)))', t)),
    ('not exists',
     format('SELECT h.id FROM holdings h WHERE NOT EXISTS (SELECT 1 FROM %s q WHERE q.symbol = h.symbol)', t),
     format('SELECT h.id FROM holdings h WHERE NOT EXISTS (SELECT 1 FROM %s q WHERE q.symbol = h.symbol AND q.symbol = ANY (ARRAY(SELECT symbol FROM holdings)))', t)),
    ('in',
     format('SELECT q.symbol, q.price, q.error FROM %s q WHERE q.symbol IN (SELECT symbol FROM holdings)', t),
     format('SELECT q.symbol, q.price, q.error FROM %s q WHERE q.symbol = ANY (ARRAY(SELECT symbol FROM holdings))', t)),
    ('lateral',
     format('SELECT h.id, l.price FROM holdings h, LATERAL (SELECT price FROM %s q WHERE q.symbol = h.symbol) l', t),
     format('SELECT h.id, l.price FROM holdings h, LATERAL (SELECT price FROM %s q WHERE q.symbol = h.symbol AND q.symbol = ANY (ARRAY(SELECT symbol FROM holdings))) l', t)),
    ('sum',
     format('SELECT sum(h.qty * q.price) FROM holdings h JOIN %s q USING (symbol)', t),
     format('SELECT sum(h.qty * q.price) FROM holdings h JOIN (SELECT * FROM %s WHERE symbol = ANY (ARRAY(SELECT symbol FROM holdings))) q USING (symbol)', t))
  ) s
$$;
CREATE FUNCTION sorted_rows(query text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE result text;
BEGIN
  EXECUTE format('SELECT string_agg(r::text, '' '' ORDER BY r::text) FROM (%s) r', query) INTO result;
  RETURN coalesce(result, '(none)');
END $$;
-- the plan each batched query gets, and that the ANY form gets none
CREATE FUNCTION uses_batched_join(query text) RETURNS bool LANGUAGE plpgsql AS $$
DECLARE line text;
BEGIN
  FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || query LOOP
    IF line LIKE '%KIS Batched Join%' THEN RETURN true; END IF;
  END LOOP;
  RETURN false;
END $$;

SELECT shape, uses_batched_join(batched) AS batched, uses_batched_join(any_form) AS any_form
FROM join_shapes('jp_skip');

-- skip: the same rows and the same WARNING, once per form
SELECT shape, b AS rows, b = a AS same
FROM join_shapes('jp_skip'), LATERAL (SELECT sorted_rows(batched) b, sorted_rows(any_form) a) r;
-- row: failed symbols are rows with an error (and join like any row)
SELECT shape, b AS rows, b = a AS same
FROM join_shapes('jp_row'), LATERAL (SELECT sorted_rows(batched) b, sorted_rows(any_form) a) r;
-- error: the same ERROR
SELECT sorted_rows(batched) FROM join_shapes('jp_error') WHERE shape = 'inner';
SELECT sorted_rows(any_form) FROM join_shapes('jp_error') WHERE shape = 'inner';
DELETE FROM holdings WHERE id = 7;
SELECT sorted_rows(batched) FROM join_shapes('jp_error') WHERE shape = 'left';
SELECT sorted_rows(any_form) FROM join_shapes('jp_error') WHERE shape = 'left';
DELETE FROM holdings WHERE id = 6;
SELECT shape, b AS rows, b = a AS same
FROM join_shapes('jp_error'), LATERAL (SELECT sorted_rows(batched) b, sorted_rows(any_form) a) r;
INSERT INTO holdings VALUES (6, '991234', 2), (7, 'bad!', 4);

-- a malformed symbol written in the query is still an error at once
SELECT * FROM jp_skip WHERE symbol = 'bad!';

-- EXPLAIN ANALYZE: one request per distinct symbol, the KIS counters
SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT h.id, q.price FROM holdings h JOIN jp_row q ON q.symbol = h.symbol
$$);

-- one outer row keeps the parameterized nested loop
ANALYZE portfolio;
EXPLAIN (COSTS OFF)
SELECT p.symbol, q.price FROM portfolio p JOIN kis_prices q ON q.symbol = p.symbol
WHERE p.qty = 10;
-- the GUC turns the batch off
SET kis_fdw.enable_batched_join = off;
EXPLAIN (COSTS OFF)
SELECT h.id, q.price FROM holdings h JOIN jp_skip q ON q.symbol = h.symbol;
RESET kis_fdw.enable_batched_join;

-- a generic plan of a prepared statement still batches
SET plan_cache_mode = force_generic_plan;
PREPARE held(int) AS
  SELECT h.id, q.price FROM holdings h JOIN jp_skip q ON q.symbol = h.symbol WHERE h.qty > $1;
EXPLAIN (COSTS OFF) EXECUTE held(2);
EXECUTE held(4);

-- the cap on distinct keys: a clear error, not a surprise
SET kis_fdw.batched_join_max_keys = 2;
EXECUTE held(0);
RESET kis_fdw.batched_join_max_keys;
DEALLOCATE held;
RESET plan_cache_mode;

-- a correlated sub-select: the join runs again for each outer row; keys
-- that did not change are not fetched again (Batches Reused)
SELECT n, (SELECT sum(h.qty * q.price) FROM holdings h JOIN kis_prices q ON q.symbol = h.symbol
           WHERE h.qty > n AND h.id < 6) AS value
FROM generate_series(0, 6) n ORDER BY n;
SELECT n, (SELECT sum(h.qty * q.price) FROM holdings h
           JOIN (SELECT * FROM kis_prices WHERE symbol = ANY (ARRAY(SELECT symbol FROM holdings WHERE id < 6))) q
           ON q.symbol = h.symbol WHERE h.qty > n AND h.id < 6) AS value
FROM generate_series(0, 6) n ORDER BY n;
SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT n, (SELECT sum(h.qty * q.price) FROM holdings h JOIN kis_prices q ON q.symbol = h.symbol
           WHERE h.qty > n AND h.id < 6) AS value
FROM generate_series(0, 6) n
$$);

-- a condition on the whole kis row: no batch, the nested loop answers
SELECT h.id, q.price FROM holdings h JOIN kis_prices q ON q.symbol = h.symbol AND length(q::text) > 0
WHERE h.id < 4 ORDER BY 1;

-- other sides: VALUES, a CTE, a join of two tables
SELECT v.s, q.price FROM (VALUES ('005930'), ('000660'), ('005930')) v(s)
JOIN kis_prices q ON q.symbol = v.s ORDER BY 1;
WITH mine AS MATERIALIZED (SELECT symbol FROM portfolio WHERE qty > 1)
SELECT m.symbol, q.price FROM mine m JOIN kis_prices q USING (symbol) ORDER BY 1;
EXPLAIN (COSTS OFF)
SELECT h.id, p.qty, q.price FROM holdings h JOIN portfolio p USING (symbol)
JOIN kis_prices q ON q.symbol = h.symbol WHERE h.id < 6;
SELECT h.id, p.qty, q.price FROM holdings h JOIN portfolio p USING (symbol)
JOIN kis_prices q ON q.symbol = h.symbol WHERE h.id < 6 ORDER BY 1;

-- market as a key: joined on symbol and market, each pair asked once
CREATE TABLE venues (symbol char(6), market text);
INSERT INTO venues VALUES ('005930', 'J'), ('005930', 'NX'), ('000660', 'NX'), ('000660', 'NX');
ANALYZE venues;
EXPLAIN (COSTS OFF)
SELECT v.symbol, v.market, q.price FROM venues v JOIN kis_prices_nx q USING (symbol, market);
SELECT v.symbol, v.market, q.price FROM venues v JOIN kis_prices_nx q USING (symbol, market)
ORDER BY 1, 2;

-- domestic_multi_price: 30 symbols a request; domestic_daily keeps its dates
CREATE TABLE many AS SELECT lpad((100000 + 7 * i)::text, 6, '0') AS symbol FROM generate_series(1, 90) i;
ANALYZE many;
SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT count(*), count(DISTINCT q.symbol) FROM many m JOIN kis_all.domestic_multi_price q USING (symbol)
$$);
SELECT p.symbol, d.date, d.close FROM portfolio p JOIN kis_all.domestic_daily d ON d.symbol = p.symbol
WHERE d.date BETWEEN '2025-03-03' AND '2025-03-04' ORDER BY 1, 2;
SELECT p.symbol, d.date, d.close FROM portfolio p JOIN kis_all.domestic_daily d ON d.symbol = p.symbol
  AND d.symbol = ANY (ARRAY(SELECT symbol FROM portfolio))
WHERE d.date BETWEEN '2025-03-03' AND '2025-03-04' ORDER BY 1, 2;
