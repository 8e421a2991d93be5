--
-- join_partition: a join into a partitioned table whose leaf partitions are
-- kis foreign tables is one batched join too: the other side's keys are
-- read once, each partition asks only for the keys its bound admits, and
-- the partitions' runs go together.  Every shape answers as the
-- symbol = ANY (ARRAY(SELECT ...)) form (join_shapes and sorted_rows come
-- from join.sql).
--
\getenv mock_url KIS_MOCK_URL
\getenv mock_ca KIS_MOCK_CA

-- a second account: another server with its own app key
CREATE SERVER kis_b FOREIGN DATA WRAPPER kis_fdw
  OPTIONS (environment 'real', base_url :'mock_url', ca_file :'mock_ca',
           rate_limit '0', max_retries '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER kis_b
  OPTIONS (app_key 'PSregressAppKeyB00000000000000000000', app_secret 'regress-secret-b');

-- HASH (symbol) over two accounts, under each on_error mode; the second
-- partition's columns are numbered unlike its parent's
CREATE TABLE pj_skip (symbol text, price numeric, error text) PARTITION BY HASH (symbol);
CREATE FOREIGN TABLE pj_skip_0 PARTITION OF pj_skip
  FOR VALUES WITH (MODULUS 2, REMAINDER 0) SERVER kis
  OPTIONS (endpoint 'domestic_price', on_error 'skip');
CREATE FOREIGN TABLE pj_skip_1 (error text, price numeric, symbol text)
  SERVER kis_b OPTIONS (endpoint 'domestic_price', on_error 'skip');
ALTER TABLE pj_skip ATTACH PARTITION pj_skip_1 FOR VALUES WITH (MODULUS 2, REMAINDER 1);
DO $$
DECLARE mode text;
BEGIN
  FOREACH mode IN ARRAY ARRAY['row', 'error'] LOOP
    EXECUTE format('CREATE TABLE pj_%s (symbol text, price numeric, error text) '
                   'PARTITION BY HASH (symbol)', mode);
    FOR part IN 0..1 LOOP
      EXECUTE format('CREATE FOREIGN TABLE pj_%s_%s PARTITION OF pj_%s '
                     'FOR VALUES WITH (MODULUS 2, REMAINDER %s) SERVER %s '
                     'OPTIONS (endpoint %L, on_error %L)',
                     mode, part, mode, part, CASE part WHEN 0 THEN 'kis' ELSE 'kis_b' END,
                     'domestic_price', mode);
    END LOOP;
  END LOOP;
END $$;

-- the plans: one batched join over both partitions
EXPLAIN (COSTS OFF)
SELECT h.id, q.price FROM holdings h JOIN pj_skip q ON q.symbol = h.symbol;
EXPLAIN (COSTS OFF)
SELECT h.id FROM holdings h WHERE NOT EXISTS (SELECT 1 FROM pj_skip q WHERE q.symbol = h.symbol);
SELECT shape, uses_batched_join(batched) AS batched, uses_batched_join(any_form) AS any_form
FROM join_shapes('pj_skip');

-- skip: the same rows and the same WARNING, once per form
SELECT shape, b AS rows, b = a AS same
FROM join_shapes('pj_skip'), LATERAL (SELECT sorted_rows(batched) b, sorted_rows(any_form) a) r;
-- row: failed symbols are rows with an error
SELECT shape, b AS rows, b = a AS same
FROM join_shapes('pj_row'), LATERAL (SELECT sorted_rows(batched) b, sorted_rows(any_form) a) r;
-- error: the same ERROR
SELECT sorted_rows(batched) FROM join_shapes('pj_error') WHERE shape = 'inner';
SELECT sorted_rows(any_form) FROM join_shapes('pj_error') WHERE shape = 'inner';
DELETE FROM holdings WHERE id = 7;
SELECT sorted_rows(batched) FROM join_shapes('pj_error') WHERE shape = 'left';
SELECT sorted_rows(any_form) FROM join_shapes('pj_error') WHERE shape = 'left';
DELETE FROM holdings WHERE id = 6;
SELECT shape, b AS rows, b = a AS same
FROM join_shapes('pj_error'), LATERAL (SELECT sorted_rows(batched) b, sorted_rows(any_form) a) r;
INSERT INTO holdings VALUES (6, '991234', 2), (7, 'bad!', 4);

-- each partition asks only for its own keys: a request per distinct
-- (symbol, partition) pair; the rows come from the partition PostgreSQL
-- routes each symbol to
SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT h.id, q.price FROM holdings h JOIN pj_row q ON q.symbol = h.symbol
$$);
CREATE TABLE pj_route (symbol text) PARTITION BY HASH (symbol);
CREATE TABLE pj_route_0 PARTITION OF pj_route FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE pj_route_1 PARTITION OF pj_route FOR VALUES WITH (MODULUS 2, REMAINDER 1);
INSERT INTO pj_route SELECT DISTINCT symbol FROM holdings WHERE symbol IS NOT NULL;
ANALYZE pj_route;
SELECT h.symbol, q.tableoid::regclass AS partition,
       right(q.tableoid::regclass::text, 1) = right(r.tableoid::regclass::text, 1) AS routed_here
FROM holdings h JOIN pj_skip q ON q.symbol = h.symbol JOIN pj_route r ON r.symbol = h.symbol
ORDER BY h.id;

-- pruning by the query's own conditions keeps working: a partition pruned
-- away is not in the join, one whose bound admits no key sends nothing
CREATE TABLE pj_list (symbol text, market text, price numeric) PARTITION BY LIST (market);
CREATE FOREIGN TABLE pj_list_j PARTITION OF pj_list FOR VALUES IN ('J')
  SERVER kis OPTIONS (endpoint 'domestic_price');
CREATE FOREIGN TABLE pj_list_nx PARTITION OF pj_list FOR VALUES IN ('NX')
  SERVER kis_b OPTIONS (endpoint 'domestic_price', market 'NX');
EXPLAIN (COSTS OFF)
SELECT p.symbol, q.price FROM portfolio p JOIN pj_list q USING (symbol) WHERE q.market = 'NX';
SELECT p.symbol, q.market, q.price FROM portfolio p JOIN pj_list q USING (symbol)
WHERE q.market = 'NX' ORDER BY 1;
SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT p.symbol, q.market, q.price FROM portfolio p JOIN pj_list q USING (symbol)
$$);
SELECT p.symbol, q.market, q.price FROM portfolio p JOIN pj_list q USING (symbol)
ORDER BY 1, 2;
SELECT p.symbol, q.market, q.price FROM portfolio p
JOIN (SELECT * FROM pj_list WHERE symbol = ANY (ARRAY(SELECT symbol FROM portfolio))) q USING (symbol)
ORDER BY 1, 2;

-- LIST (symbol) with a default partition, one partition admitting no key
CREATE TABLE pj_sym (symbol text, price numeric) PARTITION BY LIST (symbol);
CREATE FOREIGN TABLE pj_sym_a PARTITION OF pj_sym FOR VALUES IN ('005930', '000660')
  SERVER kis OPTIONS (endpoint 'domestic_price');
CREATE FOREIGN TABLE pj_sym_none PARTITION OF pj_sym FOR VALUES IN ('111111')
  SERVER kis OPTIONS (endpoint 'domestic_price');
CREATE FOREIGN TABLE pj_sym_rest PARTITION OF pj_sym DEFAULT
  SERVER kis_b OPTIONS (endpoint 'domestic_price');
SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT p.symbol, q.price FROM portfolio p JOIN pj_sym q USING (symbol)
$$);
SELECT uses_batched_join('SELECT q.tableoid::regclass FROM portfolio p JOIN pj_sym q USING (symbol)');
SELECT p.symbol, q.tableoid::regclass, q.price FROM portfolio p JOIN pj_sym q USING (symbol)
ORDER BY 1;

-- two levels: the J partition HASH (symbol) over two accounts
CREATE TABLE pj_deep (symbol text, market text, price numeric) PARTITION BY LIST (market);
CREATE TABLE pj_deep_j PARTITION OF pj_deep FOR VALUES IN ('J') PARTITION BY HASH (symbol);
CREATE FOREIGN TABLE pj_deep_j0 PARTITION OF pj_deep_j
  FOR VALUES WITH (MODULUS 2, REMAINDER 0) SERVER kis OPTIONS (endpoint 'domestic_price');
CREATE FOREIGN TABLE pj_deep_j1 PARTITION OF pj_deep_j
  FOR VALUES WITH (MODULUS 2, REMAINDER 1) SERVER kis_b OPTIONS (endpoint 'domestic_price');
CREATE FOREIGN TABLE pj_deep_nx PARTITION OF pj_deep
  FOR VALUES IN ('NX') SERVER kis OPTIONS (endpoint 'domestic_price', market 'NX');
EXPLAIN (COSTS OFF)
SELECT p.symbol, q.market, q.price FROM portfolio p JOIN pj_deep q USING (symbol);
SELECT p.symbol, q.tableoid::regclass, q.market, q.price FROM portfolio p JOIN pj_deep q USING (symbol)
ORDER BY 1, 3;
-- joined on symbol and market: each pair goes to the partition of its market
CREATE TABLE pj_venues (symbol text, market text);
INSERT INTO pj_venues VALUES ('005930', 'J'), ('005930', 'NX'), ('000660', 'NX'), ('035420', 'J');
ANALYZE pj_venues;
SELECT v.symbol, v.market, q.tableoid::regclass, q.price FROM pj_venues v
JOIN pj_deep q USING (symbol, market) ORDER BY 1, 2;
SELECT v.symbol, v.market, q.tableoid::regclass, q.price FROM pj_venues v
JOIN (SELECT tableoid, * FROM pj_deep WHERE symbol = ANY (ARRAY(SELECT symbol FROM pj_venues))) q
USING (symbol, market) ORDER BY 1, 2;

-- a local partition: no batch, the nested loop answers
CREATE TABLE pj_mixed (symbol text, market text, price numeric) PARTITION BY LIST (market);
CREATE FOREIGN TABLE pj_mixed_kis PARTITION OF pj_mixed FOR VALUES IN ('J')
  SERVER kis OPTIONS (endpoint 'domestic_price');
CREATE TABLE pj_mixed_local PARTITION OF pj_mixed FOR VALUES IN ('UN');
INSERT INTO pj_mixed_local VALUES ('035420', 'UN', 1);
SELECT uses_batched_join('SELECT p.symbol, q.price FROM portfolio p JOIN pj_mixed q USING (symbol)');
SELECT p.symbol, q.market, q.price FROM portfolio p JOIN pj_mixed q USING (symbol) ORDER BY 1, 2;
-- unless the query's own condition prunes it away
EXPLAIN (COSTS OFF)
SELECT p.symbol, q.price FROM portfolio p JOIN pj_mixed q USING (symbol) WHERE q.market = 'J';
SELECT p.symbol, q.market, q.price FROM portfolio p JOIN pj_mixed q USING (symbol)
WHERE q.market = 'J' ORDER BY 1;

-- partitionwise join between a partitioned other side and the kis table
SET enable_partitionwise_join = on;
EXPLAIN (COSTS OFF)
SELECT r.symbol, q.tableoid::regclass, q.price IS NOT NULL AS priced
FROM pj_route r JOIN pj_skip q USING (symbol);
SELECT r.symbol, q.tableoid::regclass, q.price IS NOT NULL AS priced
FROM pj_route r JOIN pj_skip q USING (symbol) ORDER BY 1;
-- partition to partition, a LEFT JOIN keeps the symbols no partition has
SELECT uses_batched_join('SELECT r.symbol, q.price FROM pj_route r LEFT JOIN pj_skip q USING (symbol)');
SELECT r.symbol, r.tableoid::regclass, q.tableoid::regclass, q.price IS NOT NULL AS priced
FROM pj_route r LEFT JOIN pj_skip q USING (symbol) ORDER BY 1;
RESET enable_partitionwise_join;
SELECT r.symbol, r.tableoid::regclass, q.tableoid::regclass, q.price IS NOT NULL AS priced
FROM pj_route r LEFT JOIN (SELECT tableoid, * FROM pj_skip
                           WHERE symbol = ANY (ARRAY(SELECT symbol FROM pj_route))) q USING (symbol)
ORDER BY 1;

-- a correlated sub-select: the join runs again per outer row, and keys that
-- did not change are not fetched again from any partition
SELECT n, (SELECT sum(h.qty * q.price) FROM holdings h JOIN pj_skip q ON q.symbol = h.symbol
           WHERE h.qty > n AND h.id < 6) AS value
FROM generate_series(0, 6) n ORDER BY n;
SELECT n, (SELECT sum(h.qty * q.price) FROM holdings h
           JOIN (SELECT * FROM pj_skip WHERE symbol = ANY (ARRAY(SELECT symbol FROM holdings WHERE id < 6))) q
           ON q.symbol = h.symbol WHERE h.qty > n AND h.id < 6) AS value
FROM generate_series(0, 6) n ORDER BY n;
SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT n, (SELECT sum(h.qty * q.price) FROM holdings h JOIN pj_skip q ON q.symbol = h.symbol
           WHERE h.qty > n AND h.id < 6) AS value
FROM generate_series(0, 6) n
$$);

-- the cap on distinct keys: a clear error naming the partitioned table
SET plan_cache_mode = force_generic_plan;
PREPARE held_p(int) AS
  SELECT count(*) FROM holdings h JOIN pj_skip q ON q.symbol = h.symbol WHERE h.qty > $1;
SELECT uses_batched_join('EXECUTE held_p(0)');
SET kis_fdw.batched_join_max_keys = 2;
EXECUTE held_p(0);
RESET kis_fdw.batched_join_max_keys;
DEALLOCATE held_p;
RESET plan_cache_mode;

-- RANGE (date) of daily bars: every partition gets every symbol, each reads
-- only its own dates (its bound narrows its range), rows are checked on it;
-- the cap counts distinct keys, not (key, partition) pairs
CREATE TABLE pj_bars (symbol text, date date, close numeric) PARTITION BY RANGE (date);
CREATE FOREIGN TABLE pj_bars_2024 PARTITION OF pj_bars
  FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') SERVER kis OPTIONS (endpoint 'domestic_daily');
CREATE FOREIGN TABLE pj_bars_2025 PARTITION OF pj_bars
  FOR VALUES FROM ('2025-01-01') TO ('2026-01-01') SERVER kis_b OPTIONS (endpoint 'domestic_daily');
SET kis_fdw.batched_join_max_keys = 3;
SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT p.symbol, d.date, d.close FROM portfolio p JOIN pj_bars d ON d.symbol = p.symbol
WHERE d.date BETWEEN '2024-12-30' AND '2025-01-03'
$$);
RESET kis_fdw.batched_join_max_keys;
SELECT p.symbol, d.tableoid::regclass, d.date, d.close FROM portfolio p
JOIN pj_bars d ON d.symbol = p.symbol
WHERE d.date BETWEEN '2024-12-30' AND '2025-01-03' ORDER BY 1, 3;
SELECT p.symbol, d.tableoid::regclass, d.date, d.close FROM portfolio p
JOIN (SELECT tableoid, * FROM pj_bars WHERE symbol = ANY (ARRAY(SELECT symbol FROM portfolio))) d
  ON d.symbol = p.symbol
WHERE d.date BETWEEN '2024-12-30' AND '2025-01-03' ORDER BY 1, 3;

-- partitions of the same name in two schemas: EXPLAIN VERBOSE names each
-- with its schema, as PostgreSQL names relations (quoted where needed)
CREATE SCHEMA pj_other;
CREATE TABLE pj_named (symbol text, price numeric) PARTITION BY HASH (symbol);
CREATE FOREIGN TABLE pj_named_p PARTITION OF pj_named
  FOR VALUES WITH (MODULUS 2, REMAINDER 0) SERVER kis OPTIONS (endpoint 'domestic_price');
CREATE FOREIGN TABLE pj_other."pj_named_p" PARTITION OF pj_named
  FOR VALUES WITH (MODULUS 4, REMAINDER 1) SERVER kis_b OPTIONS (endpoint 'domestic_price');
CREATE FOREIGN TABLE pj_other."Named, Too" PARTITION OF pj_named
  FOR VALUES WITH (MODULUS 4, REMAINDER 3) SERVER kis_b OPTIONS (endpoint 'domestic_price');
CREATE FUNCTION pj_explain_lines(options text, query text) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE line text;
BEGIN
  FOR line IN EXECUTE format('EXPLAIN (%s) %s', options, query) LOOP
    IF line LIKE '%KIS Partition%' THEN RETURN NEXT trim(line); END IF;
  END LOOP;
END $$;
SELECT pj_explain_lines('COSTS OFF',
  'SELECT p.symbol, q.price FROM portfolio p JOIN pj_named q USING (symbol)');
SELECT pj_explain_lines('VERBOSE, COSTS OFF',
  'SELECT p.symbol, q.price FROM portfolio p JOIN pj_named q USING (symbol)');
SELECT pj_explain_lines('ANALYZE, VERBOSE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF',
  'SELECT p.symbol, q.price FROM portfolio p JOIN pj_named q USING (symbol)');
DROP TABLE pj_named;
DROP SCHEMA pj_other;
DROP FUNCTION pj_explain_lines(text, text);

DROP TABLE pj_skip, pj_row, pj_error, pj_route, pj_list, pj_sym, pj_deep, pj_venues, pj_mixed,
  pj_bars;
DROP SERVER kis_b CASCADE;
