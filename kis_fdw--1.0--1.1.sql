/* kis_fdw--1.0--1.1.sql: what 1.1 adds to or changes in 1.0's SQL objects */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION kis_fdw UPDATE TO '1.1'" to load this file. \quit

-- Clear one app key's rate gate and token issuance wait (docs/tokens-and-rate.md)
CREATE FUNCTION kis_fdw_reset_key(server name)
RETURNS boolean
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION kis_fdw_reset_key(name) IS
  'kis_fdw: forget the rate-gate schedule and token issuance wait of the app key in your user mapping for this server; true if the key had any';

REVOKE ALL ON FUNCTION kis_fdw_reset_key(name) FROM PUBLIC;

-- kis_fdw_comment() finds kis_fdw_endpoints() and kis_fdw_columns() through
-- the search_path it was created with, so the extension cannot move to
-- another schema (the control file now says relocatable = false).  An
-- installation moved under 1.0 gets the function's search_path corrected.
ALTER FUNCTION kis_fdw_comment(regnamespace) SET search_path = @extschema@;

-- The counters name app keys (by hash) and show how much each is used:
-- readable by superusers and pg_read_all_stats, like pg_stat_statements,
-- through the function as through the view.
REVOKE ALL ON FUNCTION kis_fdw_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kis_fdw_stats() TO pg_read_all_stats;
GRANT SELECT ON kis_fdw_stats TO pg_read_all_stats;

-- Shared answers (docs/cache.md).  kis_fdw_stats gains the cache's columns;
-- a function's OUT columns cannot change in place, so the view and the
-- function are dropped and made again, with the privileges granted on them.
SELECT set_config('kis_fdw_upgrade.stats_grants', coalesce(string_agg(stmt, '; '), ''), true)
FROM (SELECT format('GRANT %s ON %s TO %s', a.privilege_type, t.what,
                    CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END) AS stmt
      FROM (SELECT 'TABLE kis_fdw_stats' AS what, relacl AS acl, relowner AS owner
              FROM pg_class WHERE oid = 'kis_fdw_stats'::regclass
            UNION ALL
            SELECT 'FUNCTION kis_fdw_stats()', proacl, proowner
              FROM pg_proc WHERE oid = 'kis_fdw_stats()'::regprocedure) t
           CROSS JOIN LATERAL aclexplode(t.acl) a
           LEFT JOIN pg_roles r ON r.oid = a.grantee
      WHERE a.grantee <> t.owner
      UNION ALL
      -- EXECUTE taken from PUBLIC stays taken (a new function has it)
      SELECT 'REVOKE EXECUTE ON FUNCTION kis_fdw_stats() FROM PUBLIC'
      FROM pg_proc p
      WHERE p.oid = 'kis_fdw_stats()'::regprocedure AND p.proacl IS NOT NULL
        AND NOT EXISTS (SELECT FROM aclexplode(p.proacl) a WHERE a.grantee = 0)) s;

DROP VIEW kis_fdw_stats;
DROP FUNCTION kis_fdw_stats();

CREATE FUNCTION kis_fdw_stats(
  OUT key_hash text, OUT shared boolean, OUT scans bigint, OUT requests bigint,
  OUT retries bigint, OUT rate_limited bigint, OUT errors_transient bigint,
  OUT errors_token bigint, OUT errors_fatal bigint, OUT errors_symbol bigint,
  OUT tokens_issued bigint, OUT rate_wait_ms double precision,
  OUT rate_wait_max_ms double precision, OUT bytes_received bigint,
  OUT cache_hits bigint, OUT shared_waits bigint, OUT cache_bytes bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION kis_fdw_stats() IS
  'kis_fdw counters per app key since server start (shared when preloaded, else this session''s); cache_bytes is the whole answer cache''s';

CREATE VIEW kis_fdw_stats AS SELECT * FROM kis_fdw_stats();
COMMENT ON VIEW kis_fdw_stats IS 'kis_fdw counters per app key; see kis_fdw_stats()';

DO $$
BEGIN
  IF current_setting('kis_fdw_upgrade.stats_grants') <> '' THEN
    EXECUTE current_setting('kis_fdw_upgrade.stats_grants');
  END IF;
END
$$;

-- Empty the answer cache (docs/cache.md)
CREATE FUNCTION kis_fdw_cache_reset()
RETURNS bigint
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION kis_fdw_cache_reset() IS
  'kis_fdw: forget every answer in the answer cache (requests in flight finish); returns how many were dropped';

REVOKE ALL ON FUNCTION kis_fdw_cache_reset() FROM PUBLIC;
