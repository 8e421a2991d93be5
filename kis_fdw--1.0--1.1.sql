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
