--
-- setup: the extension, a server pointing at the mock KIS server, a user
-- mapping and the foreign tables the other tests use.  The mock's URL and
-- CA come from the environment so that no port appears in expected output.
--
\getenv mock_url KIS_MOCK_URL
\getenv mock_ca KIS_MOCK_CA
\getenv mock_ws_url KIS_MOCK_WS_URL

CREATE EXTENSION kis_fdw;
SELECT extname, extversion FROM pg_extension WHERE extname = 'kis_fdw';

CREATE SERVER kis FOREIGN DATA WRAPPER kis_fdw
  OPTIONS (environment 'real', base_url :'mock_url', ca_file :'mock_ca',
           ws_url :'mock_ws_url', rate_limit '0', max_retries '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER kis
  OPTIONS (app_key 'PSregressAppKey000000000000000000000', app_secret 'regress-secret');

-- the table of the issue, as a user would write it
CREATE FOREIGN TABLE kis_prices (
  symbol text, name text, price numeric, change numeric, change_rate numeric,
  volume bigint, open numeric, high numeric, low numeric, per numeric, pbr numeric,
  fetched_at timestamptz, raw jsonb)
  SERVER kis OPTIONS (endpoint 'domestic_price');

CREATE TABLE portfolio (symbol text PRIMARY KEY, qty int NOT NULL);
INSERT INTO portfolio VALUES ('005930', 10), ('000660', 3), ('035420', 7);

-- EXPLAIN as text that reads the same on every supported PostgreSQL major:
-- 17 dropped "(returns $0)" from InitPlan headers, 18 prints actual row
-- counts with two decimals (rounded before) and a "Disabled" property in
-- structured formats
CREATE FUNCTION neutral_explain(query text) RETURNS SETOF text
LANGUAGE plpgsql AS $fn$
DECLARE
  line text;
  m text[];
BEGIN
  FOR line IN EXECUTE query LOOP
    line := regexp_replace(line, '^(\s*InitPlan \d+) \(returns [^)]*\)$', '\1');
    LOOP
      m := regexp_match(line, 'rows=(\d+)\.(\d+)');
      EXIT WHEN m IS NULL;
      line := regexp_replace(line, 'rows=\d+\.\d+',
                             'rows=' || round((m[1] || '.' || m[2])::numeric));
    END LOOP;
    line := regexp_replace(line, '\n\s*"Disabled": false,', '', 'g');
    line := regexp_replace(line, ',\n\s*"Disabled": false(\n)', '\1', 'g');
    -- the other structured formats: the same "Disabled", and 18's decimals
    line := regexp_replace(line, '\n\s*(Disabled: false|<Disabled>false</Disabled>)', '', 'g');
    line := regexp_replace(line, '(Actual Rows"?: |<Actual-Rows>)(\d+)\.00', '\1\2', 'g');
    -- timings (TIMING ON), in every format: "N" for the number
    line := regexp_replace(line, 'actual time=[0-9.]+\.\.[0-9.]+', 'actual time=N..N', 'g');
    line := regexp_replace(line, '((Actual Startup Time|Actual Total Time|KIS Rate Wait|KIS HTTP Time)"?: )[0-9.]+',
                           '\1N', 'g');
    line := regexp_replace(line, '(<(Actual-Startup-Time|Actual-Total-Time|KIS-Rate-Wait|KIS-HTTP-Time)>)[0-9.]+',
                           '\1N', 'g');
    RETURN NEXT line;
  END LOOP;
END
$fn$;
