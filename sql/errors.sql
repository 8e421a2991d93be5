--
-- errors: what KIS answers for one symbol, under each on_error mode.
-- The mock's symbol prefixes pick the answer (test/mock_kis.py):
--   99 not listed (rt_cd 0, price "0")    98 business error MCA05918
--   97 HTTP 500 without envelope (retried, then failed)    95 no "output"
--
CREATE FOREIGN TABLE prices_err (symbol text, price numeric, error text)
  SERVER kis OPTIONS (endpoint 'domestic_price');

-- on_error 'error' (the default): the first failure aborts, naming the symbol
SELECT symbol, price FROM prices_err WHERE symbol IN ('005930', '991234');
SELECT symbol, price FROM prices_err WHERE symbol IN ('005930', '981234');
SELECT symbol, price FROM prices_err WHERE symbol = '971234';
SELECT symbol, price FROM prices_err WHERE symbol = '951234';

-- on_error 'row': every symbol has a row; failed ones carry NULL data and the reason
ALTER FOREIGN TABLE prices_err OPTIONS (ADD on_error 'row');
SELECT symbol, price, error
FROM prices_err WHERE symbol IN ('005930', '991234', '981234', '971234', '951234', '000660')
ORDER BY symbol;

-- on_error 'skip': failed rows dropped, one WARNING that names them
ALTER FOREIGN TABLE prices_err OPTIONS (SET on_error 'skip');
SELECT symbol, price, error
FROM prices_err WHERE symbol IN ('005930', '991234', '981234', '000660')
ORDER BY symbol;

-- the server's on_error applies where the table has none; the table's wins
ALTER FOREIGN TABLE prices_err OPTIONS (DROP on_error);
ALTER SERVER kis OPTIONS (ADD on_error 'skip');
SELECT count(*) FROM prices_err WHERE symbol IN ('005930', '991234');
ALTER FOREIGN TABLE prices_err OPTIONS (ADD on_error 'error');
SELECT count(*) FROM prices_err WHERE symbol IN ('005930', '991234');
ALTER SERVER kis OPTIONS (DROP on_error);

-- on_error 'row' needs somewhere to put the reason
CREATE FOREIGN TABLE prices_noerr (symbol text, price numeric)
  SERVER kis OPTIONS (endpoint 'domestic_price', on_error 'row');
SELECT * FROM prices_noerr WHERE symbol = '005930';

-- bad credentials fail the whole scan at once, without echoing them
\getenv mock_url KIS_MOCK_URL
\getenv mock_ca KIS_MOCK_CA
CREATE SERVER kis_badkey FOREIGN DATA WRAPPER kis_fdw
  OPTIONS (base_url :'mock_url', ca_file :'mock_ca', rate_limit '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER kis_badkey
  OPTIONS (app_key 'BADregressAppKey00000000000000000000', app_secret 'regress-secret');
CREATE FOREIGN TABLE prices_badkey (symbol text, price numeric)
  SERVER kis_badkey OPTIONS (endpoint 'domestic_price', on_error 'skip');
SELECT * FROM prices_badkey WHERE symbol IN ('005930', '000660');
\echo :LAST_ERROR_SQLSTATE
ALTER USER MAPPING FOR CURRENT_USER SERVER kis_badkey
  OPTIONS (SET app_key 'PSregressAppKey000000000000000000000', SET app_secret 'BADsecret');
SELECT * FROM prices_badkey WHERE symbol IN ('005930', '000660');
\echo :LAST_ERROR_SQLSTATE
DROP SERVER kis_badkey CASCADE;

-- nothing listening: a clear error, not a hang (a key of its own: the token
-- is per credential, so the regression key would skip tokenP)
CREATE SERVER kis_down FOREIGN DATA WRAPPER kis_fdw
  OPTIONS (base_url 'https://127.0.0.1:1', connect_timeout_ms '1000');
CREATE USER MAPPING FOR CURRENT_USER SERVER kis_down
  OPTIONS (app_key 'PSregressDownKey00000000000000000000', app_secret 'regress-secret');
CREATE FOREIGN TABLE prices_down (symbol text, price numeric)
  SERVER kis_down OPTIONS (endpoint 'domestic_price');
\set VERBOSITY terse
SELECT * FROM prices_down WHERE symbol = '005930';
\set VERBOSITY default
DROP SERVER kis_down CASCADE;

-- a failed key's NULLs still meet the column's domain, as COPY checks them
CREATE DOMAIN kis_price_nn AS numeric NOT NULL;
CREATE DOMAIN kis_price_checked AS numeric CHECK (VALUE IS NOT NULL AND VALUE > 0);
CREATE FOREIGN TABLE prices_nn (symbol text, price kis_price_nn, error text)
  SERVER kis OPTIONS (endpoint 'domestic_price', on_error 'row');
CREATE FOREIGN TABLE prices_checked (symbol text, price kis_price_checked, error text)
  SERVER kis OPTIONS (endpoint 'domestic_price', on_error 'row');
SELECT symbol, price FROM prices_nn WHERE symbol = '005930';
SELECT symbol, price, error FROM prices_nn WHERE symbol = '981234';
SELECT symbol, price, error FROM prices_checked WHERE symbol = '981234';
-- a query that does not read the column does not check it
SELECT symbol, error FROM prices_nn WHERE symbol = '981234';
DROP FOREIGN TABLE prices_nn, prices_checked;
DROP DOMAIN kis_price_nn, kis_price_checked;
