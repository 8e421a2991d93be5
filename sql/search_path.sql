--
-- search_path: a role that may create objects in the extension's schema
-- (public: the default before PostgreSQL 15, common after) plants there
-- operators and functions that match the extension's SQL better than
-- pg_catalog's.  A superuser then updates kis_fdw from 1.1, installs it
-- afresh and runs the README's quick start.  Nothing planted runs: each
-- would log itself and make its owner a superuser.
--
\getenv mock_url KIS_MOCK_URL
\getenv mock_ca KIS_MOCK_CA
\set regress_db :DBNAME
-- the README's quick start, against the mock
\set quick_start 'CREATE SERVER kis FOREIGN DATA WRAPPER kis_fdw OPTIONS (environment ''real'', base_url ' :'mock_url' ', ca_file ' :'mock_ca' ', rate_limit ''0''); CREATE USER MAPPING FOR CURRENT_USER SERVER kis OPTIONS (app_key ''PSregressAppKey000000000000000000000'', app_secret ''regress-secret''); IMPORT FOREIGN SCHEMA kis LIMIT TO (domestic_price, domestic_daily) FROM SERVER kis INTO public; SELECT kis_fdw_comment(''public'') AS commented;'

CREATE DATABASE kis_planted;
\c kis_planted
-- 1.1 installed before anything was planted
CREATE EXTENSION kis_fdw VERSION '1.1';
CREATE ROLE kis_planter;
GRANT CREATE ON SCHEMA public TO kis_planter;

SET ROLE kis_planter;
CREATE TABLE planted_ran (what text, ran_as name);
GRANT INSERT ON planted_ran TO PUBLIC;
CREATE FUNCTION planted(what text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.planted_ran VALUES (what, current_user);
  IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) current_user) THEN
    ALTER ROLE kis_planter SUPERUSER;
  END IF;
END
$$;
-- operators with no exact match in pg_catalog for the operands the
-- extension's SQL gives them
CREATE FUNCTION planted_cat(a name, b name) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM public.planted('name || name');
  RETURN a::text OPERATOR(pg_catalog.||) b::text;
END
$$;
CREATE OPERATOR || (LEFTARG = name, RIGHTARG = name, FUNCTION = planted_cat);
DO $do$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['regclass', 'regnamespace', 'integer'] LOOP
    EXECUTE format($f$
      CREATE FUNCTION public.planted_eq(a oid, b %1$s) RETURNS boolean
      LANGUAGE plpgsql AS $b$
      BEGIN
        PERFORM public.planted('oid = %1$s');
        RETURN a OPERATOR(pg_catalog.=) b::oid;
      END
      $b$$f$, t);
    EXECUTE format('CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = %s, FUNCTION = public.planted_eq)', t);
  END LOOP;
END
$do$;
-- a function matching better than pg_catalog's polymorphic one
CREATE FUNCTION unnest(a text[]) RETURNS SETOF text
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM public.planted('unnest(text[])');
  RETURN QUERY SELECT pg_catalog.unnest(a);
END
$$;
RESET ROLE;

-- the superuser updates to 1.2 and documents the tables
ALTER EXTENSION kis_fdw UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'kis_fdw';
:quick_start
SELECT what, ran_as FROM planted_ran ORDER BY 1;

-- a fresh install and the README's quick start
DROP EXTENSION kis_fdw CASCADE;
CREATE EXTENSION kis_fdw;
SELECT extversion FROM pg_extension WHERE extname = 'kis_fdw';
:quick_start
SELECT col_description('domestic_price'::regclass, 1) AS symbol_comment;
SELECT symbol, price FROM domestic_price WHERE symbol IN ('005930', '000660') ORDER BY symbol;
SELECT count(*) > 0 AS has_stats FROM kis_fdw_stats;

-- nothing planted ran, and its owner is no superuser
SELECT what, ran_as FROM planted_ran ORDER BY 1;
SELECT rolsuper FROM pg_roles WHERE rolname = 'kis_planter';

\c :regress_db
DROP DATABASE kis_planted;
DROP ROLE kis_planter;
