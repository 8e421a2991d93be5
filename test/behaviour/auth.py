"""Behaviour tests: access tokens (src/auth.c).  Issuance refused, slow, too soon,
failing or lost on the network; tokens expired at issuance or mid-scan; one token per
credential and origin; kis_fdw_stats' token counts against the mock's.

Several of these need a free app-key slot for a key of their own, so this file runs
before gate.py and security.py, whose tests hold many slots (test/test_fdw.py).
"""

import contextlib
import hashlib
import re
import threading
import time
from .harness import (
    MOCK_URL, APP_KEY, APP_SECRET, WAIT, stats, mock_config, inject, reset_mock, symbols, sql_list,
    wait_until, check, check_prices, run, Session, run_all, must, create_server)
from .fixtures import (
    APP_KEY_B, two_keys, union_all, drop_two_keys, set_mapping, key_server, issued_to, key_query)


def test_tokens_born_expired():
    """A server whose tokens are expired at issuance (clock skew, a bad answer)
    ends the scan with a clear error after a bounded number of issuances."""
    reset_mock(forget_tokens=True)
    mock_config(token_ttl=0)
    rows, err, rc = run("SET statement_timeout = '20s'; "
                        f"SELECT symbol, price FROM kis_prices WHERE symbol = '{symbols(1)[0]}'")
    st = stats()
    check(rc != 0 and "KIS rejected" in err and "statement timeout" not in err,
          f"expected a clear error, got rc {rc}: {err}")
    check(st["tokens_issued"] <= 3, f"{st['tokens_issued']} tokens issued in one scan")


def test_expired_token_mid_scan():
    warm, syms = symbols(1), symbols(10)
    with Session() as s:
        must(s.query(f"SELECT symbol, price FROM kis_prices WHERE symbol = '{warm[0]}'"), "warm")
        before = stats()["tokens_issued"]
        inject(("expire_token", syms[2]))
        rows = must(s.query(f"SELECT symbol, price FROM kis_prices "
                            f"WHERE symbol IN ({sql_list(syms)})"), "expired token")
    check_prices(rows, syms)
    st = stats()
    check(st["faults_injected"].get("expire_token") == 1, "expire_token did not fire")
    check(st["tokens_issued"] == before + 1,
          f"tokens issued went {before} -> {st['tokens_issued']}, expected +1")


def key_tokens():
    """tokens_issued per app key (kis_fdw_stats), by which of the two keys it is."""
    names = {hashlib.sha256(k.encode()).hexdigest()[:12]: side
             for side, k in (("a", APP_KEY), ("b", APP_KEY_B))}
    rows, err, rc = run("SELECT key_hash, tokens_issued FROM kis_fdw_stats")
    check(rc == 0, f"kis_fdw_stats: {err}")
    got = {names[h]: int(n) for h, n in rows if h in names}
    return {side: got.get(side, 0) for side in ("a", "b")}


def test_stats_tokens_match_mock():
    """kis_fdw_stats counts a token for the key the mock issued it to, once, whatever
    the order the two keys are used in: one after the other, the second key first, a
    key twice, both in one query (async), in one session or in several.  Each round
    starts with the mock forgetting its tokens, so every key used needs a new one;
    in the last, b's new token expires before b's second query ("b2"), so b needs two."""
    two_keys()
    a, b, b2 = symbols(1), symbols(1), symbols(1)
    steps = {"a": f"SELECT symbol, price FROM prices_a WHERE symbol IN ({sql_list(a)})",
             "b": f"SELECT symbol, price FROM prices_b WHERE symbol IN ({sql_list(b)})",
             "b2": f"SELECT symbol, price FROM prices_b WHERE symbol IN ({sql_list(b2)})",
             "ab": union_all(a, b)}
    want = {"a": a, "b": b, "b2": b2, "ab": a + b}
    try:
        for order, one_session, b_rejected in (
                (("a", "b"), False, 0), (("b", "a"), False, 0), (("b", "b", "a"), False, 0),
                (("ab",), False, 0), (("a", "ab", "b"), True, 0),
                (("b", "a", "b", "a"), True, 0), (("a", "b"), False, 0),
                (("b", "b2", "a"), True, 1)):
            reset_mock(forget_tokens=True)
            if b_rejected:
                inject(("expire_token", b2[0], 1))
            before = key_tokens()
            with contextlib.ExitStack() as stack:
                s = stack.enter_context(Session()) if one_session else None
                for step in order:
                    rows, err = s.query(steps[step]) if s else run(steps[step])[:2]
                    check_prices(must((rows, err), f"{order} {step}"), want[step],
                                 f"{order} {step}")
            after = key_tokens()
            counted = {side: after[side] - before[side] for side in ("a", "b")}
            issued = {"a": issued_to(APP_KEY), "b": issued_to(APP_KEY_B)}
            print(f"    ({'one session' if one_session else 'sessions'} {order}: "
                  f"kis_fdw_stats {counted}, mock {issued})")
            expected = {"a": int("a" in "".join(order)), "b": 1 + b_rejected}
            check(counted == issued and issued == expected,
                  f"order {order}: kis_fdw_stats counted {counted}, the mock issued {issued}")
    finally:
        drop_two_keys()


def test_refused_issuance_does_not_count():
    """An issuance KIS refused (a mistyped secret) does not count toward the
    one-issuance-per-interval rule: with the secret corrected, the next query
    issues at once instead of waiting out the interval."""
    key = "PSgateSecretKey00000000000000000001"
    key_server("kis_g", key, app_secret="BADsecret")
    try:
        _, err, rc = key_query("kis_g", symbols(1), "SET kis_fdw.token_issue_interval = 60;")
        check(rc != 0 and "EGW00105" in err, f"the bad secret was not refused: {err}")
        set_mapping("kis_g", app_secret=APP_SECRET)
        syms = symbols(1)
        rows, err, rc = key_query("kis_g", syms, "SET kis_fdw.token_issue_interval = 60; "
                                                 "SET statement_timeout = '20s';")
        check(rc == 0, f"the corrected secret waited for the refused issuance: {err}")
        check_prices(rows, syms)
        check(issued_to(key) == 1, f"{issued_to(key)} tokens issued to the key, expected 1")
    finally:
        run("DROP SERVER kis_g CASCADE")


def test_token_wait_says_so():
    """A new token that must wait for KIS's one-issuance-per-interval rule: a
    NOTICE says how many seconds remain, and the wait is cancellable."""
    key = "PSgateNoticeKey00000000000000000001"
    key_server("kis_g", key)
    try:
        syms = symbols(2)
        rows, err, rc = key_query("kis_g", syms[:1], "SET kis_fdw.token_issue_interval = 60;")
        check(rc == 0, f"first query: {err}")
        inject(("invalid_token", syms[1]))  # KIS calls the token invalid: a new one is needed
        _, err, rc = key_query("kis_g", syms[1:], "SET kis_fdw.token_issue_interval = 60; "
                                                  "SET statement_timeout = '2s';")
        m = re.search(r"NOTICE:  kis_fdw waits (\d+) s before it may ask KIS for a new access token", err)
        check(m is not None and 1 <= int(m.group(1)) <= 60, f"no NOTICE of the wait: {err}")
        check("canceling statement due to statement timeout" in err, f"the wait was not cancelled: {err}")
        check(issued_to(key) == 1, f"{issued_to(key)} tokens issued within the interval")
    finally:
        run("DROP SERVER kis_g CASCADE")


def test_one_token_per_credential():
    """Servers naming one origin differently (a trailing slash, an upper-case scheme)
    with the same key share one token: no re-issuance (a phone notification each) at
    every switch between them.  Another origin (localhost for 127.0.0.1) is another
    issuer: its token is its own, and switching back and forth re-issues neither."""
    key = "PSgatePingPongKey00000000000000001"
    check("127.0.0.1" in MOCK_URL, f"the mock is not at 127.0.0.1: {MOCK_URL}")
    key_server("kis_g", key)
    key_server("kis_h", key, url=MOCK_URL.replace("https:", "HTTPS:") + "/")
    key_server("kis_l", key, url=MOCK_URL.replace("127.0.0.1", "localhost"))
    try:
        for server in ("kis_g", "kis_h", "kis_l", "kis_g", "kis_h", "kis_l"):
            syms = symbols(1)
            rows, err, rc = key_query(server, syms)
            check(rc == 0, f"{server}: {err}")
            check_prices(rows, syms, server)
        check(issued_to(key) == 2, f"{issued_to(key)} tokens issued for one key on two origins")
        rows, err, _ = run("SELECT requests, tokens_issued FROM kis_fdw_stats "
                           f"WHERE key_hash = '{hashlib.sha256(key.encode()).hexdigest()[:12]}'")
        check(rows == [["6", "2"]], f"kis_fdw_stats, one row for the key: {rows} {err}")
    finally:
        run("DROP SERVER kis_g CASCADE")
        run("DROP SERVER kis_h CASCADE")
        run("DROP SERVER kis_l CASCADE")


def test_handed_back_token():
    """KIS re-issues the same token within 6 hours: when it calls a token invalid
    and the re-issuance hands the very same one back, the error says so."""
    key = "PSgateHandBackKey00000000000000001"
    key_server("kis_g", key)
    mock_config(token_reuse=21600)
    try:
        rows, err, rc = key_query("kis_g", symbols(1))
        check(rc == 0, f"first query: {err}")
        inject(("invalid_token", "*", -1))
        _, err, rc = key_query("kis_g", symbols(1))
        check(rc != 0 and "KIS handed back the access token it had just rejected" in err
              and "6 hours" in err, f"not the handed-back error: {err}")
        check(issued_to(key) == 2, f"{issued_to(key)} issuances, expected the first and one re-issue")
    finally:
        run("DROP SERVER kis_g CASCADE")


def test_slow_issuance_not_taken_over():
    """A tokenP request that KIS takes long to answer, but within the server's
    timeout_ms, still holds the issuing claim: a second session waits for its
    token, saying so, instead of issuing a second one.  The mock answers tokenP
    after 33 s, longer than the fixed 30 s after which a claim used to be taken
    over, and shorter than timeout_ms (40 s)."""
    key = "PSgateSlowIssueKey0000000000000001"
    key_server("kis_g", key)
    run_all("ALTER SERVER kis_g OPTIONS (ADD timeout_ms '40000')")
    mock_config(token_latency_ms=33000)
    try:
        with Session() as a:
            syms = symbols(2)
            first = a.background(f"SELECT symbol, price FROM kis_g_prices WHERE symbol = '{syms[0]}'")
            wait_until(lambda: stats()["token_requests"] >= 1, "the first session's tokenP request")
            rows, err, rc = key_query("kis_g", syms[1:], "SET statement_timeout = '50s';")
            first.join(WAIT)
            check(first.result is not None, "the first session did not finish")
            check_prices(must(first.result, "first session"), syms[:1], "first session")
            check(rc == 0, f"the second session: {err}")
            check_prices(rows, syms[1:], "second session")
            check("NOTICE:  kis_fdw waits for another session's request for an access token" in err,
                  f"the second session did not say what it waited for: {err}")
        s = stats()
        check(s["token_requests"] == 1 and issued_to(key) == 1,
              f"{s['token_requests']} tokenP requests, {issued_to(key)} issuances; expected one")
    finally:
        mock_config(token_latency_ms=0)
        run("DROP SERVER kis_g CASCADE")


@contextlib.contextmanager
def local_kis(name, handler, max_retries):
    """A plain-http stand-in for KIS on loopback (handler: its request handler
    class) behind server kis_{name}, with table kis_prices_{name} and a key of
    its own (a token another test's server got for APP_KEY would be shared)."""
    import http.server
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        create_server(f"kis_{name}", f"kis_prices_{name}",
                      f"base_url 'http://127.0.0.1:{httpd.server_port}', rate_limit '0', "
                      f"max_retries '{max_retries}'", app_key=f"PS{name}only{time.time_ns()}")
        yield
    finally:
        httpd.shutdown()
        httpd.server_close()
        run(f"DROP SERVER IF EXISTS kis_{name} CASCADE")


def test_token_5xx_hint():
    """A token endpoint failing with HTTP 503 is not blamed on the once-a-minute rule."""
    import http.server

    class Unavailable(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(503)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "11")
            self.end_headers()
            self.wfile.write(b"unavailable")

        def log_message(self, *args):
            pass

    with local_kis("503", Unavailable, 0):
        rows, err, rc = run(f"SELECT symbol, price FROM kis_prices_503 WHERE symbol = '{symbols(1)[0]}'")
        check(rc != 0 and "KIS did not issue an access token" in err and "HTTP 503" in err,
              f"expected a token error naming HTTP 503: {err}")
        check("per minute" not in err and "EGW00133" not in err,
              f"a 503 got the once-a-minute hint: {err}")


def test_token_network_failure_retried():
    """A tokenP request that gets no answer (the connection drops) is a passing
    network failure like any other: retried up to max_retries, not the end of
    the scan; with max_retries 0 it fails with "could not reach KIS"."""
    import http.server
    import json as json_mod

    seen = {"token": 0, "data": 0}

    class Flaky(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            seen["token"] += 1
            if seen["token"] % 2 == 1:  # every other issuance: hang up without an answer
                self.close_connection = True
                return
            self._json({"access_token": "flaky-token", "token_type": "Bearer",
                        "expires_in": 86400})

        def do_GET(self):
            seen["data"] += 1
            self._json({"rt_cd": "0", "msg_cd": "KIOK0510", "msg1": "ok",
                        "output": {"stck_prpr": "70000"}})

        def _json(self, body):
            data = json_mod.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    sym = symbols(1)[0]
    with local_kis("flaky", Flaky, 1):
        rows, err, rc = run(f"SELECT symbol, price FROM kis_prices_flaky WHERE symbol = '{sym}'")
        check(rc == 0 and rows == [[sym, "70000"]],
              f"a dropped tokenP connection was not retried: {rows} {err}")
        check(seen == {"token": 2, "data": 1}, f"expected 2 tokenP requests and 1 data request: {seen}")

        # no retries allowed: the failure ends the scan, and says so
        run("ALTER SERVER kis_flaky OPTIONS (SET max_retries '0')")
        run(f"ALTER USER MAPPING FOR CURRENT_USER SERVER kis_flaky "
            f"OPTIONS (SET app_key 'PSflaky{time.time_ns()}')")
        rows, err, rc = run(f"SELECT symbol, price FROM kis_prices_flaky WHERE symbol = '{sym}'")
        check(rc != 0 and "could not reach KIS to obtain an access token" in err,
              f"max_retries 0: expected the token error: {rows} {err}")
        check(seen["token"] == 3 and seen["data"] == 1, f"max_retries 0: {seen}")
