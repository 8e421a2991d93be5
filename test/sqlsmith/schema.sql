--
-- test/sqlsmith/schema.sql: the database sqlsmith's random queries run in
-- (test/sqlsmith/run.py).  Only these tables are visible to the role
-- "smith" (sqlsmith lists information_schema.tables, which shows a role only
-- what it may read), so the queries go to kis tables over the mock, the
-- local tables they join with, and partitioned tables of kis partitions:
-- the shapes of sql/join.sql and sql/join_partition.sql.  smith may only
-- read: sqlsmith's INSERT/UPDATE/DELETE run outside a transaction and would
-- otherwise change the data the next queries see.
--
\getenv mock_url KIS_MOCK_URL
\getenv mock_ca KIS_MOCK_CA
\getenv mock_ws_url KIS_MOCK_WS_URL
SET client_min_messages = warning;

CREATE EXTENSION kis_fdw;
CREATE ROLE smith LOGIN;
-- a session's own settings (statement_timeout) stay as sqlsmith set them
REVOKE EXECUTE ON FUNCTION set_config(text, text, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pg_terminate_backend(integer, bigint) FROM PUBLIC;

-- live tables (imported below) stream from the mock's WebSocket and wait
-- little for a first tick
CREATE SERVER kis FOREIGN DATA WRAPPER kis_fdw
  OPTIONS (environment 'real', base_url :'mock_url', ca_file :'mock_ca',
           ws_url :'mock_ws_url', live_wait_ms '100', rate_limit '0', max_retries '1');
CREATE SERVER kis_b FOREIGN DATA WRAPPER kis_fdw
  OPTIONS (environment 'real', base_url :'mock_url', ca_file :'mock_ca',
           rate_limit '0', max_retries '1');
-- PUBLIC: the views below read as their owner
CREATE USER MAPPING FOR PUBLIC SERVER kis
  OPTIONS (app_key 'PSsmithAppKey0000000000000000000000', app_secret 'smith-secret',
           account '12345678-01');
CREATE USER MAPPING FOR PUBLIC SERVER kis_b
  OPTIONS (app_key 'PSsmithAppKeyB000000000000000000000', app_secret 'smith-secret-b');

-- local tables: text, char(n) and varchar keys; duplicates, a NULL, an
-- unlisted (99...), a failing (98...) and a malformed symbol
CREATE TABLE portfolio (symbol text PRIMARY KEY, qty int NOT NULL);
INSERT INTO portfolio VALUES ('005930', 10), ('000660', 3), ('035420', 7);
CREATE TABLE holdings (id int, symbol text, qty int);
INSERT INTO holdings VALUES
  (1, '005930', 10), (2, '000660', 3), (3, '005930', 5), (4, NULL, 1),
  (5, '035420', 7), (6, '991234', 2), (7, 'bad!', 4), (8, '981234', 1);
CREATE TABLE venues (symbol char(8), market text);
INSERT INTO venues VALUES ('005930', 'J'), ('005930', 'NX'), ('000660', 'NX'), ('000660', 'UN');
CREATE TABLE watch (symbol varchar(10), since date);
INSERT INTO watch VALUES ('005930', '2025-03-03'), ('000660', '2025-12-01'), ('035420', NULL);
CREATE TABLE many AS
  SELECT lpad((100000 + 7 * i)::text, 6, '0') AS symbol FROM generate_series(1, 40) i;
ANALYZE;

-- kis tables: every endpoint, and the three on_error modes on quotes
CREATE SCHEMA kis_all;
IMPORT FOREIGN SCHEMA kis FROM SERVER kis INTO kis_all;
CREATE FOREIGN TABLE prices (symbol text, price numeric, volume bigint, error text)
  SERVER kis OPTIONS (endpoint 'domestic_price', on_error 'skip');
CREATE FOREIGN TABLE prices_row (symbol text, market text, price numeric, error text)
  SERVER kis OPTIONS (endpoint 'domestic_price', on_error 'row');
CREATE FOREIGN TABLE prices_err (symbol text, price numeric)
  SERVER kis OPTIONS (endpoint 'domestic_price', on_error 'error');
CREATE FOREIGN TABLE prices_char (symbol char(8), price numeric)
  SERVER kis OPTIONS (endpoint 'domestic_price', on_error 'skip');
CREATE FOREIGN TABLE prices_varchar (symbol varchar(10), market varchar, price numeric)
  SERVER kis OPTIONS (endpoint 'domestic_price', on_error 'skip');
CREATE FOREIGN TABLE bars (symbol text, date date, close numeric)
  SERVER kis OPTIONS (endpoint 'domestic_daily', on_error 'skip');

-- partitioned tables of kis partitions: HASH over two accounts, LIST by
-- market, RANGE by date, and one with a local partition
CREATE TABLE pj_hash (symbol text, price numeric, error text) PARTITION BY HASH (symbol);
CREATE FOREIGN TABLE pj_hash_0 PARTITION OF pj_hash FOR VALUES WITH (MODULUS 2, REMAINDER 0)
  SERVER kis OPTIONS (endpoint 'domestic_price', on_error 'skip');
CREATE FOREIGN TABLE pj_hash_1 PARTITION OF pj_hash FOR VALUES WITH (MODULUS 2, REMAINDER 1)
  SERVER kis_b OPTIONS (endpoint 'domestic_price', on_error 'row');
CREATE TABLE pj_list (symbol text, market text, price numeric) PARTITION BY LIST (market);
CREATE FOREIGN TABLE pj_list_j PARTITION OF pj_list FOR VALUES IN ('J')
  SERVER kis OPTIONS (endpoint 'domestic_price', on_error 'skip');
CREATE FOREIGN TABLE pj_list_nx PARTITION OF pj_list FOR VALUES IN ('NX')
  SERVER kis_b OPTIONS (endpoint 'domestic_price', market 'NX', on_error 'skip');
CREATE TABLE pj_bars (symbol text, date date, close numeric) PARTITION BY RANGE (date);
CREATE FOREIGN TABLE pj_bars_2024 PARTITION OF pj_bars
  FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')
  SERVER kis OPTIONS (endpoint 'domestic_daily', on_error 'skip');
CREATE FOREIGN TABLE pj_bars_2025 PARTITION OF pj_bars
  FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')
  SERVER kis OPTIONS (endpoint 'domestic_daily', on_error 'skip');
CREATE TABLE pj_mixed (symbol text, market text, price numeric) PARTITION BY LIST (market);
CREATE FOREIGN TABLE pj_mixed_kis PARTITION OF pj_mixed FOR VALUES IN ('J')
  SERVER kis OPTIONS (endpoint 'domestic_price', on_error 'skip');
CREATE TABLE pj_mixed_local PARTITION OF pj_mixed FOR VALUES IN ('UN');
INSERT INTO pj_mixed VALUES ('005930', 'UN', 1);

-- the join shapes as views: a kis table alone needs a condition on its key,
-- which random conditions seldom are, while random queries over these
-- (outer joins, sub-selects, conditions, aggregates) plan batched joins in
-- every surrounding
CREATE VIEW v_inner AS
  SELECT h.id, h.symbol, h.qty, q.price, q.error FROM holdings h JOIN prices q ON q.symbol = h.symbol;
CREATE VIEW v_left AS
  SELECT h.id, h.symbol, h.qty, q.market, q.price, q.error
  FROM holdings h LEFT JOIN prices_row q ON q.symbol = h.symbol;
CREATE VIEW v_exists AS
  SELECT p.symbol, p.qty FROM portfolio p WHERE EXISTS (SELECT 1 FROM prices q WHERE q.symbol = p.symbol);
CREATE VIEW v_anti AS
  SELECT h.id, h.symbol FROM holdings h WHERE NOT EXISTS (SELECT 1 FROM prices q WHERE q.symbol = h.symbol);
CREATE VIEW v_in AS
  SELECT q.symbol, q.market, q.price FROM prices_varchar q WHERE q.symbol IN (SELECT symbol FROM watch);
CREATE VIEW v_lateral AS
  SELECT h.id, l.price FROM holdings h,
    LATERAL (SELECT price FROM prices q WHERE q.symbol = h.symbol OFFSET 0) l;
CREATE VIEW v_char AS
  SELECT v.symbol, v.market, q.price FROM venues v JOIN prices_char q ON q.symbol = v.symbol;
-- declared TRs (the library's): a param column keyed by the other side
CREATE VIEW v_investor AS
  SELECT h.id, h.symbol, i.date, i.foreign_net, i.error
  FROM holdings h LEFT JOIN kis_all.domestic_investor i ON i.symbol = h.symbol;
CREATE VIEW v_etf AS
  SELECT w.symbol, w.since, e.nav, e.premium_rate FROM watch w JOIN kis_all.domestic_etf_price e ON e.symbol = w.symbol;
CREATE VIEW v_market AS
  SELECT v.symbol, v.market, q.price, q.error
  FROM venues v LEFT JOIN prices_row q ON q.symbol = v.symbol AND q.market = v.market;
CREATE VIEW v_hash AS
  SELECT p.symbol, p.qty, q.price, q.error FROM portfolio p JOIN pj_hash q USING (symbol);
CREATE VIEW v_list AS
  SELECT h.id, q.symbol, q.market, q.price FROM holdings h LEFT JOIN pj_list q ON q.symbol = h.symbol;
CREATE VIEW v_mixed AS
  SELECT p.symbol, q.market, q.price FROM portfolio p LEFT JOIN pj_mixed q USING (symbol);
CREATE VIEW v_bars AS
  SELECT w.symbol, w.since, b.date, b.close FROM watch w JOIN bars b ON b.symbol = w.symbol
  WHERE b.date BETWEEN '2025-03-03' AND '2025-03-07';
CREATE VIEW v_pj_bars AS
  SELECT p.symbol, b.date, b.close FROM portfolio p JOIN pj_bars b USING (symbol)
  WHERE b.date BETWEEN '2024-12-30' AND '2025-01-03';
CREATE VIEW v_many AS
  SELECT m.symbol, q.price FROM many m JOIN kis_all.domestic_multi_price q USING (symbol);
CREATE VIEW v_orderbook AS
  SELECT q.* FROM kis_all.domestic_orderbook q WHERE q.symbol IN (SELECT symbol FROM portfolio);
CREATE VIEW v_quotes AS
  SELECT * FROM prices_row WHERE symbol IN ('005930', '000660', '981234', '991234');
-- the shapes of issue 19: a kis column above a LEFT join, a dummy kis side,
-- rescans through caching children, a recursive step, char(n) keys
CREATE VIEW v_unquoted AS
  SELECT p.symbol, p.qty FROM portfolio p LEFT JOIN prices q ON q.symbol = p.symbol
  WHERE q.price IS NULL;
CREATE VIEW v_dummy AS
  SELECT r.symbol, s.price FROM (SELECT symbol, price FROM prices WHERE NULL::bool) s
  RIGHT JOIN portfolio r ON s.symbol = r.symbol;
CREATE VIEW v_rescan AS
  SELECT t.n, (SELECT count(*) FROM prices q
               WHERE q.symbol IN (SELECT symbol FROM holdings WHERE qty > t.n)) AS quoted
  FROM generate_series(0, 12, 4) t(n);
CREATE VIEW v_grouped AS
  SELECT q.symbol, q.price FROM prices_row q
  WHERE q.symbol IN (SELECT symbol FROM holdings GROUP BY symbol HAVING sum(qty) > 2);
CREATE VIEW v_recursive AS
  WITH RECURSIVE r(symbol, depth) AS (
    SELECT symbol, 1 FROM portfolio
    UNION
    SELECT h.symbol, r.depth + 1 FROM r JOIN holdings h ON h.id = r.depth
      JOIN prices q ON q.symbol = h.symbol WHERE r.depth < 4)
  SELECT * FROM r;
CREATE VIEW v_char_left AS
  SELECT v.symbol, v.market, q.price FROM venues v LEFT JOIN prices_char q ON q.symbol = v.symbol;
CREATE VIEW v_parted_anti AS
  SELECT h.id, h.symbol FROM holdings h
  WHERE NOT EXISTS (SELECT 1 FROM pj_hash q WHERE q.symbol = h.symbol);

-- what smith sees: the local tables, the views, and a few kis tables to
-- put random conditions on (the rest only through the views, so that more
-- of the random queries reach a kis table with a key)
GRANT USAGE ON SCHEMA kis_all TO smith;
GRANT SELECT ON portfolio, holdings, venues, watch, many, pj_mixed,
  prices, prices_row, prices_char, prices_varchar, bars, pj_hash, pj_list, pj_bars,
  kis_all.domestic_holdings, kis_all.market_holidays, kis_all.domestic_minute,
  kis_all.overseas_price, kis_all.domestic_volume_rank, kis_all.domestic_index_price TO smith;
DO $$
DECLARE v regclass;
BEGIN
  FOR v IN SELECT c.oid FROM pg_class c WHERE c.relkind = 'v'
             AND c.relnamespace = 'public'::regnamespace LOOP
    EXECUTE format('GRANT SELECT ON %s TO smith', v);
  END LOOP;
END $$;
