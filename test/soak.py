#!/usr/bin/env python3
"""Soak test for kis_fdw: many scans in ONE session, watching the backend for growth.

Runs SOAK_SCANS (default 10,000) scans through one long-lived psql (so one backend) against
the mock KIS server, mixed the way a long-running session meets KIS:

    plain quotes        1-3 symbols of domestic_price, prices checked against the mock's formula
    failing symbols     97xxxx (HTTP 500 HTML), 98xxxx (business error), 99xxxx (not listed)
                        beside good ones, under on_error 'row'
    injected faults     every SOAK_FAULT_EVERY-th scan (default 50): http500, drop, truncate,
                        garbage, egw00001, egw00002 on that scan's symbol, retried once and
                        then answered (the price must be right); now and then expire_token
                        (a new token mid-session) and egw00201 (the rate penalty)
    cancels             every SOAK_CANCEL_EVERY-th scan (default 250): a 96xxxx symbol (the mock
                        waits 3 s) under statement_timeout, which must cancel the scan
    other endpoints     intstock-multprice batches, nested-loop joins (rescans), daily bars
                        (date paging), holdings (cursor paging, 3 pages), overseas quotes,
                        order books, overseas daily bars, minute bars (time paging), the
                        business-day calendar (cursor paging), stock master downloads

After every 250 scans it samples the backend's VmRSS (/proc/<pid>/status) and its open
descriptors (/proc/<pid>/fd).  The run FAILS on unbounded growth, judged only against the
session itself, never against an absolute number: the highest RSS of the last quarter of the
samples may exceed the highest of the second quarter (the first is warm-up: caches, the
connection pool, TLS) by at most max(8 MB, 10 %), and the descriptors of the second half may
not rise above the first half's highest count (+2 for the connection pool's churn).

It also samples the bytes held by the backend's own memory contexts (pg_backend_memory_contexts,
asked in the same session), where a palloc leak into a long-lived context shows at kB
precision: the same quarter rule, with max(256 kB, 5 %).  And the bytes the backend holds from
malloc outside its memory contexts (kis_fdw's kis_fdw_malloc_bytes(), mallinfo2(), minus the
contexts' blocks): what libcurl, OpenSSL, jansson and kis_fdw's own non-palloc memory hold.
After the warm-up quarter that must stay flat: the last quarter's highest may exceed the second
quarter's by MALLOC_SLACK_BYTES (64 kB) at most, which a leak of 16 bytes a scan over the 5,000
scans between them already breaks.

Every scan is a check (its rows, errors and prices as expected), and so are the three growth
checks.  Prints the samples, a summary, and last a line exactly "N passed, M failed"; exits 1
if anything failed.

Environment (as test/test_fdw.py): KIS_WORK, KIS_MOCK_URL, KIS_MOCK_CA, PGHOST, PGPORT,
PGUSER; SOAK_SCANS, SOAK_FAULT_EVERY, SOAK_CANCEL_EVERY override the mix;
SOAK_SELFTEST_LEAK=1 leaks on purpose (a prepared statement per scan) and
SOAK_SELFTEST_LEAK=malloc mallocs 64 bytes a scan and loses them (kis_fdw_test_malloc_leak), to
show that the growth checks fail when they should; SOAK_GROWTH=0 skips the growth verdicts
(fuzz/valgrind.sh: under valgrind only the rows mean something).  The cluster must
have shared_preload_libraries = 'kis_fdw' or not, either works; the session sets
kis_fdw.token_issue_interval = 0 itself (superuser).  Run as root (reads /proc of the
postgres-owned backend).  Python 3 standard library only.
"""

import datetime
import os
import subprocess
import sys
import time

from kistest import PSQL, PsqlPipe, mock, mock_price

MOCK_URL = os.environ["KIS_MOCK_URL"]
MOCK_CA = os.environ["KIS_MOCK_CA"]
WORK = os.environ.get("KIS_WORK", "/tmp")
PGHOST = os.environ.get("PGHOST") or os.environ["KIS_PGHOST"]
PGPORT = os.environ.get("PGPORT") or os.environ["KIS_PGPORT"]
PGUSER = os.environ.get("PGUSER", "postgres")
DB = "kis_soak"
APP_KEY = "PSsoakKey7d2e91c4a6b8f03e5d1c"
APP_SECRET = "soak-secret-58a1c3e9d7b2f640"
ACCOUNT = "12345678-01"
HOLDINGS = 120

SCANS = int(os.environ.get("SOAK_SCANS", "10000"))
FAULT_EVERY = int(os.environ.get("SOAK_FAULT_EVERY", "50"))
CANCEL_EVERY = int(os.environ.get("SOAK_CANCEL_EVERY", "250"))
# the detector's self-test: every scan also leaves a prepared statement behind in the
# session (a real, unbounded growth of CacheMemoryContext); the run must then FAIL
SELFTEST_LEAK = os.environ.get("SOAK_SELFTEST_LEAK") == "1"
# ... or mallocs 64 bytes a scan and never frees them (outside any memory context)
SELFTEST_MALLOC_LEAK = os.environ.get("SOAK_SELFTEST_LEAK") == "malloc"
GROWTH = os.environ.get("SOAK_GROWTH", "1") != "0"
SAMPLE_EVERY = 250
WAIT = 120               # seconds one chunk of scans may take before we call psql hung
RSS_SLACK_KB = 8 * 1024  # growth allowed between the second and the last quarter ...
RSS_SLACK_RATIO = 0.10   # ... or this fraction, whichever is larger
CXT_SLACK_BYTES = 256 * 1024  # the same for the backend's memory contexts ...
CXT_SLACK_RATIO = 0.05        # ... which palloc leaks show at kB precision
MALLOC_SLACK_BYTES = 64 * 1024  # malloc'd bytes outside contexts, after warm-up: flat
FD_SLACK = 2             # connection pool churn
FAULTS = ("http500", "drop", "truncate", "garbage", "egw00001", "egw00002")


# --------------------------------------------------------------------------- mock

price = mock_price


# --------------------------------------------------------------------------- psql

def run(sql, db=DB):
    p = subprocess.run([PSQL, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                        "-h", PGHOST, "-p", PGPORT, "-U", PGUSER, "-d", db, "-c", sql],
                       capture_output=True, text=True, timeout=60)
    return p.stdout, p.stderr, p.returncode


class Session(PsqlPipe):
    """One long-lived psql (one backend) fed batches of statements through a pipe."""

    def __init__(self):
        super().__init__(DB, wait=WAIT)

    def batch(self, statements):
        """Run the statements; return (stdout lines, stderr lines)."""
        marker = self.send("\n".join(s if s.startswith("\\") or s.endswith(";") else s + ";"
                                      for s in statements))
        results = []
        for q in (self.out, self.err):
            lines, eof = self.collect(q, marker)
            if eof:
                raise RuntimeError(f"psql exited; last lines {[l for _, l in lines[-5:]]}")
            results.append([line for _, line in lines])
        return tuple(results)


def backend_sample(pid):
    """(VmRSS in kB, open descriptors, of which sockets + epoll) of the backend."""
    rss = 0
    with open(f"/proc/{pid}/status") as fp:
        for line in fp:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    fds = net = 0
    base = f"/proc/{pid}/fd"
    for name in os.listdir(base):
        try:
            target = os.readlink(os.path.join(base, name))
        except OSError:
            continue
        fds += 1
        if target.startswith("socket:") or target == "anon_inode:[eventpoll]":
            net += 1
    return rss, fds, net


def context_sample(session):
    """(bytes held by the backend's memory contexts, number of contexts, bytes it holds
    from malloc outside them), asked of the session's own backend between two chunks:
    palloc leaks into long-lived contexts show in the first long before they move VmRSS,
    leaks of libcurl, OpenSSL, jansson or kis_fdw's own malloc'd memory in the last."""
    out, err = session.batch(["SELECT 'mem', c.bytes, c.n, m.bytes - c.bytes "
                              "FROM (SELECT sum(total_bytes) AS bytes, count(*) AS n "
                              "      FROM pg_backend_memory_contexts) c, "
                              "     (SELECT kis_soak_malloc_bytes() AS bytes) m"])
    for line in out:
        fields = line.split("|")
        if fields[0] == "mem":
            return int(fields[1]), int(fields[2]), int(fields[3])
    raise RuntimeError(f"pg_backend_memory_contexts gave nothing: {out} {err}")


# --------------------------------------------------------------------------- setup

def setup():
    run(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", db="postgres")
    _, err, rc = run(f"CREATE DATABASE {DB}", db="postgres")
    if rc != 0:
        raise RuntimeError(f"CREATE DATABASE: {err}")
    common = f"base_url '{MOCK_URL}', ca_file '{MOCK_CA}', rate_limit '0', timeout_ms '30000'"
    for sql in (
        "CREATE EXTENSION kis_fdw",
        # not in the extension's script: for this test only (src/stats.c)
        "CREATE FUNCTION kis_soak_malloc_bytes() RETURNS bigint "
        "AS '$libdir/kis_fdw', 'kis_fdw_malloc_bytes' LANGUAGE C STRICT",
        "CREATE FUNCTION kis_soak_malloc_leak(int) RETURNS int "
        "AS '$libdir/kis_fdw', 'kis_fdw_test_malloc_leak' LANGUAGE C STRICT",
        # no retries: failing symbols fail at once (no backoff), faults are not used here
        f"CREATE SERVER soak_fast FOREIGN DATA WRAPPER kis_fdw OPTIONS ({common}, max_retries '0')",
        # one retry: injected faults are retried once and then answered
        f"CREATE SERVER soak_retry FOREIGN DATA WRAPPER kis_fdw OPTIONS ({common}, max_retries '1')",
        f"CREATE USER MAPPING FOR CURRENT_USER SERVER soak_fast OPTIONS "
        f"(app_key '{APP_KEY}', app_secret '{APP_SECRET}', account '{ACCOUNT}')",
        f"CREATE USER MAPPING FOR CURRENT_USER SERVER soak_retry OPTIONS "
        f"(app_key '{APP_KEY}', app_secret '{APP_SECRET}')",
        "CREATE FOREIGN TABLE prices (symbol text, price numeric, change_rate numeric, "
        "volume bigint, fetched_at timestamptz, error text, raw jsonb) "
        "SERVER soak_fast OPTIONS (endpoint 'domestic_price', on_error 'row')",
        "CREATE FOREIGN TABLE prices_retry (symbol text, price numeric, error text, raw jsonb) "
        "SERVER soak_retry OPTIONS (endpoint 'domestic_price', on_error 'row')",
        "CREATE FOREIGN TABLE multi (symbol text, market text, name text, price numeric, "
        "error text) SERVER soak_fast OPTIONS (endpoint 'domestic_multi_price', on_error 'row')",
        "CREATE FOREIGN TABLE daily (symbol text, date date, close numeric, volume bigint, "
        "name text, error text) SERVER soak_fast OPTIONS (endpoint 'domestic_daily', on_error 'row')",
        "CREATE FOREIGN TABLE holdings (symbol text, qty bigint, value numeric, raw jsonb) "
        "SERVER soak_fast OPTIONS (endpoint 'domestic_holdings')",
        "CREATE FOREIGN TABLE overseas (symbol text, exchange text, price numeric, error text) "
        "SERVER soak_fast OPTIONS (endpoint 'overseas_price', on_error 'row')",
        "CREATE FOREIGN TABLE book (symbol text, error text) "
        "SERVER soak_fast OPTIONS (endpoint 'domestic_orderbook', on_error 'row')",
        "CREATE FOREIGN TABLE odaily (symbol text, exchange text, date date, close numeric, "
        "error text) SERVER soak_fast OPTIONS (endpoint 'overseas_daily', on_error 'row')",
        "CREATE FOREIGN TABLE minute (symbol text, time time, close numeric, error text) "
        "SERVER soak_fast OPTIONS (endpoint 'domestic_minute', on_error 'row')",
        "CREATE FOREIGN TABLE holidays (date date, market_open boolean) "
        "SERVER soak_fast OPTIONS (endpoint 'market_holidays')",
        f"CREATE SERVER soak_master FOREIGN DATA WRAPPER kis_fdw OPTIONS ({common}, "
        f"master_url '{MOCK_URL}/common/master', max_retries '0')",
        f"CREATE USER MAPPING FOR CURRENT_USER SERVER soak_master OPTIONS "
        f"(app_key '{APP_KEY}', app_secret '{APP_SECRET}')",
        "CREATE FOREIGN TABLE listings (market text, symbol text, name text) "
        "SERVER soak_master OPTIONS (endpoint 'domestic_symbols')",
    ):
        _, err, rc = run(sql)
        if rc != 0:
            raise RuntimeError(f"setup: {sql}: {err}")
    mock("/__mock/config", {"rate_limit": 0, "latency_ms": 0, "jitter_ms": 0,
                            "token_interval": 0, "holdings": HOLDINGS,
                            "multprice_shape": "array",
                            # bars at any hour (the behaviour tests leave 0900-1530)
                            "minute_session": "0000-2359"})
    mock("/__mock/reset", {})


# --------------------------------------------------------------------------- the mix

class Plan:
    """Statements of one chunk of scans, with what each must print."""

    def __init__(self):
        self.statements = []
        self.expected = {}      # tag -> list of str fields
        self.cancels = 0        # scans that must end in a statement timeout
        self.faults = []        # fault rules to inject before the chunk runs


_serial = [0]


def fresh(prefix, n=1):
    """n symbols never used before, with a 2-digit prefix (the mock's behaviour)."""
    out = []
    for _ in range(n):
        _serial[0] += 1
        out.append(f"{prefix}{_serial[0] % 10000:04d}")
    return out


def good(n):
    """n ordinary symbols (prefix 1x..3x: normal data), from a pool of 6000 fresh ones."""
    out = []
    for _ in range(n):
        _serial[0] += 1
        out.append(f"{10 + _serial[0] % 30:02d}{_serial[0] % 10000:04d}")
    return out


def qlist(syms):
    return ", ".join(f"'{s}'" for s in syms)


def price_scan(plan, tag, table, ok, bad):
    syms = ok + bad
    plan.statements.append(
        f"SELECT '{tag}', count(*) FILTER (WHERE error IS NULL), count(error), "
        f"coalesce(sum(price) FILTER (WHERE error IS NULL), 0), count(raw) "
        f"FROM {table} WHERE symbol IN ({qlist(syms)})")
    plan.expected[tag] = [str(len(ok)), str(len(bad)), str(sum(price(s) for s in ok)),
                          str(len(ok))]


def three_weeks(i):
    """Monday to the Friday two weeks on, one of 40 such windows of 2025 by scan number."""
    start = datetime.date(2025, 1, 6) + datetime.timedelta(weeks=(i // 40) % 40)
    return start, start + datetime.timedelta(days=18)


def add_scan(plan, i):
    tag = f"s{i}"
    if SELFTEST_LEAK:
        plan.statements.append(f"PREPARE leak{i} AS SELECT {i}, repeat('x', 1000)")
    if SELFTEST_MALLOC_LEAK:
        plan.statements.append("SELECT kis_soak_malloc_leak(64) AS leak")
    if CANCEL_EVERY and i % CANCEL_EVERY == CANCEL_EVERY // 2:
        # the mock holds 96xxxx for 3 s: the statement timeout cancels the scan
        sym = fresh("96")
        plan.statements += ["SET statement_timeout = '150ms'",
                            f"SELECT '{tag}', count(*) FROM prices WHERE symbol IN ({qlist(sym)})",
                            "RESET statement_timeout"]
        plan.cancels += 1
        return "cancel"
    if FAULT_EVERY and i % FAULT_EVERY == FAULT_EVERY // 5:
        n = i // FAULT_EVERY
        kind = FAULTS[n % len(FAULTS)]
        if n % 20 == 7:
            kind = "expire_token"       # a new token mid-session, for every scan holding it
        elif n % 40 == 13:
            kind = "egw00201"           # the rate penalty (500 ms for the key)
        sym = fresh("41")
        plan.faults.append({"kind": kind, "symbol": sym[0], "times": 1})
        price_scan(plan, tag, "prices_retry", sym + good(1), [])
        return "fault:" + kind
    k = i % 20
    if k in (3, 13):            # a 97xxxx beside good ones: HTTP 500 HTML, no retries
        price_scan(plan, tag, "prices", good(1 + i % 2), fresh("97"))
        return "97xx"
    if k == 9:                  # business error and not listed
        price_scan(plan, tag, "prices", good(1), fresh("98") + fresh("99"))
        return "98/99"
    if k in (5, 15):            # a multprice batch of 2-3 symbols, market J
        syms = good(2 + i % 2)
        plan.statements.append(
            f"SELECT '{tag}', count(*) FILTER (WHERE error IS NULL), count(error), "
            f"coalesce(sum(price), 0) FROM multi WHERE symbol IN ({qlist(syms)})")
        plan.expected[tag] = [str(len(syms)), "0", str(sum(price(s) for s in syms))]
        return "multi"
    if k == 7:                  # a nested loop: one rescan per outer row
        syms = good(2)
        values = ", ".join(f"('{x}')" for x in syms)
        plan.statements.append(
            f"SELECT '{tag}', count(*) FILTER (WHERE p.error IS NULL), count(p.error), "
            f"coalesce(sum(p.price), 0), count(p.raw) FROM (VALUES {values}) v(s) "
            f"JOIN prices p ON p.symbol = v.s")
        plan.expected[tag] = [str(len(syms)), "0", str(sum(price(s) for s in syms)), "2"]
        return "join"
    if k == 11 and i % 40 == 11:  # daily bars: 3 weeks = 15 trading days (no holidays)
        start, end = three_weeks(i)
        plan.statements.append(
            f"SELECT '{tag}', count(*) FILTER (WHERE error IS NULL), count(error), "
            f"count(DISTINCT date), count(name) FROM daily WHERE symbol = '{good(1)[0]}' "
            f"AND date BETWEEN '{start}' AND '{end}'")
        plan.expected[tag] = ["15", "0", "15", "15"]
        return "daily"
    if k == 17 and i % 100 == 17:  # holdings: 3 pages of 50, 50, 20
        plan.statements.append(
            f"SELECT '{tag}', count(*), count(DISTINCT symbol), count(raw) FROM holdings")
        plan.expected[tag] = [str(HOLDINGS)] * 3
        return "holdings"
    if k == 19 and i % 60 == 19:
        plan.statements.append(
            f"SELECT '{tag}', count(*) FILTER (WHERE error IS NULL), count(error) "
            f"FROM overseas WHERE symbol IN ('AAPL', 'MSFT') AND exchange = 'NAS'")
        plan.expected[tag] = ["2", "0"]
        return "overseas"
    if k == 1 and i % 40 == 1:  # an order book
        syms = good(1)
        plan.statements.append(
            f"SELECT '{tag}', count(*), count(error) FROM book WHERE symbol = '{syms[0]}'")
        plan.expected[tag] = ["1", "0"]
        return "book"
    if k == 1 and i % 40 == 21:  # overseas daily bars: 3 weeks = 15 trading days
        start, end = three_weeks(i)
        plan.statements.append(
            f"SELECT '{tag}', count(*) FILTER (WHERE error IS NULL), count(DISTINCT date) "
            f"FROM odaily WHERE symbol = 'AAPL' AND exchange = 'NAS' "
            f"AND date BETWEEN '{start}' AND '{end}'")
        plan.expected[tag] = ["15", "15"]
        return "overseas daily"
    if k == 11 and i % 40 == 31:  # minute bars up to now (the mock's session is all day)
        plan.statements.append(
            f"SELECT '{tag}', count(*) > 0 AND count(*) = count(DISTINCT time), count(error) "
            f"FROM minute WHERE symbol = '{good(1)[0]}'")
        plan.expected[tag] = ["t", "0"]
        return "minute"
    if k == 17 and i % 100 == 37:  # the calendar: 31 days, 2 pages of 20
        plan.statements.append(
            f"SELECT '{tag}', count(*), count(*) FILTER (WHERE market_open) > 0 FROM holidays "
            f"WHERE date BETWEEN '2026-03-01' AND '2026-03-31'")
        plan.expected[tag] = ["31", "t"]
        return "holidays"
    if k == 17 and i % 100 == 57:  # a master file download
        plan.statements.append(
            f"SELECT '{tag}', count(*) = count(DISTINCT symbol), count(*) > 0 FROM listings "
            f"WHERE market = 'KONEX'")
        plan.expected[tag] = ["t", "t"]
        return "symbols"
    price_scan(plan, tag, "prices", good(1 + i % 3), [])
    return "quote"


def check_chunk(plan, out, err, first, last):
    """Returns (scans that passed, failures as strings) for the scans [first, last)."""
    got = {}
    for line in out:
        fields = line.split("|")
        if fields and fields[0].startswith("s"):
            got[fields[0]] = fields[1:]
    failures = [f"{tag}: expected {want}, got {got.get(tag)}"
                for tag, want in plan.expected.items() if got.get(tag) != want]
    timeout = "canceling statement due to statement timeout"
    cancels = sum(timeout in e for e in err)
    if cancels != plan.cancels:
        failures.append(f"scans {first}..{last - 1}: {plan.cancels} cancels expected, "
                        f"{cancels} seen")
    failures += [f"scans {first}..{last - 1}: unexpected stderr: {e}" for e in err
                 if ("ERROR" in e or "WARNING" in e or "FATAL" in e) and timeout not in e]
    return max(0, (last - first) - len(failures)), failures


# --------------------------------------------------------------------------- verdict

def quarters(values):
    n = len(values)
    q = max(1, n // 4)
    return values[:q], values[q:2 * q] or values[:q], values[n - q:]


def halves_line(what, values, unit=""):
    half = max(1, len(values) // 2)
    a, b = values[:half], values[half:] or values[:half]
    return (f"{what}: first half min/mean/max {min(a)}/{sum(a) // len(a)}/{max(a)}{unit}, "
            f"second half {min(b)}/{sum(b) // len(b)}/{max(b)}{unit}")


def growth_checks(samples):
    """[(name, ok, explanation)]: RSS, memory contexts, descriptors."""
    rss = [x[1] for x in samples]
    fds = [x[2] for x in samples]
    cxt = [x[4] for x in samples]
    outside = [x[6] for x in samples]
    checks = []
    for name, values, slack, ratio, unit in (
            ("VmRSS bounded", rss, RSS_SLACK_KB, RSS_SLACK_RATIO, " kB"),
            ("memory contexts bounded", cxt, CXT_SLACK_BYTES, CXT_SLACK_RATIO, " bytes"),
            ("malloc outside contexts flat", outside, MALLOC_SLACK_BYTES, 0, " bytes")):
        q1, q2, q4 = quarters(values)
        base = max(q2)
        allowed = base + max(slack, int(base * ratio))
        ok = max(q4) <= allowed
        checks.append((name, ok, f"{name}: max of quarters 1/2/4 = {max(q1)}/{base}/{max(q4)}"
                                 f"{unit} (allowed {allowed}): {'ok' if ok else 'GROWING'}"))
    half = max(1, len(fds) // 2)
    limit = max(fds[:half]) + FD_SLACK
    ok = max(fds[half:] or fds) <= limit
    checks.append(("descriptors bounded", ok,
                   f"descriptors bounded: first half max {max(fds[:half])}, second half max "
                   f"{max(fds[half:] or fds)} (allowed {limit}): {'ok' if ok else 'GROWING'}"))
    return checks


def main():
    started = time.monotonic()
    setup()
    s = Session()
    passed = failed = 0
    failures = []
    samples = []        # (scans done, rss kB, fds, sockets+epoll, contexts, number, malloc outside)
    kinds = {}
    try:
        out, err = s.batch(["SET kis_fdw.token_issue_interval = 0",
                            "SELECT pg_backend_pid()"])
        pid = int(out[-1])
        i = 0
        while i < SCANS:
            plan = Plan()
            first = i
            while i < SCANS and i - first < SAMPLE_EVERY:
                kind = add_scan(plan, i)
                kinds[kind] = kinds.get(kind, 0) + 1
                i += 1
            if plan.faults:
                mock("/__mock/faults", {"faults": plan.faults})
            out, err = s.batch(plan.statements)
            ok, bad = check_chunk(plan, out, err, first, i)
            passed += ok
            failed += (i - first) - ok
            failures += bad
            rss, fds, net = backend_sample(pid)
            cxt_bytes, ncxt, outside = context_sample(s)
            samples.append((i, rss, fds, net, cxt_bytes, ncxt, outside))
            elapsed = time.monotonic() - started
            print(f"  {i:6d} scans  {elapsed:6.1f} s  VmRSS {rss:7d} kB  fds {fds:3d} "
                  f"(net {net})  contexts {cxt_bytes // 1024:6d} kB in {ncxt:3d}  "
                  f"malloc outside {outside:9d} B  failed so far {failed}", flush=True)
    except Exception as e:          # a hung or dead session: everything left fails
        failures.append(f"session broke after {len(samples) * SAMPLE_EVERY} scans: {e}")
        failed += 1
    finally:
        s.close()

    elapsed = time.monotonic() - started
    print(f"scans: {SCANS} in {elapsed:.1f} s ({SCANS / max(elapsed, 0.001):.0f}/s); mix: "
          + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    stats = mock("/__mock/stats")
    print(f"mock: requests {stats.get('requests')}, tokens_issued {stats.get('tokens_issued')}, "
          f"faults_injected {stats.get('faults_injected')}, connections_opened "
          f"{stats.get('connections_opened')}")
    if len(samples) >= 4:
        print(halves_line("VmRSS", [x[1] for x in samples], " kB"))
        print(halves_line("descriptors", [x[2] for x in samples]))
        print(halves_line("sockets+epoll", [x[3] for x in samples]))
        print(halves_line("memory contexts", [x[4] for x in samples], " bytes"))
        print(halves_line("number of contexts", [x[5] for x in samples]))
        print(halves_line("malloc outside contexts", [x[6] for x in samples], " bytes"))
        for name, ok, line in (growth_checks(samples) if GROWTH else []):
            print(line)
            if ok:
                passed += 1
            else:
                failed += 1
                failures.append(line)
    elif GROWTH:
        failed += 1
        failures.append(f"only {len(samples)} samples: too few to judge growth "
                        f"(SOAK_SCANS >= {4 * SAMPLE_EVERY} needed)")
    for f in failures[:40]:
        print("FAIL " + f)
    if len(failures) > 40:
        print(f"FAIL ... and {len(failures) - 40} more")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
