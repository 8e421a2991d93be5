--
-- stats: kis_fdw_stats counts per app key, named by a hash prefix (never
-- the key), shared by all sessions when preloaded; counters move by the
-- right amounts; reading them writes nothing.
--
\set key_hash 'left(encode(sha256(''PSregressAppKey000000000000000000000''::bytea), ''hex''), 12)'

SELECT shared, tokens_issued FROM kis_fdw_stats WHERE key_hash = :key_hash;
SELECT count(*) AS keys_shown_in_clear FROM kis_fdw_stats WHERE key_hash LIKE 'PS%';

SELECT scans AS s0, requests AS r0, retries AS t0, errors_symbol AS e0,
       errors_transient AS x0, bytes_received AS b0
FROM kis_fdw_stats WHERE key_hash = :key_hash \gset

SELECT count(*) FROM kis_prices WHERE symbol IN ('005930', '000660', '035420');
SELECT scans - :s0 AS scans, requests - :r0 AS requests, retries - :t0 AS retries,
       bytes_received > :b0 AS got_bytes
FROM kis_fdw_stats WHERE key_hash = :key_hash;

-- one symbol that fails twice (max_retries 1), under on_error 'row'
SELECT symbol, error IS NOT NULL AS failed
FROM prices_explain WHERE symbol IN ('005930', '971234') ORDER BY 1;
SELECT requests - :r0 AS requests, retries - :t0 AS retries,
       errors_transient - :x0 AS errors_transient, errors_symbol - :e0 AS errors_symbol
FROM kis_fdw_stats WHERE key_hash = :key_hash;

-- read-only transactions can read the stats and scan
BEGIN READ ONLY;
SELECT count(*) > 0 AS has_rows FROM kis_fdw_stats;
SELECT symbol, price FROM kis_prices WHERE symbol = '005930';
COMMIT;

-- who may read the counters: superusers and pg_read_all_stats, through the
-- function as through the view
SELECT has_function_privilege('public', 'kis_fdw_stats()', 'EXECUTE') AS public_function,
       has_table_privilege('public', 'kis_fdw_stats', 'SELECT') AS public_view,
       has_function_privilege('pg_read_all_stats', 'kis_fdw_stats()', 'EXECUTE') AS stats_function,
       has_table_privilege('pg_read_all_stats', 'kis_fdw_stats', 'SELECT') AS stats_view;
