--
-- join_differential: a corpus of join shapes, each run with the batched join
-- on, with it off (the nested loop) and, where there is one, in the
-- "symbol = ANY (ARRAY(SELECT ...))" form; any difference in the rows fails
-- (off_same, any_same), and so does a shape whose plan is not the one
-- expected (plan_ok: batched where it should, not where it cannot).  The
-- issue's exact queries are in it (docs/batched-join.md: which shapes batch).
--
CREATE SCHEMA jd;
SET search_path = jd, public;
CREATE FOREIGN TABLE prices (symbol text, name text, price numeric)
  SERVER kis OPTIONS (endpoint 'domestic_price');
CREATE FOREIGN TABLE prices8 (symbol char(8), price numeric)
  SERVER kis OPTIONS (endpoint 'domestic_price');
CREATE FOREIGN TABLE pricesv (symbol varchar(8), price numeric)
  SERVER kis OPTIONS (endpoint 'domestic_price');
CREATE FOREIGN TABLE prices_nx (symbol text, market text, price numeric)
  SERVER kis OPTIONS (endpoint 'domestic_price');
CREATE FOREIGN TABLE daily (symbol text, date date, close numeric)
  SERVER kis OPTIONS (endpoint 'domestic_daily');
-- duplicates and a NULL
CREATE TABLE h (id int, symbol text, qty int);
INSERT INTO h VALUES (1, '005930', 10), (2, '000660', 3), (3, '035420', 7),
  (4, '051910', 12), (5, '006400', 1), (6, NULL, 5), (7, '005930', 2);
CREATE TABLE h8 (id int, symbol char(8), qty int);
INSERT INTO h8 SELECT * FROM h;
CREATE TABLE hv (id int, symbol varchar(10), qty int);
INSERT INTO hv SELECT * FROM h;
ANALYZE h, h8, hv;

-- settings "name=value;..." for the rest of the transaction; the old values
CREATE FUNCTION apply_gucs(gucs text) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
  kv text[];
  saved text[] := '{}';
BEGIN
  FOR kv IN SELECT regexp_split_to_array(s, '=') FROM unnest(string_to_array(gucs, ';')) s LOOP
    saved := ARRAY[kv[1], current_setting(kv[1])] || saved;
    PERFORM set_config(kv[1], kv[2], true);
  END LOOP;
  RETURN saved;
END $$;
CREATE FUNCTION restore_gucs(saved text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1 .. coalesce(array_length(saved, 1), 0) BY 2 LOOP
    PERFORM set_config(saved[i], saved[i + 1], true);
  END LOOP;
END $$;

-- query's rows as text into a temporary table, with the batched join on or
-- off and the settings gucs
CREATE FUNCTION run(query text, batched bool, gucs text, into_table text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  saved text[] := apply_gucs(concat_ws(';', 'kis_fdw.enable_batched_join=' || batched, gucs));
BEGIN
  IF query ~* '^\s*EXECUTE' THEN
    EXECUTE format('CREATE TEMP TABLE jd_raw AS %s', query);
    EXECUTE format('CREATE TEMP TABLE %I AS SELECT r::text AS r FROM jd_raw r', into_table);
    DROP TABLE jd_raw;
  ELSE
    EXECUTE format('CREATE TEMP TABLE %I AS SELECT r::text AS r FROM (%s) r', into_table, query);
  END IF;
  PERFORM restore_gucs(saved);
END $$;

-- does the plan of query hold a batched join (the batched join on)?
CREATE FUNCTION batched_plan(query text, gucs text) RETURNS bool
LANGUAGE plpgsql AS $$
DECLARE
  saved text[] := apply_gucs(concat_ws(';', 'kis_fdw.enable_batched_join=on', gucs));
  line text;
  found bool := false;
BEGIN
  FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || query LOOP
    found := found OR line LIKE '%KIS Batched Join%';
  END LOOP;
  PERFORM restore_gucs(saved);
  RETURN found;
END $$;

-- rows of a and not of b, and of b and not of a (EXCEPT ALL: duplicates count)
CREATE FUNCTION differences(a text, b text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  EXECUTE format('SELECT count(*) FROM ((SELECT r FROM %I EXCEPT ALL SELECT r FROM %I) '
                 'UNION ALL (SELECT r FROM %I EXCEPT ALL SELECT r FROM %I)) d', a, b, b, a)
    INTO n;
  RETURN n;
END $$;

-- one shape: the batched rows against the nested loop's and the ANY form's
CREATE FUNCTION check_shape(query text, any_form text, off_form text, expect_batched bool,
                            gucs text, OUT nrows bigint, OUT off_same bool, OUT any_same bool,
                            OUT plan_ok bool, OUT error text)
LANGUAGE plpgsql AS $$
BEGIN
  BEGIN
    -- the plan first: a generic plan is made at a prepared statement's first use
    plan_ok := expect_batched IS NULL OR batched_plan(query, gucs) = expect_batched;
    PERFORM run(query, true, gucs, 'jd_on');
    PERFORM run(coalesce(off_form, query), false, gucs, 'jd_off');
    EXECUTE 'SELECT count(*) FROM jd_on' INTO nrows;
    off_same := differences('jd_on', 'jd_off') = 0;
    IF any_form IS NOT NULL THEN
      PERFORM run(any_form, true, gucs, 'jd_any');
      any_same := differences('jd_on', 'jd_any') = 0;
      DROP TABLE jd_any;
    END IF;
    DROP TABLE jd_on, jd_off;
  EXCEPTION WHEN OTHERS THEN
    error := SQLSTATE || ': ' || SQLERRM;
  END;
END $$;

-- a SCROLL cursor over query, read forward, backward, again from the start and
-- at absolute positions: every pass as a whole (a cursor's order is the plan's)
CREATE FUNCTION scroll(query text) RETURNS TABLE (r text)
LANGUAGE plpgsql AS $$
DECLARE
  row_text text;
BEGIN
  EXECUTE format('DECLARE jd_scroll SCROLL CURSOR FOR SELECT q::text FROM (%s) q', query);
  FOR row_text IN EXECUTE 'FETCH ALL FROM jd_scroll' LOOP
    r := 'forward ' || row_text; RETURN NEXT;
  END LOOP;
  FOR row_text IN EXECUTE 'FETCH BACKWARD ALL FROM jd_scroll' LOOP
    r := 'backward ' || row_text; RETURN NEXT;
  END LOOP;
  EXECUTE 'MOVE ABSOLUTE 0 FROM jd_scroll';
  FOR row_text IN EXECUTE 'FETCH ALL FROM jd_scroll' LOOP
    r := 'again ' || row_text; RETURN NEXT;
  END LOOP;
  FOR row_text IN EXECUTE 'FETCH ABSOLUTE 2 FROM jd_scroll' LOOP
    r := 'absolute 2 exists'; RETURN NEXT;
  END LOOP;
  FOR row_text IN EXECUTE 'FETCH ABSOLUTE -1 FROM jd_scroll' LOOP
    r := 'absolute -1 exists'; RETURN NEXT;
  END LOOP;
  EXECUTE 'CLOSE jd_scroll';
END $$;

-- prepared statements for generic plans: one made with the batched join on,
-- one with it off (a cached plan keeps the settings it was made under)
PREPARE gp_on(int) AS
  SELECT h.id, q.price FROM h JOIN prices q ON q.symbol = h.symbol WHERE h.qty > $1;
PREPARE gp_off(int) AS
  SELECT h.id, q.price FROM h JOIN prices q ON q.symbol = h.symbol WHERE h.qty > $1;
PREPARE gate_on(bool) AS
  SELECT h.id, q.price FROM h LEFT JOIN (SELECT * FROM prices WHERE $1) q ON q.symbol = h.symbol;
PREPARE gate_off(bool) AS
  SELECT h.id, q.price FROM h LEFT JOIN (SELECT * FROM prices WHERE $1) q ON q.symbol = h.symbol;
PREPARE igate_on(bool) AS
  SELECT h.id, q.price FROM h JOIN (SELECT * FROM prices WHERE $1) q ON q.symbol = h.symbol;
PREPARE igate_off(bool) AS
  SELECT h.id, q.price FROM h JOIN (SELECT * FROM prices WHERE $1) q ON q.symbol = h.symbol;
PREPARE agate_on(bool) AS
  SELECT h.id FROM h WHERE NOT EXISTS (SELECT 1 FROM prices q WHERE q.symbol = h.symbol AND $1);
PREPARE agate_off(bool) AS
  SELECT h.id FROM h WHERE NOT EXISTS (SELECT 1 FROM prices q WHERE q.symbol = h.symbol AND $1);
PREPARE day_on(date) AS
  SELECT h.id, d.close FROM h JOIN daily d ON d.symbol = h.symbol WHERE d.date = $1;
PREPARE day_off(date) AS
  SELECT h.id, d.close FROM h JOIN daily d ON d.symbol = h.symbol WHERE d.date = $1;

CREATE TABLE corpus (id serial, shape text, query text, any_form text, off_form text,
                     expect_batched bool, gucs text);
INSERT INTO corpus (shape, expect_batched, gucs, query, any_form, off_form) VALUES
-- issue 19 item 1: every executed batched join (use-after-free)
('issue 1', true, NULL,
 $$SELECT p.symbol, q.price FROM portfolio p JOIN prices q ON q.symbol = p.symbol$$,
 $$SELECT p.symbol, q.price FROM portfolio p JOIN prices q ON q.symbol = p.symbol AND q.symbol = ANY (ARRAY(SELECT symbol FROM portfolio))$$, NULL),
-- item 2: the kis side is a dummy relation
('issue 2 right join', false, NULL,
 $$SELECT r.symbol FROM (SELECT symbol FROM prices WHERE NULL::bool) s RIGHT JOIN portfolio r ON s.symbol = r.symbol WHERE s.symbol IS NULL$$, NULL, NULL),
('issue 2 not exists', false, NULL,
 $$SELECT r.symbol FROM portfolio r WHERE NOT EXISTS (SELECT 1 FROM (SELECT symbol FROM prices WHERE 1 = 0) s WHERE s.symbol = r.symbol)$$, NULL, NULL),
('dummy inner', false, NULL,
 $$SELECT h.id, q.price FROM h JOIN (SELECT * FROM prices WHERE false) q ON q.symbol = h.symbol$$, NULL, NULL),
('dummy outer side', NULL, NULL,
 $$SELECT h.id, q.price FROM (SELECT * FROM h WHERE false) h JOIN prices q ON q.symbol = h.symbol$$, NULL, NULL),
('dummy left', false, NULL,
 $$SELECT h.id, q.price FROM h LEFT JOIN (SELECT * FROM prices WHERE 1 = 0) q ON q.symbol = h.symbol$$, NULL, NULL),
-- item 3: a kis column read above a LEFT batched join, not in its output
('issue 3', true, NULL,
 $$SELECT p.symbol FROM portfolio p LEFT JOIN prices q ON q.symbol = p.symbol WHERE q.price IS NULL$$,
 $$SELECT p.symbol FROM portfolio p LEFT JOIN (SELECT * FROM prices WHERE symbol = ANY (ARRAY(SELECT symbol FROM portfolio))) q ON q.symbol = p.symbol WHERE q.price IS NULL$$, NULL),
('left, filter on a kis column', true, NULL,
 $$SELECT h.id FROM h LEFT JOIN prices q ON q.symbol = h.symbol WHERE q.name IS NOT NULL AND q.price > 0$$,
 $$SELECT h.id FROM h LEFT JOIN (SELECT * FROM prices WHERE symbol = ANY (ARRAY(SELECT symbol FROM h))) q ON q.symbol = h.symbol WHERE q.name IS NOT NULL AND q.price > 0$$, NULL),
('left, filter and output', true, NULL,
 $$SELECT h.id, coalesce(q.price, -1) FROM h LEFT JOIN prices q ON q.symbol = h.symbol WHERE q.name IS NULL OR q.price > 0$$,
 $$SELECT h.id, coalesce(q.price, -1) FROM h LEFT JOIN (SELECT * FROM prices WHERE symbol = ANY (ARRAY(SELECT symbol FROM h))) q ON q.symbol = h.symbol WHERE q.name IS NULL OR q.price > 0$$, NULL),
('left, join condition on a kis column', true, NULL,
 $$SELECT h.id, q.price FROM h LEFT JOIN prices q ON q.symbol = h.symbol AND q.price > h.qty * 10000$$,
 $$SELECT h.id, q.price FROM h LEFT JOIN (SELECT * FROM prices WHERE symbol = ANY (ARRAY(SELECT symbol FROM h))) q ON q.symbol = h.symbol AND q.price > h.qty * 10000$$, NULL),
-- item 4: rescans with hashing children (issue's query: 5, 3, 2, 0)
('issue 4 hash aggregate', true, 'enable_sort=off',
 $$SELECT t.n, (SELECT count(*) FROM prices q WHERE q.symbol IN (SELECT symbol FROM h WHERE qty > t.n)) FROM (VALUES (0), (4), (8), (12)) t(n)$$,
 $$SELECT t.n, (SELECT count(*) FROM prices q WHERE q.symbol = ANY (ARRAY(SELECT symbol FROM h WHERE qty > t.n))) FROM (VALUES (0), (4), (8), (12)) t(n)$$, NULL),
('issue 4 sorted', true, NULL,
 $$SELECT t.n, (SELECT count(*) FROM prices q WHERE q.symbol IN (SELECT symbol FROM h WHERE qty > t.n)) FROM (VALUES (0), (4), (8), (12)) t(n)$$,
 $$SELECT t.n, (SELECT count(*) FROM prices q WHERE q.symbol = ANY (ARRAY(SELECT symbol FROM h WHERE qty > t.n))) FROM (VALUES (0), (4), (8), (12)) t(n)$$, NULL),
('distinct child', true, 'enable_sort=off',
 $$SELECT t.n, (SELECT sum(q.price) FROM (SELECT DISTINCT symbol FROM h WHERE qty > t.n) d JOIN prices q ON q.symbol = d.symbol) FROM generate_series(0, 12, 3) t(n)$$,
 $$SELECT t.n, (SELECT sum(q.price) FROM (SELECT DISTINCT symbol FROM h WHERE qty > t.n) d JOIN prices q ON q.symbol = d.symbol AND q.symbol = ANY (ARRAY(SELECT symbol FROM h WHERE qty > t.n))) FROM generate_series(0, 12, 3) t(n)$$, NULL),
('group by child', true, 'enable_sort=off',
 $$SELECT t.n, (SELECT sum(g.total * q.price) FROM (SELECT symbol, sum(qty) AS total FROM h WHERE qty > t.n GROUP BY symbol) g JOIN prices q ON q.symbol = g.symbol) FROM generate_series(0, 12, 3) t(n)$$,
 $$SELECT t.n, (SELECT sum(g.total * q.price) FROM (SELECT symbol, sum(qty) AS total FROM h WHERE qty > t.n GROUP BY symbol) g JOIN prices q ON q.symbol = g.symbol AND q.symbol = ANY (ARRAY(SELECT symbol FROM h WHERE qty > t.n))) FROM generate_series(0, 12, 3) t(n)$$, NULL),
('union child', true, 'enable_sort=off',
 $$SELECT t.n, (SELECT count(*) FROM (SELECT symbol FROM h WHERE qty > t.n UNION SELECT symbol FROM portfolio WHERE qty > t.n) u JOIN prices q ON q.symbol = u.symbol) FROM generate_series(0, 12, 3) t(n)$$,
 NULL, NULL),
('hash join child', true, 'enable_mergejoin=off;enable_indexscan=off;enable_bitmapscan=off;enable_material=off',
 $$SELECT t.n, (SELECT sum(p.qty * q.price) FROM (SELECT h.symbol, v.qty FROM h JOIN hv v USING (symbol) WHERE h.qty > t.n OFFSET 0) p JOIN prices q ON q.symbol = p.symbol) FROM generate_series(0, 12, 3) t(n)$$,
 NULL, NULL),
-- a recursive CTE whose step goes through a batched join over a hashed work table
('recursive cte', true, 'enable_sort=off',
 $$WITH RECURSIVE walk(step, symbol) AS (SELECT 0, '005930'::text UNION ALL SELECT w.step + 1, q.symbol FROM (SELECT DISTINCT step, symbol FROM walk) w JOIN prices q ON q.symbol = w.symbol WHERE w.step < 3) SELECT * FROM walk LIMIT 20$$,
 NULL, NULL),
-- issue 26 item 5: only a date parameter changes between rescans
('date parameter changes', true, NULL,
 $$SELECT g::date, (SELECT sum(d.close) FROM h JOIN daily d ON d.symbol = h.symbol WHERE d.date = g::date) FROM generate_series('2025-03-03'::date, '2025-03-07', '1 day') g$$,
 $$SELECT g::date, (SELECT sum(d.close) FROM h JOIN daily d ON d.symbol = h.symbol AND d.symbol = ANY (ARRAY(SELECT symbol FROM h)) WHERE d.date = g::date) FROM generate_series('2025-03-03'::date, '2025-03-07', '1 day') g$$, NULL),
('market parameter changes', true, NULL,
 $$SELECT m, (SELECT sum(q.price) FROM portfolio p JOIN prices_nx q ON q.symbol = p.symbol WHERE q.market = m) FROM (VALUES ('J'), ('NX'), ('J')) v(m)$$,
 $$SELECT m, (SELECT sum(q.price) FROM portfolio p JOIN prices_nx q ON q.symbol = p.symbol AND q.symbol = ANY (ARRAY(SELECT symbol FROM portfolio)) WHERE q.market = m) FROM (VALUES ('J'), ('NX'), ('J')) v(m)$$, NULL),
-- item 5: char(n), varchar and text keys
('char keys inner', true, NULL,
 $$SELECT h.id, q.symbol, q.price FROM h8 h JOIN prices8 q ON q.symbol = h.symbol$$,
 $$SELECT h.id, q.symbol, q.price FROM h8 h JOIN prices8 q ON q.symbol = h.symbol AND q.symbol = ANY (ARRAY(SELECT symbol FROM h8))$$, NULL),
('char keys left', true, NULL,
 $$SELECT h.id, q.price FROM h8 h LEFT JOIN prices8 q ON q.symbol = h.symbol$$,
 $$SELECT h.id, q.price FROM h8 h LEFT JOIN (SELECT * FROM prices8 WHERE symbol = ANY (ARRAY(SELECT symbol FROM h8))) q ON q.symbol = h.symbol$$, NULL),
('char keys anti', true, NULL,
 $$SELECT h.id FROM h8 h WHERE NOT EXISTS (SELECT 1 FROM prices8 q WHERE q.symbol = h.symbol)$$, NULL, NULL),
('char outer, text kis', true, NULL,
 $$SELECT h.id, q.price FROM h8 h JOIN prices q ON q.symbol = h.symbol$$,
 $$SELECT h.id, q.price FROM h8 h JOIN prices q ON q.symbol = h.symbol AND q.symbol = ANY (ARRAY(SELECT symbol::text FROM h8))$$, NULL),
('varchar outer, char kis', true, NULL,
 $$SELECT h.id, q.price FROM hv h JOIN prices8 q ON q.symbol = h.symbol$$, NULL, NULL),
('varchar keys', true, NULL,
 $$SELECT h.id, q.symbol, q.price FROM hv h LEFT JOIN pricesv q ON q.symbol = h.symbol$$, NULL, NULL),
-- item 6: conditions of the kis side that read none of its columns (those
-- of an inner join's own: before PostgreSQL 17 the planner offers no custom
-- join then, and the nested loop answers)
('issue 6', true, NULL,
 $$SELECT p.symbol FROM portfolio p WHERE NOT EXISTS (SELECT 1 FROM (SELECT * FROM prices WHERE now() < '2000-01-01') q WHERE q.symbol = p.symbol)$$, NULL, NULL),
('closed gate inner', current_setting('server_version_num')::int >= 170000, NULL,
 $$SELECT h.id, q.price FROM h JOIN (SELECT * FROM prices WHERE now() < '2000-01-01') q ON q.symbol = h.symbol$$, NULL, NULL),
('closed gate left', true, NULL,
 $$SELECT h.id, q.price FROM h LEFT JOIN (SELECT * FROM prices WHERE now() < '2000-01-01') q ON q.symbol = h.symbol$$, NULL, NULL),
('closed gate semi', current_setting('server_version_num')::int >= 170000, NULL,
 $$SELECT h.id FROM h WHERE EXISTS (SELECT 1 FROM (SELECT * FROM prices WHERE now() < '2000-01-01') q WHERE q.symbol = h.symbol)$$, NULL, NULL),
('open gate left', true, NULL,
 $$SELECT h.id, q.price FROM h LEFT JOIN (SELECT * FROM prices WHERE now() > '2000-01-01') q ON q.symbol = h.symbol$$,
 $$SELECT h.id, q.price FROM h LEFT JOIN (SELECT * FROM prices WHERE now() > '2000-01-01' AND symbol = ANY (ARRAY(SELECT symbol FROM h))) q ON q.symbol = h.symbol$$, NULL),
('gate in the join condition', true, NULL,
 $$SELECT h.id, q.price FROM h LEFT JOIN prices q ON q.symbol = h.symbol AND now() < '2000-01-01'$$, NULL, NULL),
('gate above a left join', false, NULL,
 $$SELECT h.id, q.price FROM h LEFT JOIN prices q ON q.symbol = h.symbol WHERE now() < '2000-01-01'$$, NULL, NULL),
('gate changes per rescan', current_setting('server_version_num')::int >= 170000, NULL,
 $$SELECT t.n, (SELECT count(*) FROM h JOIN (SELECT * FROM prices WHERE t.n > 1) q ON q.symbol = h.symbol) FROM generate_series(0, 3) t(n)$$, NULL, NULL),
('volatile, always true', true, NULL,
 $$SELECT h.id, q.price FROM h JOIN (SELECT * FROM prices WHERE random() >= 0) q ON q.symbol = h.symbol$$, NULL, NULL),
('volatile, always false', true, NULL,
 $$SELECT h.id, q.price FROM h LEFT JOIN (SELECT * FROM prices WHERE random() < 0) q ON q.symbol = h.symbol$$, NULL, NULL),
('volatile outer side', true, NULL,
 $$SELECT h.id, q.price FROM (SELECT * FROM h WHERE random() >= 0) h JOIN prices q ON q.symbol = h.symbol$$, NULL, NULL),
-- generic plans
('generic plan', true, 'plan_cache_mode=force_generic_plan',
 'EXECUTE gp_on(2)', NULL, 'EXECUTE gp_off(2)'),
('generic plan, open gate', true, 'plan_cache_mode=force_generic_plan',
 'EXECUTE gate_on(true)', NULL, 'EXECUTE gate_off(true)'),
('generic plan, closed gate', true, 'plan_cache_mode=force_generic_plan',
 'EXECUTE gate_on(false)', NULL, 'EXECUTE gate_off(false)'),
('generic plan, closed gate inner', current_setting('server_version_num')::int >= 170000, 'plan_cache_mode=force_generic_plan',
 'EXECUTE igate_on(false)', NULL, 'EXECUTE igate_off(false)'),
('generic plan, closed gate anti', NULL, 'plan_cache_mode=force_generic_plan',
 'EXECUTE agate_on(false)', NULL, 'EXECUTE agate_off(false)'),
('generic plan, date', true, 'plan_cache_mode=force_generic_plan',
 $$EXECUTE day_on('2025-03-04')$$, NULL, $$EXECUTE day_off('2025-03-04')$$),
-- the shapes of join.sql
('inner', true, NULL,
 $$SELECT h.id, q.symbol, q.price FROM h JOIN prices q ON q.symbol = h.symbol$$,
 $$SELECT h.id, q.symbol, q.price FROM h JOIN (SELECT * FROM prices WHERE symbol = ANY (ARRAY(SELECT symbol FROM h))) q ON q.symbol = h.symbol$$, NULL),
('left', true, NULL,
 $$SELECT h.id, q.symbol, q.price FROM h LEFT JOIN prices q ON q.symbol = h.symbol$$,
 $$SELECT h.id, q.symbol, q.price FROM h LEFT JOIN (SELECT * FROM prices WHERE symbol = ANY (ARRAY(SELECT symbol FROM h))) q ON q.symbol = h.symbol$$, NULL),
('right', true, NULL,
 $$SELECT h.id, q.price FROM prices q RIGHT JOIN h ON q.symbol = h.symbol$$,
 $$SELECT h.id, q.price FROM (SELECT * FROM prices WHERE symbol = ANY (ARRAY(SELECT symbol FROM h))) q RIGHT JOIN h ON q.symbol = h.symbol$$, NULL),
('semi', true, NULL,
 $$SELECT h.id FROM h WHERE EXISTS (SELECT 1 FROM prices q WHERE q.symbol = h.symbol)$$,
 $$SELECT h.id FROM h WHERE EXISTS (SELECT 1 FROM prices q WHERE q.symbol = h.symbol AND q.symbol = ANY (ARRAY(SELECT symbol FROM h)))$$, NULL),
('anti', true, NULL,
 $$SELECT h.id FROM h WHERE NOT EXISTS (SELECT 1 FROM prices q WHERE q.symbol = h.symbol)$$,
 $$SELECT h.id FROM h WHERE NOT EXISTS (SELECT 1 FROM prices q WHERE q.symbol = h.symbol AND q.symbol = ANY (ARRAY(SELECT symbol FROM h)))$$, NULL),
('in', true, NULL,
 $$SELECT q.symbol, q.price FROM prices q WHERE q.symbol IN (SELECT symbol FROM h)$$,
 $$SELECT q.symbol, q.price FROM prices q WHERE q.symbol = ANY (ARRAY(SELECT symbol FROM h))$$, NULL),
('lateral, flattened', true, NULL,
 $$SELECT h.id, l.price FROM h, LATERAL (SELECT price FROM prices q WHERE q.symbol = h.symbol) l$$,
 $$SELECT h.id, l.price FROM h, LATERAL (SELECT price FROM prices q WHERE q.symbol = h.symbol AND q.symbol = ANY (ARRAY(SELECT symbol FROM h))) l$$, NULL),
('lateral, not flattened', false, NULL,
 $$SELECT h.id, l.price FROM h, LATERAL (SELECT max(price) AS price FROM prices q WHERE q.symbol = h.symbol) l$$, NULL, NULL),
('correlated scalar sub-select', false, NULL,
 $$SELECT h.id, (SELECT q.price FROM prices q WHERE q.symbol = h.symbol) FROM h$$, NULL, NULL),
('three-way join', true, NULL,
 $$SELECT h.id, p.qty, q.price FROM h JOIN portfolio p USING (symbol) JOIN prices q ON q.symbol = h.symbol$$, NULL, NULL),
('aggregate over the join', true, NULL,
 $$SELECT sum(h.qty * q.price) FROM h JOIN prices q USING (symbol)$$, NULL, NULL),
('whole kis row', false, NULL,
 $$SELECT h.id, q.price FROM h JOIN prices q ON q.symbol = h.symbol AND length(q::text) > 0$$, NULL, NULL),
('two batched joins', true, NULL,
 $$SELECT h.id, q1.price, q2.price FROM h LEFT JOIN prices q1 ON q1.symbol = h.symbol LEFT JOIN prices q2 ON q2.symbol = q1.symbol WHERE q2.name IS NULL OR q1.price IS NOT NULL$$, NULL, NULL),
('left join above a left join', NULL, NULL,
 $$SELECT h.id, q.price, p.qty FROM h LEFT JOIN prices q ON q.symbol = h.symbol LEFT JOIN portfolio p ON p.symbol = q.symbol$$, NULL, NULL),
('batched join on a nullable side', true, NULL,
 $$SELECT h.id, x.price FROM h LEFT JOIN (portfolio p JOIN prices q ON q.symbol = p.symbol) x(a, b, c, d, price) ON x.a = h.symbol$$, NULL, NULL),
('placeholders above a left join', NULL, NULL,
 $$SELECT h.id, x.c, x.p FROM h LEFT JOIN (SELECT q.symbol, q.price AS p, coalesce(q.price, h2.qty) AS c FROM hv h2 JOIN prices q ON h2.symbol = q.symbol) x ON x.symbol = h.symbol WHERE x.p IS NULL OR x.c > 0$$, NULL, NULL),
('placeholder of the kis side', NULL, NULL,
 $$SELECT h.id, x.p, x.c FROM h LEFT JOIN (SELECT q.symbol, q.price AS p, coalesce(q.price, 0) AS c FROM prices q) x ON x.symbol = h.symbol$$, NULL, NULL),
('grouping sets over a left join', true, NULL,
 $$SELECT q.price IS NULL, count(*) FROM h LEFT JOIN prices q ON q.symbol = h.symbol GROUP BY GROUPING SETS ((q.price IS NULL), ())$$, NULL, NULL),
('key expression', true, NULL,
 $$SELECT h.id, q.symbol FROM h LEFT JOIN prices q ON q.symbol = upper(h.symbol) WHERE q.symbol IS NULL$$, NULL, NULL),
('correlated anti join', true, NULL,
 $$SELECT t.n, (SELECT count(*) FROM h WHERE NOT EXISTS (SELECT 1 FROM prices q WHERE q.symbol = h.symbol AND q.price > t.n * 10000)) FROM generate_series(0, 9, 3) t(n)$$, NULL, NULL),
('correlated, union all under in', true, 'enable_sort=off',
 $$SELECT t.n, (SELECT string_agg(q.symbol, ',' ORDER BY q.symbol) FROM prices q WHERE q.symbol IN (SELECT symbol FROM h WHERE qty > t.n UNION ALL SELECT symbol FROM portfolio WHERE qty > t.n)) FROM generate_series(0, 12, 2) t(n)$$, NULL, NULL),
('init plan gate', true, NULL,
 $$SELECT h.id FROM h LEFT JOIN prices q ON q.symbol = h.symbol AND (SELECT false) WHERE q.symbol IS NULL$$, NULL, NULL),
('tableoid of the kis side', true, NULL,
 $$SELECT h.id, q.price, q.tableoid::regclass FROM h JOIN prices q ON q.symbol = h.symbol$$, NULL, NULL),
-- cursors: a SCROLL cursor read both ways and again; a rescanned inner side
('scroll cursor', NULL, NULL,
 $$SELECT * FROM jd.scroll('SELECT h.id, q.price FROM jd.h JOIN jd.prices q ON q.symbol = h.symbol')$$, NULL, NULL),
('scroll cursor, left', NULL, NULL,
 $$SELECT * FROM jd.scroll('SELECT h.id, q.price FROM jd.h LEFT JOIN jd.prices q ON q.symbol = h.symbol WHERE q.price IS NULL OR q.price > 0')$$, NULL, NULL),
('scroll cursor, correlated', NULL, 'enable_sort=off',
 $$SELECT * FROM jd.scroll('SELECT t.n, (SELECT count(*) FROM jd.prices q WHERE q.symbol IN (SELECT symbol FROM jd.h WHERE qty > t.n)) FROM generate_series(0, 12, 4) t(n)')$$, NULL, NULL),
('rescanned inner side', true, 'enable_material=off;enable_hashjoin=off;enable_mergejoin=off',
 $$SELECT g, j.id, j.price FROM generate_series(1, 3) g, (SELECT h.id, q.price FROM h JOIN prices q ON q.symbol = h.symbol) j WHERE j.id > g$$, NULL, NULL);

SELECT c.id, c.shape, r.nrows, r.off_same, r.any_same, r.plan_ok, r.error
FROM corpus c, LATERAL check_shape(c.query, c.any_form, c.off_form, c.expect_batched, c.gucs) r
ORDER BY c.id;

-- issue 26 item 5, seen in the plan: every rescan with a new date fetches
-- again (no "KIS Batches Reused")
SELECT trim(line) AS line FROM neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT g::date, (SELECT sum(d.close) FROM h JOIN daily d ON d.symbol = h.symbol WHERE d.date = g::date)
FROM generate_series('2025-03-03'::date, '2025-03-07', '1 day') g
$$) line WHERE line ~ 'KIS (Batches|Outer Rows|Keys Requested|Requests)|Batched Join';
-- a closed gate fetches nothing (issue 19 item 6's query)
SELECT trim(line) AS line FROM neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT p.symbol FROM portfolio p WHERE NOT EXISTS (SELECT 1 FROM (SELECT * FROM prices
WHERE now() < '2000-01-01') q WHERE q.symbol = p.symbol)
$$) line WHERE line ~ 'KIS (Batches|Outer Rows|Keys Requested|Requests)|Batched Join|One-Time';

DEALLOCATE ALL;
RESET search_path;
DROP SCHEMA jd CASCADE;
