-- scripts/endpoint-tables.sql: the README's endpoint and column tables,
-- generated from the catalogue the FDW runs on (kis_fdw_endpoints(),
-- kis_fdw_columns()).  test/behaviour/misc.py checks that the README holds
-- exactly this text between its "endpoint-tables" markers.
--   psql -X -q -f scripts/endpoint-tables.sql   (in a database with kis_fdw)
\pset format unaligned
\pset tuples_only on
SELECT '| `endpoint` | what it reads | KIS API, tr_id (real / virtual) | keys pushed down | symbols per request | paging |';
SELECT '|---|---|---|---|---|---|';
SELECT format('| `%s` | %s | `%s` %s%s | %s | %s | %s |', endpoint, description,
              regexp_replace(path, '^.*/', ''), tr_id_real,
              CASE WHEN tr_id_virtual IS NULL THEN ' (real accounts only)'
                   WHEN tr_id_virtual <> tr_id_real THEN ' / ' || tr_id_virtual ELSE '' END,
              CASE WHEN key_columns = '' THEN 'none (the mapping''s account)' ELSE key_columns END,
              symbols_per_request, paging)
FROM kis_fdw_endpoints();
SELECT '';
SELECT '| `endpoint` | friendly columns (KIS field, imported type) |';
SELECT '|---|---|';
SELECT format('| `%s` | %s |', endpoint,
              string_agg(format('`%s` (%s, %s)', column_name, kis_field, type), ', ' ORDER BY ordinal))
FROM kis_fdw_columns() GROUP BY endpoint
ORDER BY array_position(ARRAY(SELECT endpoint FROM kis_fdw_endpoints()), endpoint);
