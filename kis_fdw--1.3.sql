/* kis_fdw--1.3.sql: SQL objects of the kis_fdw extension, version 1.3 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION kis_fdw" to load this file. \quit

-- Every name below is schema-qualified and no statement evaluates an
-- expression, so objects others may have created in the extension's schema
-- take no part in the installation (docs/security.md).

CREATE FUNCTION @extschema@.kis_fdw_handler()
RETURNS pg_catalog.fdw_handler
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT;

CREATE FUNCTION @extschema@.kis_fdw_validator(pg_catalog.text[], pg_catalog.oid)
RETURNS pg_catalog.void
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT;

CREATE FOREIGN DATA WRAPPER kis_fdw
  HANDLER @extschema@.kis_fdw_handler
  VALIDATOR @extschema@.kis_fdw_validator;

COMMENT ON FOREIGN DATA WRAPPER kis_fdw IS
  'Korea Investment & Securities Open API: quotes and account data as foreign tables';

COMMENT ON FUNCTION @extschema@.kis_fdw_handler() IS 'kis_fdw foreign-data wrapper handler';
COMMENT ON FUNCTION @extschema@.kis_fdw_validator(pg_catalog.text[], pg_catalog.oid) IS
  'checks kis_fdw options: where each may appear, its values and ranges';

-- Counters per app key, named by a prefix of the key's SHA-256 (never the
-- key); readable by superusers and pg_read_all_stats, like
-- pg_stat_statements, through the function as through the view
CREATE FUNCTION @extschema@.kis_fdw_stats(
  OUT key_hash pg_catalog.text, OUT shared pg_catalog.bool, OUT scans pg_catalog.int8,
  OUT requests pg_catalog.int8, OUT retries pg_catalog.int8, OUT rate_limited pg_catalog.int8,
  OUT errors_transient pg_catalog.int8, OUT errors_token pg_catalog.int8,
  OUT errors_fatal pg_catalog.int8, OUT errors_symbol pg_catalog.int8,
  OUT tokens_issued pg_catalog.int8, OUT rate_wait_ms pg_catalog.float8,
  OUT rate_wait_max_ms pg_catalog.float8, OUT bytes_received pg_catalog.int8,
  OUT cache_hits pg_catalog.int8, OUT shared_waits pg_catalog.int8,
  OUT cache_bytes pg_catalog.int8)
RETURNS SETOF pg_catalog.record
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION @extschema@.kis_fdw_stats() IS
  'kis_fdw counters per app key since server start (shared when preloaded, else this session''s); cache_bytes is the whole answer cache''s';

CREATE VIEW @extschema@.kis_fdw_stats AS SELECT * FROM @extschema@.kis_fdw_stats();
COMMENT ON VIEW @extschema@.kis_fdw_stats IS 'kis_fdw counters per app key; see kis_fdw_stats()';

REVOKE ALL ON FUNCTION @extschema@.kis_fdw_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.kis_fdw_stats() TO pg_read_all_stats;
GRANT SELECT ON @extschema@.kis_fdw_stats TO pg_read_all_stats;

-- The endpoint catalogue the FDW runs on
CREATE FUNCTION @extschema@.kis_fdw_endpoints(
  OUT endpoint pg_catalog.text, OUT description pg_catalog.text, OUT path pg_catalog.text,
  OUT tr_id_real pg_catalog.text, OUT tr_id_virtual pg_catalog.text,
  OUT key_columns pg_catalog.text, OUT symbols_per_request pg_catalog.int4,
  OUT paging pg_catalog.text)
RETURNS SETOF pg_catalog.record
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT IMMUTABLE;
COMMENT ON FUNCTION @extschema@.kis_fdw_endpoints() IS
  'the KIS APIs a kis_fdw foreign table can read (its endpoint option)';

CREATE FUNCTION @extschema@.kis_fdw_columns(
  OUT endpoint pg_catalog.text, OUT ordinal pg_catalog.int4, OUT column_name pg_catalog.text,
  OUT kis_field pg_catalog.text, OUT type pg_catalog.text)
RETURNS SETOF pg_catalog.record
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT IMMUTABLE;
COMMENT ON FUNCTION @extschema@.kis_fdw_columns() IS
  'friendly column names of each endpoint, the KIS field each reads, and the type IMPORT FOREIGN SCHEMA gives it';

-- Clear one app key's rate gate and token issuance wait (docs/tokens-and-rate.md)
CREATE FUNCTION @extschema@.kis_fdw_reset_key(server pg_catalog.name)
RETURNS pg_catalog.bool
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION @extschema@.kis_fdw_reset_key(pg_catalog.name) IS
  'kis_fdw: forget the rate-gate schedule and token issuance wait of the app key in your user mapping for this server; true if the key had any';

REVOKE ALL ON FUNCTION @extschema@.kis_fdw_reset_key(pg_catalog.name) FROM PUBLIC;

-- Empty the answer cache (docs/cache.md)
CREATE FUNCTION @extschema@.kis_fdw_cache_reset()
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION @extschema@.kis_fdw_cache_reset() IS
  'kis_fdw: forget every answer in the answer cache (requests in flight finish); returns how many were dropped';

REVOKE ALL ON FUNCTION @extschema@.kis_fdw_cache_reset() FROM PUBLIC;

-- IMPORT FOREIGN SCHEMA can only create tables; this documents them (and
-- any kis_fdw table written by hand) from the catalogue, so \d+ explains
-- each table and column.  Returns the number of tables commented.
CREATE FUNCTION @extschema@.kis_fdw_comment(target pg_catalog.regnamespace)
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

-- Pin and drop live symbols of the caller's app key on a server (docs/live.md)
CREATE FUNCTION @extschema@.kis_fdw_live_subscribe(
  server pg_catalog.name, symbols pg_catalog.text[], kind pg_catalog.text DEFAULT 'trade')
RETURNS pg_catalog.int4
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION @extschema@.kis_fdw_live_subscribe(pg_catalog.name, pg_catalog.text[], pg_catalog.text) IS
  'kis_fdw: subscribe the symbols (kind trade, orderbook or overseas; overseas as EXCHANGE:SYMBOL) on the WebSocket of your user mapping''s app key and keep them until unsubscribed; returns how many KIS took';

CREATE FUNCTION @extschema@.kis_fdw_live_unsubscribe(
  server pg_catalog.name, symbols pg_catalog.text[], kind pg_catalog.text DEFAULT 'trade')
RETURNS pg_catalog.int4
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION @extschema@.kis_fdw_live_unsubscribe(pg_catalog.name, pg_catalog.text[], pg_catalog.text) IS
  'kis_fdw: unpin and unsubscribe the symbols on the WebSocket of your user mapping''s app key';

-- One row per app key with a live channel, named as kis_fdw_stats names it;
-- readable by superusers and pg_read_all_stats, like kis_fdw_stats
CREATE FUNCTION @extschema@.kis_fdw_live(
  OUT key_hash pg_catalog.text, OUT socket pg_catalog.text,
  OUT subscriptions pg_catalog.int4, OUT pending pg_catalog.int4, OUT refused pg_catalog.int4,
  OUT ticks pg_catalog.int8, OUT last_tick pg_catalog.timestamptz,
  OUT reconnects pg_catalog.int8, OUT subscription_limit pg_catalog.int4,
  OUT last_error pg_catalog.text, OUT last_error_at pg_catalog.timestamptz,
  OUT worker_pid pg_catalog.int4)
RETURNS SETOF pg_catalog.record
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION @extschema@.kis_fdw_live() IS
  'kis_fdw live channels: per app key, the WebSocket''s state, subscriptions, ticks received, reconnects and the last error';

CREATE VIEW @extschema@.kis_fdw_live AS SELECT * FROM @extschema@.kis_fdw_live();
COMMENT ON VIEW @extschema@.kis_fdw_live IS 'kis_fdw live channels per app key; see kis_fdw_live()';

REVOKE ALL ON FUNCTION @extschema@.kis_fdw_live() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.kis_fdw_live() TO pg_read_all_stats;
GRANT SELECT ON @extschema@.kis_fdw_live TO pg_read_all_stats;
