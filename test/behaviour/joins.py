"""Behaviour tests: joins and partitions.  Batched joins (one request per batch of
keys, cancelled, a large outer side), rescans, and kis foreign tables as partitions,
which ask only for their bound's keys (issue 11 item 1), the README's several-accounts
table among them.
"""

import hashlib
import time

from kistest import mock
from .harness import (
    MOCK_URL, MOCK_CA, APP_KEY, APP_SECRET, WAIT, stats, mock_config, reset_mock, price, symbols,
    sql_list, check, check_prices, run, Session, run_all, must, backend_fds, wait_active)
from .fixtures import (
    hold_first_for_company, APP_KEY_B, two_keys, drop_two_keys, plan_nodes, _fd_check_after_abort,
    cancel_backend)


def accounts_table():
    """quotes: the README's several-accounts table, hash-partitioned by symbol over the
    servers of two_keys()."""
    run("DROP TABLE IF EXISTS quotes")
    run_all("CREATE TABLE quotes (symbol text, price numeric) PARTITION BY HASH (symbol)",
            "CREATE FOREIGN TABLE quotes_a PARTITION OF quotes FOR VALUES WITH (MODULUS 2, "
            "REMAINDER 0) SERVER kis_a OPTIONS (endpoint 'domestic_price')",
            "CREATE FOREIGN TABLE quotes_b PARTITION OF quotes FOR VALUES WITH (MODULUS 2, "
            "REMAINDER 1) SERVER kis_b OPTIONS (endpoint 'domestic_price')")


def key_requests():
    """requests per app key (kis_fdw_stats), by which of the two keys it is."""
    names = {hashlib.sha256(k.encode()).hexdigest()[:12]: side
             for side, k in (("a", APP_KEY), ("b", APP_KEY_B))}
    rows, err, rc = run("SELECT key_hash, requests FROM kis_fdw_stats")
    check(rc == 0, f"kis_fdw_stats: {err}")
    return {names[h]: int(n) for h, n in rows if h in names}


def test_several_accounts_as_one_table():
    """The README recipe: a table hash-partitioned by symbol over two servers, an app
    key each: every symbol once, asked of the key whose partition holds it, both keys
    at once and each within its own limit; kis_fdw_stats shows each key's share."""
    two_keys(", rate_limit '5', max_concurrency '4'")
    accounts_table()
    # as in async_rate_gates: 150 ms answers at 5/s, so only two keys at once overlap
    mock_config(rate_limit=6, latency_ms=150, jitter_ms=0)
    syms = symbols(24)
    try:
        check(plan_nodes(f"SELECT * FROM quotes WHERE symbol IN ({sql_list(syms)})") == (2, 0),
              "the partitions are not async scans")
        before = key_requests()
        rows, err, rc = run("SELECT symbol, price, tableoid::regclass FROM quotes "
                            f"WHERE symbol IN ({sql_list(syms)})")
        check(rc == 0, f"query failed: {err}")
        check_prices(rows, syms, "partitioned")
        after = key_requests()
        share = {side: after.get(side, 0) - before.get(side, 0) for side in ("a", "b")}
        held = {side: sum(1 for r in rows if r[2] == f"quotes_{side}") for side in ("a", "b")}
        st = stats()
        print(f"    (requests by key {share}, rows by partition {held}, "
              f"max_in_flight {st['max_in_flight']})")
        check(share == held and min(held.values()) > 0,
              f"requests by key {share} differ from rows by partition {held}")
        check(st["requests"] == len(syms), f"{st['requests']} requests for {len(syms)} symbols")
        check(st["violations"] == 0, f"{st['violations']} rate violations")
        check(set(st["by_symbol"]) == set(syms) and set(st["by_symbol"].values()) == {1},
              f"a symbol was asked more than once: {st['by_symbol']}")
        check(st["max_in_flight"] >= 2, "the two keys did not run at the same time")
    finally:
        run("DROP TABLE IF EXISTS quotes")
        drop_two_keys()


def _join_table(name, syms):
    run(f"DROP TABLE IF EXISTS {name}")
    _, err, rc = run(f"CREATE TABLE {name} (id serial, symbol text, qty int)")
    check(rc == 0, f"create {name}: {err}")
    values = ", ".join(f"('{sym}', {i + 1})" for i, sym in enumerate(syms))
    _, err, rc = run(f"INSERT INTO {name} (symbol, qty) VALUES {values}; ANALYZE {name}")
    check(rc == 0, f"fill {name}: {err}")


def test_join_into_partitions():
    """A join into the several-accounts table (HASH (symbol) over two servers, an app
    key each) is one batched join over both partitions: each key is asked only for the
    symbols of its own partition, each symbol once, and the two keys' batches overlap.
    Each server sends one request at a time (max_concurrency 1), so two in flight can
    only be one of each key's; the mock holds the first answer until a second request
    arrives, so overlap is certain if the partitions run together and impossible if
    they run one after another (the hold gives up after 30 s)."""
    two_keys(", rate_limit '5', max_concurrency '1'")
    accounts_table()
    syms = symbols(24)
    _join_table("join_accounts", syms + syms[:6] + ["NULL"])  # duplicates and a NULL
    run("UPDATE join_accounts SET symbol = NULL WHERE symbol = 'NULL'")
    sql = ("SELECT p.symbol, q.price, q.tableoid::regclass FROM join_accounts p "
           "JOIN quotes q USING (symbol)")
    try:
        plan = "\n".join("|".join(r) for r in must(run("EXPLAIN (COSTS OFF) " + sql)[:2], "EXPLAIN"))
        check("KIS Batched Join" in plan and "KIS Partitions: quotes_a, quotes_b" in plan,
              f"not one batched join over both partitions:\n{plan}")
        reset_mock()
        mock_config(rate_limit=6, latency_ms=150, jitter_ms=0)
        mock("/__mock/faults", {"faults": [{"kind": "overlap", "symbol": "*", "ms": 30000}]})
        rows, err, rc = run(sql)
        check(rc == 0 and "WARNING" not in err, f"query failed: {err}")
        distinct = {r[0]: r for r in rows}
        check(len(rows) == len(syms) + 6, f"{len(rows)} rows for {len(syms) + 6} outer rows")
        check_prices(list(distinct.values()), syms, "joined")
        st = stats()
        asked = {side: st["by_appkey"].get(key, {}) for side, key in (("a", APP_KEY), ("b", APP_KEY_B))}
        held = {side: {r[0] for r in rows if r[2] == f"quotes_{side}"} for side in ("a", "b")}
        print(f"    (requests {st['requests']}, by key { {k: len(v) for k, v in asked.items()} }, "
              f"max_in_flight {st['max_in_flight']}, violations {st['violations']})")
        for side in ("a", "b"):
            check(set(asked[side]) == held[side] and set(asked[side].values()) <= {1},
                  f"key {side} was asked for {sorted(asked[side])}, its partition holds "
                  f"{sorted(held[side])}")
        check(min(len(h) for h in held.values()) > 0, f"a partition holds nothing: {held}")
        check(st["requests"] == len(syms), f"{st['requests']} requests for {len(syms)} symbols")
        check(st["violations"] == 0, f"{st['violations']} rate violations")
        check(st["faults_injected"] == {"overlap": 1}, f"faults {st['faults_injected']}")
        check(st["max_in_flight"] == 2, "the two keys' batches did not overlap")
    finally:
        run("DROP TABLE IF EXISTS quotes, join_accounts")
        drop_two_keys()


def test_rescan_same_keys():
    """A correlated sub-select run once per outer row asks KIS once per
    distinct run of equal symbols, not once per row."""
    sym, other = symbols(2)
    run("DROP TABLE IF EXISTS rescan_rows")
    run(f"CREATE TABLE rescan_rows AS SELECT g AS n, '{sym}'::text AS symbol "
        f"FROM generate_series(1, 20) g")
    rows, err, rc = run("SELECT n, (SELECT price FROM kis_prices q WHERE q.symbol = r.symbol) "
                        "FROM rescan_rows r ORDER BY n")
    check(rc == 0 and "WARNING" not in err, f"query failed: {err}")
    check(len(rows) == 20 and all(r[1] == str(price(sym)) for r in rows), f"rows: {rows}")
    s = stats()
    check(s["requests"] == 1, f"mock saw {s['requests']} requests for one symbol, expected 1")
    # a changed key is asked again; returning to an old key asks again too
    run(f"UPDATE rescan_rows SET symbol = '{other}' WHERE n BETWEEN 8 AND 12")
    reset_mock()
    rows, err, rc = run("SELECT n, (SELECT price FROM kis_prices q WHERE q.symbol = r.symbol) "
                        "FROM (SELECT * FROM rescan_rows ORDER BY n) r")
    check(rc == 0, f"query failed: {err}")
    got = {int(r[0]): r[1] for r in rows}
    check(all(got[n] == str(price(other if 8 <= n <= 12 else sym)) for n in range(1, 21)),
          f"rows: {rows}")
    check(stats()["requests"] == 3, f"mock saw {stats()['requests']} requests, expected 3")
    # a sub-select left early (LIMIT 1) still completes its run once and replays it
    reset_mock()
    rows, err, rc = run("SELECT n, (SELECT price FROM kis_prices q WHERE q.symbol = r.symbol "
                        "LIMIT 1) FROM rescan_rows r WHERE n < 8 ORDER BY n")
    check(rc == 0 and len(rows) == 7, f"query failed: {err} {rows}")
    check(stats()["requests"] == 1, f"LIMIT 1: mock saw {stats()['requests']} requests, expected 1")


def test_join_batches():
    """A plain join, LEFT JOIN, IN, EXISTS and LATERAL each ask the mock once
    per distinct symbol of the other side, concurrently; domestic_multi_price
    once per 30."""
    mock_config(latency_ms=100)
    syms = symbols(40)
    _join_table("join_pf", syms + syms[:5] + ["NULL"])  # duplicates and a NULL
    run("UPDATE join_pf SET symbol = NULL WHERE symbol = 'NULL'")
    shapes = {
        "join": "SELECT p.symbol, q.price FROM join_pf p JOIN kis_prices q ON q.symbol = p.symbol",
        "left join": "SELECT p.symbol, q.price FROM join_pf p LEFT JOIN kis_prices q "
                     "ON q.symbol = p.symbol WHERE p.symbol IS NOT NULL",
        "in": "SELECT q.symbol, q.price FROM kis_prices q WHERE q.symbol IN (SELECT symbol FROM join_pf)",
        "exists": "SELECT p.symbol, (SELECT 1) FROM join_pf p WHERE EXISTS "
                  "(SELECT 1 FROM kis_prices q WHERE q.symbol = p.symbol)",
        "lateral": "SELECT p.symbol, l.price FROM join_pf p, "
                   "LATERAL (SELECT price FROM kis_prices q WHERE q.symbol = p.symbol) l",
    }
    for shape, sql in shapes.items():
        reset_mock()
        mock_config(latency_ms=100)
        hold_first_for_company()
        rows, err, rc = run(sql)
        check(rc == 0 and "WARNING" not in err, f"{shape}: {err}")
        distinct = {r[0]: r for r in rows}
        check(set(distinct) == set(syms), f"{shape}: symbols {sorted(distinct)}")
        if shape != "exists":
            check(all(r[1] == str(price(r[0])) for r in rows), f"{shape}: wrong prices {rows}")
        s = stats()
        print(f"    ({shape}: requests {s['requests']}, max_in_flight {s['max_in_flight']})")
        check(s["requests"] == 40, f"{shape}: mock saw {s['requests']} requests, expected 40")
        check(s["max_in_flight"] > 1, f"{shape}: one request at a time")

    reset_mock()
    mock_config(latency_ms=100)
    many = symbols(60)
    _join_table("join_many", many)
    run("DROP FOREIGN TABLE IF EXISTS join_multi")
    run("CREATE FOREIGN TABLE join_multi (symbol text, price numeric) "
        "SERVER kis OPTIONS (endpoint 'domestic_multi_price')")
    rows, err, rc = run("SELECT p.symbol, q.price FROM join_many p JOIN join_multi q USING (symbol)")
    check(rc == 0, f"multi: {err}")
    check_prices(rows, many, "multi")
    check(stats()["requests"] == 2, f"multi: mock saw {stats()['requests']} requests, expected 2")


def _join_cancel(table):
    slow = symbols(6, "96") + symbols(5)
    _join_table("join_slow", slow)
    with Session() as s:
        pid = s.pid()
        must(s.query("EXPLAIN SELECT * FROM kis_prices WHERE symbol = '005930'"), "warm")
        baseline = backend_fds(pid)
        join = f"SELECT p.symbol, q.price FROM join_slow p JOIN {table} q USING (symbol)"
        plan = must(s.query("EXPLAIN (COSTS OFF) " + join), "explain")
        check(any("KIS Batched Join" in r[0] for r in plan), f"not a batched join: {plan}")
        bg = s.background(join)
        wait_active(pid)
        cancel_backend(pid, bg)
        _fd_check_after_abort(s, pid, baseline, "cancelled join")
        fast = symbols(4)
        _join_table("join_fast", fast)
        check_prices(must(s.query(f"SELECT p.symbol, q.price FROM join_fast p "
                                  f"JOIN {table} q USING (symbol)"), "join after"), fast)


def test_join_cancel_frees_descriptors():
    """A batched join cancelled while its requests are out leaves no
    descriptor behind, and the session goes on."""
    _join_cancel("kis_prices")


def test_join_into_partitions_cancel():
    """The same for a batched join into a partitioned table, cancelled while the
    runs of both partitions are out."""
    run("DROP TABLE IF EXISTS parted_prices")
    run_all("CREATE TABLE parted_prices (symbol text, price numeric) PARTITION BY HASH (symbol)",
            *(f"CREATE FOREIGN TABLE parted_prices_{r} PARTITION OF parted_prices FOR VALUES "
              f"WITH (MODULUS 2, REMAINDER {r}) SERVER kis OPTIONS (endpoint 'domestic_price')"
              for r in (0, 1)))
    try:
        _join_cancel("parted_prices")
    finally:
        run("DROP TABLE IF EXISTS parted_prices")


def _anon_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise AssertionError("no RssAnon")


def _peak_while(s, pid, sql):
    """Run sql in session s; (rows, growth of private memory at its peak, kB)."""
    before = peak = _anon_kb(pid)
    bg = s.background(sql)
    while bg.is_alive():
        peak = max(peak, _anon_kb(pid))
        time.sleep(0.01)
    bg.join(WAIT)
    return must(bg.result, sql[:60]), peak - before


def test_join_large_outer():
    """100,000 outer rows holding 2,000 distinct symbols: one request per
    symbol, and the backend's private memory at its peak grows little more
    than for the ANY form (the outer rows go to a tuplestore of work_mem,
    then disk)."""
    syms = symbols(2000)
    run("DROP TABLE IF EXISTS join_big")
    arr = "ARRAY[" + sql_list(syms) + "]"
    _, err, rc = run(f"CREATE TABLE join_big AS SELECT g AS id, ({arr})[1 + g % 2000] AS symbol, "
                     f"repeat('x', 200) AS pad FROM generate_series(1, 100000) g; ANALYZE join_big")
    check(rc == 0, f"create: {err}")
    expected = [["100000", str(50 * sum(price(sym) for sym in syms)), "200"]]
    with Session() as s:
        pid = s.pid()
        must(s.query("SET work_mem = '4MB'"), "work_mem")
        # warm caches and connections with a scan of the same symbols
        must(s.query("SELECT count(*) FROM kis_prices WHERE symbol = ANY "
                     "(ARRAY(SELECT DISTINCT symbol FROM join_big))"), "warm-up")
        rows, any_growth = _peak_while(
            s, pid, "SELECT count(*), sum(q.price), min(length(b.pad)) "
            "FROM join_big b JOIN (SELECT * FROM kis_prices WHERE symbol = ANY "
            "(ARRAY(SELECT symbol FROM join_big))) q USING (symbol)")
        check(rows == expected, f"ANY form rows: {rows}")
        reset_mock()
        mock_config(latency_ms=5)
        # the first answer waits until a second request is in flight: overlap is
        # certain if the join sends concurrently (the hold ends at once), and
        # impossible if it sends one at a time (the hold gives up after 30 s)
        mock("/__mock/faults", {"faults": [{"kind": "overlap", "symbol": "*", "ms": 30000}]})
        rows, join_growth = _peak_while(
            s, pid, "SELECT count(*), sum(q.price), min(length(b.pad)) "
            "FROM join_big b JOIN kis_prices q USING (symbol)")
    print(f"    (private memory at the peak: ANY form +{any_growth} kB, "
          f"join +{join_growth} kB; requests {stats()['requests']})")
    check(rows == expected, f"rows: {rows}")
    check(stats()["requests"] == 2000, f"mock saw {stats()['requests']} requests, expected 2000")
    check(stats()["faults_injected"] == {"overlap": 1}, f"faults {stats()['faults_injected']}")
    check(stats()["max_in_flight"] > 1, "one request at a time")
    # the outer rows alone are 25 MB: held in memory, they would show
    check(join_growth <= any_growth + 12 * 1024,
          f"the join's private memory grew by {join_growth} kB, the ANY form's by "
          f"{any_growth} kB (allowed: 12 MB more, 3 x work_mem)")


def test_partitions_per_account():
    """A table partitioned over two accounts (hash, list, range on symbol): each
    symbol comes back once, and the mock saw it only under the app key of the
    partition PostgreSQL routes it to."""
    run("DROP SERVER IF EXISTS kis_b CASCADE")
    setup = [f"CREATE SERVER kis_b FOREIGN DATA WRAPPER kis_fdw OPTIONS "
             f"(base_url '{MOCK_URL}', ca_file '{MOCK_CA}', rate_limit '0')",
             f"CREATE USER MAPPING FOR CURRENT_USER SERVER kis_b "
             f"OPTIONS (app_key '{APP_KEY_B}', app_secret '{APP_SECRET}')"]
    keys = {kind: symbols(60) for kind in ("hash", "list", "range")}
    bounds = {"hash": ("HASH", "FOR VALUES WITH (MODULUS 2, REMAINDER 0)",
                       "FOR VALUES WITH (MODULUS 2, REMAINDER 1)"),
              "list": ("LIST", f"FOR VALUES IN ({sql_list(keys['list'][::3])})", "DEFAULT"),
              "range": ("RANGE", f"FOR VALUES FROM (MINVALUE) TO ('{keys['range'][25]}')",
                        f"FOR VALUES FROM ('{keys['range'][25]}') TO (MAXVALUE)")}
    for kind, (method, bound_a, bound_b) in bounds.items():
        setup += [f"DROP TABLE IF EXISTS parts_{kind}, route_{kind}",
                  f"CREATE TABLE parts_{kind} (symbol text, price numeric) "
                  f"PARTITION BY {method} (symbol)",
                  f"CREATE FOREIGN TABLE parts_{kind}_a PARTITION OF parts_{kind} {bound_a} "
                  f"SERVER kis OPTIONS (endpoint 'domestic_price')",
                  f"CREATE FOREIGN TABLE parts_{kind}_b PARTITION OF parts_{kind} {bound_b} "
                  f"SERVER kis_b OPTIONS (endpoint 'domestic_price')",
                  # where PostgreSQL itself puts each symbol
                  f"CREATE TABLE route_{kind} (symbol text) PARTITION BY {method} (symbol)",
                  f"CREATE TABLE route_{kind}_a PARTITION OF route_{kind} {bound_a}",
                  f"CREATE TABLE route_{kind}_b PARTITION OF route_{kind} {bound_b}"]
    run_all(*setup)
    try:
        for kind in bounds:
            reset_mock()
            syms = keys[kind]
            _, err, rc = run(f"INSERT INTO route_{kind} SELECT unnest(ARRAY[{sql_list(syms)}])")
            check(rc == 0, f"route_{kind}: {err}")
            routed, _, _ = run(f"SELECT symbol FROM route_{kind}_a")
            in_a = {r[0] for r in routed}
            check(0 < len(in_a) < len(syms), f"{kind}: a useless split {len(in_a)}/{len(syms)}")
            rows, err, rc = run(f"SELECT symbol, price, tableoid::regclass FROM parts_{kind} "
                                f"WHERE symbol IN ({sql_list(syms)})")
            check(rc == 0, f"{kind}: {err}")
            check_prices(rows, syms, kind)
            wrong = [r for r in rows if (r[2] == f"parts_{kind}_a") != (r[0] in in_a)]
            check(not wrong, f"{kind}: rows from the wrong partition: {wrong}")
            st = stats()
            by_key = st["by_appkey"]
            check(by_key.get(APP_KEY, {}) == {s: 1 for s in in_a},
                  f"{kind}: account A was asked {by_key.get(APP_KEY)}, expected {sorted(in_a)}")
            check(by_key.get(APP_KEY_B, {}) == {s: 1 for s in syms if s not in in_a},
                  f"{kind}: account B was asked {by_key.get(APP_KEY_B)}")
            check(st["requests"] == len(syms), f"{kind}: {st['requests']} requests for {len(syms)}")
    finally:
        run("DROP TABLE IF EXISTS parts_hash, parts_list, parts_range, "
            "route_hash, route_list, route_range")
        run("DROP SERVER IF EXISTS kis_b CASCADE")
