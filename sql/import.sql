--
-- import: IMPORT FOREIGN SCHEMA kis creates one typed table per endpoint;
-- LIMIT TO and EXCEPT work; importing twice is an error like any CREATE.
--
CREATE SCHEMA kis_all;
IMPORT FOREIGN SCHEMA kis FROM SERVER kis INTO kis_all;
SELECT c.relname, ft.ftoptions
FROM pg_class c JOIN pg_foreign_table ft ON ft.ftrelid = c.oid
WHERE c.relnamespace = 'kis_all'::regnamespace ORDER BY 1;
\d kis_all.domestic_price
\d kis_all.domestic_daily
\d kis_all.domestic_holdings

-- importing again into the same schema fails like CREATE would
IMPORT FOREIGN SCHEMA kis FROM SERVER kis INTO kis_all;

CREATE SCHEMA kis_some;
IMPORT FOREIGN SCHEMA kis LIMIT TO (domestic_price, overseas_price) FROM SERVER kis INTO kis_some;
IMPORT FOREIGN SCHEMA kis EXCEPT (domestic_price, overseas_price, domestic_holdings)
  FROM SERVER kis INTO kis_some;
SELECT relname FROM pg_class WHERE relnamespace = 'kis_some'::regnamespace ORDER BY 1;

-- there is one remote schema
IMPORT FOREIGN SCHEMA public FROM SERVER kis INTO kis_some;

-- comments from the catalogue, so \d+ explains tables and columns
SELECT kis_fdw_comment('kis_all');
SELECT obj_description('kis_all.domestic_daily'::regclass, 'pg_class');
SELECT a.attname, col_description(a.attrelid, a.attnum)
FROM pg_attribute a WHERE a.attrelid = 'kis_all.domestic_daily'::regclass AND a.attnum > 0
ORDER BY a.attnum;
-- the imported tables work as they are
SELECT symbol, market, price FROM kis_all.domestic_price WHERE symbol = '005930';
DROP SCHEMA kis_some CASCADE;

-- kis_fdw_comment() finds the catalogue functions in the extension's schema,
-- so the extension stays where it was installed
CREATE SCHEMA kis_elsewhere;
ALTER EXTENSION kis_fdw SET SCHEMA kis_elsewhere;
SELECT kis_fdw_comment('kis_all');
DROP SCHEMA kis_elsewhere;
