--
-- cancel: statement_timeout against a slow answer (96-prefixed symbols
-- answer after 3 seconds) ends the scan, and the session works on.
-- test/behaviour/cancel.py checks the descriptors; here the visible behaviour.
--
SET statement_timeout = '200ms';
SELECT * FROM kis_prices WHERE symbol IN ('005930', '961234', '961235');
RESET statement_timeout;
SELECT symbol, price FROM kis_prices WHERE symbol IN ('005930', '000660') ORDER BY 1;

-- in a transaction, the error aborts it and the next one is fine
BEGIN;
SET LOCAL statement_timeout = '200ms';
SELECT * FROM kis_prices WHERE symbol = '961236';
ROLLBACK;
SELECT symbol, price FROM kis_prices WHERE symbol = '035420';

-- a cursor left open mid-scan is cleaned up at transaction end
BEGIN;
DECLARE c CURSOR FOR SELECT symbol FROM kis_prices WHERE symbol IN ('005930', '961237');
FETCH 1 FROM c;
COMMIT;
SELECT symbol, price FROM kis_prices WHERE symbol = '000660';

-- LIMIT ends the scan early with requests still out
SELECT count(*) FROM (SELECT * FROM kis_prices WHERE symbol IN ('005930', '961238') LIMIT 1) s;
