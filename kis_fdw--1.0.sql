/* kis_fdw--1.0.sql: SQL objects of the kis_fdw extension */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION kis_fdw" to load this file. \quit

CREATE FUNCTION kis_fdw_handler()
RETURNS fdw_handler
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT;

CREATE FUNCTION kis_fdw_validator(text[], oid)
RETURNS void
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT;

CREATE FOREIGN DATA WRAPPER kis_fdw
  HANDLER kis_fdw_handler
  VALIDATOR kis_fdw_validator;

COMMENT ON FOREIGN DATA WRAPPER kis_fdw IS
  'Korea Investment & Securities Open API: quotes and account data as foreign tables';

-- Counters per app key, named by a prefix of the key's SHA-256 (never the key)
CREATE FUNCTION kis_fdw_stats(
  OUT key_hash text, OUT shared boolean, OUT scans bigint, OUT requests bigint,
  OUT retries bigint, OUT rate_limited bigint, OUT errors_transient bigint,
  OUT errors_token bigint, OUT errors_fatal bigint, OUT errors_symbol bigint,
  OUT tokens_issued bigint, OUT rate_wait_ms double precision,
  OUT rate_wait_max_ms double precision, OUT bytes_received bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION kis_fdw_stats() IS
  'kis_fdw counters per app key since server start (shared when preloaded, else this session''s)';

CREATE VIEW kis_fdw_stats AS SELECT * FROM kis_fdw_stats();
COMMENT ON VIEW kis_fdw_stats IS 'kis_fdw counters per app key; see kis_fdw_stats()';

-- The endpoint catalogue the FDW runs on
CREATE FUNCTION kis_fdw_endpoints(
  OUT endpoint text, OUT description text, OUT path text, OUT tr_id_real text,
  OUT tr_id_virtual text, OUT key_columns text, OUT symbols_per_request int,
  OUT paging text)
RETURNS SETOF record
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT IMMUTABLE;
COMMENT ON FUNCTION kis_fdw_endpoints() IS
  'the KIS APIs a kis_fdw foreign table can read (its endpoint option)';

CREATE FUNCTION kis_fdw_columns(
  OUT endpoint text, OUT ordinal int, OUT column_name text, OUT kis_field text,
  OUT type text)
RETURNS SETOF record
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT IMMUTABLE;
COMMENT ON FUNCTION kis_fdw_columns() IS
  'friendly column names of each endpoint, the KIS field each reads, and the type IMPORT FOREIGN SCHEMA gives it';

COMMENT ON FUNCTION kis_fdw_handler() IS 'kis_fdw foreign-data wrapper handler';
COMMENT ON FUNCTION kis_fdw_validator(text[], oid) IS
  'checks kis_fdw options: where each may appear, its values and ranges';
