/* kis_fdw--1.1--1.2.sql: what 1.2 changes in 1.1's SQL objects */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION kis_fdw UPDATE TO '1.2'" to load this file. \quit

-- kis_fdw_comment() ran with search_path = @extschema@: a role that may
-- create objects there could plant an operator or function that matches
-- better than pg_catalog's (public.||(name, name), say) and have it run as
-- whoever documents the tables, usually a superuser.  It now runs with
-- pg_catalog and pg_temp only and names the extension's own functions by
-- schema (docs/security.md).
CREATE OR REPLACE FUNCTION @extschema@.kis_fdw_comment(target pg_catalog.regnamespace)
RETURNS pg_catalog.int4
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t record;
  c record;
  n integer := 0;
BEGIN
  FOR t IN
    SELECT cl.oid::regclass AS tab, e.*
    FROM pg_class cl
    JOIN pg_foreign_table ft ON ft.ftrelid = cl.oid
    JOIN pg_foreign_server s ON s.oid = ft.ftserver
    JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw AND w.fdwname = 'kis_fdw'
    JOIN @extschema@.kis_fdw_endpoints() e
      ON e.endpoint = (SELECT substr(o, length('endpoint=') + 1)
                       FROM unnest(ft.ftoptions) o WHERE o LIKE 'endpoint=%')
    WHERE cl.relnamespace = target
  LOOP
    EXECUTE format('COMMENT ON FOREIGN TABLE %s IS %L', t.tab,
                   format('KIS %s (%s, tr_id %s): %s', t.endpoint, t.path, t.tr_id_real, t.description));
    FOR c IN
      SELECT a.attname,
             CASE
               WHEN a.attname = 'symbol' AND t.key_columns LIKE 'symbol%' THEN 'the symbol asked for (a condition on it is required)'
               WHEN a.attname IN ('market', 'exchange') AND t.key_columns LIKE '%' || a.attname || '%'
                 THEN format('the %s asked for (default: the table''s %s option)', a.attname, a.attname)
               WHEN a.attname = 'fetched_at' THEN 'when the KIS answer arrived'
               WHEN a.attname = 'error' THEN 'why this key failed, with on_error ''row'''
               WHEN a.attname = 'raw' THEN 'the whole KIS row object'
               ELSE (SELECT format('KIS field %s', k.kis_field) FROM @extschema@.kis_fdw_columns() k
                     WHERE k.endpoint = t.endpoint AND k.column_name = a.attname)
             END AS note
      FROM pg_attribute a
      WHERE a.attrelid = t.tab AND a.attnum > 0 AND NOT a.attisdropped
    LOOP
      IF c.note IS NOT NULL THEN
        EXECUTE format('COMMENT ON COLUMN %s.%I IS %L', t.tab, c.attname, c.note);
      END IF;
    END LOOP;
    n := n + 1;
  END LOOP;
  RETURN n;
END
$$;
COMMENT ON FUNCTION @extschema@.kis_fdw_comment(pg_catalog.regnamespace) IS
  'adds COMMENT ON the kis_fdw foreign tables of a schema and their columns, from the endpoint catalogue';
