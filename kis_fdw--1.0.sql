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

-- IMPORT FOREIGN SCHEMA can only create tables; this documents them (and
-- any kis_fdw table written by hand) from the catalogue, so \d+ explains
-- each table and column.  Returns the number of tables commented.
CREATE FUNCTION kis_fdw_comment(target regnamespace)
RETURNS integer
LANGUAGE plpgsql
SET search_path FROM CURRENT
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
    JOIN kis_fdw_endpoints() e
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
               ELSE (SELECT format('KIS field %s', k.kis_field) FROM kis_fdw_columns() k
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
COMMENT ON FUNCTION kis_fdw_comment(regnamespace) IS
  'adds COMMENT ON the kis_fdw foreign tables of a schema and their columns, from the endpoint catalogue';
