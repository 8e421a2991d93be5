--
-- partition: a kis foreign table that is a partition reads only the keys
-- its partition bound allows; a key that belongs to another partition is
-- neither sent (it may be another account's) nor returned.
--
\getenv mock_url KIS_MOCK_URL
\getenv mock_ca KIS_MOCK_CA

-- a second account: another server with its own app key
CREATE SERVER kis_b FOREIGN DATA WRAPPER kis_fdw
  OPTIONS (environment 'real', base_url :'mock_url', ca_file :'mock_ca',
           rate_limit '0', max_retries '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER kis_b
  OPTIONS (app_key 'PSregressAppKeyB00000000000000000000', app_secret 'regress-secret-b');

CREATE TEMP TABLE wanted (symbol text);
INSERT INTO wanted VALUES ('005930'), ('000660'), ('035420'), ('051910'), ('005380'),
  ('035720'), ('068270'), ('105560'), ('055550'), ('012330');

-- where PostgreSQL itself routes each symbol, from a local table
CREATE TABLE route (symbol text) PARTITION BY HASH (symbol);
CREATE TABLE route_0 PARTITION OF route FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE route_1 PARTITION OF route FOR VALUES WITH (MODULUS 2, REMAINDER 1);
INSERT INTO route SELECT symbol FROM wanted;

-- HASH (symbol), one partition per account
CREATE TABLE prices_hash (symbol text, price numeric) PARTITION BY HASH (symbol);
CREATE FOREIGN TABLE prices_hash_0 PARTITION OF prices_hash
  FOR VALUES WITH (MODULUS 2, REMAINDER 0) SERVER kis OPTIONS (endpoint 'domestic_price');
CREATE FOREIGN TABLE prices_hash_1 PARTITION OF prices_hash
  FOR VALUES WITH (MODULUS 2, REMAINDER 1) SERVER kis_b OPTIONS (endpoint 'domestic_price');
-- each symbol once, from the partition PostgreSQL routes it to
SELECT count(*), count(DISTINCT symbol) FROM prices_hash
WHERE symbol IN (SELECT symbol FROM wanted) AND symbol = ANY (ARRAY(SELECT symbol FROM wanted));
SELECT p.tableoid::regclass AS partition, p.symbol, p.price,
       right(p.tableoid::regclass::text, 1) = right(r.tableoid::regclass::text, 1) AS routed_here
FROM prices_hash p JOIN route r USING (symbol)
WHERE p.symbol IN ('005930', '000660', '035420', '051910', '005380',
                   '035720', '068270', '105560', '055550', '012330')
ORDER BY p.symbol;
-- each partition requests only its own keys
SELECT neutral_explain($$
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, BUFFERS OFF)
SELECT * FROM prices_hash
WHERE symbol IN ('005930', '000660', '035420', '051910', '005380',
                 '035720', '068270', '105560', '055550', '012330')
$$);
SELECT count(*) FROM route_0;
-- the same through a parameter (no pruning at plan time) and a generic plan
PREPARE hashed(text[]) AS SELECT tableoid::regclass, symbol FROM prices_hash
  WHERE symbol = ANY ($1) ORDER BY symbol;
SET plan_cache_mode = force_generic_plan;
EXECUTE hashed('{005930,000660,035420}');
RESET plan_cache_mode;
DEALLOCATE hashed;

-- LIST (symbol) with a default partition
CREATE TABLE prices_list (symbol text, price numeric) PARTITION BY LIST (symbol);
CREATE FOREIGN TABLE prices_list_a PARTITION OF prices_list
  FOR VALUES IN ('005930', '000660') SERVER kis OPTIONS (endpoint 'domestic_price');
CREATE FOREIGN TABLE prices_list_rest PARTITION OF prices_list
  DEFAULT SERVER kis_b OPTIONS (endpoint 'domestic_price');
SELECT tableoid::regclass, symbol, price FROM prices_list
WHERE symbol IN ('005930', '000660', '035420', '051910') ORDER BY symbol;
SELECT neutral_explain($$
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, BUFFERS OFF)
SELECT * FROM prices_list WHERE symbol = ANY (ARRAY(SELECT symbol FROM wanted))
$$);

-- RANGE (symbol)
CREATE TABLE prices_range (symbol text, price numeric) PARTITION BY RANGE (symbol);
CREATE FOREIGN TABLE prices_range_low PARTITION OF prices_range
  FOR VALUES FROM (MINVALUE) TO ('050000') SERVER kis OPTIONS (endpoint 'domestic_price');
CREATE FOREIGN TABLE prices_range_high PARTITION OF prices_range
  FOR VALUES FROM ('050000') TO (MAXVALUE) SERVER kis_b OPTIONS (endpoint 'domestic_price');
SELECT tableoid::regclass, symbol FROM prices_range
WHERE symbol = ANY (ARRAY(SELECT symbol FROM wanted)) ORDER BY symbol;

-- two levels: LIST (market), the J partition HASH (symbol) over two accounts;
-- the NX partition's table says market 'NX', so without a market condition
-- it reads NX while the J partitions read J
CREATE TABLE quotes (symbol text, market text, price numeric) PARTITION BY LIST (market);
CREATE TABLE quotes_j PARTITION OF quotes FOR VALUES IN ('J') PARTITION BY HASH (symbol);
CREATE FOREIGN TABLE quotes_j0 PARTITION OF quotes_j
  FOR VALUES WITH (MODULUS 2, REMAINDER 0) SERVER kis OPTIONS (endpoint 'domestic_price');
CREATE FOREIGN TABLE quotes_j1 PARTITION OF quotes_j
  FOR VALUES WITH (MODULUS 2, REMAINDER 1) SERVER kis_b OPTIONS (endpoint 'domestic_price');
CREATE FOREIGN TABLE quotes_nx PARTITION OF quotes
  FOR VALUES IN ('NX') SERVER kis OPTIONS (endpoint 'domestic_price', market 'NX');
SELECT tableoid::regclass, symbol, market, price FROM quotes
WHERE symbol IN ('005930', '000660', '035420') ORDER BY symbol, market;
SELECT tableoid::regclass, symbol, market FROM quotes
WHERE symbol IN ('005930', '000660') AND market IN ('J', 'NX', 'UN') ORDER BY symbol, market;
-- a partition's bound on market is the market its requests use, whatever
-- its table's market option says (J by default, 'UN' here)
CREATE TABLE quotes_by_market (symbol text, market text, price numeric) PARTITION BY LIST (market);
CREATE FOREIGN TABLE quotes_by_market_nx PARTITION OF quotes_by_market
  FOR VALUES IN ('NX') SERVER kis OPTIONS (endpoint 'domestic_price');
CREATE FOREIGN TABLE quotes_by_market_j_un PARTITION OF quotes_by_market
  FOR VALUES IN ('J', 'UN') SERVER kis_b OPTIONS (endpoint 'domestic_price', market 'UN');
SELECT tableoid::regclass, symbol, market, price FROM quotes_by_market
WHERE symbol IN ('005930', '000660') ORDER BY symbol, market;
SELECT neutral_explain($$
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, BUFFERS OFF)
SELECT * FROM quotes_by_market WHERE symbol = '005930'
$$);
-- a query's market condition still decides, within the bound
SELECT tableoid::regclass, symbol, market FROM quotes_by_market
WHERE symbol = '005930' AND market = 'J';
-- a bound that names no market must allow the table's own, or the
-- partition could never hold a row: an error, not an empty answer
CREATE TABLE quotes_by_range (symbol text, market text, price numeric) PARTITION BY RANGE (market);
CREATE FOREIGN TABLE quotes_by_range_n PARTITION OF quotes_by_range
  FOR VALUES FROM ('N') TO ('O') SERVER kis OPTIONS (endpoint 'domestic_price');
SELECT * FROM quotes_by_range WHERE symbol = '005930';
ALTER FOREIGN TABLE quotes_by_range_n OPTIONS (ADD market 'NX');
SELECT tableoid::regclass, symbol, market, price FROM quotes_by_range WHERE symbol = '005930';
CREATE FOREIGN TABLE quotes_by_market_rest PARTITION OF quotes_by_market
  DEFAULT SERVER kis OPTIONS (endpoint 'domestic_price', market 'NX');
SELECT * FROM quotes_by_market_rest WHERE symbol = '005930';
DROP FOREIGN TABLE quotes_by_market_rest;

-- a partition key that is not a key column: every partition asks for the
-- symbol, and each keeps only the rows of its bound
CREATE TABLE bars (symbol text, date date, close numeric) PARTITION BY RANGE (date);
CREATE FOREIGN TABLE bars_2024 PARTITION OF bars
  FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') SERVER kis OPTIONS (endpoint 'domestic_daily');
CREATE FOREIGN TABLE bars_2025 PARTITION OF bars
  FOR VALUES FROM ('2025-01-01') TO ('2026-01-01') SERVER kis_b OPTIONS (endpoint 'domestic_daily');
SELECT tableoid::regclass, date FROM bars
WHERE symbol = '005930' AND date BETWEEN '2024-12-27' AND '2025-01-03' ORDER BY date;
SELECT tableoid::regclass, count(*), count(DISTINCT date), min(date), max(date) FROM bars
WHERE symbol = '005930' GROUP BY 1 ORDER BY 1;
-- the partition's date bound is its range: a year of bars, 3 pages each,
-- not the whole history
SELECT neutral_explain($$
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, BUFFERS OFF)
SELECT * FROM bars WHERE symbol = '005930'
$$);
-- a bound from the query that the partition's crosses: nothing asked
SELECT neutral_explain($$
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, BUFFERS OFF)
SELECT * FROM bars_2024 WHERE symbol = '005930' AND date >= '2025-06-01'
$$);
-- the date bound is read even when the query does not read the column
SELECT tableoid::regclass, count(*) FROM bars WHERE symbol = '005930'
  AND close > 0 GROUP BY 1 ORDER BY 1;

DROP TABLE prices_hash, prices_list, prices_range, quotes, quotes_by_market, quotes_by_range,
  bars, route;
DROP SERVER kis_b CASCADE;
