"""Behaviour tests: cancel and terminate.  A scan cancelled or terminated (while its
requests are out, at the gate, waiting for a token) leaves no descriptors behind and
wedges no one; a cursor paused between FETCHes stalls no one.
"""


from kistest import mock
from .harness import (
    APP_SECRET, WAIT, stats, mock_config, inject, reset_mock, price, symbols, sql_list, wait_until,
    check, check_prices, run, Session, run_all, must, set_server, backend_fds, wait_active)
from .fixtures import _fd_check_after_abort, cancel_backend


def test_terminate_at_gate():
    """A session terminated while it waits at the gate does not wedge the others."""
    set_server(rate_limit="1")
    a_syms, b_syms = symbols(20), symbols(3)
    a, b = Session(), Session()
    try:
        pid_a = a.pid()
        b.pid()
        a_run = a.background(f"SELECT symbol, price FROM kis_prices WHERE symbol IN ({sql_list(a_syms)})")
        wait_until(lambda: stats()["requests"] >= 2, "A to be waiting at the gate")
        a.expect_lost = True
        rows, err, _ = run(f"SELECT pg_terminate_backend({pid_a})")
        check(rows == [["t"]], f"pg_terminate_backend: {rows} {err}")
        a_run.join(WAIT)
        check(a_run.result is not None and not a_run.result[0], f"A was not ended: {a_run.result}")
        sent_by_a = stats()["requests"]
        check(sent_by_a < len(a_syms), f"A sent all {sent_by_a} requests before it was ended")
        check_prices(must(b.query(f"SELECT symbol, price FROM kis_prices "
                                  f"WHERE symbol IN ({sql_list(b_syms)})"), "B"), b_syms, "B")
        check(stats()["requests"] == sent_by_a + len(b_syms),
              "requests kept arriving from the terminated session")
    finally:
        a.close()
        b.close()


def test_paused_cursor():
    """A cursor paused longer than timeout_ms between FETCHes: the answers that
    arrived meanwhile are read, not timed out and resent (issue 13, item 5).
    A request's timeout counts only the time the scan waits for it."""
    mock_config(latency_ms=300)
    for retries in ("3", "0"):
        reset_mock()
        mock_config(latency_ms=300)
        set_server(timeout_ms="1000", max_retries=retries)
        syms = symbols(13)
        with Session() as s:
            must(s.query("BEGIN"), "begin")
            must(s.query("DECLARE c CURSOR FOR SELECT symbol, price, error FROM "
                         f"kis_prices_or_row WHERE symbol IN ({sql_list(syms)})"), "declare")
            rows = must(s.query("FETCH 1 FROM c"), "fetch 1")
            must(s.query("SELECT pg_sleep(2)"), "pause")  # twice timeout_ms
            rows += must(s.query("FETCH 12 FROM c"), "fetch 12")
            must(s.query("COMMIT"), "commit")
        failed = [r for r in rows if r[2] != "<null>"]
        check(not failed, f"max_retries {retries}: keys failed after the pause: {failed}")
        check_prices([r[:2] for r in rows], syms, f"max_retries {retries}")
        st = stats()
        check(st["requests"] == len(syms),
              f"max_retries {retries}: {st['requests']} requests for {len(syms)} symbols")


def test_paused_cursor_does_not_stall_others():
    """Issue 20 item 4: a session paused in a cursor (rows streamed: on_error 'row')
    sent requests it does not read while it is away.  Another role asking for the
    same symbols does not wait for them (once up to (timeout_ms + 5 s) x
    (max_retries + 1)) but takes them over and is answered at its normal pace, while
    the paused session's own requests are still held by the mock.  The paused
    session then gets its own answers."""
    role, key = "kis_other_reader", "PSbehaviourOtherReader00000000000"
    syms = symbols(8)
    run(f"DROP OWNED BY {role}; DROP ROLE {role}")  # a leftover of an earlier run
    run_all(f"CREATE ROLE {role}", f"GRANT USAGE ON FOREIGN SERVER kis TO {role}",
            f"GRANT SELECT ON kis_prices_or_row TO {role}",
            f"CREATE USER MAPPING FOR {role} SERVER kis "
            f"OPTIONS (app_key '{key}', app_secret '{APP_SECRET}')")
    set_server(timeout_ms="600000")
    # the mock holds the paused session's answers for all but the first symbol
    mock("/__mock/faults", {"faults": [{"kind": "slow", "symbol": sym, "ms": 10000}
                                       for sym in syms[1:]]})
    try:
        with Session() as paused:
            # connections for all of its requests at once
            must(paused.query("SELECT count(*) FROM kis_prices_or_row WHERE symbol IN "
                              f"({sql_list(symbols(8))})"), "warm-up")
            must(paused.query("BEGIN"), "begin")
            must(paused.query("DECLARE c CURSOR FOR SELECT symbol, price, error FROM "
                              f"kis_prices_or_row WHERE symbol IN ({sql_list(syms)})"), "declare")
            rows = must(paused.query("FETCH 1 FROM c"), "fetch 1")
            # its requests are claimed; those curl sent before the row went out are held
            wait_until(lambda: stats()["in_flight"] >= 1, "a request of the paused session held")
            other, err, rc = run(f"SET ROLE {role}; SET statement_timeout = '{WAIT // 2}s'; "
                                 f"SELECT symbol, price, error FROM kis_prices_or_row "
                                 f"WHERE symbol IN ({sql_list(syms)})")
            st = stats()
            check(rc == 0, f"the other role's query was held: {err}")
            check_prices(other, syms, "the other role")
            check(st["in_flight"] >= 1,
                  f"the paused session's requests were answered meanwhile: {st['in_flight']}")
            check(st["by_appkey"].get(key) == {sym: 1 for sym in syms},
                  f"the other role's own requests: {st['by_appkey'].get(key)}")
            rows += must(paused.query("FETCH ALL FROM c"), "fetch all")
            must(paused.query("COMMIT"), "commit")
        check_prices(rows, syms, "the paused session")
    finally:
        run(f"DROP OWNED BY {role}; DROP ROLE {role}")


def test_paused_cursor_connecting():
    """The same for a request still connecting when the cursor pauses: the
    first answer closes its connection, so the next request, started before
    the row goes out, needs a new one (TLS handshake) across the pause."""
    set_server(timeout_ms="1000", max_retries="0", max_concurrency="1")
    syms = symbols(2)
    inject(("close", "*"))
    with Session() as s:
        must(s.query("BEGIN"), "begin")
        must(s.query("DECLARE c CURSOR FOR SELECT symbol, price, error FROM "
                     f"kis_prices_or_row WHERE symbol IN ({sql_list(syms)})"), "declare")
        rows = must(s.query("FETCH 1 FROM c"), "fetch 1")
        must(s.query("SELECT pg_sleep(2)"), "pause")
        rows += must(s.query("FETCH ALL FROM c"), "fetch all")
        must(s.query("COMMIT"), "commit")
    failed = [r for r in rows if r[2] != "<null>"]
    check(not failed, f"the key connecting across the pause failed: {failed}")
    check_prices([r[:2] for r in rows], syms)
    st = stats()
    check(st["faults_injected"] == {"close": 1} and st["requests"] == 2,
          f"faults {st['faults_injected']}, {st['requests']} requests")


def test_cancel_frees_descriptors():
    with Session() as s:
        pid = s.pid()
        must(s.query("EXPLAIN SELECT * FROM kis_prices WHERE symbol = '005930'"), "warm")
        baseline = backend_fds(pid)
        check(stats()["requests"] == 0, "EXPLAIN without ANALYZE sent requests")
        syms = symbols(5)
        check_prices(must(s.query(f"SELECT symbol, price FROM kis_prices "
                                  f"WHERE symbol IN ({sql_list(syms)})"), "normal"), syms)
        print(f"    (baseline fds {baseline}, after a normal query {backend_fds(pid)})")

        must(s.query("SET statement_timeout = '300ms'"), "set")
        mixed = symbols(16) + symbols(4, "96")
        rows, err = s.query(f"SELECT symbol, price FROM kis_prices "
                            f"WHERE symbol IN ({sql_list(mixed)})")
        check("canceling statement due to statement timeout" in err,
              f"no statement timeout: {err!r} ({len(rows)} rows)")
        must(s.query("RESET statement_timeout"), "reset")
        _fd_check_after_abort(s, pid, baseline, "statement timeout")

        slow = symbols(3, "96") + symbols(3)
        bg = s.background(f"SELECT symbol, price FROM kis_prices "
                          f"WHERE symbol IN ({sql_list(slow)})")
        wait_active(pid)
        cancel_backend(pid, bg)
        _fd_check_after_abort(s, pid, baseline, "pg_cancel_backend")


def test_cancel_while_waiting_for_token():
    """A scan waiting to be allowed a token (the issuance interval, or EGW00133
    and then the interval) is cancelled at once and leaves no descriptor behind."""
    reset_mock(forget_tokens=True)
    mock("/__mock/faults", {"faults": [{"kind": "egw00133", "symbol": "*", "times": -1}]})
    with Session() as s:
        pid = s.pid()
        must(s.query("EXPLAIN SELECT * FROM kis_prices WHERE symbol = '005930'"), "warm-up")
        baseline = backend_fds(pid)
        must(s.query("SET kis_fdw.token_issue_interval = 30"), "interval")
        _, err = s.query("SET statement_timeout = '1s'; "
                         f"SELECT symbol, price FROM kis_prices WHERE symbol = '{symbols(1)[0]}'")
        check("canceling statement due to statement timeout" in err, f"not cancelled: {err}")
        # it waited for a token: either the 30 s interval since the last issuance,
        # or an EGW00133 answer and then the interval.  So KIS answered none of its
        # requests: every tokenP was refused and every quote request (with the token
        # the reset made stale) was refused for its token.
        st = stats()
        check(st["token_requests"] == st["errors"].get("EGW00133", 0)
              and st["requests"] == st["errors"].get("EGW00121", 0),
              f"KIS answered the scan (token requests {st['token_requests']}, quote requests "
              f"{st['requests']}, errors {st['errors']}): it did not wait for a token")
        check(backend_fds(pid) == baseline, f"fds {backend_fds(pid)} after the cancel, baseline {baseline}")
        mock("/__mock/reset", {})
        rows = must(s.query("RESET statement_timeout; RESET kis_fdw.token_issue_interval; "
                            "SELECT symbol, price FROM kis_prices WHERE symbol = '005930'"), "after")
        check(rows == [["005930", str(price("005930"))]], f"next query: {rows}")


def test_terminate():
    mock_config(latency_ms=100)
    a_syms, b_syms = symbols(3, "96"), symbols(12)
    a, b = Session(), Session()
    try:
        set_server(max_concurrency="2")  # B's 12 requests take a while at 100 ms each
        pid_a = a.pid()
        b.pid()
        a_run = a.background(f"SELECT symbol, price FROM kis_prices "
                             f"WHERE symbol IN ({sql_list(a_syms)})")
        wait_active(pid_a)
        b_run = b.background(f"SELECT symbol, price FROM kis_prices "
                             f"WHERE symbol IN ({sql_list(b_syms)})")
        wait_until(lambda: any(s in stats()["by_symbol"] for s in b_syms), "B to start")
        a.expect_lost = True
        rows, err, _ = run(f"SELECT pg_terminate_backend({pid_a})")
        check(rows == [["t"]], f"pg_terminate_backend: {rows} {err}")
        a_run.join(WAIT)
        b_run.join(WAIT)
        check(a_run.result is not None and b_run.result is not None, "a query did not return")
        a_err = a_run.result[1]
        check("terminating connection due to administrator command" in a_err
              or "server closed the connection unexpectedly" in a_err,
              f"A did not report the termination: {a_run.result}")
        check(not a_run.result[0], f"A got rows: {a_run.result[0]}")
        check_prices(must(b_run.result, "B"), b_syms, "B")
    finally:
        a.close()
        b.close()
    c_syms = symbols(2)
    rows, err, rc = run(f"SELECT symbol, price FROM kis_prices WHERE symbol IN ({sql_list(c_syms)})")
    check(rc == 0, f"fresh session failed: {err}")
    check_prices(rows, c_syms, "fresh session")
