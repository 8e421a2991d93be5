"""Behaviour tests: security.  Another role must not read, poison or stall this role's
data (issue 20, items 1, 2 and 6; docs/security.md).  Each test acts as that role would:
an ordinary role with USAGE on a server and a user mapping of its own, and nothing else.
"""

import contextlib
import json
import threading
import time
from .harness import (
    MOCK_URL, MOCK_CA, APP_KEY, APP_SECRET, WAIT, stats, mock_config, inject, symbols, wait_until,
    check, check_prices, run, Session, run_all, must, create_server, set_server, known_gap)
from .fixtures import (
    BALANCE_PATH, gated_query, check_key_waits, issued_to, cached_table, waiting_on_another)


ATTACKER = "kis_attacker"


@contextlib.contextmanager
def attacker(*grants):
    """An ordinary role (dropped with what it owns afterwards), granted grants."""
    run(f"DROP OWNED BY {ATTACKER}; DROP ROLE {ATTACKER}")  # a leftover of an earlier run
    run_all(f"CREATE ROLE {ATTACKER}", *[f"GRANT {g} TO {ATTACKER}" for g in grants])
    try:
        yield ATTACKER
    finally:
        run(f"DROP OWNED BY {ATTACKER}; DROP ROLE {ATTACKER}")


def as_attacker(sql):
    return run(f"SET ROLE {ATTACKER}; {sql}")


def test_credentials_printable_only():
    """An attacker's own secret (or key) with CR LF would smuggle a second request onto
    the kept-alive connection: the user mapping is refused, naming the option and not
    echoing the value; and a mapping that holds one already (made before the check,
    planted here in the catalog) sends nothing at all: no header is stripped, none sent."""
    smuggled = symbols(1)[0]
    line = (f"GET /uapi/domestic-stock/v1/quotations/inquire-price?"
            f"fid_cond_mrkt_div_code=J&fid_input_iscd={smuggled} HTTP/1.1")
    evil = f"x\\r\\n\\r\\n{line}\\r\\nx-pad: x"
    with attacker("USAGE ON FOREIGN SERVER kis", "SELECT ON kis_prices_or_row"):
        for option, value in (("app_secret", f"E'{evil}'"), ("app_key", f"E'PS{evil}'"),
                              ("app_secret", "E'zq\\tzq'"), ("app_key", "'키'")):
            other = "app_key 'PSattackerKey01'" if option == "app_secret" else "app_secret 's'"
            _, err, rc = as_attacker(f"CREATE USER MAPPING FOR CURRENT_USER SERVER kis "
                                     f"OPTIONS ({option} {value}, {other})")
            check(rc != 0 and f'option "{option}"' in err and "printable ASCII" in err,
                  f"{option} {value} was accepted: {err}")
            check("inquire-price" not in err and "zq" not in err and "키" not in err,
                  f"the error echoes the value: {err}")
        run_all(f"CREATE USER MAPPING FOR {ATTACKER} SERVER kis "
                f"OPTIONS (app_key 'PSattackerKey01', app_secret 'plain')",
                f"UPDATE pg_user_mapping SET umoptions = "
                f"array['app_key=PSattackerKey01', E'app_secret={evil}'] "
                f"WHERE umuser = '{ATTACKER}'::regrole")
        asked = symbols(1)[0]
        _, err, rc = as_attacker(f"SELECT symbol, price, error FROM kis_prices_or_row "
                                 f"WHERE symbol = '{asked}'")
        check(rc != 0 and "app_secret" in err and "printable ASCII" in err,
              f"a planted secret with CR LF was used: {err}")
        check("inquire-price" not in err, f"the error echoes the value: {err}")
        s = stats()
        check(smuggled not in s["by_symbol"] and s["requests"] == 0,
              f"requests reached the mock: {s['requests']}, by symbol {s['by_symbol']}")


class FakeKis:
    """A plain-http "KIS" on loopback: tokenP issues token to anyone (or answers
    EGW00133 when too_soon), API requests get a KIS error; seen keeps their headers."""

    def __init__(self, token="fake" + "x" * 60):
        import http.server
        fake = self
        self.too_soon = False
        self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def reply(self, status, obj):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if fake.too_soon:
                    self.reply(403, {"error_code": "EGW00133", "error_description": "1분당 1회"})
                else:
                    self.reply(200, {"access_token": token, "token_type": "Bearer",
                                     "expires_in": 86400})

            def do_GET(self):
                fake.seen.append(dict(self.headers))
                self.reply(200, {"rt_cd": "1", "msg_cd": "FAKE0001", "msg1": "fake"})

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_token_printable_only():
    """A token answer with CR LF in it (from a server we cannot trust to send only
    printable ASCII) is refused; no header carrying it is sent."""
    fake = FakeKis(token="abc\r\nx-smuggled: 1")
    try:
        create_server("kis_crlf", "kis_prices_crlf", f"base_url '{fake.url}', max_retries '0'",
                      app_key=f"PScrlfOnly{time.time_ns()}")
        _, err, rc = run(f"SELECT symbol, price FROM kis_prices_crlf WHERE symbol = '{symbols(1)[0]}'")
        check(rc != 0 and "access token" in err and "printable ASCII" in err,
              f"a token with CR LF was not refused: {err}")
        check(not fake.seen, f"a request went out with it: {fake.seen}")
    finally:
        fake.close()
        run("DROP SERVER IF EXISTS kis_crlf CASCADE")


def test_answer_for_another_symbol():
    """An answer whose own symbol field names another symbol (what a response smuggled
    onto the connection looks like) is this key's error, and is not cached: the next
    query asks again and gets the right price."""
    cached_table(60000)
    sym = symbols(1)[0]
    inject(("stray", sym))
    sql = f"SELECT symbol, price FROM kis_prices_cached WHERE symbol = '{sym}'"
    rows, err, rc = run(sql)
    check(rc != 0 and sym in err and "000660" in err,
          f"an answer for 000660 was taken for {sym}: {rows} {err}")
    rows, err, rc = run(sql)
    check(rc == 0, err)
    check_prices(rows, [sym], "after the stray answer")
    check(stats()["requests"] == 2, f"{stats()['requests']} requests: the stray answer was cached")


def test_urls_superuser_only():
    """base_url and master_url decide where the secrets of every user mapped to a
    server go: like ca_file, only a superuser sets them, on CREATE SERVER and on
    ALTER SERVER by the server's (ordinary) owner alike."""
    with attacker("USAGE ON FOREIGN DATA WRAPPER kis_fdw"):
        for option in ("base_url", "master_url"):
            _, err, rc = as_attacker(f"CREATE SERVER kis_evil FOREIGN DATA WRAPPER kis_fdw "
                                     f"OPTIONS ({option} 'http://127.0.0.1:9')")
            check(rc != 0 and f'only a superuser can set option "{option}"' in err,
                  f"CREATE SERVER with {option}: {err}")
        _, err, rc = as_attacker("CREATE SERVER kis_evil FOREIGN DATA WRAPPER kis_fdw")
        check(rc == 0, err)
        for option in ("base_url", "master_url"):
            _, err, rc = as_attacker(f"ALTER SERVER kis_evil OPTIONS (ADD {option} 'http://127.0.0.1:9')")
            check(rc != 0 and f'only a superuser can set option "{option}"' in err,
                  f"ALTER SERVER with {option}: {err}")


def test_token_bound_to_origin():
    """A token is the credential's and its origin's: one another role got for our app
    key with a wrong secret from another origin (a server a superuser pointed
    elsewhere) neither serves our cached holdings to it nor replaces our token, and
    that origin's EGW00133 does not hold up our next issuance."""
    key = "PSoriginVictimKey000000000000001"
    mock_config(holdings=10)
    fake = FakeKis()
    setup = ["DROP SERVER IF EXISTS kis_v CASCADE", "DROP SERVER IF EXISTS kis_e CASCADE",
             f"CREATE SERVER kis_v FOREIGN DATA WRAPPER kis_fdw OPTIONS "
             f"(base_url '{MOCK_URL}', ca_file '{MOCK_CA}', rate_limit '0', max_retries '0')",
             f"CREATE SERVER kis_e FOREIGN DATA WRAPPER kis_fdw OPTIONS "
             f"(base_url '{fake.url}', rate_limit '0', max_retries '0')",
             f"CREATE USER MAPPING FOR CURRENT_USER SERVER kis_v OPTIONS "
             f"(app_key '{key}', app_secret '{APP_SECRET}', account '12345678-01')",
             "CREATE FOREIGN TABLE holdings_v (symbol text, qty bigint) "
             "SERVER kis_v OPTIONS (endpoint 'domestic_holdings', cache_ttl_ms '600000')",
             "CREATE FOREIGN TABLE prices_v (symbol text, price numeric) "
             "SERVER kis_v OPTIONS (endpoint 'domestic_price')",
             "CREATE FOREIGN TABLE prices_e (symbol text, price numeric) "
             "SERVER kis_e OPTIONS (endpoint 'domestic_price')",
             "SELECT kis_fdw_cache_reset()"]
    try:
        run_all(*setup)
        with attacker("USAGE ON FOREIGN SERVER kis_v", "USAGE ON FOREIGN SERVER kis_e",
                      "SELECT ON holdings_v", "SELECT ON prices_e"):
            for server in ("kis_v", "kis_e"):
                run_all(f"CREATE USER MAPPING FOR {ATTACKER} SERVER {server} OPTIONS "
                        f"(app_key '{key}', app_secret 'BADguess', account '12345678-01')")
            rows = must(run("SELECT count(*) FROM holdings_v")[:2], "victim's holdings")
            check(rows == [["10"]] and issued_to(key) == 1, f"victim: {rows}, {issued_to(key)} tokens")
            as_attacker(f"SELECT * FROM prices_e WHERE symbol = '{symbols(1)[0]}'")  # the fake token
            before = stats()["pages"].get(BALANCE_PATH, 0)
            rows, err, rc = as_attacker("SELECT count(*) FROM holdings_v")
            check(rc != 0 and rows == [], f"another role read the victim's holdings: {rows} {err}")
            check(stats()["pages"].get(BALANCE_PATH, 0) == before, "the attacker's request was sent")
            syms = symbols(1)
            check_prices(must(run(f"SELECT symbol, price FROM prices_v WHERE symbol = '{syms[0]}'")[:2],
                              "victim after"), syms, "victim after")
            check(issued_to(key) == 1, f"the victim's token was replaced: {issued_to(key)} issuances")

            # the other origin's EGW00133 is not an issuance for the victim's key
            check(run("SELECT kis_fdw_reset_key('kis_v')")[0] == [["t"]], "victim has no slot")
            fake.too_soon = True
            run_all(f"ALTER USER MAPPING FOR {ATTACKER} SERVER kis_e OPTIONS (SET app_secret 'BADguess2')")
            _, err, rc = as_attacker(f"SELECT * FROM prices_e WHERE symbol = '{symbols(1)[0]}'")
            check(rc != 0 and "EGW00133" in err, f"the fake EGW00133 was not drawn: {err}")
            syms = symbols(1)
            inject(("invalid_token", syms[0]))
            rows, err, rc = run(f"SET kis_fdw.token_issue_interval = 60; SET statement_timeout = '10s'; "
                                f"SELECT symbol, price FROM prices_v WHERE symbol = '{syms[0]}'")
            check(rc == 0, f"the other origin's EGW00133 held up the victim's issuance: {err}")
            check_prices(rows, syms, "victim's new token")
            check(issued_to(key) == 2, f"{issued_to(key)} issuances, expected 2")
    finally:
        fake.close()
        run("DROP SERVER IF EXISTS kis_v CASCADE")
        run("DROP SERVER IF EXISTS kis_e CASCADE")


def test_private_answer_kept_only_when_asked():
    """Holdings fetched through a table without cache_ttl_ms are not kept: a table
    with it asks again.  And a cached account answer is keyed by the whole
    credential: another role with the same app key and account but its own secret
    does not get it."""
    mock_config(holdings=10)
    run_all("DROP SERVER IF EXISTS kis_hold CASCADE",
            f"CREATE SERVER kis_hold FOREIGN DATA WRAPPER kis_fdw OPTIONS "
            f"(base_url '{MOCK_URL}', ca_file '{MOCK_CA}', rate_limit '0')",
            f"CREATE USER MAPPING FOR CURRENT_USER SERVER kis_hold OPTIONS "
            f"(app_key '{APP_KEY}', app_secret '{APP_SECRET}', account '12345678-01')",
            "CREATE FOREIGN TABLE holdings_plain (symbol text, qty bigint) "
            "SERVER kis_hold OPTIONS (endpoint 'domestic_holdings')",
            "CREATE FOREIGN TABLE holdings_cached (symbol text, qty bigint) "
            "SERVER kis_hold OPTIONS (endpoint 'domestic_holdings', cache_ttl_ms '600000')",
            "SELECT kis_fdw_cache_reset()")
    try:
        def sent(sql, who="NONE"):
            before = stats()["pages"].get(BALANCE_PATH, 0)
            rows = must(run(f"SET ROLE {who}; {sql}")[:2], sql)
            check(rows == [["10"]], f"{sql}: {rows}")
            return stats()["pages"].get(BALANCE_PATH, 0) - before
        check(sent("SELECT count(*) FROM holdings_plain") == 1, "the first read was not sent")
        n = sent("SELECT count(*) FROM holdings_cached")
        check(n == 1, f"{n} requests: an answer fetched without cache_ttl_ms was kept")
        check(sent("SELECT count(*) FROM holdings_cached") == 0, "a cached answer was not served")
        with attacker("USAGE ON FOREIGN SERVER kis_hold", "SELECT ON holdings_cached"):
            run_all(f"CREATE USER MAPPING FOR {ATTACKER} SERVER kis_hold OPTIONS "
                    f"(app_key '{APP_KEY}', app_secret 'another-secret', account '12345678-01')")
            n = sent("SELECT count(*) FROM holdings_cached", ATTACKER)
            check(n == 1, f"{n} requests: another secret was served the cached holdings")
    finally:
        run("DROP SERVER IF EXISTS kis_hold CASCADE")


def shared_memory_count(pid, needle):
    """How often needle occurs in the shared mappings of a backend (the answer cache)."""
    n = 0
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if not (parts[1].startswith("r") and parts[1][3] == "s"):
                continue
            try:
                mem.seek(lo)
                n += mem.read(hi - lo).count(needle)
            except (OSError, ValueError, OverflowError):
                continue
    return n


def test_cache_wiped_on_reset():
    """Holdings in the answer cache are zeroed when they leave it: after
    kis_fdw_cache_reset no byte of them is left in shared memory."""
    mock_config(holdings=10)
    needle = b'"pchs_avg_pric"'   # a field only holdings answers have
    run_all("DROP SERVER IF EXISTS kis_hold CASCADE",
            f"CREATE SERVER kis_hold FOREIGN DATA WRAPPER kis_fdw OPTIONS "
            f"(base_url '{MOCK_URL}', ca_file '{MOCK_CA}', rate_limit '0')",
            f"CREATE USER MAPPING FOR CURRENT_USER SERVER kis_hold OPTIONS "
            f"(app_key '{APP_KEY}', app_secret '{APP_SECRET}', account '12345678-01')",
            "CREATE FOREIGN TABLE holdings_cached (symbol text, qty bigint) "
            "SERVER kis_hold OPTIONS (endpoint 'domestic_holdings', cache_ttl_ms '600000')",
            "SELECT kis_fdw_cache_reset()")
    try:
        with Session() as s:
            pid = s.pid()
            check(must(s.query("SELECT count(*) FROM holdings_cached"), "holdings") == [["10"]],
                  "holdings")
            check(shared_memory_count(pid, needle) > 0, "the holdings are not in shared memory")
            must(s.query("SELECT kis_fdw_cache_reset()"), "reset")
            left = shared_memory_count(pid, needle)
            check(left == 0, f"{left} copies of the holdings left in shared memory after the reset")
    finally:
        run("DROP SERVER IF EXISTS kis_hold CASCADE")


def test_reset_key_needs_the_secret():
    """kis_fdw_reset_key acts on the key of the caller's mapping only with its secret:
    another role naming our app key with a wrong secret cannot clear our schedule."""
    with attacker("USAGE ON FOREIGN SERVER kis", "EXECUTE ON FUNCTION kis_fdw_reset_key(name)"):
        run_all(f"CREATE USER MAPPING FOR {ATTACKER} SERVER kis "
                f"OPTIONS (app_key '{APP_KEY}', app_secret 'a-guess')")
        rows, err, rc = gated_query(symbols(1))  # the key now has a slot
        check(rc == 0, f"warm-up: {err}")
        check(run("SELECT kis_fdw_reset_key('kis')")[0] == [["t"]], "the key has no slot")
        set_server(rate_limit="0.01")
        rows, err, rc = gated_query(symbols(1))
        check(rc == 0, f"first query under 0.01/s: {err}")
        rows, err, rc = as_attacker("SELECT kis_fdw_reset_key('kis')")
        check(rc == 0 and rows == [["f"]], f"the attacker's reset: {rows} {err}")
        check_key_waits("the key's schedule was cleared by another role")
        check(run("SELECT kis_fdw_reset_key('kis')")[0] == [["t"]], "the owner's reset found no slot")


def test_update_from_1_0_runs_nothing_planted():
    """An installation at 1.0 updated with a plain ALTER EXTENSION kis_fdw UPDATE
    runs nothing a role with CREATE on the extension's schema planted there: the
    released 1.0 -> 1.1 script compares p.oid = 'kis_fdw_stats()'::regprocedure,
    which a planted =(oid, regprocedure) would take over (as the superuser who
    updates); the direct kis_fdw--1.0--1.2.sql, the shortest path, names only
    pg_catalog's operators."""
    db, role = "kis_planted10", "kis_planter10"
    run(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", db="postgres")
    run(f"DROP ROLE IF EXISTS {role}", db="postgres")
    run_all(f"CREATE ROLE {role}")
    try:
        _, err, rc = run(f"CREATE DATABASE {db}", db="postgres")
        check(rc == 0, err)
        for sql in ("CREATE EXTENSION kis_fdw VERSION '1.0'",
                    f"GRANT CREATE ON SCHEMA public TO {role}",
                    f"SET ROLE {role}; CREATE FUNCTION public.planted_eq(oid, regprocedure) "
                    "RETURNS bool LANGUAGE plpgsql AS $$ BEGIN "
                    "IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname "
                    "OPERATOR(pg_catalog.=) current_user) THEN "
                    f"EXECUTE 'ALTER ROLE {role} SUPERUSER'; END IF; "
                    "RETURN $1 OPERATOR(pg_catalog.=) $2::oid; END $$",
                    f"SET ROLE {role}; CREATE OPERATOR public.= (LEFTARG = oid, "
                    "RIGHTARG = regprocedure, FUNCTION = public.planted_eq)",
                    "ALTER EXTENSION kis_fdw UPDATE"):
            _, err, rc = run(sql, db=db)
            check(rc == 0, f"{sql[:60]}: {err}")
        rows, _, _ = run("SELECT extversion FROM pg_extension WHERE extname = 'kis_fdw'", db=db)
        check(rows == [["1.3"]], f"not updated to 1.3: {rows}")
        rows, _, _ = run(f"SELECT rolsuper FROM pg_roles WHERE rolname = '{role}'")
        check(rows == [["f"]], f"the update from 1.0 ran the planted operator: {role} "
              f"is superuser ({rows})")
    finally:
        run(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", db="postgres")
        run(f"DROP ROLE IF EXISTS {role}", db="postgres")


@contextlib.contextmanager
def gated_server(rate_limit, app_key):
    """The attacker's own server kis_gated (and table kis_gated_prices) at rate_limit,
    over the mock: made by a superuser only because base_url must point at the mock
    (its default is KIS's, so its cache keys are everyone's).  The app key's gate
    outlives the server: each test has its own key."""
    run("DROP SERVER IF EXISTS kis_gated CASCADE")
    with attacker():
        run_all(f"CREATE SERVER kis_gated FOREIGN DATA WRAPPER kis_fdw OPTIONS "
                f"(base_url '{MOCK_URL}', ca_file '{MOCK_CA}', rate_limit '{rate_limit}')",
                f"GRANT USAGE ON FOREIGN SERVER kis_gated TO {ATTACKER}",
                f"CREATE USER MAPPING FOR {ATTACKER} SERVER kis_gated "
                f"OPTIONS (app_key '{app_key}', app_secret 'attacker-secret')",
                "CREATE FOREIGN TABLE kis_gated_prices (symbol text, price numeric, error text) "
                "SERVER kis_gated OPTIONS (endpoint 'domestic_price', on_error 'row')",
                f"GRANT SELECT ON kis_gated_prices TO {ATTACKER}")
        try:
            yield
        finally:
            run("DROP SERVER IF EXISTS kis_gated CASCADE")


def test_rate_gated_owner_stalls_others():
    """redteam (issue 20 item 4, not covered by the fix): another role's request
    that is inside kis_fdw's wait loop but held at its OWN rate gate keeps
    ownership of the shared entry (share_lookup claims it before the gate), so it
    is never "away" and never taken over.  A role that can create a server with
    rate_limit '0.01' (its base_url defaults to KIS's, so its cache keys are the
    victim's) owns a symbol's entry for up to 100 s per gate slot; every other
    role asking for that symbol waits its whole own timeout_ms, and its own
    answer is then sent ALONE and never cached.  Here the attacker's server is
    made by a superuser only because base_url must point at the mock; the
    victim's timeout_ms is 600 s (as in test_paused_cursor_does_not_stall_others)
    so that the stall shows as a statement timeout, not as a measured delay."""
    sym, warm = symbols(2)
    set_server(timeout_ms="600000")
    with gated_server("0.01", "PSattackerGatedKey01"):
        # the attacker spends its gate's one slot per 100 s (and gets its token)
        _, err, rc = as_attacker(f"SELECT * FROM kis_gated_prices WHERE symbol = '{warm}'")
        check(rc == 0, f"attacker warm-up: {err}")
        with Session() as a:
            must(a.query(f"SET ROLE {ATTACKER}"), "set role")
            pid = a.pid()
            held = a.background(f"SELECT * FROM kis_gated_prices WHERE symbol = '{sym}'")
            # in its wait loop, the request claimed and held at its gate: never sent
            wait_until(lambda: run(f"SELECT state, wait_event_type FROM pg_stat_activity "
                                   f"WHERE pid = {pid}")[0] == [["active", "Extension"]]
                       and sym not in stats()["by_symbol"], "the attacker at its gate")
            rows, err, rc = run(f"SET statement_timeout = '{WAIT // 2}s'; "
                                f"SELECT symbol, price, error FROM kis_prices_or_row "
                                f"WHERE symbol = '{sym}'")
            run(f"SELECT pg_cancel_backend({pid})")
            held.join(WAIT)
        check(rc == 0, f"the victim waited for the attacker's rate gate: {err.strip()}")
        check_prices(rows, [sym], "the victim")


def test_backing_off_owner_stalls_nobody():
    """The same class: a sender whose request failed and is to be sent again (after
    its back-off, through its gate) gives its claim back at once.  The attacker's
    gate (rate_limit 0.01, set after its token was issued without a gate) lets its
    first send through and its resend only 100 s later; the victim waits for that
    first send (the mock answers it after 2 s, with HTTP 500), is woken by the
    failure, sends its own and is answered, long before the attacker's resend."""
    sym, warm = symbols(2)
    set_server(timeout_ms="600000")
    with gated_server("0", "PSattackerBackoffKey01"):
        _, err, rc = as_attacker(f"SELECT * FROM kis_gated_prices WHERE symbol = '{warm}'")
        check(rc == 0, f"attacker warm-up: {err}")
        set_server("kis_gated", rate_limit="0.01")
        mock_config(latency_ms=2000)
        inject(("http500", sym, 1))
        with Session() as a:
            must(a.query(f"SET ROLE {ATTACKER}"), "set role")
            pid = a.pid()
            sender = a.background(f"SELECT * FROM kis_gated_prices WHERE symbol = '{sym}'")
            try:
                wait_until(lambda: waiting_on_another(pid, sym), "the attacker's first send")
                with Session() as v:
                    vpid = v.pid()
                    victim = v.background(f"SET statement_timeout = '{WAIT // 2}s'; "
                                          f"SELECT symbol, price, error FROM kis_prices_or_row "
                                          f"WHERE symbol = '{sym}'")
                    wait_until(lambda: waiting_on_another(vpid, sym), "the victim to wait")
                    victim.join(WAIT)
                sent = stats()["by_symbol"].get(sym)
            finally:
                run(f"SELECT pg_cancel_backend({pid})")
                sender.join(WAIT)
        check(victim.result is not None, "the victim did not return")
        check_prices(must(victim.result, "the victim"), [sym], "the victim")
        check(sent == 2, f"{sent} requests for {sym}: expected the attacker's first and "
              "the victim's own")


@known_gap
def test_paused_scans_hold_every_key_slot():
    """KNOWN GAP (docs/security.md; fails today, so @known_gap): app-key slots
    held by running scans are never reclaimed, and a
    scan holds its slot from its start however long its cursor is paused.  One
    session of an ordinary role, with a made-up key per server (here
    kis_fdw.max_app_keys servers made by a superuser on the mock and granted to
    it; in production a role with USAGE on the wrapper creates them itself with
    no options), opens one cursor over a UNION ALL of those tables and a plain
    branch: async Append begins every foreign scan, FETCH 1 returns the plain
    row, and every slot is then held for as long as the transaction stays open.
    Every other role's query then fails: "kis_fdw has no free app-key slot".
    (The session's token_issue_interval is set to 0 only so that the slots
    earned by earlier tests may be reclaimed at once; an attacker waits 60 s.)"""
    rows, err, _ = run("SHOW kis_fdw.max_app_keys")
    check(rows and rows[0][0].isdigit(), f"SHOW kis_fdw.max_app_keys: {rows} {err}")
    n = int(rows[0][0])
    servers = [f"kis_hold{i}" for i in range(n)]
    with attacker():
        try:
            for i, srv in enumerate(servers):
                run(f"DROP SERVER IF EXISTS {srv} CASCADE")
                run_all(f"CREATE SERVER {srv} FOREIGN DATA WRAPPER kis_fdw OPTIONS "
                        f"(base_url '{MOCK_URL}', ca_file '{MOCK_CA}', rate_limit '0')",
                        f"GRANT USAGE ON FOREIGN SERVER {srv} TO {ATTACKER}",
                        f"CREATE FOREIGN TABLE {srv}_t (symbol text, price numeric, error text) "
                        f"SERVER {srv} OPTIONS (endpoint 'domestic_price', on_error 'row')",
                        f"GRANT SELECT ON {srv}_t TO {ATTACKER}")
                _, err, rc = as_attacker(f"CREATE USER MAPPING FOR {ATTACKER} SERVER {srv} "
                                         f"OPTIONS (app_key 'BADholdKey{i:04d}', app_secret 'junk')")
                check(rc == 0, f"attacker's mapping {i}: {err}")
            union = " UNION ALL ".join(f"SELECT symbol FROM {srv}_t WHERE symbol = '005930'"
                                       for srv in servers)
            with Session() as a:
                must(a.query("SET kis_fdw.token_issue_interval = 0"), "interval")
                must(a.query(f"SET ROLE {ATTACKER}"), "set role")
                must(a.query("BEGIN"), "begin")
                must(a.query(f"DECLARE c CURSOR FOR {union} UNION ALL "
                             "SELECT 'plain' FROM generate_series(1, 10)"), "declare")
                first = must(a.query("FETCH 1 FROM c"), "fetch 1")
                check(first == [["plain"]], f"the attacker's first row: {first}")
                syms = symbols(1)
                rows, err, rc = run("SELECT symbol, price, error FROM kis_prices_or_row "
                                    f"WHERE symbol = '{syms[0]}'")
                a.query("ROLLBACK")
            check(rc == 0, f"another role's paused cursor locked everyone out: {err.strip()}")
            check_prices(rows, syms, "the victim")
        finally:
            for srv in servers:
                run(f"DROP SERVER IF EXISTS {srv} CASCADE")
