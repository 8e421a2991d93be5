"""Behaviour tests: the rate gate and the app-key slots (issue 13 items 1, 2, 6, 7, 9;
issue 14 item 5).  Requests run within max_concurrency; one limit and one token per key
across sessions and servers; without shared_preload_libraries everything works per
session.
"""

import os
import shutil
import subprocess
import tempfile
import time

from kistest import PSQL
from .harness import (
    MOCK_URL, MOCK_CA, WORK, PGHOST, PGPORT, APP_KEY, APP_SECRET, WAIT, stats, mock_config, inject,
    reset_mock, symbols, sql_list, check, check_prices, run, Session, must, create_server,
    set_server)
from .fixtures import (
    hold_first_for_company, gated_query, check_key_waits, set_mapping, key_server, issued_to,
    key_query)


def test_concurrency():
    mock_config(latency_ms=100)
    hold_first_for_company()
    syms = symbols(40)
    rows, err, rc = run(f"SELECT symbol, price FROM kis_prices WHERE symbol = ANY "
                        f"(ARRAY[{sql_list(syms)}])")
    check(rc == 0, f"query failed: {err}")
    check_prices(rows, syms)
    s = stats()
    print(f"    (max_in_flight {s['max_in_flight']}, requests {s['requests']})")
    check(1 < s["max_in_flight"] <= 8, f"max_in_flight {s['max_in_flight']} not in 2..8")
    check(s["requests"] == 40, f"mock saw {s['requests']} requests, expected 40")


def test_rate_gate():
    mock_config(rate_limit=5)
    set_server(rate_limit="4")
    syms = symbols(12)
    rows, err, rc = run(f"SELECT symbol, price FROM kis_prices WHERE symbol IN ({sql_list(syms)})")
    check(rc == 0, f"gated query failed: {err}")
    check_prices(rows, syms, "gated")
    s = stats()
    check(s["violations"] == 0, f"{s['violations']} rate violations with rate_limit 4 < 5")
    check(s["requests"] == 12, f"gated: {s['requests']} requests, expected 12")

    # the converse: without the client gate the mock does see violations,
    # and the EGW00201 answers are retried until every row is there
    reset_mock()
    mock_config(rate_limit=5)
    set_server(rate_limit="0", max_retries="5")
    syms = symbols(20)
    rows, err, rc = run(f"SELECT symbol, price FROM kis_prices WHERE symbol IN ({sql_list(syms)})")
    s = stats()
    check(s["violations"] > 0, "no violations without a client gate: the mock check is blind")
    check(rc == 0, f"ungated query failed ({s['violations']} violations): {err}")
    check_prices(rows, syms, "ungated")
    print(f"    (ungated: {s['violations']} violations, {s['requests']} requests)")


def test_shared_token_and_gate():
    """Six sessions at once on one key: one limit, one token (issue 3)."""
    reset_mock(forget_tokens=True)  # every session's cached token is now invalid
    mock_config(rate_limit=20, latency_ms=20)
    # 18/s, the real environment's default: two requests of margin per second, so
    # a slow TLS handshake on a loaded machine cannot bunch 21 arrivals into one
    set_server(rate_limit="18")
    groups = [symbols(15) for _ in range(6)]
    sessions = [Session() for _ in groups]
    try:
        for s in sessions:
            s.pid()
        started = time.monotonic()
        runs = [s.background(f"SELECT symbol, price FROM kis_prices WHERE symbol IN ({sql_list(g)})")
                for s, g in zip(sessions, groups)]
        for r in runs:
            r.join(WAIT)
        elapsed = time.monotonic() - started
        for r, g in zip(runs, groups):
            check(r.result is not None, "a session did not return")
            check_prices(must(r.result, "session"), g)
    finally:
        for s in sessions:
            s.close()
    st = stats()
    print(f"    (6 sessions, 90 symbols: {st['requests']} requests in {elapsed:.1f} s = "
          f"{st['requests'] / elapsed:.1f}/s vs rate_limit 18; violations {st['violations']}, "
          f"tokens issued {st['tokens_issued']})")
    check(st["violations"] == 0, f"{st['violations']} rate violations across sessions")
    check(st["tokens_issued"] == 1, f"{st['tokens_issued']} tokens issued, expected 1 for all sessions")


def test_two_servers_share_gate():
    """Two servers with the same app key share its gate: 2 x 5/s would break a 6/s limit."""
    create_server("kis2", "kis_prices2", f"base_url '{MOCK_URL}', ca_file '{MOCK_CA}', rate_limit '5'")
    mock_config(rate_limit=6)
    set_server(rate_limit="5")
    a_syms, b_syms = symbols(12), symbols(12)
    a, b = Session(), Session()
    try:
        a.pid()
        b.pid()
        ra = a.background(f"SELECT symbol, price FROM kis_prices WHERE symbol IN ({sql_list(a_syms)})")
        rb = b.background(f"SELECT symbol, price FROM kis_prices2 WHERE symbol IN ({sql_list(b_syms)})")
        ra.join(WAIT)
        rb.join(WAIT)
        check_prices(must(ra.result, "server kis"), a_syms, "server kis")
        check_prices(must(rb.result, "server kis2"), b_syms, "server kis2")
    finally:
        a.close()
        b.close()
        run("DROP SERVER kis2 CASCADE")
    st = stats()
    check(st["violations"] == 0, f"{st['violations']} violations: the servers did not share the gate")
    check(st["requests"] == 24, f"{st['requests']} requests, expected 24")


def test_no_preload_notice():
    """Without shared_preload_libraries everything works per session, and says so once."""
    parent = tempfile.mkdtemp(prefix="nopreload.", dir=WORK)
    shutil.chown(parent, "postgres", "postgres")
    data = os.path.join(parent, "data")
    port = str(int(PGPORT) + 1)
    as_pg = ["runuser", "-u", "postgres", "--"]
    pgbin = os.environ.get("KIS_PGBIN") or os.path.dirname(os.path.realpath(PSQL))
    if not os.path.exists(os.path.join(pgbin, "initdb")):
        pgbin = "/usr/lib/postgresql/15/bin"
    subprocess.run(as_pg + [f"{pgbin}/initdb", "-D", data, "--auth=trust", "--no-sync",
                            "-U", "postgres"], check=True, capture_output=True)
    with open(os.path.join(data, "postgresql.conf"), "a") as f:
        f.write(f"port = {port}\nlisten_addresses = ''\nunix_socket_directories = '{WORK}'\n"
                "kis_fdw.token_issue_interval = 0\n")
    subprocess.run(as_pg + [f"{pgbin}/pg_ctl", "-D", data, "-l", os.path.join(parent, "server.log"),
                            "-w", "start"], check=True, capture_output=True)
    try:
        def psql(script):
            p = subprocess.run([PSQL, "-X", "-q", "-A", "-t", "-h", PGHOST, "-p", port,
                                "-U", "postgres", "-d", "postgres", "-c", script],
                               capture_output=True, text=True, timeout=WAIT)
            return p.stdout, p.stderr
        psql(f"CREATE EXTENSION kis_fdw; CREATE SERVER kis FOREIGN DATA WRAPPER kis_fdw "
             f"OPTIONS (base_url '{MOCK_URL}', ca_file '{MOCK_CA}', rate_limit '0'); "
             f"CREATE USER MAPPING FOR CURRENT_USER SERVER kis "
             f"OPTIONS (app_key '{APP_KEY}', app_secret '{APP_SECRET}'); "
             f"CREATE FOREIGN TABLE p (symbol text, price numeric) SERVER kis "
             f"OPTIONS (endpoint 'domestic_price')")
        syms = symbols(2)
        out, err = psql(f"SELECT symbol, price FROM p WHERE symbol IN ({sql_list(syms)}); "
                        f"SELECT symbol, price FROM p WHERE symbol IN ({sql_list(syms)}); "
                        f"SELECT shared FROM kis_fdw_stats")
        check(err.count("NOTICE:  kis_fdw is not in shared_preload_libraries") == 1,
              f"expected the NOTICE exactly once, stderr: {err}")
        lines = [line.split("|") for line in out.splitlines() if line]
        check_prices(lines[:2], syms, "first query")
        check_prices(lines[2:4], syms, "second query")
        check(lines[4:] == [["f"]], f"kis_fdw_stats says shared: {lines[4:]}")
        # the NOTICE has a SQLSTATE of its own (warning, 01000), not 00000
        p = subprocess.run([PSQL, "-X", "-q", "-A", "-t", "-v", "VERBOSITY=verbose", "-h", PGHOST,
                            "-p", port, "-U", "postgres", "-d", "postgres", "-c",
                            f"SELECT count(*) FROM p WHERE symbol = '{syms[0]}'"],
                           capture_output=True, text=True, timeout=WAIT)
        check("NOTICE:  01000: kis_fdw is not in shared_preload_libraries" in p.stderr,
              f"expected the NOTICE with SQLSTATE 01000: {p.stderr}")
        # the answer cache works within the session, not across sessions
        psql("CREATE FOREIGN TABLE pc (symbol text, price numeric) SERVER kis "
             "OPTIONS (endpoint 'domestic_price', cache_ttl_ms '600000')")
        syms = symbols(2)
        query = f"SELECT symbol, price FROM pc WHERE symbol IN ({sql_list(syms)});"
        before = stats()["requests"]
        out, err = psql(query + query)
        lines = [line.split("|") for line in out.splitlines() if line]
        check_prices(lines[:2], syms, "cached, first")
        check_prices(lines[2:], syms, "cached, second")
        check(stats()["requests"] == before + 2, "the session's cache did not serve the repeat")
        out, err = psql(query)
        check(stats()["requests"] == before + 4, "another session was served without preload")
    finally:
        subprocess.run(as_pg + [f"{pgbin}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(parent, ignore_errors=True)


def test_rate_change_does_not_freeze_key():
    """A query under rate_limit 0.01 puts the key's next send 100 s out; after the
    rate goes back to 18, the next query must follow the new rate at once instead
    of waiting out the old schedule.  A schedule that is still wanted (0.01/s
    again) holds, and kis_fdw_reset_key clears it."""
    rows, err, rc = gated_query(symbols(1))  # the key now has a slot, whatever ran before
    check(rc == 0, f"warm-up: {err}")
    check(run("SELECT kis_fdw_reset_key('kis')")[0] == [["t"]], "the key has no slot")
    set_server(rate_limit="0.01")
    rows, err, rc = gated_query(symbols(1))
    check(rc == 0 and len(rows) == 1, f"first query under 0.01/s: {err}")
    set_server(rate_limit="18")
    syms = symbols(5)
    rows, err, rc = gated_query(syms)
    check(rc == 0, f"after the rate went back to 18 the key was still frozen: {err}")
    check_prices(rows, syms, "after the rate change")

    set_server(rate_limit="0.01")
    rows, err, rc = gated_query(symbols(1))
    check(rc == 0, f"first query under 0.01/s again: {err}")
    check_key_waits("a second send within 100 s at 0.01/s did not wait")
    check(run("SELECT kis_fdw_reset_key('kis')")[0] == [["t"]], "reset found no slot")
    syms = symbols(1)
    rows, err, rc = gated_query(syms)
    check(rc == 0, f"after kis_fdw_reset_key the key still waited: {err}")
    check_prices(rows, syms, "after the reset")


def test_junk_keys_do_not_lock_out():
    """Cycling more made-up app keys than kis_fdw.max_app_keys through a user mapping,
    one query each (KIS refuses every one), must not use up the app-key slots: a key
    earns a slot only once KIS issued it a token, so a real key still works after."""
    rows, err, _ = run("SHOW kis_fdw.max_app_keys")
    check(rows and rows[0][0].isdigit(), f"SHOW kis_fdw.max_app_keys: {rows} {err}")
    junk = int(rows[0][0]) + 2
    key_server("kis_g", "BADjunkKey")
    try:
        for i in range(junk):
            set_mapping("kis_g", app_key=f"BADjunkKey{i:04d}")
            _, err, rc = key_query("kis_g", symbols(1))
            check(rc != 0 and "EGW00103" in err, f"junk key {i}: {err}")
        real = "PSgateAfterJunkKey0000000000000001"
        set_mapping("kis_g", app_key=real)
        syms = symbols(1)
        rows, err, rc = key_query("kis_g", syms)
        check(rc == 0, f"a real key after {junk} junk keys: {err}")
        check_prices(rows, syms, "real key")
    finally:
        run("DROP SERVER kis_g CASCADE")


def test_too_soon_key_keeps_slot():
    """An EGW00133 answer (KIS issued this key a token within the interval,
    to us or another client) counts toward kis_fdw.token_issue_interval, so
    the key's slot must keep it like a key KIS issued a token to: cycling
    more made-up keys than there are slots must not take that slot and
    forget it, or the key's next scan asks KIS again within the interval.
    Before, such a slot counted as a made-up key's and went first."""
    rows, err, _ = run("SHOW kis_fdw.max_app_keys")
    check(rows and rows[0][0].isdigit(), f"SHOW kis_fdw.max_app_keys: {rows} {err}")
    nslots = int(rows[0][0])
    key = "PSslotTooSoonKey00000000000000001"
    hour = "SET kis_fdw.token_issue_interval = 3600; SET statement_timeout = '5s';"
    key_server("kis_g", key)
    inject(("egw00133", "*", 1))
    try:
        _, err, rc = key_query("kis_g", symbols(1), hour)
        check(rc != 0 and "statement timeout" in err, f"no wait after EGW00133: {err}")
        check(stats()["token_requests"] == 1, f"{stats()['token_requests']} tokenP requests")
        # made-up keys (KIS refuses them) take every slot that may be taken
        for i in range(nslots + 1):
            set_mapping("kis_g", app_key=f"BADtooSoonKey{i:04d}")
            key_query("kis_g", symbols(1), hour)
        set_mapping("kis_g", app_key=key)
        _, err, rc = key_query("kis_g", symbols(1), hour)
        check(rc != 0 and "statement timeout" in err and issued_to(key) == 0,
              f"the key asked again within the interval: {issued_to(key)} issuances, {err}")
    finally:
        run("DROP SERVER kis_g CASCADE")


def test_slot_kept_for_issue_interval():
    """A key KIS issued a token to keeps its app-key slot until every schedule
    it holds has passed (its kis_fdw.token_issue_interval, its rate gate), so
    that it never forgets its last issuance and issues again within the
    interval.  With the interval raised to an hour, one key more than there
    are slots is refused, by an error naming the settings, and every key that
    got a slot still has its token; once the interval is over (here: set to
    0), the least recently used earned slot goes to the new key at once,
    without a fixed idle time."""
    rows, err, _ = run("SHOW kis_fdw.max_app_keys")
    check(rows and rows[0][0].isdigit(), f"SHOW kis_fdw.max_app_keys: {rows} {err}")
    keys = [f"PSslotKeepKey{i:04d}0000000000000001" for i in range(int(rows[0][0]) + 1)]
    hour = "SET kis_fdw.token_issue_interval = 3600;"
    key_server("kis_g", keys[0])
    try:
        refused = None
        for i, key in enumerate(keys):
            set_mapping("kis_g", app_key=key)
            rows, err, rc = key_query("kis_g", symbols(1), hour)
            if rc != 0:
                refused = i
                break
            check(issued_to(key) == 1, f"key {i}: {issued_to(key)} issuances")
        check(refused is not None, f"{len(keys)} keys all had a slot of their own")
        check("kis_fdw has no free app-key slot" in err and "kis_fdw.max_app_keys" in err
              and "kis_fdw.token_issue_interval" in err, f"not the slot error: {err}")
        for i, key in enumerate(keys[:refused]):
            set_mapping("kis_g", app_key=key)
            rows, err, rc = key_query("kis_g", symbols(1), hour)
            check(rc == 0 and issued_to(key) == 1,
                  f"key {i} lost its slot within the interval: {issued_to(key)} issuances, {err}")
        set_mapping("kis_g", app_key=keys[refused])
        syms = symbols(1)
        rows, err, rc = key_query("kis_g", syms, "SET kis_fdw.token_issue_interval = 0;")
        check(rc == 0, f"no slot for a new key once the interval was over: {err}")
        check_prices(rows, syms, "new key")
    finally:
        run("DROP SERVER kis_g CASCADE")
