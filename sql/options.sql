--
-- options: the validator.  Unknown and misplaced options, ranges, choices,
-- credentials only on user mappings, required endpoint, superuser-only ca_file.
--
-- unknown options list the valid ones for that object
CREATE SERVER bad1 FOREIGN DATA WRAPPER kis_fdw OPTIONS (enviroment 'real');
CREATE FOREIGN TABLE bad_t1 (symbol text) SERVER kis OPTIONS (endpoint 'domestic_price', foo 'bar');
CREATE USER MAPPING FOR PUBLIC SERVER kis OPTIONS (password 'x');
CREATE FOREIGN TABLE bad_t2 (symbol text OPTIONS (column_name 'x')) SERVER kis OPTIONS (endpoint 'domestic_price');

-- credentials are accepted only on a user mapping
CREATE SERVER bad2 FOREIGN DATA WRAPPER kis_fdw OPTIONS (app_key 'k');
CREATE FOREIGN TABLE bad_t3 (symbol text) SERVER kis OPTIONS (endpoint 'domestic_price', app_secret 's');
-- other options in the wrong place
CREATE USER MAPPING FOR PUBLIC SERVER kis OPTIONS (rate_limit '5');
CREATE SERVER bad3 FOREIGN DATA WRAPPER kis_fdw OPTIONS (endpoint 'domestic_price');

-- choices and ranges
CREATE SERVER bad4 FOREIGN DATA WRAPPER kis_fdw OPTIONS (environment 'paper');
CREATE SERVER bad5 FOREIGN DATA WRAPPER kis_fdw OPTIONS (rate_limit 'fast');
CREATE SERVER bad6 FOREIGN DATA WRAPPER kis_fdw OPTIONS (rate_limit '5000');
CREATE SERVER bad7 FOREIGN DATA WRAPPER kis_fdw OPTIONS (max_concurrency '0');
CREATE SERVER bad8 FOREIGN DATA WRAPPER kis_fdw OPTIONS (max_concurrency '2.5');
CREATE SERVER bad9 FOREIGN DATA WRAPPER kis_fdw OPTIONS (timeout_ms '10');
CREATE SERVER bad10 FOREIGN DATA WRAPPER kis_fdw OPTIONS (max_retries '-1');
CREATE SERVER bad11 FOREIGN DATA WRAPPER kis_fdw OPTIONS (on_error 'ignore');
CREATE SERVER bad12 FOREIGN DATA WRAPPER kis_fdw OPTIONS (base_url 'ftp://example.com');
CREATE SERVER bad13 FOREIGN DATA WRAPPER kis_fdw OPTIONS (base_url 'http://openapi.koreainvestment.com:9443');
-- the loopback check parses the URL: no user part, no host that only looks local
CREATE SERVER bad14 FOREIGN DATA WRAPPER kis_fdw OPTIONS (base_url 'http://127.0.0.1@example.com/');
CREATE SERVER bad15 FOREIGN DATA WRAPPER kis_fdw OPTIONS (base_url 'http://127.example.com:9443');
CREATE SERVER bad16 FOREIGN DATA WRAPPER kis_fdw OPTIONS (base_url 'http://localhost.example.com');
-- paths are appended to base_url: no query string or fragment
CREATE SERVER bad17 FOREIGN DATA WRAPPER kis_fdw OPTIONS (base_url 'https://example.com/?x=1');
CREATE SERVER bad18 FOREIGN DATA WRAPPER kis_fdw OPTIONS (base_url 'https://example.com/api#top');
CREATE SERVER bad19 FOREIGN DATA WRAPPER kis_fdw OPTIONS (base_url 'https://example.com?');
-- the scheme in any case (requests then use it in lower case)
CREATE SERVER ok4 FOREIGN DATA WRAPPER kis_fdw OPTIONS (base_url 'HTTPS://example.com');
CREATE SERVER ok5 FOREIGN DATA WRAPPER kis_fdw OPTIONS (base_url 'HTTP://127.0.0.1:8080');
DROP SERVER ok4;
DROP SERVER ok5;
CREATE SERVER ok2 FOREIGN DATA WRAPPER kis_fdw OPTIONS (base_url 'http://localhost:8080');
CREATE SERVER ok3 FOREIGN DATA WRAPPER kis_fdw OPTIONS (base_url 'http://[::1]:8080/');
DROP SERVER ok2;
DROP SERVER ok3;
CREATE SERVER ok1 FOREIGN DATA WRAPPER kis_fdw
  OPTIONS (environment 'virtual', base_url 'http://127.0.0.1:1', rate_limit '1.5',
           max_concurrency '64', timeout_ms '600000', connect_timeout_ms '100',
           max_retries '0', on_error 'skip');
DROP SERVER ok1;

-- user mapping values
CREATE USER MAPPING FOR PUBLIC SERVER kis OPTIONS (account '1234567801');
CREATE USER MAPPING FOR PUBLIC SERVER kis OPTIONS (app_key '');

-- table options
CREATE FOREIGN TABLE bad_t4 (symbol text) SERVER kis;
CREATE FOREIGN TABLE bad_t5 (symbol text) SERVER kis OPTIONS (endpoint 'prices');
CREATE FOREIGN TABLE bad_t6 (symbol text) SERVER kis OPTIONS (endpoint 'domestic_price', market 'KQ');
CREATE FOREIGN TABLE bad_t7 (symbol text) SERVER kis OPTIONS (endpoint 'domestic_price', exchange 'NASDAQ');
CREATE FOREIGN TABLE bad_t8 (symbol text) SERVER kis OPTIONS (endpoint 'domestic_price', period 'H');
CREATE FOREIGN TABLE bad_t9 (symbol text) SERVER kis OPTIONS (endpoint 'domestic_price', adjusted 'maybe');
CREATE FOREIGN TABLE bad_t10 (symbol text OPTIONS (field '')) SERVER kis OPTIONS (endpoint 'domestic_price');
CREATE FOREIGN TABLE bad_t11 (symbol text) SERVER kis OPTIONS (endpoint 'domestic_price', async_capable 'sometimes');
ALTER SERVER kis OPTIONS (ADD async_capable 'maybe');
ALTER FOREIGN TABLE kis_prices OPTIONS (DROP endpoint);

-- ca_file is for superusers; others must bring their own credentials
CREATE ROLE regress_kis_user;
GRANT USAGE ON FOREIGN DATA WRAPPER kis_fdw TO regress_kis_user;
SET ROLE regress_kis_user;
CREATE SERVER user_srv FOREIGN DATA WRAPPER kis_fdw OPTIONS (ca_file '/etc/passwd');
-- so are the URLs every mapped user's secret is sent to (docs/security.md)
CREATE SERVER user_srv FOREIGN DATA WRAPPER kis_fdw OPTIONS (base_url 'https://127.0.0.1:1');
CREATE SERVER user_srv FOREIGN DATA WRAPPER kis_fdw OPTIONS (master_url 'https://127.0.0.1:1');
CREATE SERVER user_srv FOREIGN DATA WRAPPER kis_fdw;
ALTER SERVER user_srv OPTIONS (ADD base_url 'https://127.0.0.1:1');
-- credentials go into request headers: printable ASCII only, never echoed
CREATE USER MAPPING FOR CURRENT_USER SERVER user_srv
  OPTIONS (app_key 'PSkey', app_secret E'secret\r\nx-injected: 1');
CREATE USER MAPPING FOR CURRENT_USER SERVER user_srv
  OPTIONS (app_key E'PS\tkey', app_secret 'secret');
RESET ROLE;
DROP SERVER user_srv;

-- a user mapping without credentials is caught when the scan starts
CREATE SERVER kis_nocred FOREIGN DATA WRAPPER kis_fdw OPTIONS (base_url 'https://127.0.0.1:1');
CREATE USER MAPPING FOR CURRENT_USER SERVER kis_nocred OPTIONS (account '12345678-01');
CREATE FOREIGN TABLE nocred (symbol text, price numeric)
  SERVER kis_nocred OPTIONS (endpoint 'domestic_price');
SELECT * FROM nocred WHERE symbol = '005930';
-- no user mapping at all: the core's error (whose text names the server
-- since PostgreSQL 17, so only its common start is shown)
DROP USER MAPPING FOR CURRENT_USER SERVER kis_nocred;
DO $$
BEGIN
  PERFORM * FROM nocred WHERE symbol = '005930';
EXCEPTION WHEN undefined_object THEN
  RAISE NOTICE '%: %...', SQLSTATE, left(SQLERRM, 26);
END $$;
-- plain EXPLAIN needs neither mapping nor network
EXPLAIN (COSTS OFF) SELECT * FROM nocred WHERE symbol = '005930';
DROP SERVER kis_nocred CASCADE;

-- secrets stay out of pg_foreign_server and the catalogs ordinary users read
SELECT array_agg(split_part(o, '=', 1) ORDER BY split_part(o, '=', 1)) AS server_option_names
FROM pg_foreign_server, unnest(srvoptions) o WHERE srvname = 'kis';
SELECT count(*) AS visible_mappings FROM pg_user_mappings WHERE srvname = 'kis';
SET ROLE regress_kis_user;
SELECT umoptions FROM pg_user_mappings WHERE srvname = 'kis';
RESET ROLE;
DROP OWNED BY regress_kis_user;
DROP ROLE regress_kis_user;

-- SQLSTATEs: a misspelt or misplaced option is HV00D, a bad value 22023
\set VERBOSITY sqlstate
CREATE SERVER bad_code1 FOREIGN DATA WRAPPER kis_fdw OPTIONS (enviroment 'real');
CREATE USER MAPPING FOR PUBLIC SERVER kis OPTIONS (rate_limit '5');
CREATE SERVER bad_code2 FOREIGN DATA WRAPPER kis_fdw OPTIONS (environment 'paper');
CREATE SERVER bad_code3 FOREIGN DATA WRAPPER kis_fdw OPTIONS (max_retries '-1');
CREATE SERVER bad_code4 FOREIGN DATA WRAPPER kis_fdw OPTIONS (max_concurrency 'many');
CREATE SERVER bad_code5 FOREIGN DATA WRAPPER kis_fdw OPTIONS (base_url 'ftp://example.com');
CREATE SERVER bad_code6 FOREIGN DATA WRAPPER kis_fdw OPTIONS (base_url 'https://example.com/?x');
CREATE FOREIGN TABLE bad_code7 (symbol text) SERVER kis OPTIONS (endpoint 'no_such');
CREATE FOREIGN TABLE bad_code8 (symbol text) SERVER kis OPTIONS (endpoint 'domestic_price', market 'KQ');
CREATE FOREIGN TABLE bad_code9 (symbol text) SERVER kis OPTIONS (endpoint 'domestic_price', adjusted 'maybe');
CREATE USER MAPPING FOR PUBLIC SERVER kis OPTIONS (account '1234567801');
\set VERBOSITY default
