--
-- live: the live tables' SQL surface against the mock's WebSocket (the
-- server's ws_url, set by setup): options, EXPLAIN, a first tick waited
-- for, the REST answer for a symbol without one, the tick ring and its
-- "seq >", kis_fdw_live_subscribe/unsubscribe and the view kis_fdw_live.
-- Values that move with each tick are shown by what they are, not what
-- they hold; test/behaviour/live.py checks values, faults and timing.
--

-- ws_url: plain ws:// with a host, as KIS serves it
CREATE SERVER kis_ws_bad FOREIGN DATA WRAPPER kis_fdw OPTIONS (ws_url 'wss://ops.koreainvestment.com:21000');
CREATE SERVER kis_ws_bad FOREIGN DATA WRAPPER kis_fdw OPTIONS (ws_url 'ws://user@127.0.0.1:21000');
CREATE SERVER kis_ws_bad FOREIGN DATA WRAPPER kis_fdw OPTIONS (ws_url 'ws://127.0.0.1:0');
CREATE SERVER kis_ws_bad FOREIGN DATA WRAPPER kis_fdw OPTIONS (ws_url 'ws://127.0.0.1:21000/x?y');
CREATE SERVER kis_ws_bad FOREIGN DATA WRAPPER kis_fdw OPTIONS (live_wait_ms '-1');
CREATE SERVER kis_ws_ok FOREIGN DATA WRAPPER kis_fdw
  OPTIONS (ws_url 'WS://ops.koreainvestment.com:21000/tryitout/H0STCNT0', live_wait_ms '100');
DROP SERVER kis_ws_ok;

CREATE FOREIGN TABLE live (symbol text, price numeric, change numeric, change_rate numeric,
  volume bigint, trade_volume bigint, trade_time timestamptz, ask1 numeric, bid1 numeric,
  source text, received_at timestamptz) SERVER kis OPTIONS (endpoint 'domestic_live');
CREATE FOREIGN TABLE live_book (symbol text, ask1 numeric, bid1 numeric, ask_qty1 bigint,
  total_ask_qty bigint, source text) SERVER kis OPTIONS (endpoint 'domestic_live_orderbook');
CREATE FOREIGN TABLE live_overseas (symbol text, exchange text, price numeric,
  trade_time timestamptz, source text) SERVER kis OPTIONS (endpoint 'overseas_live');
CREATE FOREIGN TABLE live_nowait (symbol text, price numeric, source text,
  received_at timestamptz) SERVER kis OPTIONS (endpoint 'domestic_live', live_wait_ms '0');
CREATE FOREIGN TABLE ticks (seq bigint, symbol text, price numeric, trade_volume bigint,
  trade_time timestamptz, received_at timestamptz) SERVER kis OPTIONS (endpoint 'domestic_ticks');

-- EXPLAIN names the stream; nothing is subscribed by a plain EXPLAIN
SELECT neutral_explain($$EXPLAIN (COSTS OFF) SELECT * FROM live WHERE symbol IN ('005930', '000660')$$);
SELECT neutral_explain($$EXPLAIN (COSTS OFF) SELECT * FROM ticks WHERE seq > 10$$);
SELECT socket, subscriptions FROM kis_fdw_live;

-- a symbol condition is required, as for every quote table
SELECT * FROM live;
SELECT * FROM live WHERE symbol = '00593';

-- the first read subscribes and waits for the first tick
SELECT symbol, price > 0 AS priced, source, trade_time IS NOT NULL AS timed,
       received_at <= now() + interval '1 minute' AS received
FROM live WHERE symbol IN ('005930', '000660') ORDER BY symbol;
SELECT socket, subscriptions, pending, refused, ticks >= 2 AS ticked FROM kis_fdw_live;

-- the order book and the overseas trade, each its own stream
SELECT symbol, ask1 > bid1 AS spread, ask_qty1 > 0 AS quantity, source
FROM live_book WHERE symbol = '005930';
SELECT symbol, exchange, price > 0 AS priced, trade_time IS NOT NULL AS timed, source
FROM live_overseas WHERE symbol = 'AAPL' AND exchange = 'NAS';

-- live_wait_ms 0: a symbol not yet streaming is answered by REST at once,
-- the same price kis_prices gives
SELECT n.symbol, n.source, n.price = p.price AS same_as_rest, n.received_at IS NOT NULL AS received
FROM live_nowait n JOIN kis_prices p USING (symbol)
WHERE n.symbol = '035420' AND p.symbol = '035420';

-- joins: the other side's symbols, from shared memory
SELECT p.symbol, p.qty, l.source, l.price > 0 AS priced
FROM portfolio p JOIN live l USING (symbol) WHERE p.symbol IN ('005930', '000660')
ORDER BY p.symbol;

-- the tick ring: every trade, seq increasing; "seq >" the newest reads none
-- (035420's first tick is waited for first: no tick comes after it)
SELECT symbol, source FROM live WHERE symbol = '035420';
SELECT count(*) >= 2 AS ringed, count(DISTINCT seq) = count(*) AS distinct_seq,
       bool_and(symbol IN ('005930', '000660', '035420')) AS ours
FROM ticks;
SELECT count(*) FROM ticks WHERE seq > (SELECT max(seq) FROM ticks);
SELECT count(*) = (SELECT count(*) FROM ticks) - 1 AS all_but_first
FROM ticks WHERE seq > (SELECT min(seq) FROM ticks);

-- pinning and dropping symbols
SELECT kis_fdw_live_subscribe('kis', ARRAY['035720', '005380']);
SELECT kis_fdw_live_subscribe('kis', ARRAY['AAPL', 'NYS:IBM'], 'overseas');
SELECT kis_fdw_live_subscribe('kis', ARRAY['005930'], 'candles');
SELECT kis_fdw_live_subscribe('kis', ARRAY['bad!'], 'trade');
SELECT kis_fdw_live_subscribe('kis', ARRAY['XXX:AAPL'], 'overseas');
SELECT kis_fdw_live_unsubscribe('kis', ARRAY['035720', '005380']);
SELECT kis_fdw_live_unsubscribe('kis', ARRAY['AAPL', 'NYS:IBM'], 'overseas');

-- the view: superusers and pg_read_all_stats
SELECT has_table_privilege('public', 'kis_fdw_live', 'SELECT') AS public_reads,
       has_table_privilege('pg_read_all_stats', 'kis_fdw_live', 'SELECT') AS stats_reads;
SELECT key_hash ~ '^[0-9a-f]{12}$' AS hashed, socket, worker_pid IS NOT NULL AS has_worker
FROM kis_fdw_live;

-- what this file read is dropped, so that its worker stops and no later
-- test shares the mock with it
SELECT kis_fdw_live_unsubscribe('kis', ARRAY['005930', '000660', '035420']);
SELECT kis_fdw_live_unsubscribe('kis', ARRAY['005930'], 'orderbook');
DROP FOREIGN TABLE live, live_book, live_overseas, live_nowait, ticks;
