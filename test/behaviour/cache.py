"""Behaviour tests: shared answers.  In-flight sharing and the answer cache (issue 12,
docs/cache.md).
"""

import json
import re
import time

from kistest import mock
from .harness import (
    APP_KEY, WAIT, stats, mock_config, inject, reset_mock, price, symbols, sql_list, wait_until,
    check, check_prices, run, Session, must, set_server, wait_active)
from .fixtures import (APP_KEY_B, cached_table, waiting_on_another, check_cached_per_mapping,
                       ordinary_role)


def sessions_at_once(n, sql):
    """n sessions run sql at the same time; their results."""
    sessions = [Session() for _ in range(n)]
    try:
        for s in sessions:
            s.pid()
        runs = [s.background(sql) for s in sessions]
        for r in runs:
            r.join(WAIT)
        check(all(r.result is not None for r in runs), "a session did not return")
        return [r.result for r in runs]
    finally:
        for s in sessions:
            s.close()


def test_shared_many_sessions():
    """Four sessions x two rounds x the same 40 symbols, cache_ttl_ms an hour (no
    answer expires during the test, however slow the machine): at most 44 requests
    (40 distinct), every row right."""
    cached_table(3600000)
    mock_config(latency_ms=50)
    syms = symbols(40)
    sql = f"SELECT symbol, price FROM kis_prices_cached WHERE symbol IN ({sql_list(syms)})"
    for rnd in (1, 2):
        for i, result in enumerate(sessions_at_once(4, sql)):
            check_prices(must(result, f"round {rnd} session {i}"), syms,
                         f"round {rnd} session {i}")
    s = stats()
    print(f"    (requests {s['requests']} for 4 sessions x 2 rounds x {len(syms)} symbols)")
    check(s["requests"] <= 44, f"{s['requests']} requests, expected at most 44")


def test_shared_in_flight():
    """With the cache off, four sessions asking the same 40 symbols at once share
    the requests in flight: each symbol is sent once (40 requests for 160 wanted)
    and the other 120 are shared waits in kis_fdw_stats.  The overlap is certain by
    construction, not by timing: the mock holds every answer until all four sessions
    wait and all 40 requests are in flight (max_concurrency 40: one session may send
    them all at once)."""
    set_server(max_concurrency="40")
    run(f"SELECT price FROM kis_prices WHERE symbol = '{symbols(1)[0]}'")  # a token first
    reset_mock()
    syms = symbols(40)
    before = run("SELECT coalesce(sum(shared_waits), 0) FROM kis_fdw_stats")[0][0][0]
    sql = f"SELECT symbol, price FROM kis_prices WHERE symbol IN ({sql_list(syms)})"
    mock("/__mock/faults", {"faults": [{"kind": "hold", "symbol": "*", "times": -1,
                                        "ms": WAIT * 1000}]})
    sessions = [Session() for _ in range(4)]
    try:
        pids = [str(s.pid()) for s in sessions]
        runs = [s.background(sql) for s in sessions]

        def all_waiting():
            rows, _, _ = run(f"SELECT count(*) FROM pg_stat_activity WHERE pid IN "
                             f"({', '.join(pids)}) AND state = 'active' "
                             f"AND wait_event_type = 'Extension'")
            return rows == [["4"]] and stats()["in_flight"] >= 40
        wait_until(all_waiting, "four sessions waiting and 40 requests held", WAIT)
        mock("/__mock/release", {})
        for r in runs:
            r.join(WAIT)
        check(all(r.result is not None for r in runs), "a session did not return")
        for i, r in enumerate(runs):
            check_prices(must(r.result, f"session {i}"), syms, f"session {i}")
    finally:
        for s in sessions:
            s.close()
    s = stats()
    waits = int(run("SELECT sum(shared_waits) FROM kis_fdw_stats")[0][0][0]) - int(before)
    print(f"    (requests {s['requests']} for 4 x {len(syms)}, shared waits {waits})")
    check(s["requests"] == 40, f"{s['requests']} requests for 160 wanted, expected 40")
    check(waits == 120, f"shared waits {waits}, expected 120")
    # one after the other nothing is shared: the cache is off
    reset_mock()
    run(sql)
    check(stats()["requests"] == 40, "a later query was answered from the cache")


def test_explain_shared_in_flight():
    """EXPLAIN ANALYZE's "KIS Shared In-Flight" (the one property pg_regress cannot
    reach: it needs two sessions) is an integer in every structured format, like the
    other counters (sql/explain.sql checks the rest).  Overlap by construction: the
    mock holds the first session's answer until the second is waiting on it."""
    sym = symbols(1)[0]
    for fmt in ("JSON", "YAML", "XML"):
        reset_mock()
        inject(("slow", sym, 1))   # held 3 s: a safety net, the wait below decides
        with Session() as s:
            pid = s.pid()
            bg = s.background(f"SELECT symbol, price FROM kis_prices WHERE symbol = '{sym}'")
            wait_active(pid)
            rows = must(run(f"EXPLAIN (ANALYZE, FORMAT {fmt}, COSTS OFF, TIMING OFF, "
                            f"SUMMARY OFF) SELECT * FROM kis_prices WHERE symbol = '{sym}'")[:2],
                        fmt)
            bg.join(WAIT)
            check_prices(must(bg.result, "the sender"), [sym], "the sender")
        text = "\n".join(r[0] for r in rows)
        if fmt == "JSON":
            plan = json.loads(text)[0]["Plan"]
            got = plan.get("KIS Shared In-Flight")
            ok = type(got) is int and got == 1 and plan.get("KIS Requests") == 0
        else:
            pattern = (r"KIS Shared In-Flight: 1\n" if fmt == "YAML"
                       else r"<KIS-Shared-In-Flight>1</KIS-Shared-In-Flight>")
            got = re.findall(pattern, text)
            ok = len(got) == 1
        check(ok, f"{fmt}: KIS Shared In-Flight {got!r} in {text}")
        check(stats()["requests"] == 1, f"{fmt}: {stats()['requests']} requests, expected 1")


def test_cache_holdings_per_mapping():
    """Holdings are cached per app key and account: three user mappings (key A
    account X, key B account X, key A account Y) each get their own request, a
    repeat of one is served from the cache."""
    mock_config(holdings=10)   # one page: a listing that fits one page is cached
    check_cached_per_mapping(
        "kis_hold", "holdings_cached", "symbol text, qty bigint, raw jsonb",
        "endpoint 'domestic_holdings', cache_ttl_ms '60000'",
        {"kis_h1": (APP_KEY, "12345678-01"), "kis_h2": (APP_KEY_B, "12345678-01"),
         "kis_h3": (APP_KEY, "22222222-01")},
        ("kis_h1", "kis_h1", "kis_h2", "kis_h3", "kis_h2"), "10")


def test_cache_expiry():
    """An answer younger than cache_ttl_ms is served; once older, fetched again,
    with a new fetched_at."""
    cached_table(60000)
    sym = symbols(1)
    sql = f"SELECT symbol, price, fetched_at FROM kis_prices_cached WHERE symbol = '{sym[0]}'"
    first = must(run(sql)[:2], "first")
    check(must(run(sql)[:2], "second") == first and stats()["requests"] == 1,
          f"a fresh answer was not served from the cache: {stats()['requests']} requests")
    _, err, rc = run("ALTER FOREIGN TABLE kis_prices_cached OPTIONS (SET cache_ttl_ms '100')")
    check(rc == 0, err)
    time.sleep(0.3)
    third = must(run(sql)[:2], "third")
    check(stats()["requests"] == 2, f"an expired answer was served: {stats()['requests']} requests")
    check(third[0][:2] == first[0][:2] and third[0][2] != first[0][2],
          f"expected the same price with a new fetched_at: {first} then {third}")


def test_cache_hit_needs_good_token():
    """Quotes we cached are served only to credentials KIS accepts.  An ordinary role whose
    own user mapping on our server names a key KIS refuses fails at the token, naming the
    refusal, without a data request; another ordinary role with a good key of its own is
    served them without a data request."""
    cached_table(60000)
    syms = symbols(3)
    where = f"WHERE symbol IN ({sql_list(syms)})"
    check_prices(must(run(f"SELECT symbol, price FROM kis_prices_cached {where}")[:2],
                      "our read"), syms)
    table = ("CREATE FOREIGN TABLE {0}.p (symbol text, price numeric) SERVER kis "
             "OPTIONS (endpoint 'domestic_price', cache_ttl_ms '60000')")
    before = stats()["requests"]
    with ordinary_role("c_forger", app_key="BADbehaviourKeyRefused0a1b2c3d4e") as forger:
        _, err, rc = run(f"SET ROLE {forger}; {table.format(forger)}")
        check(rc == 0, f"the refused role's table: {err}")
        _, err, rc = run(f"SET ROLE {forger}; SELECT symbol, price FROM {forger}.p {where}")
        check(rc != 0 and "EGW00103" in err,
              f"a refused key read cached quotes: exit {rc}, {err!r}")
    with ordinary_role("c_other") as other:
        _, err, rc = run(f"SET ROLE {other}; {table.format(other)}")
        check(rc == 0, f"the other role's table: {err}")
        rows, err, rc = run(f"SET ROLE {other}; SELECT symbol, price FROM {other}.p {where}")
        check(rc == 0, f"the other role's read: {err}")
        check_prices(rows, syms, "another good key's read")
    check(stats()["requests"] == before,
          f"data requests went {before} -> {stats()['requests']}, expected none")


def sender_and_waiter(sym, end_sender, a_lost=False):
    """A asks sym, B asks the same and waits for A's send; then A's request ends
    by end_sender(pid_a, a_run) without an answer for B.  B must send its own at
    once (its patience outlasts WAIT) and get the right row."""
    set_server(timeout_ms="60000", max_retries="0")
    sql = f"SELECT symbol, price, error FROM kis_prices_or_row WHERE symbol = '{sym}'"
    a, b = Session(), Session()
    try:
        pid_a, pid_b = a.pid(), b.pid()
        a.expect_lost = a_lost
        a_run = a.background(sql)
        wait_active(pid_a)
        b_run = b.background(sql)
        wait_until(lambda: waiting_on_another(pid_b, sym), "B to wait for A's request")
        end_sender(pid_a, a_run)
        b_run.join(WAIT)
        check(b_run.result is not None, "B did not return")
        rows = must(b_run.result, "B")
        check(rows == [[sym, str(price(sym)), "<null>"]], f"B: {rows}")
        check(stats()["by_symbol"].get(sym) == 2, f"B did not send its own: {stats()['by_symbol']}")
    finally:
        a.close()
        b.close()


def test_shared_sender_fails():
    """The sender's request fails (HTTP 500, no retries): the waiter is woken,
    sends its own and gets the answer; the sender's row carries its error."""
    sym = symbols(1)[0]
    mock_config(latency_ms=2000)
    inject(("http500", sym, 1))

    def fails(pid_a, a_run):
        a_run.join(WAIT)
        check(a_run.result is not None, "A did not return")
        a_rows = must(a_run.result, "A")
        check(len(a_rows) == 1 and a_rows[0][1] == "<null>" and "500" in a_rows[0][2],
              f"A: {a_rows}")
    sender_and_waiter(sym, fails)


def test_shared_sender_cancelled():
    """The sender is cancelled while others wait for its request: they send their own."""
    def cancel(pid_a, a_run):
        run(f"SELECT pg_cancel_backend({pid_a})")
        a_run.join(WAIT)
        check(a_run.result is not None and "canceling statement" in a_run.result[1],
              f"A was not cancelled: {a_run.result}")
    sender_and_waiter(symbols(1, "96")[0], cancel)   # answered in 3 s


def test_shared_sender_terminated():
    """The sender is terminated while others wait for its request: they send their own."""
    def terminate(pid_a, a_run):
        run(f"SELECT pg_terminate_backend({pid_a})")
        a_run.join(WAIT)
    sender_and_waiter(symbols(1, "96")[0], terminate, a_lost=True)


def test_cache_bounded():
    """A flood of distinct answers keeps the store within kis_fdw.cache_size
    (1MB in the test cluster): the oldest are evicted, the newest still served."""
    cached_table(600000)
    syms = symbols(1200)
    for i in range(0, len(syms), 300):
        rows, err, rc = run(f"SELECT count(*) FROM kis_prices_cached "
                            f"WHERE symbol IN ({sql_list(syms[i:i + 300])})")
        check(rc == 0 and rows == [["300"]], f"flood: {rows} {err}")
    size = int(run("SHOW kis_fdw.cache_size")[0][0][0].replace("MB", "")) * 1024 * 1024
    held = int(run("SELECT max(cache_bytes) FROM kis_fdw_stats")[0][0][0])
    shm = int(run("SELECT size FROM pg_shmem_allocations "
                  "WHERE name = 'kis_fdw answer cache'")[0][0][0])
    print(f"    (cache_size {size}, held {held}, shared memory {shm})")
    check(0 < held <= size and shm <= size, f"held {held}, shared memory {shm}, size {size}")
    before = stats()["requests"]
    run(f"SELECT count(*) FROM kis_prices_cached WHERE symbol = '{syms[-1]}'")
    check(stats()["requests"] == before, "the newest answer was not kept")
    run(f"SELECT count(*) FROM kis_prices_cached WHERE symbol = '{syms[0]}'")
    check(stats()["requests"] == before + 1, "the oldest answer was not evicted")
