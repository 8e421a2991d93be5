"""The behaviour tests' harness: the environment, the mock KIS server's control API,
psql (one-shot and long-lived sessions), the test database, and running one test with
its crash checks.  test/test_fdw.py finds the tests in test/behaviour/*.py and runs them.

Each test resets the mock (counters, faults, tokens, config) and the foreign
server's options (before_each), then checks what the FDW really did: rows and prices
against the mock's deterministic formula, and the mock's counters
(requests, max_in_flight, violations, tokens_issued, connections_opened),
plus descriptors of the backend in /proc.  No assertion depends on timing.

Helpers that several areas use are in fixtures.py; those of one area stay in its
file.  Python 3 standard library only.
"""

import os
import re
import subprocess
import threading
import time

from kistest import PSQL, PsqlPipe, mock, mock_price


MOCK_URL = os.environ["KIS_MOCK_URL"]
MOCK_WS_URL = os.environ["KIS_MOCK_WS_URL"]
MOCK_CA = os.environ["KIS_MOCK_CA"]
WORK = os.environ["KIS_WORK"]
PGHOST = os.environ.get("PGHOST") or os.environ["KIS_PGHOST"]
PGPORT = os.environ.get("PGPORT") or os.environ["KIS_PGPORT"]
DB = "kis_behaviour"
APP_KEY = "PSbehaviourKey4f1c9e7a2b6d8305aa"
APP_SECRET = "behaviour-secret-93d1e0c7b5a24f68"
SERVER_DEFAULTS = {"rate_limit": "0", "max_concurrency": "8", "max_retries": "3",
                   "timeout_ms": "30000"}
MOCK_DEFAULTS = {"rate_limit": 0, "latency_ms": 0, "jitter_ms": 0,
                 "token_interval": 0, "token_ttl": 86400, "multprice_signs": "signed",
                 "overseas_session": "open", "data_start": "20150102", "token_reuse": 0,
                 "token_latency_ms": 0,
                 "minute_session": "0900-1530", "environment": "real",
                 "holdings": 120}
WAIT = 60  # seconds before a hung psql counts as a failure (a safety net, not a check)
TEST_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # test/
ROOT = os.path.dirname(TEST_DIR)


# --------------------------------------------------------------------------- mock

def stats():
    return mock("/__mock/stats")


def mock_config(**changes):
    mock("/__mock/config", changes)


def inject(*rules):
    """inject(("http500", "100001"), ("drop", "100002", 2), ...)"""
    mock("/__mock/faults", {"faults": [
        {"kind": r[0], "symbol": r[1], "times": r[2] if len(r) > 2 else 1} for r in rules]})


def reset_mock(forget_tokens=False):
    """Forget counters and faults (and tokens if asked); wait for leftover requests.

    Tokens are kept by default: with shared_preload_libraries the FDW shares one
    token per app key across sessions, and a forgotten token costs one
    EGW00121 round trip that would show in the request counts."""
    mock_config(**MOCK_DEFAULTS)
    wait_until(lambda: stats()["in_flight"] == 0, "mock in_flight to drain", 10)
    mock("/__mock/reset", {"tokens": forget_tokens})


price = mock_price
_next_symbol = [100000]


def symbols(n, prefix=None):
    """n fresh 6-digit codes (1xxxxx), or with a 2-digit prefix such as "96"."""
    out = []
    for _ in range(n):
        _next_symbol[0] += 1
        code = f"{_next_symbol[0]:06d}"
        out.append(prefix + code[2:] if prefix else code)
    return out


def sql_list(syms):
    return ", ".join(f"'{s}'" for s in syms)


def wait_until(cond, what, limit=20, why=None):
    """Until cond() holds; else fail after limit seconds, saying why() when given (what
    the test found instead) or that it gave up waiting for what."""
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(why() if why else f"gave up waiting for {what}")
        time.sleep(0.02)


class Skipped(Exception):
    """A test that cannot run here (something it needs is not installed)."""


def check(cond, message):
    if not cond:
        raise AssertionError(message)


def check_prices(rows, syms, what="rows"):
    """rows are [symbol, price, ...]: exactly one per symbol, each price right."""
    got = {r[0]: r[1] for r in rows}
    check(len(rows) == len(syms) and set(got) == set(syms),
          f"{what}: expected {len(syms)} rows for {sorted(syms)}, got {len(rows)}: {rows}")
    wrong = {s: (got[s], price(s)) for s in syms if got[s] != str(price(s))}
    check(not wrong, f"{what}: wrong prices (got, expected): {wrong}")


# --------------------------------------------------------------------------- psql

# What psql prints when its backend went away (a crash, a PANIC, a FATAL error,
# a restart): never an outcome a test may accept unless it ended that backend
# itself (Session.expect_lost)
LOST = ("server closed the connection unexpectedly", "connection to server was lost",
        "no connection to the server", "terminating connection", "FATAL:", "PANIC:")


def lost_connection(err):
    """The lines of psql's stderr that say its backend went away."""
    return [line for line in err.splitlines() if any(m in line for m in LOST)]


def run(sql, db=DB):
    """One-shot psql -c; returns (rows, stderr, returncode).  A lost connection
    (psql's exit code 2, a FATAL or PANIC) fails the test at once."""
    p = subprocess.run([PSQL, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                        "-h", PGHOST, "-p", PGPORT, "-U", "postgres", "-d", db, "-c", sql],
                       capture_output=True, text=True, timeout=WAIT)
    if p.returncode == 2 or lost_connection(p.stderr):
        raise AssertionError(f"psql lost its backend (exit {p.returncode}) running "
                             f"{sql[:200]!r}: {p.stderr.strip()}")
    rows = [line.split("|") for line in p.stdout.splitlines() if line]
    return rows, p.stderr, p.returncode


class Session(PsqlPipe):
    """One long-lived psql, hence one backend, fed statements through a pipe."""

    def __init__(self, db=DB):
        super().__init__(db, extra_args=("-P", "null=<null>"), wait=WAIT)
        self._pid = None
        self.expect_lost = False   # set by a test that ends this backend itself

    def query(self, sql):
        """Run sql; return (rows as lists of str, stderr text).  self.alive says
        whether psql is still there afterwards.  Unless self.expect_lost, a lost
        backend (psql gone, a FATAL or PANIC) fails the test."""
        marker = self.send(sql)
        try:
            out, out_eof = self.collect(self.out, marker)
            err, err_eof = self.collect(self.err, marker)
        except TimeoutError as exc:
            raise AssertionError(str(exc))
        err_text = "\n".join(line for _, line in err)
        if not self.expect_lost and (out_eof or err_eof or lost_connection(err_text)):
            raise AssertionError(f"psql lost its backend running {sql[:200]!r}: {err_text}")
        return [line.split("|") for _, line in out if line], err_text

    def background(self, sql):
        """Start query(sql) in a thread; .join() then .result is (rows, stderr),
        or None and .error the failure."""
        def work():
            try:
                t.result = self.query(sql)
            except AssertionError as exc:
                t.error = exc
        t = threading.Thread(target=work, daemon=True)
        t.result, t.error = None, None
        t.start()
        return t

    def pid(self):
        if self._pid is None:
            self._pid = int(self.query("SELECT pg_backend_pid()")[0][0][0])
        return self._pid

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_all(*sqls):
    """Run each statement; every one must succeed."""
    for sql in sqls:
        _, err, rc = run(sql)
        check(rc == 0, f"{sql}: {err}")


def must(result, what):
    """A query result that must have no ERROR or WARNING on stderr."""
    rows, err = result
    check("ERROR" not in err and "WARNING" not in err, f"{what}: unexpected stderr: {err}")
    return rows


def create_server(server, table, options, app_key=APP_KEY, table_options=""):
    """A server (dropped first if it exists), our user mapping and a price table on it."""
    run(f"DROP SERVER IF EXISTS {server} CASCADE")
    run_all(f"CREATE SERVER {server} FOREIGN DATA WRAPPER kis_fdw OPTIONS ({options})",
            f"CREATE USER MAPPING FOR CURRENT_USER SERVER {server} "
            f"OPTIONS (app_key '{app_key}', app_secret '{APP_SECRET}')",
            f"CREATE FOREIGN TABLE {table} (symbol text, price numeric, error text) "
            f"SERVER {server} OPTIONS (endpoint 'domestic_price'{table_options})")


def set_server(server="kis", **options):
    opts = ", ".join(f"SET {k} '{v}'" for k, v in options.items())
    _, err, rc = run(f"ALTER SERVER {server} OPTIONS ({opts})")
    check(rc == 0, f"ALTER SERVER failed: {err}")


def backend_fds(pid):
    """Sockets, epoll instances and timers the backend holds (other descriptors ignored)."""
    n = 0
    base = f"/proc/{pid}/fd"
    for name in os.listdir(base):
        try:
            target = os.readlink(os.path.join(base, name))
        except OSError:
            continue  # closed while we looked
        if target.startswith("socket:") or target in ("anon_inode:[eventpoll]",
                                                      "anon_inode:[timerfd]"):
            n += 1
    return n


def wait_active(pid):
    """Until the backend runs a statement and the mock holds a request of it."""
    def busy():
        rows, _, _ = run(f"SELECT state FROM pg_stat_activity WHERE pid = {pid}")
        return rows == [["active"]] and stats()["in_flight"] >= 1
    wait_until(busy, f"backend {pid} to be active with a request at the mock")


# --------------------------------------------------------------------------- setup

def setup_database():
    run(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", db="postgres")
    _, err, rc = run(f"CREATE DATABASE {DB}", db="postgres")
    check(rc == 0, f"CREATE DATABASE: {err}")
    opts = ", ".join(f"{k} '{v}'" for k, v in SERVER_DEFAULTS.items())
    for sql in (
        "CREATE EXTENSION kis_fdw",
        f"CREATE SERVER kis FOREIGN DATA WRAPPER kis_fdw OPTIONS "
        f"(base_url '{MOCK_URL}', ca_file '{MOCK_CA}', ws_url '{MOCK_WS_URL}', {opts})",
        f"CREATE USER MAPPING FOR CURRENT_USER SERVER kis "
        f"OPTIONS (app_key '{APP_KEY}', app_secret '{APP_SECRET}')",
        "CREATE FOREIGN TABLE kis_prices_or_row (symbol text, price numeric, error text) "
        "SERVER kis OPTIONS (endpoint 'domestic_price', on_error 'row')",
        "CREATE FOREIGN TABLE kis_prices (symbol text, price numeric, change numeric, "
        "volume bigint, error text, fetched_at timestamptz) SERVER kis OPTIONS (endpoint 'domestic_price')",
    ):
        _, err, rc = run(sql)
        check(rc == 0, f"setup: {sql}: {err}")


def before_each():
    reset_mock()
    set_server(**SERVER_DEFAULTS)


# --------------------------------------------------------------------------- running one test

SERVER_LOG = os.path.join(WORK, "server.log")

# what the server log says when a backend crashed or failed an assertion (as
# test/lib.sh's KIS_CRASH_PATTERN)
CRASH = re.compile(r"TRAP:|terminated by signal|terminated by exception|PANIC:|"
                   r"all server processes terminated")


def log_size():
    try:
        return os.path.getsize(SERVER_LOG)
    except OSError:
        return 0


def log_since(offset):
    """The server log past offset, as text."""
    try:
        with open(SERVER_LOG, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def crashes_since(offset):
    """Lines of the server log past offset that tell of a crash."""
    try:
        with open(SERVER_LOG, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if CRASH.search(line)]


class Sentinel:
    """An idle session held across one test: a crash anywhere in the cluster
    ends it (the postmaster restarts every backend), a clean test does not."""

    def __init__(self):
        self.session = Session(db="postgres")
        self.started, _ = self.session.query("SELECT pg_postmaster_start_time()")

    def survived(self):
        """None if the session is still there on the same server, else why not."""
        try:
            rows, err = self.session.query("SELECT pg_postmaster_start_time()")
        except AssertionError as exc:
            return f"the server restarted during the test (a backend crashed?): {exc}"
        finally:
            self.session.close()
        if rows != self.started:
            return f"the server was restarted during the test: {rows} {err}"
        return None


def run_one(test):
    """Run one test; raise what failed it, a crash of any backend included."""
    offset = log_size()
    sentinel = Sentinel()
    failure = None
    try:
        before_each()
        test()
    except Skipped:
        sentinel.session.close()
        raise
    except Exception as exc:  # AssertionError and anything unexpected alike
        failure = exc
    crashed = crashes_since(offset)
    lost = sentinel.survived()
    if crashed or lost:
        raise AssertionError("; ".join(filter(None, [
            lost, crashed and "the server log tells of a crash: " + " | ".join(crashed[:5]),
            failure and f"and the test said: {failure}"])))
    if failure:
        raise failure


def known_gap(test):
    """Mark test as the reproducer of a known, still open gap (each is named in docs/): it
    fails today, so test/test_fdw.py runs it only when KIS_BEHAVIOUR names it, and the
    suite's count does not include it."""
    test.known_gap = True
    return test
