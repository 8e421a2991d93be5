"""Helpers that more than one area of the behaviour tests uses (test/behaviour/*.py):
servers on a second key, gated queries and keys of their own, descriptor checks after a
cancel, a local table to join, the answer cache's table, pg_cron, a plain-HTTP mock.
Those of one area stay in its file.
"""

import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager

from kistest import mock
from .harness import (
    MOCK_URL, MOCK_CA, WORK, DB, APP_KEY, APP_SECRET, WAIT, TEST_DIR, stats, symbols, sql_list,
    wait_until, check, check_prices, run, run_all, must, create_server, backend_fds)


def hold_first_for_company():
    """The first API request's answer waits until a second request is in flight: a
    client that sends concurrently shows max_in_flight >= 2 for certain (the hold
    ends at once), one that sends one at a time shows 1 (it gives up after 30 s)."""
    mock("/__mock/faults", {"faults": [{"kind": "overlap", "symbol": "*", "ms": 30000}]})


BALANCE_PATH = "/uapi/domestic-stock/v1/trading/inquire-balance"
APP_KEY_B = "PSbehaviourKeyB7d2e6f1a9c3b5048e"


def drop_role(role):
    """Drop role and everything it owns, if it exists (errors ignored: cleanup)."""
    run(f"DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN "
        f"EXECUTE 'DROP OWNED BY {role} CASCADE'; EXECUTE 'DROP ROLE {role}'; END IF; END $$")


def two_keys(server_options="", on_error=("error", "error")):
    """Servers kis_a and kis_b on the mock, one app key each, a price table on each
    (prices_a, prices_b); server_options are added to both servers."""
    base = f"base_url '{MOCK_URL}', ca_file '{MOCK_CA}', max_retries '1', timeout_ms '30000'"
    for server, key, mode in (("kis_a", APP_KEY, on_error[0]), ("kis_b", APP_KEY_B, on_error[1])):
        create_server(server, f"prices_{server[-1]}", base + server_options, app_key=key,
                      table_options=f", on_error '{mode}'")


def union_all(a_syms, b_syms, columns="symbol, price"):
    return (f"SELECT {columns} FROM prices_a WHERE symbol IN ({sql_list(a_syms)}) UNION ALL "
            f"SELECT {columns} FROM prices_b WHERE symbol IN ({sql_list(b_syms)})")


def drop_two_keys():
    run("DROP SERVER IF EXISTS kis_a CASCADE")
    run("DROP SERVER IF EXISTS kis_b CASCADE")


def plan_nodes(sql):
    """(async, sync) foreign scans in sql's plan."""
    rows, err, rc = run("EXPLAIN (COSTS OFF) " + sql)
    check(rc == 0, f"EXPLAIN failed: {err}")
    text = "\n".join("|".join(r) for r in rows)
    return text.count("Async Foreign Scan"), text.count("->  Foreign Scan")


def _fd_check_after_abort(s, pid, baseline, what):
    n = backend_fds(pid)
    print(f"    ({what}: fds {n}, baseline {baseline})")
    check(n == baseline, f"{what}: backend holds {n} sockets/epolls, baseline {baseline}")
    syms = symbols(3)
    check_prices(must(s.query(f"SELECT symbol, price FROM kis_prices "
                              f"WHERE symbol IN ({sql_list(syms)})"), f"after {what}"), syms)


def cancel_backend(pid, bg):
    """pg_cancel_backend(pid) while bg (a Session.background) runs: it ends cancelled."""
    rows, err, _ = run(f"SELECT pg_cancel_backend({pid})")
    check(rows == [["t"]], f"pg_cancel_backend: {rows} {err}")
    bg.join(WAIT)
    check(bg.result is not None, "cancelled query did not return")
    check("canceling statement due to user request" in bg.result[1],
          f"no cancel message: {bg.result}")


def gated_query(syms, timeout="30s"):
    """One query over syms under a statement_timeout: a hang shows as its error."""
    return run(f"SET statement_timeout = '{timeout}'; "
               f"SELECT symbol, price FROM kis_prices WHERE symbol IN ({sql_list(syms)})")


def check_key_waits(why):
    """The next send on the key waits (1 s of it times out) and nothing is sent."""
    before = stats()["requests"]
    _, err, rc = gated_query(symbols(1), timeout="1s")
    check(rc != 0 and "statement timeout" in err, f"{why}: rc {rc}, {err}")
    check(stats()["requests"] == before, "the request that should wait was sent")


def set_mapping(server, **options):
    opts = ", ".join(f"SET {k} '{v}'" for k, v in options.items())
    _, err, rc = run(f"ALTER USER MAPPING FOR CURRENT_USER SERVER {server} OPTIONS ({opts})")
    check(rc == 0, f"ALTER USER MAPPING failed: {err}")


def key_server(server, app_key, app_secret=APP_SECRET, url=MOCK_URL):
    """A server of its own (table {server}_prices) whose mapping uses app_key."""
    create_server(server, f"{server}_prices", f"base_url '{url}', ca_file '{MOCK_CA}', rate_limit '0'")
    set_mapping(server, app_key=app_key, app_secret=app_secret)


def issued_to(app_key):
    return stats()["tokens_issued_by_appkey"].get(app_key, 0)


def key_query(server, syms, settings=""):
    return run(f"{settings} SELECT symbol, price FROM {server}_prices "
               f"WHERE symbol IN ({sql_list(syms)})")


def cached_table(ttl_ms, name="kis_prices_cached"):
    """A price table with cache_ttl_ms (dropped first), and an empty cache."""
    run_all(f"DROP FOREIGN TABLE IF EXISTS {name}",
            f"CREATE FOREIGN TABLE {name} (symbol text, price numeric, error text, "
            f"fetched_at timestamptz) SERVER kis OPTIONS (endpoint 'domestic_price', "
            f"cache_ttl_ms '{ttl_ms}')",
            "SELECT kis_fdw_cache_reset()")


def waiting_on_another(pid, sym):
    """The backend is in its wait loop while the mock has seen sym only once."""
    rows, _, _ = run(f"SELECT state, wait_event_type FROM pg_stat_activity WHERE pid = {pid}")
    return rows == [["active", "Extension"]] and stats()["by_symbol"].get(sym) == 1


def run_with_pg_cron(name, sql):
    """Schedule sql in our database with pg_cron (1.4: once a minute at the minute), wait
    for its first run, which must succeed, and unschedule it."""
    run("CREATE EXTENSION IF NOT EXISTS pg_cron", db="postgres")
    body = sql.replace("'", "''")
    rows, err, rc = run(f"SELECT cron.schedule_in_database('{name}', '* * * * *', "
                        f"'{body}', '{DB}')", db="postgres")
    check(rc == 0, f"cron.schedule_in_database: {err}")
    job = rows[0][0]
    try:
        def ran():
            r, _, _ = run(f"SELECT status, return_message FROM cron.job_run_details "
                          f"WHERE jobid = {job} AND status IN ('succeeded', 'failed')", db="postgres")
            return r
        wait_until(ran, f"pg_cron to run {name}", limit=90)
        check(ran()[0][0] == "succeeded", f"the scheduled {name} failed: {ran()}")
    finally:
        run(f"SELECT cron.unschedule({job})", db="postgres")


class PlainMock:
    """A second mock KIS server over plain HTTP (loopback only), for base_url tests."""

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="plainmock.", dir=WORK)
        portfile = os.path.join(self.dir, "port")
        mock_py = os.path.join(TEST_DIR, "mock_kis.py")
        self.proc = subprocess.Popen([sys.executable, mock_py, "--quiet", "--port-file", portfile,
                                      "--token-interval", "0"])
        wait_until(lambda: os.path.exists(portfile) and open(portfile).read().strip(), "plain mock")
        self.port = open(portfile).read().strip()
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _join_table(name, syms):
    run(f"DROP TABLE IF EXISTS {name}")
    _, err, rc = run(f"CREATE TABLE {name} (id serial, symbol text, qty int)")
    check(rc == 0, f"create {name}: {err}")
    values = ", ".join(f"('{sym}', {i + 1})" for i, sym in enumerate(syms))
    _, err, rc = run(f"INSERT INTO {name} (symbol, qty) VALUES {values}; ANALYZE {name}")
    check(rc == 0, f"fill {name}: {err}")


def check_cached_per_mapping(server, table, columns, options, roles, order, expect_rows):
    """A table on its own server, read by roles whose user mappings differ (roles: name ->
    (app key, account)), one page of holdings in the mock: each role's first query sends one
    balance request, a repeat of it none (served from its own cache entry)."""
    setup = [f"DROP SERVER IF EXISTS {server} CASCADE"]
    setup += [f"DROP ROLE IF EXISTS {r}" for r in roles]
    setup += [f"CREATE SERVER {server} FOREIGN DATA WRAPPER kis_fdw OPTIONS "
              f"(base_url '{MOCK_URL}', ca_file '{MOCK_CA}', rate_limit '0')",
              f"CREATE FOREIGN TABLE {table} ({columns}) SERVER {server} OPTIONS ({options})"]
    for role, (key, account) in roles.items():
        setup += [f"CREATE ROLE {role}", f"GRANT SELECT ON {table} TO {role}",
                  f"CREATE USER MAPPING FOR {role} SERVER {server} OPTIONS "
                  f"(app_key '{key}', app_secret '{APP_SECRET}', account '{account}')"]
    setup.append("SELECT kis_fdw_cache_reset()")
    run_all(*setup)
    try:
        seen = set()
        for role in order:
            before = stats()["pages"].get(BALANCE_PATH, 0)
            rows = must(run(f"SET ROLE {role}; SELECT count(*) FROM {table}")[:2], role)
            sent = stats()["pages"].get(BALANCE_PATH, 0) - before
            check(rows == [[expect_rows]], f"{role}: {rows}")
            check(sent == (0 if role in seen else 1),
                  f"{role}: {sent} requests ({'repeat' if role in seen else 'first'} query)")
            seen.add(role)
    finally:
        run(f"DROP SERVER IF EXISTS {server} CASCADE")
        for r in roles:
            run(f"DROP ROLE IF EXISTS {r}")


@contextmanager
def ordinary_role(name, app_key=APP_KEY_B):
    """An ordinary role with a schema of its own and its own user mapping (another app key)
    on our server, so that its quotes have our answer ids; dropped afterwards."""
    drop_role(name)
    run_all(f"CREATE ROLE {name}", f"GRANT USAGE ON FOREIGN SERVER kis TO {name}",
            f"CREATE SCHEMA {name} AUTHORIZATION {name}",
            f"CREATE USER MAPPING FOR {name} SERVER kis OPTIONS "
            f"(app_key '{app_key}', app_secret '{APP_SECRET}')")
    try:
        yield name
    finally:
        drop_role(name)
