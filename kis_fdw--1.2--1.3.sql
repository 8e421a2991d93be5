/* kis_fdw--1.2--1.3.sql: what 1.3 adds to 1.2: the live tables' functions */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION kis_fdw UPDATE TO '1.3'" to load this file. \quit

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
