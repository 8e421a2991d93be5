"""Behaviour tests: joins.  A batched join asks once per batch of keys (cancelled
too, into a partitioned table too, with a large outer side); a rescan with the same keys
asks once.  (Joins into tables partitioned over two accounts are in append.py.)
"""

import time

from kistest import mock
from .harness import (
    WAIT, stats, mock_config, reset_mock, price, symbols, sql_list, check, check_prices, run,
    Session, run_all, must, backend_fds, wait_active)
from .fixtures import hold_first_for_company, _fd_check_after_abort, cancel_backend, _join_table


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


def _arena(s):
    """(total, used) bytes of the session's join arena, or None without one."""
    rows, err = s.query("SELECT total_bytes, used_bytes FROM pg_backend_memory_contexts "
                        "WHERE name = 'kis_fdw join arena'")
    check(not err, f"pg_backend_memory_contexts: {err}")
    return tuple(int(x) for x in rows[0]) if rows else None


def _arena_empty(s, after):
    used = _arena(s)[1]
    check(used < 8192, f"the arena holds {used} bytes after {after}")


def test_join_arena():
    """The batched join keeps its rows in a backend's arena between queries
    (docs/batched-join.md, "Memory"): 512 kB kept, emptied at every end, an
    error's too; lent to one join at a time, so a second join in the same
    query, or one run while a cursor holds another open, has rows of its own."""
    syms = symbols(40)
    bad = symbols(1, prefix="98")
    _join_table("arena_pf", syms)
    _join_table("arena_bad", syms + bad)
    join = "SELECT p.symbol, q.price FROM arena_pf p JOIN kis_prices q USING (symbol)"
    with Session() as s:
        check(_arena(s) is None, "a new backend has an arena")
        check_prices(must(s.query(join), "join"), syms, "join")
        total = _arena(s)[0]
        check(total >= 512 * 1024, f"the arena keeps {total} bytes, expected 512 kB")
        _arena_empty(s, "a join")
        # two batched joins in one query: the second has a context of its own
        two = (f"SELECT 'a', p.symbol, q.price FROM arena_pf p JOIN kis_prices q USING (symbol) "
               f"UNION ALL SELECT 'b', p.symbol, q.price FROM arena_pf p JOIN kis_prices q "
               f"USING (symbol) WHERE p.qty > 20")
        plan = must(s.query(f"EXPLAIN (COSTS OFF) {two}"), "plan")
        check(sum("KIS Batched Join" in r[0] for r in plan) == 2, f"plan: {plan}")
        rows = must(s.query(two), "two joins")
        check_prices([r[1:] for r in rows if r[0] == "a"], syms, "the first join")
        check_prices([r[1:] for r in rows if r[0] == "b"], syms[20:], "the second join")
        _arena_empty(s, "two joins")
        # an error while rows are kept: the arena is emptied all the same
        _, err = s.query("SELECT p.symbol, q.price FROM arena_bad p JOIN kis_prices q "
                         "USING (symbol)")
        check("ERROR" in err and bad[0] in err, f"the refused symbol's error: {err}")
        _arena_empty(s, "an error")
        # a cursor holds the arena; a join meanwhile, then the cursor's rest
        must(s.query(f"BEGIN; DECLARE c CURSOR FOR {join}"), "declare")
        first = must(s.query("FETCH 10 FROM c"), "fetch 10")
        meanwhile = must(s.query("SELECT p.symbol, q.price FROM arena_bad p "
                                 "JOIN kis_prices_or_row q USING (symbol) "
                                 "WHERE q.error IS NULL"), "a join while the cursor is open")
        check_prices(meanwhile, syms, "a join while the cursor is open")
        rest = must(s.query("FETCH ALL FROM c"), "fetch all")
        must(s.query("COMMIT"), "commit")
        check_prices(first + rest, syms, "the cursor's rows")
        _arena_empty(s, "the cursor")
