--
-- rate: the smallest rate_limit the validator takes, and kis_fdw_reset_key,
-- which clears one app key's schedule: privileged, and it never shows a key.
-- (What a rate change does to a running key is in test/behaviour/gate.py.)
--
-- 0 turns the client-side gate off; any other rate is at least 0.01/s
CREATE SERVER bad_rate1 FOREIGN DATA WRAPPER kis_fdw OPTIONS (rate_limit '1e-300');
CREATE SERVER bad_rate2 FOREIGN DATA WRAPPER kis_fdw OPTIONS (rate_limit '0.009');
CREATE SERVER bad_rate3 FOREIGN DATA WRAPPER kis_fdw OPTIONS (rate_limit 'Infinity');
CREATE SERVER rate_ok FOREIGN DATA WRAPPER kis_fdw OPTIONS (rate_limit '0.01');
ALTER SERVER rate_ok OPTIONS (SET rate_limit '0');
ALTER SERVER rate_ok OPTIONS (SET rate_limit '-0.5');

-- the key is the caller's user mapping's
SELECT kis_fdw_reset_key('no_such_server');
CREATE USER MAPPING FOR CURRENT_USER SERVER rate_ok OPTIONS (app_secret 'never-used');
SELECT kis_fdw_reset_key('rate_ok');
ALTER USER MAPPING FOR CURRENT_USER SERVER rate_ok
  OPTIONS (ADD app_key 'PSrateNeverUsedKey00000000000000000');
SELECT kis_fdw_reset_key('rate_ok') AS had_state;
-- the regression key has run scans: it has a slot
SELECT kis_fdw_reset_key('kis') AS had_state;
SELECT symbol, price FROM kis_prices WHERE symbol = '005930';

-- not for PUBLIC
SELECT proacl FROM pg_proc WHERE proname = 'kis_fdw_reset_key';
CREATE ROLE kis_rate_user;
GRANT USAGE ON FOREIGN SERVER kis TO kis_rate_user;
SET ROLE kis_rate_user;
SELECT kis_fdw_reset_key('kis');
RESET ROLE;
DROP OWNED BY kis_rate_user;
DROP ROLE kis_rate_user;
DROP SERVER rate_ok CASCADE;
