--
-- upgrade: kis_fdw installed at 1.0 and updated with ALTER EXTENSION, one
-- version at a time (1.0 -> 1.1 -> 1.2 -> 1.3), gives the same answers before and
-- after, and has the same objects as a fresh install of the current version
-- (this database's, made by setup).
--
\getenv mock_url KIS_MOCK_URL
\getenv mock_ca KIS_MOCK_CA
\set regress_db :DBNAME

-- an extension's member objects, one line each, with function and view
-- definitions and who besides their owner may use them (PUBLIC,
-- pg_read_all_stats), so that an upgrade script that forgets or changes
-- one differs
\set members 'SELECT string_agg(d, E''\n'' ORDER BY d) FROM (SELECT pg_describe_object(classid, objid, objsubid) || CASE WHEN classid = ''pg_proc''::regclass THEN '' '' || md5(pg_get_functiondef(objid)) || (SELECT '' public '' || (proacl IS NULL OR EXISTS (SELECT FROM aclexplode(proacl) a WHERE a.grantee = 0)) FROM pg_proc WHERE oid = objid) || '' stats '' || has_function_privilege(''pg_read_all_stats'', objid, ''EXECUTE'') WHEN classid = ''pg_class''::regclass AND objsubid = 0 THEN '' '' || md5(coalesce(pg_get_viewdef(objid), '''')) || '' stats '' || has_table_privilege(''pg_read_all_stats'', objid, ''SELECT'') ELSE '''' END AS d FROM pg_depend WHERE refclassid = ''pg_extension''::regclass AND refobjid = (SELECT oid FROM pg_extension WHERE extname = ''kis_fdw'') AND deptype = ''e'') m'
:members \gset fresh_

CREATE DATABASE kis_upgrade;
\c kis_upgrade
CREATE EXTENSION kis_fdw VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'kis_fdw';
CREATE SERVER kis FOREIGN DATA WRAPPER kis_fdw
  OPTIONS (environment 'real', base_url :'mock_url', ca_file :'mock_ca',
           rate_limit '0', max_retries '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER kis
  OPTIONS (app_key 'PSregressAppKey000000000000000000000', app_secret 'regress-secret');
CREATE FOREIGN TABLE prices (symbol text, name text, price numeric, raw jsonb)
  SERVER kis OPTIONS (endpoint 'domestic_price');
CREATE TABLE answers_1_0 AS
  SELECT symbol, name, price, raw FROM prices WHERE symbol IN ('005930', '000660');
SELECT symbol, name, price FROM answers_1_0 ORDER BY symbol;
CREATE TABLE endpoints_1_0 AS SELECT * FROM kis_fdw_endpoints();
-- privileges on kis_fdw_stats, which 1.1 makes anew
CREATE ROLE kis_upgrade_reader;
GRANT SELECT ON kis_fdw_stats TO kis_upgrade_reader;
REVOKE EXECUTE ON FUNCTION kis_fdw_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kis_fdw_stats() TO kis_upgrade_reader;

ALTER EXTENSION kis_fdw UPDATE TO '1.1';
SELECT extversion FROM pg_extension WHERE extname = 'kis_fdw';

-- kis_fdw_stats has the cache's columns, and its privileges are kept
SELECT count(*) AS cache_columns FROM pg_attribute
WHERE attrelid = 'kis_fdw_stats'::regclass AND attname IN ('cache_hits', 'shared_waits', 'cache_bytes');
SELECT has_table_privilege('kis_upgrade_reader', 'kis_fdw_stats', 'SELECT') AS reader_selects,
       has_function_privilege('kis_upgrade_reader', 'kis_fdw_stats()', 'EXECUTE') AS reader_executes,
       EXISTS (SELECT FROM pg_proc p, aclexplode(p.proacl) a
               WHERE p.oid = 'kis_fdw_stats()'::regprocedure AND a.grantee = 0) AS public_executes;

-- the same answers from the objects made under 1.0
SELECT symbol, p.price, p.price = a.price AS same_price,
       p.name IS NOT DISTINCT FROM a.name AS same_name, p.raw = a.raw AS same_raw
FROM prices p JOIN answers_1_0 a USING (symbol)
WHERE symbol IN ('005930', '000660') ORDER BY symbol;
SELECT count(*) AS endpoints_gone FROM (TABLE endpoints_1_0 EXCEPT SELECT * FROM kis_fdw_endpoints()) e;

-- 1.1 -> 1.2 -> 1.3: kis_fdw_comment runs with pg_catalog and pg_temp only,
-- and the live tables' functions and view come
ALTER EXTENSION kis_fdw UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'kis_fdw';
SELECT proconfig FROM pg_proc WHERE oid = 'kis_fdw_comment(regnamespace)'::regprocedure;
SELECT kis_fdw_comment('public') AS commented;
SELECT obj_description('prices'::regclass, 'pg_class') AS table_comment;

-- the same objects as a fresh install: lines only one of them has
:members \gset upgraded_
(SELECT 'only after a fresh install' AS "where", d FROM unnest(string_to_array(:'fresh_string_agg', E'\n')) d
 EXCEPT SELECT 'only after a fresh install', unnest(string_to_array(:'upgraded_string_agg', E'\n')))
UNION ALL
(SELECT 'only after the upgrade', d FROM unnest(string_to_array(:'upgraded_string_agg', E'\n')) d
 EXCEPT SELECT 'only after the upgrade', unnest(string_to_array(:'fresh_string_agg', E'\n')))
ORDER BY 1, 2;
SELECT :'fresh_string_agg' = :'upgraded_string_agg' AS same_objects;

\c :regress_db
DROP DATABASE kis_upgrade;

-- 1.0 -> 1.2 in one step, the path a plain UPDATE from 1.0 takes (the
-- shortest, then 1.2 -> 1.3): the same objects and privileges as a fresh install
SELECT path FROM pg_extension_update_paths('kis_fdw') WHERE source = '1.0' AND target = '1.2';
CREATE DATABASE kis_upgrade;
\c kis_upgrade
CREATE EXTENSION kis_fdw VERSION '1.0';
GRANT SELECT ON kis_fdw_stats TO kis_upgrade_reader;
REVOKE EXECUTE ON FUNCTION kis_fdw_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kis_fdw_stats() TO kis_upgrade_reader;
ALTER EXTENSION kis_fdw UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'kis_fdw';
SELECT has_table_privilege('kis_upgrade_reader', 'kis_fdw_stats', 'SELECT') AS reader_selects,
       has_function_privilege('kis_upgrade_reader', 'kis_fdw_stats()', 'EXECUTE') AS reader_executes,
       EXISTS (SELECT FROM pg_proc p, aclexplode(p.proacl) a
               WHERE p.oid = 'kis_fdw_stats()'::regprocedure AND a.grantee = 0) AS public_executes;
-- the reader's grants aside, the objects of a fresh install
REVOKE SELECT ON kis_fdw_stats FROM kis_upgrade_reader;
REVOKE EXECUTE ON FUNCTION kis_fdw_stats() FROM kis_upgrade_reader;
:members \gset direct_
(SELECT 'only after a fresh install' AS "where", d FROM unnest(string_to_array(:'fresh_string_agg', E'\n')) d
 EXCEPT SELECT 'only after a fresh install', unnest(string_to_array(:'direct_string_agg', E'\n')))
UNION ALL
(SELECT 'only after the direct update', d FROM unnest(string_to_array(:'direct_string_agg', E'\n')) d
 EXCEPT SELECT 'only after the direct update', unnest(string_to_array(:'fresh_string_agg', E'\n')))
ORDER BY 1, 2;
SELECT :'fresh_string_agg' = :'direct_string_agg' AS same_objects;

\c :regress_db
DROP DATABASE kis_upgrade;
DROP ROLE kis_upgrade_reader;
