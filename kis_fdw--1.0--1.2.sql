/* kis_fdw--1.0--1.2.sql: 1.0's SQL objects brought to 1.2 in one step */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION kis_fdw UPDATE TO '1.2'" to load this file. \quit

-- ALTER EXTENSION takes the shortest path, so an update from 1.0 runs this
-- script and never the released 1.0 -> 1.1 one, whose queries name
-- operators (oid = regprocedure, ...) that a role with CREATE on the
-- extension's schema could plant (docs/security.md).  It makes what the two
-- steps make; every name is qualified, every operator is pg_catalog's.

-- Clear one app key's rate gate and token issuance wait (docs/tokens-and-rate.md)
CREATE FUNCTION @extschema@.kis_fdw_reset_key(server pg_catalog.name)
RETURNS pg_catalog.bool
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION @extschema@.kis_fdw_reset_key(pg_catalog.name) IS
  'kis_fdw: forget the rate-gate schedule and token issuance wait of the app key in your user mapping for this server; true if the key had any';

REVOKE ALL ON FUNCTION @extschema@.kis_fdw_reset_key(pg_catalog.name) FROM PUBLIC;

-- The counters: readable by superusers and pg_read_all_stats.  They gain the
-- cache's columns; a function's OUT columns cannot change in place, so the
-- view and the function are made anew, with the privileges granted on them.
SELECT pg_catalog.set_config('kis_fdw_upgrade.stats_grants',
                             COALESCE(pg_catalog.string_agg(stmt, '; '), ''), true)
FROM (SELECT pg_catalog.format('GRANT %s ON %s TO %s', a.privilege_type, t.what,
                               CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0::pg_catalog.oid
                                    THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END) AS stmt
      FROM (SELECT '@extschema@.kis_fdw_stats' AS what, c.relacl AS acl, c.relowner AS owner
              FROM pg_catalog.pg_class c
             WHERE c.oid OPERATOR(pg_catalog.=) '@extschema@.kis_fdw_stats'::pg_catalog.regclass::pg_catalog.oid
            UNION ALL
            SELECT 'FUNCTION @extschema@.kis_fdw_stats()', p.proacl, p.proowner
              FROM pg_catalog.pg_proc p
             WHERE p.oid OPERATOR(pg_catalog.=)
                   '@extschema@.kis_fdw_stats()'::pg_catalog.regprocedure::pg_catalog.oid) t
           CROSS JOIN LATERAL pg_catalog.aclexplode(t.acl) a
           LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee
      WHERE a.grantee OPERATOR(pg_catalog.<>) t.owner
        -- 1.1 took EXECUTE from PUBLIC before it kept the grants
        AND NOT (pg_catalog.starts_with(t.what, 'FUNCTION')
                 AND a.grantee OPERATOR(pg_catalog.=) 0::pg_catalog.oid)) s;

DROP VIEW @extschema@.kis_fdw_stats;
DROP FUNCTION @extschema@.kis_fdw_stats();

CREATE FUNCTION @extschema@.kis_fdw_stats(
  OUT key_hash pg_catalog.text, OUT shared pg_catalog.bool, OUT scans pg_catalog.int8,
  OUT requests pg_catalog.int8, OUT retries pg_catalog.int8, OUT rate_limited pg_catalog.int8,
  OUT errors_transient pg_catalog.int8, OUT errors_token pg_catalog.int8,
  OUT errors_fatal pg_catalog.int8, OUT errors_symbol pg_catalog.int8,
  OUT tokens_issued pg_catalog.int8, OUT rate_wait_ms pg_catalog.float8,
  OUT rate_wait_max_ms pg_catalog.float8, OUT bytes_received pg_catalog.int8,
  OUT cache_hits pg_catalog.int8, OUT shared_waits pg_catalog.int8,
  OUT cache_bytes pg_catalog.int8)
RETURNS SETOF record
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION @extschema@.kis_fdw_stats() IS
  'kis_fdw counters per app key since server start (shared when preloaded, else this session''s); cache_bytes is the whole answer cache''s';

CREATE VIEW @extschema@.kis_fdw_stats AS SELECT * FROM @extschema@.kis_fdw_stats();
COMMENT ON VIEW @extschema@.kis_fdw_stats IS 'kis_fdw counters per app key; see kis_fdw_stats()';

-- 1.1's defaults: not for PUBLIC, for pg_read_all_stats; then what the
-- installation had granted on the old ones
REVOKE ALL ON FUNCTION @extschema@.kis_fdw_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.kis_fdw_stats() TO pg_read_all_stats;
GRANT SELECT ON @extschema@.kis_fdw_stats TO pg_read_all_stats;
DO $$
BEGIN
  IF pg_catalog.current_setting('kis_fdw_upgrade.stats_grants') OPERATOR(pg_catalog.<>) '' THEN
    EXECUTE pg_catalog.current_setting('kis_fdw_upgrade.stats_grants');
  END IF;
END
$$;

-- Empty the answer cache (docs/cache.md)
CREATE FUNCTION @extschema@.kis_fdw_cache_reset()
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION @extschema@.kis_fdw_cache_reset() IS
  'kis_fdw: forget every answer in the answer cache (requests in flight finish); returns how many were dropped';

REVOKE ALL ON FUNCTION @extschema@.kis_fdw_cache_reset() FROM PUBLIC;

-- kis_fdw_comment() runs with pg_catalog and pg_temp only and names the
-- extension's own functions by schema (as in kis_fdw--1.1--1.2.sql)
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
