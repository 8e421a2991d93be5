--
-- declared: KIS REST TRs declared as foreign tables (path, tr_id, params,
-- rows, paging; column option param), and the library of declared tables
-- that IMPORT FOREIGN SCHEMA offers.  The mock serves the library's TRs with
-- the shapes real KIS sends (test/mock_library.py, docs/library-trs.md).
--
CREATE SCHEMA declared;
SET search_path = declared, public;

-- the two declarations of issue 23, as written there
CREATE FOREIGN TABLE volume_rank (
  rank   int     OPTIONS (field 'data_rank'),
  symbol text    OPTIONS (field 'mksc_shrn_iscd'),
  name   text    OPTIONS (field 'hts_kor_isnm'),
  volume bigint  OPTIONS (field 'acml_vol')
) SERVER kis OPTIONS (
  path   '/uapi/domestic-stock/v1/quotations/volume-rank',
  tr_id  'FHPST01710000',
  params 'FID_COND_MRKT_DIV_CODE=J&FID_COND_SCR_DIV_CODE=20171&FID_INPUT_ISCD=0000&FID_DIV_CLS_CODE=0&FID_BLNG_CLS_CODE=0&FID_TRGT_CLS_CODE=111111111&FID_TRGT_EXLS_CLS_CODE=000000&FID_INPUT_PRICE_1=0&FID_INPUT_PRICE_2=0&FID_VOL_CNT=0&FID_INPUT_DATE_1=0',
  rows   'output');

CREATE FOREIGN TABLE investor (
  symbol text OPTIONS (param 'FID_INPUT_ISCD'),
  day date OPTIONS (field 'stck_bsop_date'),
  foreign_net bigint OPTIONS (field 'frgn_ntby_qty')
) SERVER kis OPTIONS (path '/uapi/domestic-stock/v1/quotations/inquire-investor',
                      tr_id 'FHKST01010900', params 'FID_COND_MRKT_DIV_CODE=J', rows 'output');

-- a listing: one request, 30 rows ranked by volume
SELECT count(*), min(rank), max(rank), bool_and(volume > 0) FROM volume_rank;
SELECT rank, symbol, name, volume FROM volume_rank ORDER BY rank LIMIT 3;

-- a key column: one request per distinct value, 30 business days each,
-- today's row blank before the close (NULL), as KIS sends it
SELECT symbol, count(*), min(day), max(day), count(foreign_net)
FROM investor WHERE symbol IN ('005930', '000660', '005930') GROUP BY symbol ORDER BY symbol;
SELECT symbol, day, foreign_net FROM investor
WHERE symbol = '005930' AND day >= '2025-12-26' ORDER BY day;
SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT * FROM investor WHERE symbol = ANY (ARRAY['005930', '000660'])
$$);
-- several conditions on a key: only the values all of them allow are asked for
-- (a security-barrier view's and its caller's alike), on catalogue tables too
SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT * FROM investor WHERE symbol IN ('005930', '000660') AND symbol = ANY (ARRAY['000660', '035420'])
$$);
SELECT symbol, price FROM kis_prices
WHERE symbol IN ('005930', '000660', '035420') AND symbol IN ('035420', '000660') AND symbol <> '000660';
-- params values are printable ASCII; a param column may not fill a continuation key
CREATE FOREIGN TABLE bad (x text) SERVER kis OPTIONS (path '/uapi/x', tr_id 'A', params 'A=%FF');
CREATE FOREIGN TABLE bad (x text OPTIONS (param 'CTX_AREA_FK100')) SERVER kis
  OPTIONS (path '/uapi/x', tr_id 'A', paging 'continuation');
SELECT * FROM bad WHERE x = '1';
DROP FOREIGN TABLE bad;
-- the value of a param column is its key on every row of its answer
SELECT count(*) FROM investor WHERE symbol = '000660' AND symbol IS DISTINCT FROM '000660';

-- the batched join reads the other side's symbols into one run
SELECT neutral_explain($$
EXPLAIN (COSTS OFF)
SELECT p.symbol, sum(i.foreign_net) FROM portfolio p JOIN investor i ON i.symbol = p.symbol
GROUP BY p.symbol
$$);
SELECT p.symbol, count(*), sum(i.foreign_net) = (SELECT sum(foreign_net) FROM investor
                                                 WHERE symbol = p.symbol) AS same
FROM portfolio p JOIN investor i ON i.symbol = p.symbol GROUP BY p.symbol ORDER BY p.symbol;

-- a param column without a condition and without a value in params
SELECT * FROM investor;
-- one with a value in params: that value, and the column shows it
CREATE FOREIGN TABLE volume_by_market (
  market text OPTIONS (param 'FID_INPUT_ISCD'),
  rank int OPTIONS (field 'data_rank'),
  symbol text OPTIONS (field 'mksc_shrn_iscd')
) SERVER kis OPTIONS (path '/uapi/domestic-stock/v1/quotations/volume-rank', tr_id 'FHPST01710000',
  params 'FID_COND_MRKT_DIV_CODE=J&FID_COND_SCR_DIV_CODE=20171&FID_INPUT_ISCD=0000');
SELECT market, count(*) FROM volume_by_market GROUP BY market;
SELECT market, count(*), min(rank) FROM volume_by_market
WHERE market IN ('0001', '1001') GROUP BY market ORDER BY market;
-- the default is the default market only: other values come from conditions
SELECT (SELECT array_agg(symbol ORDER BY rank) FROM volume_by_market)
     = (SELECT array_agg(symbol ORDER BY rank) FROM volume_by_market WHERE market = '0000') AS same;

-- bad values of a param column: an ERROR naming it, nothing sent
SELECT * FROM investor WHERE symbol = '';
SELECT * FROM investor WHERE symbol = repeat('1', 129);
-- KIS's own refusal of a value: on_error decides, as for symbols
SELECT * FROM investor WHERE symbol = '980001';
ALTER FOREIGN TABLE investor OPTIONS (ADD on_error 'skip');
SELECT symbol, count(*) FROM investor WHERE symbol IN ('980001', '005930') GROUP BY symbol;
ALTER FOREIGN TABLE investor ADD COLUMN error text;
ALTER FOREIGN TABLE investor OPTIONS (SET on_error 'row');
SELECT symbol, count(*), max(error) FROM investor WHERE symbol IN ('980001', '005930')
GROUP BY symbol ORDER BY symbol;
ALTER FOREIGN TABLE investor OPTIONS (DROP on_error);

-- the answer's member that holds the rows must be there
CREATE FOREIGN TABLE wrong_rows (symbol text OPTIONS (param 'FID_INPUT_ISCD'), x text)
  SERVER kis OPTIONS (path '/uapi/domestic-stock/v1/quotations/inquire-investor',
                      tr_id 'FHKST01010900', params 'FID_COND_MRKT_DIV_CODE=J', rows 'output9');
SELECT * FROM wrong_rows WHERE symbol = '005930';
-- an object is one row (rows defaults to output)
CREATE FOREIGN TABLE etf (symbol text OPTIONS (param 'FID_INPUT_ISCD'), nav numeric, dprt numeric)
  SERVER kis OPTIONS (path '/uapi/etfetn/v1/quotations/inquire-price', tr_id 'FHPST02400000',
                      params 'FID_COND_MRKT_DIV_CODE=J');
SELECT symbol, nav, dprt FROM etf WHERE symbol IN ('069500', '114800') ORDER BY symbol;

-- account TRs: {CANO} and {ACNT_PRDT_CD} from the user mapping; paging by
-- continuation (the mock pages 120 holdings 50 at a time)
CREATE FOREIGN TABLE my_balance (symbol text OPTIONS (field 'pdno'), qty bigint OPTIONS (field 'hldg_qty'))
  SERVER kis OPTIONS (path '/uapi/domestic-stock/v1/trading/inquire-balance',
    tr_id 'TTTC8434R', tr_id_virtual 'VTTC8434R',
    params 'CANO={CANO}&ACNT_PRDT_CD={ACNT_PRDT_CD}&AFHR_FLPR_YN=N&OFL_YN=&INQR_DVSN=02&UNPR_DVSN=01&FUND_STTL_ICLD_YN=N&FNCG_AMT_AUTO_RDPT_YN=N&PRCS_DVSN=00&CTX_AREA_FK100=&CTX_AREA_NK100=',
    rows 'output1', paging 'continuation');
SELECT count(*) FROM my_balance;
ALTER USER MAPPING FOR CURRENT_USER SERVER kis OPTIONS (ADD account '12345678-01');
SELECT count(*), count(DISTINCT symbol), sum(qty) FROM my_balance;
SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT count(*) FROM my_balance
$$);
-- without paging the first page only, as declared
ALTER FOREIGN TABLE my_balance OPTIONS (SET paging 'none');
SELECT count(*) FROM my_balance;
ALTER USER MAPPING FOR CURRENT_USER SERVER kis OPTIONS (DROP account);

-- a real-only TR (tr_id_virtual '') through a virtual server
CREATE SERVER kis_virtual_decl FOREIGN DATA WRAPPER kis_fdw
  OPTIONS (environment 'virtual', base_url 'http://127.0.0.1:9', rate_limit '0');
CREATE FOREIGN TABLE real_only (rank int OPTIONS (field 'data_rank'))
  SERVER kis_virtual_decl OPTIONS (path '/uapi/domestic-stock/v1/quotations/volume-rank',
                                   tr_id 'FHPST01710000', tr_id_virtual '');
SELECT * FROM real_only;
DROP SERVER kis_virtual_decl CASCADE;

-- answers are cached like a catalogue endpoint's (cache_ttl_ms)
ALTER FOREIGN TABLE etf OPTIONS (ADD cache_ttl_ms '600000');
SELECT count(*) FROM etf WHERE symbol = '069500';
SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT count(*) FROM etf WHERE symbol = '069500'
$$);

-- partitions of declared tables: each keeps to its bound
CREATE TABLE investor_part (symbol text, day date, foreign_net bigint) PARTITION BY LIST (symbol);
CREATE FOREIGN TABLE investor_samsung PARTITION OF investor_part FOR VALUES IN ('005930')
  SERVER kis OPTIONS (path '/uapi/domestic-stock/v1/quotations/inquire-investor',
                      tr_id 'FHKST01010900', params 'FID_COND_MRKT_DIV_CODE=J');
ALTER FOREIGN TABLE investor_samsung ALTER COLUMN symbol OPTIONS (ADD param 'FID_INPUT_ISCD');
ALTER FOREIGN TABLE investor_samsung ALTER COLUMN day OPTIONS (ADD field 'stck_bsop_date');
ALTER FOREIGN TABLE investor_samsung ALTER COLUMN foreign_net OPTIONS (ADD field 'frgn_ntby_qty');
SELECT symbol, count(*) FROM investor_part WHERE symbol IN ('005930', '000660') GROUP BY symbol;
DROP TABLE investor_part;

-- bad declarations fail when they are made
CREATE FOREIGN TABLE bad (x text) SERVER kis OPTIONS (path '/v1/x', tr_id 'A');
CREATE FOREIGN TABLE bad (x text) SERVER kis OPTIONS (path '/uapi/../x', tr_id 'A');
CREATE FOREIGN TABLE bad (x text) SERVER kis OPTIONS (path '/uapi/x?y=1', tr_id 'A');
CREATE FOREIGN TABLE bad (x text) SERVER kis OPTIONS (path '/uapi/x#y', tr_id 'A');
CREATE FOREIGN TABLE bad (x text) SERVER kis OPTIONS (path '/uapi/x');
CREATE FOREIGN TABLE bad (x text) SERVER kis OPTIONS (tr_id 'A');
CREATE FOREIGN TABLE bad (x text) SERVER kis OPTIONS (path '/uapi/x', tr_id 'A B');
CREATE FOREIGN TABLE bad (x text) SERVER kis OPTIONS (path '/uapi/x', tr_id 'A', params 'A=1&&B');
CREATE FOREIGN TABLE bad (x text) SERVER kis OPTIONS (path '/uapi/x', tr_id 'A', params 'A=a b');
CREATE FOREIGN TABLE bad (x text) SERVER kis OPTIONS (path '/uapi/x', tr_id 'A', params 'A=1&a=2');
CREATE FOREIGN TABLE bad (x text) SERVER kis OPTIONS (path '/uapi/x', tr_id 'A', params 'A=%0A');
CREATE FOREIGN TABLE bad (x text) SERVER kis OPTIONS (path '/uapi/x', tr_id 'A', rows 'out put');
CREATE FOREIGN TABLE bad (x text) SERVER kis OPTIONS (path '/uapi/x', tr_id 'A', paging 'time');
CREATE FOREIGN TABLE bad (x text) SERVER kis OPTIONS (path '/uapi/x', tr_id 'A', endpoint 'domestic_price');
CREATE FOREIGN TABLE bad (x text) SERVER kis OPTIONS (path '/uapi/x', tr_id 'A', market 'J');
CREATE FOREIGN TABLE bad (x text) SERVER kis OPTIONS (rows 'output');
CREATE FOREIGN TABLE bad (x text OPTIONS (param 'P', field 'y')) SERVER kis OPTIONS (path '/uapi/x', tr_id 'A');
CREATE FOREIGN TABLE bad (x text OPTIONS (param 'P-1')) SERVER kis OPTIONS (path '/uapi/x', tr_id 'A');
CREATE FOREIGN TABLE bad (d date OPTIONS (param 'P', to_param 'Q')) SERVER kis OPTIONS (path '/uapi/x', tr_id 'A');
CREATE FOREIGN TABLE bad (x text) SERVER kis OPTIONS (endpoint 'domestic_price', page_rows '10');
-- what only the table's columns together say is checked when it is scanned
CREATE FOREIGN TABLE bad (d text OPTIONS (to_param 'Q')) SERVER kis OPTIONS (path '/uapi/x', tr_id 'A');
SELECT * FROM bad;
DROP FOREIGN TABLE bad;
CREATE FOREIGN TABLE bad (d date) SERVER kis OPTIONS (path '/uapi/x', tr_id 'A', paging 'date');
SELECT * FROM bad;
DROP FOREIGN TABLE bad;
CREATE FOREIGN TABLE bad (x int OPTIONS (param 'P')) SERVER kis OPTIONS (path '/uapi/x', tr_id 'A');
SELECT * FROM bad WHERE x = 1;
DROP FOREIGN TABLE bad;
CREATE FOREIGN TABLE bad (a text OPTIONS (param 'A'), b text OPTIONS (param 'B'), c text OPTIONS (param 'C'))
  SERVER kis OPTIONS (path '/uapi/x', tr_id 'A');
SELECT * FROM bad WHERE a = '1' AND b = '2' AND c = '3';
DROP FOREIGN TABLE bad;
CREATE FOREIGN TABLE bad (a text OPTIONS (param 'A'), b text OPTIONS (param 'a'))
  SERVER kis OPTIONS (path '/uapi/x', tr_id 'A');
SELECT * FROM bad WHERE a = '1' AND b = '2';
DROP FOREIGN TABLE bad;

-- the library: every table, with one example each
IMPORT FOREIGN SCHEMA kis LIMIT TO (domestic_investor, domestic_volume_rank,
  domestic_fluctuation_rank, domestic_market_cap_rank, domestic_index_price,
  domestic_index_daily, domestic_etf_price, domestic_financial_ratio, overseas_minute)
  FROM SERVER kis INTO declared;
\d domestic_volume_rank
SELECT endpoint, tr_id_real, tr_id_virtual, key_columns, paging FROM kis_fdw_endpoints()
WHERE endpoint IN ('domestic_investor', 'domestic_volume_rank', 'domestic_fluctuation_rank',
                   'domestic_market_cap_rank', 'domestic_index_price', 'domestic_index_daily',
                   'domestic_etf_price', 'domestic_financial_ratio', 'overseas_minute')
ORDER BY endpoint;
SELECT date, close, foreign_net, institution_net, individual_net FROM domestic_investor
WHERE symbol = '005930' ORDER BY date DESC LIMIT 3;
SELECT market, rank, symbol, name, volume FROM domestic_volume_rank
WHERE market = '1001' ORDER BY rank LIMIT 3;
SELECT rank, symbol, change_rate >= lead(change_rate) OVER (ORDER BY rank) AS ordered
FROM domestic_fluctuation_rank ORDER BY rank LIMIT 3;
SELECT rank, symbol, market_cap, market_weight FROM domestic_market_cap_rank
WHERE market = '0001' ORDER BY rank LIMIT 3;
SELECT index_code, value, change, change_sign, change_rate, advancers FROM domestic_index_price
WHERE index_code IN ('0001', '1001') ORDER BY index_code;
SELECT index_code, count(*), min(date), max(date) FROM domestic_index_daily
WHERE index_code = '2001' AND date >= '2025-01-01' GROUP BY index_code;
-- a date range fills FID_INPUT_DATE_1 and _2 and pages back by date: 50 bars a
-- page, and one more request to see that no older bar is left
SELECT neutral_explain($$
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT * FROM domestic_index_daily WHERE index_code = '2001' AND date >= '2025-01-01'
$$);
SELECT count(*), min(date), max(date) FROM domestic_index_daily
WHERE index_code = '0001' AND period = 'M' AND date BETWEEN '2020-01-01' AND '2025-06-30';
SELECT date, close FROM domestic_index_daily
WHERE index_code = '1001' AND date IN ('2025-03-03', '2025-06-02') ORDER BY date;
-- without a lower bound: back to KIS's first bar, at most 50 pages
SELECT count(*) FROM domestic_index_daily WHERE index_code = '2001';
SELECT symbol, price, nav, premium_rate, leverage, underlying_index FROM domestic_etf_price
WHERE symbol = '069500';
SELECT period_type, count(*), max(period) FROM domestic_financial_ratio
WHERE symbol = '005930' AND period_type IN ('0', '1') GROUP BY period_type ORDER BY period_type;
SELECT symbol, exchange, count(*), max(date), min(time), max(time) FROM overseas_minute
WHERE symbol = 'AAPL' GROUP BY symbol, exchange;
SELECT symbol, exchange, count(*) FROM overseas_minute
WHERE symbol IN ('AAPL', 'IBM') AND exchange IN ('NAS', 'NYS') GROUP BY symbol, exchange
ORDER BY symbol, exchange;

RESET search_path;
DROP SCHEMA declared CASCADE;
