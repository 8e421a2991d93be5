"""Behaviour tests: Append over kis foreign scans.  The branches of a UNION ALL over
two keys run at the same time (async Append): their gates, timeouts, faults, cancels and
rescans.  A kis foreign table that is a partition asks only for its bound's keys (issue
11 item 1): tables partitioned over two accounts, the README's several-accounts table
among them.

The partition tests follow the async ones, as they did when the tests were one list:
several_accounts_as_one_table counts each key's requests, so the second key's token must
be one the mock still knows (tests elsewhere make the mock forget its tokens, which costs
a key used before that an extra round trip).
"""

import hashlib

from kistest import mock
from .harness import (
    MOCK_URL, MOCK_CA, APP_KEY, APP_SECRET, stats, mock_config, inject, reset_mock, symbols,
    sql_list, wait_until, check, check_prices, run, Session, run_all, must, set_server, backend_fds)
from .fixtures import (
    hold_first_for_company, APP_KEY_B, two_keys, union_all, drop_two_keys, plan_nodes,
    _fd_check_after_abort, cancel_backend, _join_table)


def fetch_union(a_syms, b_syms, what):
    """Run union_all(a_syms, b_syms): every row right; the mock's counters after."""
    rows, err, rc = run(union_all(a_syms, b_syms))
    check(rc == 0, f"{what}: {err}")
    check_prices(rows, a_syms + b_syms, what)
    return stats()


def test_async_union_all():
    """The two branches of a UNION ALL over two keys run at the same time: with one
    request at a time per server, the mock holds two at once only if both run."""
    two_keys(", rate_limit '0', max_concurrency '1'")
    mock_config(latency_ms=100)
    a_syms, b_syms = symbols(4), symbols(4)
    try:
        hold_first_for_company()
        check(plan_nodes(union_all(a_syms, b_syms)) == (2, 0),
              f"expected two Async Foreign Scans: {plan_nodes(union_all(a_syms, b_syms))}")
        st = fetch_union(a_syms, b_syms, "async union all")
        print(f"    (async: max_in_flight {st['max_in_flight']}, requests {st['requests']})")
        check(st["requests"] == 8, f"{st['requests']} requests, expected 8")
        check(st["max_in_flight"] == 2, f"max_in_flight {st['max_in_flight']}: the branches "
              "did not run at the same time")

        # the option turns it off, per server or table; then one branch after the other
        for server in ("kis_a", "kis_b"):
            _, err, rc = run(f"ALTER SERVER {server} OPTIONS (ADD async_capable 'false')")
            check(rc == 0, f"async_capable false: {err}")
        reset_mock()
        mock_config(latency_ms=100)
        check(plan_nodes(union_all(a_syms, b_syms)) == (0, 2), "async_capable 'false' still async")
        st = fetch_union(a_syms, b_syms, "sync union all")
        print(f"    (sync: max_in_flight {st['max_in_flight']})")
        check(st["max_in_flight"] == 1, f"sync: max_in_flight {st['max_in_flight']}")
    finally:
        drop_two_keys()


def test_async_mixed_children():
    """An async branch and a sync one (async_capable false on a table) in one Append,
    plus a branch on the same key as another: each row once, right."""
    two_keys(", rate_limit '0', max_concurrency '2'")
    run("ALTER FOREIGN TABLE prices_b OPTIONS (ADD async_capable 'false')")
    run("CREATE FOREIGN TABLE prices_a2 (symbol text, price numeric) SERVER kis_a "
        "OPTIONS (endpoint 'domestic_price')")
    mock_config(latency_ms=50)
    a_syms, b_syms, c_syms = symbols(5), symbols(5), symbols(5)
    sql = (union_all(a_syms, b_syms) +
           f" UNION ALL SELECT symbol, price FROM prices_a2 WHERE symbol IN ({sql_list(c_syms)})")
    try:
        check(plan_nodes(sql) == (2, 1), f"expected 2 async and 1 sync scans: {plan_nodes(sql)}")
        rows, err, rc = run(sql)
        check(rc == 0, f"query failed: {err}")
        check_prices(rows, a_syms + b_syms + c_syms, "mixed")
        check(stats()["requests"] == 15, f"{stats()['requests']} requests, expected 15")
    finally:
        drop_two_keys()


def test_async_rate_gates():
    """Async siblings wait at their gates with no socket to wake them, and still go on:
    two keys each at its own limit, and two scans on one key sharing its gate."""
    two_keys(", rate_limit '5', max_concurrency '4'")
    run("CREATE FOREIGN TABLE prices_a2 (symbol text, price numeric) SERVER kis_a "
        "OPTIONS (endpoint 'domestic_price')")
    # 150 ms answers at 5/s: one key alone never has two in flight (its sends are
    # 200 ms apart), while two keys that run together are each in flight 3/4 of the
    # time, so their requests must overlap: no timing luck either way.
    mock_config(rate_limit=6, latency_ms=150, jitter_ms=0)
    a_syms, b_syms, c_syms = symbols(8), symbols(8), symbols(8)
    try:
        st = fetch_union(a_syms, b_syms, "two keys")
        check(st["violations"] == 0 and st["requests"] == 16,
              f"two keys: {st['violations']} violations, {st['requests']} requests (16)")
        check(st["max_in_flight"] >= 2, f"two keys: max_in_flight {st['max_in_flight']}")

        reset_mock()
        mock_config(rate_limit=6)
        sql = (f"SELECT symbol, price FROM prices_a WHERE symbol IN ({sql_list(a_syms)}) UNION ALL "
               f"SELECT symbol, price FROM prices_a2 WHERE symbol IN ({sql_list(c_syms)})")
        check(plan_nodes(sql) == (2, 0), f"one key: expected two async scans: {plan_nodes(sql)}")
        rows, err, rc = run(sql)
        check(rc == 0, f"one key: {err}")
        check_prices(rows, a_syms + c_syms, "one key")
        st = stats()
        check(st["violations"] == 0 and st["requests"] == 16,
              f"one key: {st['violations']} violations (the scans did not share the gate), "
              f"{st['requests']} requests (16)")
    finally:
        drop_two_keys()


def test_async_timeout():
    """timeout_ms holds for asynchronous branches too: a request KIS sits on is
    given up after timeout_ms of waiting and fails per on_error, while the other
    branch's rows come through."""
    two_keys(", rate_limit '0'", on_error=("row", "row"))
    for server in ("kis_a", "kis_b"):
        set_server(server, timeout_ms="500", max_retries="0")
    a_syms, b_syms = symbols(2), symbols(2)
    stuck = a_syms[0]
    mock("/__mock/faults", {"faults": [{"kind": "slow", "symbol": stuck, "times": 1, "ms": 5000}]})
    try:
        sql = union_all(a_syms, b_syms, "symbol, price, error")
        check(plan_nodes(sql) == (2, 0), f"not an async plan: {plan_nodes(sql)}")
        rows, err, rc = run(sql)
        check(rc == 0, f"async timeout: {err}")
        failed = {r[0]: r[2] for r in rows if r[2]}
        check(list(failed) == [stuck] and "timeout_ms (500 ms)" in failed[stuck],
              f"expected only {stuck} to fail on timeout_ms: {rows}")
        check_prices([r[:2] for r in rows if r[0] != stuck], a_syms[1:] + b_syms, "async timeout")
    finally:
        drop_two_keys()


def test_async_on_error_and_faults():
    """Async branches under on_error skip, row and error, with faults that are
    retried; an ERROR leaves no descriptor behind."""
    two_keys(", rate_limit '0'", on_error=("skip", "row"))
    a_syms, b_syms = symbols(4), symbols(4)
    bad_a, bad_b = a_syms[1], b_syms[2]
    inject(("http500", bad_a, -1), ("http500", bad_b, -1), ("egw00201", a_syms[0]),
           ("drop", b_syms[0]), ("garbage", a_syms[3]))
    try:
        check(plan_nodes(union_all(a_syms, b_syms)) == (2, 0), "not an async plan")
        with Session() as s:
            pid = s.pid()
            must(s.query("EXPLAIN " + union_all(a_syms, b_syms)), "warm")
            baseline = backend_fds(pid)
            rows, err = s.query(union_all(a_syms, b_syms, "symbol, price, error"))
            check("ERROR" not in err, f"skip/row: {err}")
            check("WARNING" in err and bad_a in err and bad_b not in err,
                  f"skip: expected one WARNING naming {bad_a}: {err!r}")
            good = [x for x in a_syms + b_syms if x not in (bad_a, bad_b)]
            check_prices([r for r in rows if r[0] != bad_b], good, "skip/row")
            bad_rows = [r for r in rows if r[0] == bad_b]
            check(len(bad_rows) == 1 and bad_rows[0][1] == "<null>"
                  and bad_rows[0][2] not in ("", "<null>"),
                  f"row: expected [{bad_b}, <null>, <error text>], got {bad_rows}")
            st = stats()
            check(st["by_symbol"].get(a_syms[0]) == 2 and st["by_symbol"].get(a_syms[3]) == 2,
                  f"retried faults not sent twice: {st['by_symbol']}")

            must(s.query("ALTER FOREIGN TABLE prices_a OPTIONS (SET on_error 'error')"), "alter")
            rows, err = s.query(union_all(a_syms, b_syms))
            check("ERROR" in err and bad_a in err, f"error: no ERROR naming {bad_a}: {err!r}")
            _fd_check_after_abort(s, pid, baseline, "on_error error")
    finally:
        drop_two_keys()


def test_async_cancel():
    """Cancelling async branches, waiting on slow answers or at the gate (no socket
    to wake the Append), frees every descriptor."""
    two_keys(", rate_limit '0'")
    try:
        check(plan_nodes(union_all(["005930"], ["000660"])) == (2, 0), "not an async plan")
        with Session() as s:
            pid = s.pid()
            must(s.query("EXPLAIN " + union_all(["005930"], ["000660"])), "warm")
            baseline = backend_fds(pid)
            slow_a, slow_b = symbols(3, "96") + symbols(2), symbols(3, "96") + symbols(2)
            rows, err = s.query("SET statement_timeout = '300ms'; " + union_all(slow_a, slow_b))
            check("canceling statement due to statement timeout" in err,
                  f"no statement timeout: {err!r} ({len(rows)} rows)")
            must(s.query("RESET statement_timeout"), "reset")
            _fd_check_after_abort(s, pid, baseline, "async statement timeout")

            for server in ("kis_a", "kis_b"):
                run(f"ALTER SERVER {server} OPTIONS (SET rate_limit '1')")
            reset_mock()
            a_syms, b_syms = symbols(20), symbols(20)
            bg = s.background(union_all(a_syms, b_syms))
            wait_until(lambda: set(stats()["by_symbol"]) & set(a_syms) and
                       set(stats()["by_symbol"]) & set(b_syms), "both branches to send")
            cancel_backend(pid, bg)
            check(backend_fds(pid) == baseline, f"fds {backend_fds(pid)} after a cancel at "
                  f"the gate, baseline {baseline}")
    finally:
        drop_two_keys()


def test_async_rescan():
    """An async Append rescanned for each outer row (a parameter in its branches),
    and one ended early by LIMIT: each run's rows, each run's requests."""
    two_keys(", rate_limit '0'")
    a_syms, b_syms = symbols(3), symbols(3)
    inner = (f"SELECT symbol, price FROM prices_a WHERE symbol IN ({sql_list(a_syms)}) AND price > -g "
             f"UNION ALL SELECT symbol, price FROM prices_b WHERE symbol IN ({sql_list(b_syms)}) "
             "AND price > -g")
    sql = f"SELECT g, u.symbol, u.price FROM generate_series(1, 3) g, LATERAL ({inner}) u"
    try:
        check(plan_nodes(sql)[0] == 2, f"expected two async scans: {plan_nodes(sql)}")
        rows, err, rc = run(sql)
        check(rc == 0, f"rescan: {err}")
        for g in ("1", "2", "3"):
            check_prices([r[1:] for r in rows if r[0] == g], a_syms + b_syms, f"outer row {g}")
        check(stats()["requests"] == 18, f"{stats()['requests']} requests, expected 3 x 6")

        with Session() as s:
            rows = must(s.query(union_all(a_syms, b_syms) + " LIMIT 1"), "limit")
            check(len(rows) == 1 and rows[0][0] in a_syms + b_syms, f"limit: {rows}")
            wait_until(lambda: stats()["in_flight"] == 0, "requests to drain")
            rows = must(s.query(union_all(a_syms, b_syms)), "after limit")
            check_prices(rows, a_syms + b_syms, "after limit")
    finally:
        drop_two_keys()


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
