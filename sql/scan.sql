--
-- scan: every shape of symbol condition, type conversion, special columns.
-- Values come from the mock's deterministic formula (test/mock_kis.py).
--
SELECT symbol, price, change, change_rate, volume
FROM kis_prices WHERE symbol IN ('005930', '000660', '035420') ORDER BY 1;

SELECT symbol, price FROM kis_prices WHERE symbol = '005930';
SELECT symbol, price FROM kis_prices WHERE '005930' = symbol;
SELECT symbol, price FROM kis_prices WHERE symbol = ANY ('{005930,000660}') ORDER BY 1;

-- duplicates are asked once; NULLs match nothing; an empty list asks nothing
SELECT count(*) FROM kis_prices WHERE symbol IN ('005930', '005930', NULL);
SELECT count(*) FROM kis_prices WHERE symbol = ANY ('{}'::text[]);
SELECT count(*) FROM kis_prices WHERE symbol = NULL;

-- an InitPlan parameter: evaluated once, one batch
SELECT q.symbol, q.price
FROM kis_prices q WHERE q.symbol = ANY (ARRAY(SELECT symbol FROM portfolio)) ORDER BY 1;

-- a join: the portfolio's symbols in one batch (join.sql has every shape)
SELECT p.symbol, p.qty, q.price, p.qty * q.price AS value
FROM portfolio p JOIN kis_prices q ON q.symbol = p.symbol ORDER BY 1;
SELECT p.symbol, q.price
FROM portfolio p LEFT JOIN kis_prices q ON q.symbol = p.symbol ORDER BY 1;

-- prepared statements, with custom and generic plans
PREPARE q(text[]) AS SELECT symbol, price FROM kis_prices WHERE symbol = ANY ($1) ORDER BY 1;
EXECUTE q('{005930,000660}');
SET plan_cache_mode = force_generic_plan;
EXECUTE q('{035420}');
EXECUTE q('{005930,035420}');
RESET plan_cache_mode;
DEALLOCATE q;
PREPARE one(text) AS SELECT symbol, price FROM kis_prices WHERE symbol = $1;
EXECUTE one('000660');
DEALLOCATE one;

-- other conditions stay local filters
SELECT symbol FROM kis_prices WHERE symbol IN ('005930', '000660') AND price > 30000 ORDER BY 1;

-- special columns: raw, fetched_at; a KIS field by its own name; no name in inquire-price
SELECT symbol, raw ->> 'stck_prpr' AS stck_prpr, raw ->> 'stck_shrn_iscd' IS NOT NULL AS has_code,
       fetched_at BETWEEN statement_timestamp() AND clock_timestamp() AS fetched_now, name IS NULL AS no_name
FROM kis_prices WHERE symbol = '005930';

-- columns by KIS field name, by the field option, other types; market as a key
CREATE FOREIGN TABLE kis_prices_fields (
  symbol varchar(7), market text, stck_prpr int, base numeric OPTIONS (field 'stck_sdpr'),
  sign text OPTIONS (field 'prdy_vrss_sign'), sector text, missing text,
  upper_limit numeric)
  SERVER kis OPTIONS (endpoint 'domestic_price');
SELECT * FROM kis_prices_fields WHERE symbol = '005930' AND market IN ('J', 'NX', 'UN') ORDER BY market;
SELECT symbol, market, stck_prpr FROM kis_prices_fields WHERE symbol = '005930';

CREATE FOREIGN TABLE kis_prices_nx (symbol char(6), market text, price numeric)
  SERVER kis OPTIONS (endpoint 'domestic_price', market 'NX');
SELECT * FROM kis_prices_nx WHERE symbol = '005930';

-- a value the column type cannot take names the column, the field and the symbol
CREATE FOREIGN TABLE kis_prices_badtype (symbol text, price date)
  SERVER kis OPTIONS (endpoint 'domestic_price');
SELECT * FROM kis_prices_badtype WHERE symbol = '005930';

-- bad symbols are refused before anything is sent
SELECT * FROM kis_prices WHERE symbol = '5930';
SELECT * FROM kis_prices WHERE symbol IN ('005930', 'abc123');
SELECT * FROM kis_prices WHERE symbol = 'Q5000001';
SELECT * FROM kis_prices WHERE symbol = 'q500001';
SELECT count(*) FROM kis_prices WHERE symbol = 'Q500001';
SELECT * FROM kis_prices_fields WHERE symbol = '005930' AND market = 'XX';

-- no symbol condition: an error with a hint, never a crawl
SELECT * FROM kis_prices;
SELECT * FROM kis_prices WHERE price > 1000;
SELECT * FROM kis_prices WHERE symbol LIKE '0059%';
SELECT * FROM portfolio p FULL JOIN kis_prices q ON q.symbol = p.symbol;
