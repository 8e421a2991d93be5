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
