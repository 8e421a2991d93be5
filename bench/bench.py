#!/usr/bin/env python3
"""bench/bench.py: the kis_fdw benchmark scenarios, measured against the mock KIS server.

bench/run.sh builds and installs kis_fdw, starts the mock (test/mock_kis.py, TLS) and a
throwaway cluster with shared_preload_libraries = 'kis_fdw', then runs this file with
KIS_WORK, KIS_MOCK_URL, KIS_MOCK_CA, KIS_MOCK_WS_URL, KIS_MOCK_PID and PGHOST/PGPORT/PGUSER
set.  Python 3
standard library only.  Figures, not pass/fail: every scenario is compared with its ideal
and its target, and a missed target is reported, never raised.

Scenarios (each with its own foreign server and app key, so counters never mix; the mock
is reset before each and its timeline read after):

  rate-bound     mock limit 20/s, rate_limit 19, 200 symbols, latency 30±10 ms
  latency-bound  no limit, latency 200 ms, max_concurrency 16, 320 symbols
  shared         4 psql processes at once on one (fresh) key, limit 20/s, 60 symbols each
  batched        domestic_multi_price, 600 symbols, limit 20/s
  overhead       no limit, no latency, 10,000 symbols, 3 times: backend CPU per row,
                 rows/s (and the same with domestic_multi_price, 30 symbols a request);
                 beside it, what the same requests cost libcurl alone and one bare TLS
                 connection (bench/floor.c)
  cancel         2,000-symbol scan cancelled after 1 s, 20 times: pg_cancel_backend -> error
  live           the live tables on the mock's WebSocket (KIS_MOCK_WS_URL): 40 symbols
                 subscribed by a first read, then their read's server time and REST requests
                 (0) against a local table; tick-to-visible latency (a tick POSTed to the
                 mock, SELECTs until it shows; 200 times); 2,000 ticks/s for 60 s captured
                 every second from domestic_ticks: lost ticks, the worker's CPU, the
                 capturing backend's RSS
  two-keys-*     two app keys (two servers), mock limit 20/s per key, rate_limit 19 each,
                 2 x 95 symbols: through a UNION ALL of the two tables, and through a
                 table hash-partitioned by symbol over them; rate / (2 x 19)
  seed-*         bench/seed_pattern.py (the Python pattern kis_fdw replaces) on the
                 rate-bound and latency-bound setups, with an app key of its own

Definitions: achieved rate = (requests - 1) / (last start - first start) from the mock's
timeline (request start times in seconds since the reset); violations = the mock's
counter of requests over its limit; time = EXPLAIN (ANALYZE) execution time, or wall time
where several clients run.  The key's token is issued before a timed run (as the seed's
constructor does it before its timed loop), except in "shared", which counts tokens.

Writes OUT/results.json, OUT/results.md, OUT/timeline-*.dat, OUT/timeline.gp and
OUT/timeline.png (requests started per 100 ms against the configured limit), and prints
the table.  With BENCH_PROFILE=1 (and perf installed) the first run of each overhead
scenario is sampled with perf: OUT/profile-overhead*.txt.

    python3 bench/bench.py OUT_DIR             measure, write, print
    python3 bench/bench.py OUT_DIR --replot    the same outputs again from OUT_DIR/results.json

BENCH_ONLY="two-keys-union cancel" runs only the scenarios named (the table shows those).
BENCH_QUICK=1 runs every scenario on fewer symbols and repetitions (SIZES): the same code
paths and the same table, in about a minute, for CI; its figures are not the ones to quote.

A scenario that fails (an exception, a missing figure) is that step's row in the table,
"FAILED: why"; every other step keeps its figures, and bench.py exits 1 after writing the
table (so `BENCH_QUICK=1 bash bench/run.sh` fails CI when a step is broken).
"""

import collections
import datetime
import decimal
import hashlib
import http.client
import json
import math
import os
import platform
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import time
import traceback
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test"))
from kistest import PSQL, PsqlPipe, mock  # noqa: E402  (the shared test helpers)

MOCK_URL = os.environ.get("KIS_MOCK_URL", "")   # all set by bench/run.sh (not needed
MOCK_CA = os.environ.get("KIS_MOCK_CA")          # for --replot)
MOCK_PID = int(os.environ.get("KIS_MOCK_PID", "0"))
MOCK_WS_URL = os.environ.get("KIS_MOCK_WS_URL", "")  # the mock's WebSocket (live)
PGHOST = os.environ.get("PGHOST") or os.environ.get("KIS_PGHOST")
PGPORT = os.environ.get("PGPORT") or os.environ.get("KIS_PGPORT")
HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "out")  # set by main()
DB = "kis_bench"
SEED_KEY = "PSbenchSeedPatternKey0000000000000000"  # the seed client's own app key
COLUMNS = ("symbol text, price numeric, change numeric, change_rate numeric, volume bigint, "
           "open numeric, high numeric, low numeric, fetched_at timestamptz")
WAIT = 120  # seconds before a hung psql is given up (a safety net)
# Symbols (and repetitions) per scenario; BENCH_QUICK=1 takes the second set.
FULL_SIZES = {"rate-bound": 200, "latency-bound": 320, "shared": 60, "same-symbols": 40,
              "batched": 600, "overhead": 10000, "overhead-reps": 3, "cancel": 2000,
              "cancel-reps": 20, "two-keys": 95, "join": 200, "cached-join": 1200,
              "cached-join-reps": 15, "live": 40, "live-reps": 20, "live-latency": 200,
              "live-stream-s": 60, "live-cancels": 20}
QUICK_SIZES = {"rate-bound": 40, "latency-bound": 64, "shared": 15, "same-symbols": 10,
               "batched": 120, "overhead": 1000, "overhead-reps": 2, "cancel": 2000,
               "cancel-reps": 3, "two-keys": 20, "join": 40, "cached-join": 200,
               "cached-join-reps": 2, "live": 40, "live-reps": 5, "live-latency": 50,
               "live-stream-s": 10, "live-cancels": 5}
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
SIZES = dict(QUICK_SIZES if QUICK else FULL_SIZES)


# --------------------------------------------------------------------------- mock

def mock_stats(timeline=False):
    return mock("/__mock/stats" + ("?timeline=1" if timeline else ""))


def mock_setup(rate_limit=0, latency_ms=0, jitter_ms=0):
    """Configure the mock, let leftover requests finish, then zero its counters."""
    mock("/__mock/config", {"rate_limit": rate_limit, "latency_ms": latency_ms,
                            "jitter_ms": jitter_ms, "token_interval": 0})
    deadline = time.monotonic() + 30
    while mock_stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.02)
    mock("/__mock/reset", {})


def achieved_rate(timeline):
    """(requests - 1) / (last start - first start), per second; None below 2 requests."""
    if len(timeline) < 2 or timeline[-1] <= timeline[0]:
        return None
    return (len(timeline) - 1) / (timeline[-1] - timeline[0])


def max_in_window(timeline, width=1.0):
    """The most request starts in any window of width seconds: the densest second."""
    best, j = 0, 0
    for i, t in enumerate(timeline):
        while timeline[j] <= t - width:
            j += 1
        best = max(best, i - j + 1)
    return best


def cpu_ticks(pid):
    """utime + stime of a process, all its threads (dead ones too), in seconds (ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_ns(pid):
    """Time the main thread spent on a CPU, in ns (/proc/PID/schedstat); a backend has
    no other thread (cpu_ticks, which counts every thread, cross-checks it)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


# --------------------------------------------------------------------------- psql

def psql(sql, db=DB, check=True):
    """One-shot psql -c (a fresh backend); returns stdout lines."""
    p = subprocess.run([PSQL, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                        "-h", PGHOST, "-p", PGPORT, "-U", "postgres", "-d", db, "-c", sql],
                       capture_output=True, text=True, timeout=WAIT)
    if check and p.returncode != 0:
        raise RuntimeError(f"psql failed: {sql[:200]}: {p.stderr}")
    return p.stdout.splitlines()


def foreign_scan(node):
    """The Foreign Scan node of an EXPLAIN (FORMAT JSON) plan tree."""
    if node.get("Node Type") == "Foreign Scan":
        return node
    for child in node.get("Plans", []):
        found = foreign_scan(child)
        if found:
            return found
    return None


def explain_cmd(select):
    return f"EXPLAIN (ANALYZE, FORMAT JSON) {select}"


def parse_explain(text):
    """(execution ms, the Foreign Scan node) of EXPLAIN (ANALYZE, FORMAT JSON) output."""
    plan = json.loads(text)[0]
    return plan["Execution Time"], foreign_scan(plan["Plan"])


def explain(select, db=DB):
    return parse_explain("\n".join(psql(explain_cmd(select), db)))


class Session(PsqlPipe):
    """One long-lived psql (one backend) fed through a pipe; lines are time-stamped."""

    def __init__(self, db=DB):
        super().__init__(db, wait=WAIT)
        self.pid = int(self.query("SELECT pg_backend_pid()")[0][0][1])

    def finish(self, marker):
        """(stdout lines, stderr lines) of a sent statement, each as (time, text)."""
        results = []
        for q in (self.out, self.err):
            lines, eof = self.collect(q, marker)
            if eof:
                raise RuntimeError(f"psql exited; so far {lines[-5:]}")
            results.append(lines)
        return tuple(results)

    def query(self, sql):
        return self.finish(self.send(sql))


# --------------------------------------------------------------------------- setup

def app_key(name):
    return f"PSbench{name.replace('-', '')}Key".ljust(36, "0")


def key_hash(key):
    """How kis_fdw_stats names a key: the first 12 hex digits of its SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def create_server(name, endpoint="domestic_price", columns=COLUMNS, **options):
    """A foreign server, user mapping (app key of its own) and table named after name."""
    ident = name.replace("-", "_")
    opts = {"base_url": MOCK_URL, "ca_file": MOCK_CA, "timeout_ms": "30000", **options}
    psql(f"""
CREATE SERVER s_{ident} FOREIGN DATA WRAPPER kis_fdw
  OPTIONS ({", ".join(f"{k} '{v}'" for k, v in opts.items())});
CREATE USER MAPPING FOR CURRENT_USER SERVER s_{ident}
  OPTIONS (app_key '{app_key(name)}', app_secret 'bench-secret');
CREATE FOREIGN TABLE p_{ident} ({columns}) SERVER s_{ident} OPTIONS (endpoint '{endpoint}');""")
    return f"p_{ident}"


def setup_database():
    psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", db="postgres")
    psql(f"CREATE DATABASE {DB}", db="postgres")
    psql("CREATE EXTENSION kis_fdw")


def select(table, first, n):
    """All columns of n consecutive symbols starting at code first (one batch scan)."""
    return (f"SELECT * FROM {table} WHERE symbol = ANY (ARRAY(SELECT lpad(g::text, 6, '0') "
            f"FROM generate_series({first}, {first + n - 1}) g))")


def warm_token(table, first):
    """Have the key's token issued (one request) before a timed run."""
    psql(select(table, first, 1))


def fdw_key_stats(name):
    rows = psql(f"SELECT requests, retries, rate_limited, tokens_issued, rate_wait_ms "
                f"FROM kis_fdw_stats WHERE key_hash = '{key_hash(app_key(name))}'")
    if not rows:
        return {}
    vals = rows[0].split("|")
    return {"requests": int(vals[0]), "retries": int(vals[1]), "rate_limited": int(vals[2]),
            "tokens_issued": int(vals[3]), "rate_wait_ms": float(vals[4])}


def timeline_figures(st):
    tl = st.get("timeline", [])
    return {"requests": st["requests"], "violations": st["violations"],
            "achieved_rate": achieved_rate(tl), "densest_second": max_in_window(tl),
            "max_in_flight": st["max_in_flight"], "timeline": tl}


# --------------------------------------------------------------------------- scenarios

def scenario_rate_bound(first=100000, n=None):
    """One scan paced by rate_limit 19 against the mock's 20/s."""
    n = n or SIZES["rate-bound"]
    table = create_server("rate-bound", rate_limit="19", max_concurrency="8")
    mock_setup(rate_limit=20, latency_ms=30, jitter_ms=10)
    warm_token(table, 900000)
    mock_setup(rate_limit=20, latency_ms=30, jitter_ms=10)
    ms, scan = explain(select(table, first, n))
    r = timeline_figures(mock_stats(timeline=True))
    r.update(time_s=ms / 1000, ideal_s=n / 19, rows=scan["Actual Rows"],
             kis_rate_wait_ms=scan.get("KIS Rate Wait"))
    r["of_limit"] = r["achieved_rate"] / 19
    r["met"] = r["of_limit"] >= 0.97 and r["violations"] == 0
    return r


def scenario_latency_bound(first=110000, n=None):
    """One scan with 16 requests in flight against 200 ms of latency."""
    n = n or SIZES["latency-bound"]
    table = create_server("latency-bound", rate_limit="0", max_concurrency="16")
    mock_setup(latency_ms=200)
    warm_token(table, 900001)
    mock_setup(latency_ms=200)
    ms, scan = explain(select(table, first, n))
    r = timeline_figures(mock_stats(timeline=True))
    ideal = n * 0.2 / 16
    r.update(time_s=ms / 1000, ideal_s=ideal, of_ideal=ideal / (ms / 1000),
             rows=scan["Actual Rows"])
    r["met"] = r["of_ideal"] >= 0.90
    return r


def scenario_shared(first=120000, per_session=None, sessions=4):
    """Four psql processes at once on one key that has no token yet."""
    per_session = per_session or SIZES["shared"]
    name = "shared"
    table = create_server(name, rate_limit="19", max_concurrency="8")
    mock_setup(rate_limit=20, latency_ms=30, jitter_ms=10)
    before = fdw_key_stats(name)
    t0 = time.monotonic()
    procs = [subprocess.Popen(
        [PSQL, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", PGHOST, "-p", PGPORT,
         "-U", "postgres", "-d", DB,
         "-c", explain_cmd(select(table, first + i * per_session, per_session))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(sessions)]
    outs = [p.communicate(timeout=WAIT) for p in procs]
    wall = time.monotonic() - t0
    for p, (_, err) in zip(procs, outs):
        if p.returncode != 0:
            raise RuntimeError(f"shared: a session failed: {err}")
    per = [parse_explain(out) for out, _ in outs]
    st = mock_stats(timeline=True)
    r = timeline_figures(st)
    after = fdw_key_stats(name)
    r.update(wall_s=wall, ideal_s=sessions * per_session / 19,
             session_times_s=[ms / 1000 for ms, _ in per],
             rows=sum(scan["Actual Rows"] for _, scan in per),
             tokens_issued_mock=st["tokens_issued_by_appkey"].get(app_key(name), 0),
             tokens_issued_fdw=after.get("tokens_issued", 0) - before.get("tokens_issued", 0),
             fdw_requests=after.get("requests", 0) - before.get("requests", 0),
             fdw_rate_limited=after.get("rate_limited", 0) - before.get("rate_limited", 0))
    r["of_limit"] = r["achieved_rate"] / 19
    r["met"] = (r["of_limit"] >= 0.90 and r["violations"] == 0
                and r["tokens_issued_mock"] == 1)
    return r


def sessions_at_once(sql_per_session):
    """One psql per statement, all started at once; wall seconds until the last ends."""
    t0 = time.monotonic()
    procs = [subprocess.Popen(
        [PSQL, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", PGHOST, "-p", PGPORT,
         "-U", "postgres", "-d", DB, "-c", sql],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for sql in sql_per_session]
    outs = [p.communicate(timeout=WAIT) for p in procs]
    for p, (_, err) in zip(procs, outs):
        if p.returncode != 0:
            raise RuntimeError(f"a session failed: {err}")
    return time.monotonic() - t0


def scenario_same_symbols(first=140000, n=None, sessions=4, rounds=2):
    """Four sessions x two rounds asking the same 40 symbols at once (a dashboard, a cron
    fan-out), limit 20/s, rate_limit 19: without sharing (each session-round its own 40
    symbols, the same work as before shared answers), with in-flight sharing only (the
    cache off), and with cache_ttl_ms 5000.  Requests sent per distinct key, wall time."""
    n = n or SIZES["same-symbols"]
    table = create_server("same-symbols", rate_limit="19", max_concurrency="8")
    cached = table + "_cached"
    psql(f"CREATE FOREIGN TABLE {cached} ({COLUMNS}) SERVER s_same_symbols "
         f"OPTIONS (endpoint 'domestic_price', cache_ttl_ms '5000')")
    mock_setup(rate_limit=20, latency_ms=30, jitter_ms=10)
    warm_token(table, 900002)
    r = {}
    for variant, tab, distinct in (("unshared", table, True), ("in_flight", table, False),
                                   ("cached", cached, False)):
        psql("SELECT kis_fdw_cache_reset()")
        mock_setup(rate_limit=20, latency_ms=30, jitter_ms=10)
        base = first + {"unshared": 0, "in_flight": 1000, "cached": 2000}[variant]
        wall = 0.0
        keys = set()
        for rnd in range(rounds):
            starts = [base + (rnd * sessions + i) * n if distinct else base
                      for i in range(sessions)]
            for s in starts:
                keys.update(range(s, s + n))
            wall += sessions_at_once([select(tab, s, n) for s in starts])
        nkeys = len(keys)
        st = mock_stats()
        r[variant] = {"requests": st["requests"], "distinct_keys": nkeys,
                      "per_key": st["requests"] / nkeys, "wall_s": wall,
                      "violations": st["violations"]}
    r["ideal_unshared_s"] = sessions * rounds * n / 19
    r["speedup"] = r["unshared"]["wall_s"] / r["cached"]["wall_s"]
    r["met"] = r["cached"]["per_key"] <= 1.1 and r["cached"]["violations"] == 0
    return r


def scenario_batched(first=130000, n=None):
    """domestic_multi_price: 30 symbols a request, paced like rate-bound."""
    n = n or SIZES["batched"]
    table = create_server("batched", endpoint="domestic_multi_price", rate_limit="19",
                          max_concurrency="8")
    mock_setup(rate_limit=20, latency_ms=30, jitter_ms=10)
    warm_token(table, 900002)
    mock_setup(rate_limit=20, latency_ms=30, jitter_ms=10)
    ms, scan = explain(select(table, first, n))
    r = timeline_figures(mock_stats(timeline=True))
    r.update(time_s=ms / 1000, rows=scan["Actual Rows"], ideal_requests=-(-n // 30),
             symbols_per_request=n / max(r["requests"], 1))
    r["met"] = r["symbols_per_request"] >= 25 and r["rows"] == n
    return r


def scenario_cached_join(first=700000, n=None, reps=None):
    """A portfolio joined to domestic_multi_price with every answer in the cache
    (cache_ttl_ms), against the same join on a local table of the same rows: server time
    (EXPLAIN ANALYZE's Execution Time), best of reps each, in a fresh session each time
    (as psql -c) and in one long-lived session (as a dashboard's pooled connection)."""
    n, reps = n or SIZES["cached-join"], reps or SIZES["cached-join-reps"]
    table = create_server("cached-join", endpoint="domestic_multi_price",
                          max_concurrency="8", cache_ttl_ms="3600000")
    mock_setup()
    psql(f"""
CREATE TABLE cj_portfolio AS
  SELECT lpad(g::text, 6, '0') AS symbol, g % 100 + 1 AS qty
  FROM generate_series({first}, {first + n - 1}) g;
CREATE TABLE cj_local AS SELECT * FROM {table} WHERE symbol IN (SELECT symbol FROM cj_portfolio);
ANALYZE cj_portfolio, cj_local;""")
    join = "SELECT p.symbol, p.qty * q.price FROM cj_portfolio p JOIN {} q USING (symbol)"
    before = mock_stats()["requests"]
    kis = [explain(join.format(table))[0] for _ in range(reps)]
    local = [explain(join.format("cj_local"))[0] for _ in range(reps)]
    s = Session()
    try:
        def session_ms(t):
            out, err = s.query(explain_cmd(join.format(t)))
            if err:
                raise RuntimeError(f"cached join in a session: {err[:3]}")
            return parse_explain("\n".join(line for _, line in out))[0]
        kis_s = [session_ms(table) for _ in range(4 * reps)]
        local_s = [session_ms("cj_local") for _ in range(4 * reps)]
    finally:
        s.close()
    requests = mock_stats()["requests"] - before
    r = {"symbols": n, "reps": reps, "kis_ms": min(kis), "local_ms": min(local),
         "kis_ms_all": kis, "local_ms_all": local, "requests": requests,
         "kis_ms_session": min(kis_s), "local_ms_session": min(local_s)}
    r["ratio"] = r["kis_ms"] / r["local_ms"]
    r["ratio_session"] = r["kis_ms_session"] / r["local_ms_session"]
    r["met"] = r["ratio"] <= 3 and r["ratio_session"] <= 3 and requests == 0
    return r


# --------------------------------------------------------------------------- live

LIVE_COLUMNS = ("symbol text, price numeric, change numeric, change_rate numeric, volume bigint, "
                "trade_volume bigint, trade_time timestamptz, ask1 numeric, bid1 numeric, "
                "source text, received_at timestamptz")
LIVE_TICKS_COLUMNS = ("seq bigint, symbol text, price numeric, trade_volume bigint, "
                      "trade_time timestamptz, received_at timestamptz")
LIVE_STREAM_RATE = 2000  # ticks a second over all subscriptions, in the stream step


def ws_listener(url):
    """Check that the mock's WebSocket listens (a TCP connect); a clear error if not."""
    if not url:
        raise RuntimeError("no WebSocket listener: KIS_MOCK_WS_URL is not set (bench/run.sh's "
                           "kis_start_mock sets it when the mock runs with --ws-port)")
    u = urllib.parse.urlsplit(url)
    try:
        socket.create_connection((u.hostname, u.port), timeout=2).close()
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"no WebSocket listener at {url}: {exc}") from None


class MockConn:
    """POSTs to the mock's control API over one kept-alive HTTPS connection (kistest.mock
    opens a connection, TLS handshake included, per call): a tick costs one round trip."""

    def __init__(self):
        u = urllib.parse.urlsplit(MOCK_URL)
        self.host, self.port = u.hostname, u.port
        self.ctx = ssl.create_default_context(cafile=MOCK_CA)
        self.conn = None

    def post(self, path, body):
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx,
                                                        timeout=10)
            try:
                self.conn.request("POST", path, json.dumps(body),
                                  {"Content-Type": "application/json"})
                resp = self.conn.getresponse()
                data = resp.read()
            except (http.client.HTTPException, OSError):
                self.close()  # the mock closed a kept-alive connection: once more, fresh
                if attempt:
                    raise
                continue
            if resp.status != 200:
                raise RuntimeError(f"mock {path}: HTTP {resp.status}: {data[:200]!r}")
            if (resp.getheader("Connection") or "").lower() == "close":
                self.close()
            return json.loads(data)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def rss_kb(pid):
    """(VmRSS, RssAnon) of /proc/PID/status in kB: the resident set, and its private part
    (VmRSS also counts the pages of shared memory, shared buffers and the tick ring, that a
    backend touches for the first time; RssAnon is what the backend itself allocated)."""
    got = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "RssAnon"):
                got[key] = int(line.split()[1])
    if len(got) != 2:
        raise RuntimeError(f"no VmRSS/RssAnon for pid {pid}")
    return got["VmRSS"], got["RssAnon"]


def live_channel(name):
    """The kis_fdw_live row of name's app key, as a dict ({} when it has no channel)."""
    cols = ("socket", "subscriptions", "pending", "refused", "ticks", "reconnects",
            "last_error", "worker_pid")
    rows = psql(f"SELECT {', '.join(cols)} FROM kis_fdw_live "
                f"WHERE key_hash = '{key_hash(app_key(name))}'")
    if not rows:
        return {}
    r = dict(zip(cols, rows[0].split("|")))
    for k in ("subscriptions", "pending", "refused", "ticks", "reconnects", "worker_pid"):
        r[k] = int(r[k]) if r[k] else None
    return r


def session_rows(sess, sql):
    """The rows (lists of fields) of sql in a Session; RuntimeError on an ERROR."""
    out, err = sess.query(sql)
    bad = [line for _, line in err if "ERROR" in line or "FATAL" in line]
    if bad:
        raise RuntimeError(f"{sql[:80]}: {bad[:2]}")
    return [(t, line.split("|")) for t, line in out]


def session_explain(sess, sql):
    """(execution ms, Foreign Scan node) of EXPLAIN (ANALYZE) of sql in a Session."""
    return parse_explain("\n".join(f[0] for _, f in session_rows(sess, explain_cmd(sql))))


def percentile(xs, p):
    """Nearest rank."""
    xs = sorted(xs)
    return xs[max(0, math.ceil(p * len(xs)) - 1)]


def scenario_live(first=800000, n=None):
    """Live tables on the mock's WebSocket, in one run: (1) n symbols subscribed by a first
    read, then the server time of reading all n (EXPLAIN ANALYZE in one session, best and
    median of reps; the mock's REST requests meanwhile) against the same rows in a local
    table; (2) tick-to-visible latency: a tick with a new price POSTed to the mock, then
    SELECTs in one session until it shows, from before the POST to the SELECT that saw it;
    (3) a query waiting for a first tick that never comes, cancelled from another session:
    from before pg_cancel_backend to its ERROR; (4) a sustained stream of 2,000 ticks/s (one
    record a frame) while a session captures domestic_ticks every second by "seq >": ticks
    sent, captured, lost, the worker's CPU and the capturing backend's memory."""
    n = n or SIZES["live"]
    reps, K, stream_s = SIZES["live-reps"], SIZES["live-latency"], SIZES["live-stream-s"]
    ws_listener(MOCK_WS_URL)
    name, server = "live", "s_live"
    table = create_server(name, endpoint="domestic_live", columns=LIVE_COLUMNS,
                          ws_url=MOCK_WS_URL)
    syms = [f"{c:06d}" for c in range(first, first + n)]
    in_list = ", ".join(f"'{s}'" for s in syms)
    arr = f"ARRAY[{in_list}]"
    psql(f"CREATE FOREIGN TABLE live_ticks ({LIVE_TICKS_COLUMNS}) SERVER {server} "
         f"OPTIONS (endpoint 'domestic_ticks'); CREATE TABLE live_cap (seq bigint, symbol text)")
    mock_setup()
    mock("/__mock/config", {"ws_tick_rate": 0, "ws_records_per_frame": 1, "ws_first_tick": True})
    r = {"symbols": n, "reps": reps, "ticks": K, "stream_s": stream_s}
    s = cap = None
    mc = MockConn()
    try:
        s = Session()
        # 1. the first read subscribes; every symbol streams
        t0, reads = time.monotonic(), 0
        while True:
            rows = session_rows(s, f"SELECT symbol, source FROM {table} WHERE symbol IN ({in_list})")
            reads += 1
            live = sum(1 for _, f in rows if f[1] == "live")
            if live == n:
                break
            if time.monotonic() - t0 > 30:
                raise RuntimeError(f"after 30 s, {live} of {n} symbols live; "
                                   f"channel {live_channel(name)}")
            time.sleep(0.2)
        r.update(subscribe_s=time.monotonic() - t0, subscribe_reads=reads,
                 subscribe_requests=mock_stats()["requests"])
        # pinned, so that nothing is unsubscribed as idle whatever the step's length
        r["pinned"] = int(psql(f"SELECT kis_fdw_live_subscribe('{server}', {arr})")[0])
        ch = live_channel(name)
        r["worker_pid"] = ch["worker_pid"]
        psql(f"CREATE TABLE live_local AS SELECT * FROM {table} WHERE symbol IN ({in_list}); "
             "ANALYZE live_local")
        read = f"SELECT * FROM {{}} WHERE symbol IN ({in_list})"
        session_explain(s, read.format(table))  # warm: plan, caches
        before = mock_stats()["requests"]
        kis = []
        for _ in range(reps):
            ms, scan = session_explain(s, read.format(table))
            if scan["Actual Rows"] != n:
                raise RuntimeError(f"read of {n} live symbols: {scan['Actual Rows']} rows")
            kis.append(ms)
        r["read_scan"] = {k: v for k, v in scan.items() if k != "Plans"}
        r["requests"] = mock_stats()["requests"] - before
        session_explain(s, read.format("live_local"))
        local = [session_explain(s, read.format("live_local"))[0] for _ in range(reps)]
        r.update(read_ms_best=min(kis), read_ms_median=statistics.median(kis), read_ms_all=kis,
                 local_ms_best=min(local), local_ms_median=statistics.median(local),
                 local_ms_all=local)
        r["ratio"] = r["read_ms_best"] / r["local_ms_best"]
        r["ratio_median"] = r["read_ms_median"] / r["local_ms_median"]

        # 2. tick to visible: POST a tick with a price no symbol has, SELECT until it shows
        one = f"SELECT price FROM {table} WHERE symbol = '{syms[0]}'"
        rtt = []
        for _ in range(20):
            t = time.perf_counter()
            session_rows(s, one)
            rtt.append((time.perf_counter() - t) * 1000)
        r["select_rtt_ms_median"] = statistics.median(rtt)
        lat, post_ms, polls, invisible, unsent = [], [], [], [], 0
        for k in range(K):
            sym, price = syms[k % n], 900000 + 10 * k  # above every formula price
            t0 = time.perf_counter()
            sent = mc.post("/__mock/ws/tick", {"tr_id": "H0STCNT0", "tr_key": sym, "count": 1,
                                               "price": str(price)})["sent"]
            t1 = time.perf_counter()
            if sent != 1:
                unsent += 1
                continue
            seen, m = None, 0
            while seen is None and time.perf_counter() - t0 < 5:
                rows = session_rows(s, f"SELECT price FROM {table} WHERE symbol = '{sym}'")
                m += 1
                if rows and decimal.Decimal(rows[0][1][0]) == price:
                    seen = rows[0][0]  # when psql's answer was read
            if seen is None:
                invisible.append(sym)
                continue
            lat.append((seen - t0) * 1000)
            post_ms.append((t1 - t0) * 1000)
            polls.append(m)
        if not lat:
            raise RuntimeError(f"no tick became visible ({unsent} not sent, "
                               f"{len(invisible)} not seen within 5 s)")
        r.update(latency_p50_ms=statistics.median(lat), latency_p99_ms=percentile(lat, 0.99),
                 latency_max_ms=max(lat), latency_ms_all=lat, post_ms_median=statistics.median(post_ms),
                 polls_mean=statistics.mean(polls), polls_max=max(polls),
                 ticks_unsent=unsent, ticks_invisible=len(invisible),
                 invisible_symbols=invisible[:10])

        # 3. cancel while waiting for a first tick: a symbol that gets none (the mock
        # sends no first tick), a table that would wait a minute; pg_cancel_backend from
        # the other session, from before that statement to the waiting query's ERROR line
        mock("/__mock/config", {"ws_first_tick": False})
        psql(f"CREATE FOREIGN TABLE live_wait (symbol text, price numeric) SERVER {server} "
             "OPTIONS (endpoint 'domestic_live', live_wait_ms '60000')")
        w = Session()
        cancel_ms = []
        try:
            for k in range(SIZES["live-cancels"]):
                fresh = f"{first + n + k:06d}"
                marker = w.send(f"SELECT price FROM live_wait WHERE symbol = '{fresh}'")
                deadline = time.monotonic() + 10
                while not session_rows(s, "SELECT 1 FROM pg_stat_activity WHERE pid = "
                                       f"{w.pid} AND wait_event_type = 'Extension'"):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the query never waited for its first tick")
                    time.sleep(0.005)
                t0 = time.perf_counter()
                session_rows(s, f"SELECT pg_cancel_backend({w.pid})")
                out, err = w.finish(marker)
                ended = [t for t, line in err if "canceling statement" in line]
                if not ended:
                    raise RuntimeError(f"the waiting query was not cancelled: {out[-2:]} "
                                       f"{err[-2:]}")
                cancel_ms.append((ended[0] - t0) * 1000)
                # within the key's 41 subscriptions (40 are the read's)
                session_rows(s, f"SELECT kis_fdw_live_unsubscribe('{server}', "
                             f"ARRAY['{fresh}'])")
        finally:
            w.close()
            mock("/__mock/config", {"ws_first_tick": True})
        r.update(cancel_ms_median=statistics.median(cancel_ms), cancel_ms_max=max(cancel_ms),
                 cancel_ms_all=cancel_ms)

        # 4. a sustained stream, captured every second
        cap = Session()
        capture = ("INSERT INTO live_cap SELECT seq, symbol FROM live_ticks WHERE seq > "
                   "(SELECT coalesce(max(seq), 0) FROM live_cap); SELECT count(*) FROM live_cap")
        warnings = []

        def captured():
            out, err = cap.query(capture)
            bad = [line for _, line in err if "ERROR" in line]
            if bad:
                raise RuntimeError(f"capture: {bad[:2]}")
            warnings.extend(line for _, line in err if "WARNING" in line)
            return int(out[-1][1])

        base = captured()  # what the ring held before the stream
        ch0 = live_channel(name)
        pid = ch0["worker_pid"]
        if not pid:
            raise RuntimeError(f"no worker_pid in kis_fdw_live: {ch0}")
        ws0 = mock_stats()["ws"]
        rss0, anon0 = rss_kb(cap.pid)
        cpu0, mock_cpu0 = cpu_ticks(pid), cpu_ticks(MOCK_PID) if MOCK_PID else 0
        per_sub = LIVE_STREAM_RATE / n
        t0 = time.monotonic()
        mock("/__mock/config", {"ws_tick_rate": per_sub, "ws_records_per_frame": 1})
        counts, late, anon_series = [base], 0, []
        for i in range(1, stream_s + 1):
            delay = t0 + i - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                late += 1
            counts.append(captured())
            anon_series.append(rss_kb(cap.pid)[1])
        cpu1, mock_cpu1 = cpu_ticks(pid), cpu_ticks(MOCK_PID) if MOCK_PID else 0
        wall = time.monotonic() - t0
        mock("/__mock/config", {"ws_tick_rate": 0})
        time.sleep(0.5)  # frames on their way
        ws1 = mock_stats()["ws"]
        for _ in range(10):  # until a capture finds nothing new
            counts.append(captured())
            if counts[-1] == counts[-2]:
                break
            time.sleep(0.2)
        rss1, anon1 = rss_kb(cap.pid)
        ch1 = live_channel(name)
        sent = ws1["ticks_sent"] - ws0["ticks_sent"]
        got = counts[-1] - base
        per_capture = [b - a for a, b in zip(counts, counts[1:stream_s + 1])]
        r.update(stream_rate=per_sub * n, per_subscription=per_sub, stream_wall_s=wall,
                 ticks_sent=sent, frames_sent=ws1["frames_sent"] - ws0["frames_sent"],
                 sent_per_s=sent / wall, ticks_received=(ch1.get("ticks") or 0) - ch0["ticks"],
                 captured=got, lost=sent - got, capture_warnings=warnings[:5],
                 per_capture_max=max(per_capture), captures_late=late,
                 worker_cpu_pct=(cpu1 - cpu0) / wall * 100,
                 mock_cpu_pct=(mock_cpu1 - mock_cpu0) / wall * 100,
                 rss_start_kb=rss0, rss_end_kb=rss1, anon_start_kb=anon0, anon_end_kb=anon1,
                 anon_series_kb=anon_series,
                 worker_pid_end=ch1.get("worker_pid"),
                 reconnects=(ch1.get("reconnects") or 0) - (ch0["reconnects"] or 0),
                 socket=ch1.get("socket"), last_error=ch1.get("last_error"))
        # flat: a leak grows with every capture, a warm-up (malloc'd arenas kept) once
        r["anon_growth_2nd_half_kb"] = anon1 - anon_series[(len(anon_series) - 1) // 2]
        r["worker_restarted"] = r["worker_pid_end"] != r["worker_pid"]
    finally:
        try:
            mock("/__mock/config", {"ws_tick_rate": 0})
            r["unsubscribed"] = int(psql(f"SELECT kis_fdw_live_unsubscribe('{server}', {arr})")[0])
        except Exception as exc:  # the figures stand; say why the cleanup did not
            r["cleanup_error"] = f"{type(exc).__name__}: {exc}"[:200]
        for sess in (s, cap):
            if sess is not None:
                sess.close()
        mc.close()
    # the worker exits once nothing is subscribed
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and live_channel(name).get("worker_pid"):
        time.sleep(0.2)
    r["worker_exited"] = not live_channel(name).get("worker_pid")
    r["met"] = (r["read_ms_median"] < 1 and r["requests"] == 0 and r["latency_p99_ms"] <= 5
                and r["cancel_ms_max"] <= 20
                and r["ticks_invisible"] == 0 and r["ticks_unsent"] == 0
                and r["worker_cpu_pct"] < 10 and r["lost"] == 0
                and r["anon_growth_2nd_half_kb"] <= 1024)
    return r


def two_keys_tables():
    """Servers s_two_keys_a/_b (an app key each, rate_limit 19), their tables, and
    two_keys, hash-partitioned by symbol over the two servers (created once)."""
    if psql("SELECT 1 FROM pg_class WHERE relname = 'two_keys'"):
        return
    for side in ("a", "b"):
        create_server(f"two-keys-{side}", rate_limit="19", max_concurrency="8")
    psql(f"""
CREATE TABLE two_keys ({COLUMNS}) PARTITION BY HASH (symbol);
CREATE FOREIGN TABLE two_keys_0 PARTITION OF two_keys FOR VALUES WITH (MODULUS 2, REMAINDER 0)
  SERVER s_two_keys_a OPTIONS (endpoint 'domestic_price');
CREATE FOREIGN TABLE two_keys_1 PARTITION OF two_keys FOR VALUES WITH (MODULUS 2, REMAINDER 1)
  SERVER s_two_keys_b OPTIONS (endpoint 'domestic_price');""")


def symbol_list(first, n):
    return ", ".join(f"'{c:06d}'" for c in range(first, first + n))


def scenario_two_keys(kind, first, per_key=None):
    """2 x per_key symbols on two keys at once: a UNION ALL of the two servers' tables,
    or the hash-partitioned table (its partitions get the symbols that hash to them)."""
    per_key = per_key or SIZES["two-keys"]
    two_keys_tables()
    mock_setup(rate_limit=20, latency_ms=30, jitter_ms=10)
    for side in ("a", "b"):
        warm_token(f"p_two_keys_{side}", 900010)
    mock_setup(rate_limit=20, latency_ms=30, jitter_ms=10)
    before = {side: fdw_key_stats(f"two-keys-{side}") for side in ("a", "b")}
    if kind == "union":
        sql = (f"SELECT * FROM p_two_keys_a WHERE symbol IN ({symbol_list(first, per_key)}) "
               f"UNION ALL SELECT * FROM p_two_keys_b "
               f"WHERE symbol IN ({symbol_list(first + per_key, per_key)})")
    else:
        sql = f"SELECT * FROM two_keys WHERE symbol IN ({symbol_list(first, 2 * per_key)})"
    t0 = time.monotonic()
    plan = json.loads("\n".join(psql(explain_cmd(sql))))[0]
    wall = time.monotonic() - t0
    r = timeline_figures(mock_stats(timeline=True))
    share = {side: fdw_key_stats(f"two-keys-{side}").get("requests", 0) -
             before[side].get("requests", 0) for side in ("a", "b")}
    r.update(time_s=plan["Execution Time"] / 1000, wall_s=wall, rows=plan["Plan"]["Actual Rows"],
             ideal_s=2 * per_key / 38, symbols=2 * per_key, requests_by_key=share,
             async_scans=json.dumps(plan).count('"Async Capable": true'))
    r["of_limit"] = (r["achieved_rate"] or 0) / 38
    r["met"] = (r["of_limit"] >= 0.9 and r["violations"] == 0
                and r["requests"] == 2 * per_key and r["rows"] == 2 * per_key)
    return r


def plan_has(node, provider):
    """Does an EXPLAIN (FORMAT JSON) plan tree hold a Custom Scan of provider?"""
    if node.get("Custom Plan Provider") == provider:
        return True
    return any(plan_has(child, provider) for child in node.get("Plans", []))


# the setups of the join scenarios: (server options, mock settings), as rate- and latency-bound
JOIN_SETUPS = {"rate-bound": ({"rate_limit": "19", "max_concurrency": "8"},
                              {"rate_limit": 20, "latency_ms": 30, "jitter_ms": 10}),
               "latency-bound": ({"rate_limit": "0", "max_concurrency": "16"},
                                 {"rate_limit": 0, "latency_ms": 200, "jitter_ms": 0})}


def scenario_join(setup, first, n=None):
    """A portfolio of n symbols joined to the quotes: the plain join (batched), the
    README's former ANY idiom, and the seed pattern on the same symbols."""
    options, mock_cfg = JOIN_SETUPS[setup]
    n = n or SIZES["join"]
    name = f"join-{setup}"
    table = create_server(name, **options)
    pf = f"pf_{name.replace('-', '_')}"
    psql(f"CREATE TABLE {pf} AS SELECT lpad(g::text, 6, '0') AS symbol, g % 100 + 1 AS qty "
         f"FROM generate_series({first}, {first + n - 1}) g; ANALYZE {pf}")
    plain = (f"SELECT p.symbol, p.qty * q.price AS value FROM {pf} p "
             f"JOIN {table} q ON q.symbol = p.symbol")
    any_form = plain + f" WHERE q.symbol = ANY (ARRAY(SELECT symbol FROM {pf}))"
    mock_setup(**mock_cfg)
    warm_token(table, 900003)
    r = {}
    for label, sql in (("join", plain), ("any", any_form)):
        mock_setup(**mock_cfg)
        text = "\n".join(psql(explain_cmd(sql)))
        plan = json.loads(text)[0]
        st = mock_stats()
        r[label] = {"time_s": plan["Execution Time"] / 1000, "rows": plan["Plan"]["Actual Rows"],
                    "requests": st["requests"], "max_in_flight": st["max_in_flight"],
                    "violations": st["violations"],
                    "batched_join": plan_has(plan["Plan"], "KIS Batched Join")}
    seed = run_seed(first, n, mock_cfg["rate_limit"], mock_cfg["latency_ms"],
                    mock_cfg["jitter_ms"])
    r["seed"] = {k: seed[k] for k in ("time_s", "rows", "requests", "violations", "aborted")}
    r["symbols"] = n
    r["join_vs_any"] = r["join"]["time_s"] / r["any"]["time_s"]
    r["seed_vs_join"] = seed["time_s"] / r["join"]["time_s"]
    r["met"] = (r["join_vs_any"] <= 1.1 and r["join"]["batched_join"] and
                r["join"]["rows"] == n and r["join"]["requests"] == n)
    return r


def scenario_join_two_keys(first=620000, per_key=None):
    """A portfolio of 2 x per_key symbols joined to two_keys (hash-partitioned over two
    keys, rate_limit 19 each): the plain join (one batched join over both partitions)
    against the ANY form (an async Append of the two partitions)."""
    two_keys_tables()
    n = 2 * (per_key or SIZES["two-keys"])
    pf = "pf_join_two_keys"
    psql(f"DROP TABLE IF EXISTS {pf}; CREATE TABLE {pf} AS SELECT lpad(g::text, 6, '0') AS symbol, "
         f"g % 100 + 1 AS qty FROM generate_series({first}, {first + n - 1}) g; ANALYZE {pf}")
    plain = (f"SELECT p.symbol, p.qty * q.price AS value FROM {pf} p "
             f"JOIN two_keys q ON q.symbol = p.symbol")
    any_form = plain + f" WHERE q.symbol = ANY (ARRAY(SELECT symbol FROM {pf}))"
    mock_cfg = {"rate_limit": 20, "latency_ms": 30, "jitter_ms": 10}
    mock_setup(**mock_cfg)
    for side in ("a", "b"):
        warm_token(f"p_two_keys_{side}", 900010)
    r = {}
    for label, sql in (("join", plain), ("any", any_form)):
        mock_setup(**mock_cfg)
        plan = json.loads("\n".join(psql(explain_cmd(sql))))[0]
        st = mock_stats()
        r[label] = {"time_s": plan["Execution Time"] / 1000, "rows": plan["Plan"]["Actual Rows"],
                    "requests": st["requests"], "max_in_flight": st["max_in_flight"],
                    "violations": st["violations"],
                    "batched_join": plan_has(plan["Plan"], "KIS Batched Join")}
    r["symbols"] = n
    r["join_vs_any"] = r["join"]["time_s"] / r["any"]["time_s"]
    r["met"] = (r["join_vs_any"] <= 1.1 and r["join"]["batched_join"] and
                r["join"]["rows"] == n and r["join"]["requests"] == n and
                r["join"]["violations"] == 0)
    return r


def perf_start(pid, name):
    """With BENCH_PROFILE=1 and perf installed: sample the backend (call graphs) until stopped."""
    if os.environ.get("BENCH_PROFILE") != "1" or not shutil.which("perf"):
        return None
    data = os.path.join(OUT_DIR, f"perf-{name}.data")
    p = subprocess.Popen(["perf", "record", "-q", "-F", "999", "--call-graph", "dwarf,16384",
                          "-o", data, "-p", str(pid)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # perf attaches
    return p, data


def perf_stop(handle, name):
    """Stop perf; write OUT/profile-NAME.txt: inclusive share of the named functions."""
    if handle is None:  # not profiling
        return
    p, data = handle
    p.send_signal(2)
    p.wait()
    rep = subprocess.run(["perf", "report", "-i", data, "--children", "--sort", "sym",
                          "--stdio", "-g", "none"], capture_output=True, text=True).stdout
    keep = [line for line in rep.splitlines()
            if line.strip() and (line.startswith("#") or "[.] 0x" not in line)]
    with open(os.path.join(OUT_DIR, f"profile-{name}.txt"), "w") as f:
        f.write("\n".join(keep[:160]) + "\n")
    os.unlink(data)


def floor_costs(first, n, reps):
    """What a cold request costs below kis_fdw, in the same run: bench/floor.c (built by
    run.sh, BENCH_FLOOR) asks the mock for the same answers through libcurl driven as the
    transport drives it, 8 in flight, and over one bare OpenSSL connection; process CPU
    per request, the median of reps runs of n symbols each.  None where not built."""
    if not os.environ.get("BENCH_FLOOR"):
        return None
    out = {}
    for mode in ("curl", "tls"):
        us = []
        for k in range(reps):
            mock_setup()
            start = first + (k + (reps if mode == "tls" else 0)) * n
            p = subprocess.run([os.environ["BENCH_FLOOR"], mode, str(n), str(start)],
                               capture_output=True, text=True, timeout=600)
            if p.returncode != 0:
                raise RuntimeError(f"floor {mode}: {p.stderr.strip()}")
            us.append(float(p.stdout))
            if mock_stats()["requests"] < n:
                raise RuntimeError(f"floor {mode}: the mock saw fewer than {n} requests")
        out[mode] = sorted(us)[len(us) // 2]
        out[mode + "_all"] = us
    return out


def scenario_overhead(name="overhead", endpoint="domestic_price", first=200000, n=None,
                      reps=None):
    """CPU of the backend per row (schedstat, and utime + stime as a cross-check), with no
    limit and no latency, reps scans of n fresh symbols in one warmed-up session; the
    median run is reported.  The mock (Python, about one core at most) sets the wall time."""
    n, reps = n or SIZES["overhead"], reps or SIZES["overhead-reps"]
    table = create_server(name, endpoint=endpoint, rate_limit="0", max_concurrency="8")
    mock_setup()
    s = Session()
    runs = []
    try:
        s.query(select(table, 900003, 60))  # token, connections, catalog caches
        for k in range(reps):
            mock_setup()
            prof = perf_start(s.pid, name) if k == 0 else None
            ns0, tk0, mock0 = cpu_ns(s.pid), cpu_ticks(s.pid), cpu_ticks(MOCK_PID)
            t0 = time.monotonic()
            out, err = s.query(select(table, first + k * n, n))
            wall = time.monotonic() - t0
            ns1, tk1, mock1 = cpu_ns(s.pid), cpu_ticks(s.pid), cpu_ticks(MOCK_PID)
            perf_stop(prof, name)
            if err or len(out) != n:
                raise RuntimeError(f"{name}: {len(out)} rows, stderr {err[:3]}")
            st = mock_stats()
            runs.append({"wall_s": wall, "rows_per_s": n / wall, "requests": st["requests"],
                         "cpu_us_per_row": (ns1 - ns0) / 1000 / n,
                         "cpu_us_per_row_stat": (tk1 - tk0) * 1e6 / n,
                         "cpu_us_per_request": (ns1 - ns0) / 1000 / max(st["requests"], 1),
                         "backend_cpu_share": (ns1 - ns0) / 1e9 / wall,
                         "mock_cpu_share": (mock1 - mock0) / wall,
                         "max_in_flight": st["max_in_flight"]})
    finally:
        s.close()
    per_row = [r["cpu_us_per_row"] for r in runs]
    r = dict(sorted(runs, key=lambda r: r["cpu_us_per_row"])[len(runs) // 2], rows=n,
             reps=reps, cpu_us_per_row_all=per_row, rows_per_s_all=[r["rows_per_s"] for r in runs])
    if endpoint == "domestic_price":
        r["floor"] = floor_costs(first + reps * n, n, reps)
    # a cold request of one row: issue 25's goal; a batch: per row
    r["met"] = (r["cpu_us_per_request"] <= 60 if endpoint == "domestic_price"
                else r["cpu_us_per_row"] <= 20)
    return r


def scenario_cancel(first=300000, n=None, reps=None, after_s=1.0):
    """pg_cancel_backend from a second open session, 1 s into a scan with 8 requests in
    flight; latency until the scanning psql prints the cancel error (psql prints rows only
    at the end, so rows_before_cancel stays 0: nothing is half-delivered)."""
    n, reps = n or SIZES["cancel"], reps or SIZES["cancel-reps"]
    table = create_server("cancel", rate_limit="0", max_concurrency="8")
    mock_setup(latency_ms=50)
    s, ctl = Session(), Session()
    latencies, ctl_rtts, rows_before = [], [], []
    try:
        s.query(select(table, 900004, 1))  # the token
        for i in range(reps):
            marker = s.send(select(table, first + i * n, n))
            time.sleep(after_s)
            t0 = time.perf_counter()
            ctl_out, _ = ctl.query(f"SELECT pg_cancel_backend({s.pid})")
            ctl_rtts.append(ctl_out[0][0] - t0)
            out, err = s.finish(marker)
            hit = [t for t, line in err if "canceling statement due to user request" in line]
            if not hit:
                raise RuntimeError(f"cancel {i}: no cancel error; stderr {err[:3]}")
            latencies.append(hit[0] - t0)
            rows_before.append(len(out))
        st = mock_stats()
    finally:
        s.close()
        ctl.close()
    ms = sorted(x * 1000 for x in latencies)
    p95 = ms[math.ceil(0.95 * len(ms)) - 1]  # nearest rank
    return {"reps": reps, "p50_ms": statistics.median(ms), "p95_ms": p95, "max_ms": ms[-1],
            "min_ms": ms[0], "latencies_ms": ms,
            "control_rtt_ms_median": statistics.median(ctl_rtts) * 1000,
            "requests_sent": st["requests"], "rows_before_cancel": rows_before,
            "met": p95 <= 20}


def run_seed(first, n, rate_limit, latency_ms, jitter_ms):
    """bench/seed_pattern.py as its own process, on its own app key, against the mock."""
    mock_setup(rate_limit=rate_limit, latency_ms=latency_ms, jitter_ms=jitter_ms)
    p = subprocess.run([sys.executable, os.path.join(HERE, "seed_pattern.py"), "--url", MOCK_URL,
                        "--ca", MOCK_CA, "--app-key", SEED_KEY, "--symbols", str(n),
                        "--first", str(first)], capture_output=True, text=True, timeout=300)
    out = json.loads(p.stdout)
    r = timeline_figures(mock_stats(timeline=True))
    r.update(time_s=out["elapsed_s"], rows=out["rows"], aborted=out["aborted"],
             error=out["error"])
    return r


# --------------------------------------------------------------------------- output

def write_timelines(out_dir, results, panels):
    """Per-100 ms counts and the trailing one-second count, one .dat per panel."""
    for name, *_ in panels:
        tl = results[name]["timeline"]
        end = (tl[-1] if tl else 0) + 0.3
        with open(os.path.join(out_dir, f"timeline-{name}.dat"), "w") as f:
            f.write(f"# {name}: request starts per 100 ms bin (bin start s, count)\n")
            counts = [0] * (int(end * 10) + 1)
            for t in tl:
                counts[int(t * 10)] += 1
            for i, c in enumerate(counts):
                f.write(f"{i / 10:.1f} {c}\n")
            f.write("\n\n# starts in the trailing second (time s, count)\n")
            hi = lo = 0  # tl[lo:hi] are the starts in (t - 1, t]
            for k in range(int(end * 100) + 1):
                t = k / 100
                while hi < len(tl) and tl[hi] <= t:
                    hi += 1
                while lo < hi and tl[lo] <= t - 1.0:
                    lo += 1
                f.write(f"{t:.2f} {hi - lo}\n")


def plot(out_dir, results, panels):
    """OUT/timeline.png via gnuplot: one panel per scenario, limit drawn on both axes
    (nothing when BENCH_ONLY left no scenario with a panel)."""
    if not panels:
        return
    write_timelines(out_dir, results, panels)
    gp = [f"set terminal pngcairo noenhanced size 1100,{330 * len(panels)} font ',10'",
          "set output 'timeline.png'",
          f"set multiplot layout {len(panels)},1",
          "set xlabel 'seconds since the mock was reset'",
          "set ylabel 'starts per 100 ms'", "set y2label 'starts in the trailing second'",
          "set ytics nomirror", "set y2tics", "set grid", "set key top right opaque",
          "set style fill solid 0.5 noborder"]
    for name, title, limit, client, client_label in panels:
        r = results[name]
        per_bin = collections.Counter(int(t * 10) for t in r["timeline"])
        top = max(5, max(per_bin.values(), default=0) + 2)
        gp += [f"set yrange [0:{top}]", f"set y2range [0:{top * 10}]"]
        sub = (f"achieved {r['achieved_rate']:.2f}/s, {r['requests']} requests, "
               f"{r['violations']} violations, densest second {r['densest_second']}")
        dat = f"timeline-{name}.dat"
        lines = [f"'{dat}' index 0 using ($1+0.05):2 with boxes lc rgb '#4c72b0' "
                 f"title 'starts per 100 ms'",
                 f"'{dat}' index 1 using 1:2 axes x1y2 with lines lw 2 lc rgb '#dd8452' "
                 f"title 'starts in trailing 1 s (right axis)'",
                 f"{limit / 10} with lines dt 2 lw 2 lc rgb '#c44e52' "
                 f"title 'mock limit {limit}/s (= {limit / 10:g} per 100 ms)'"]
        if client:
            lines.append(f"{client / 10} with lines dt 3 lw 2 lc rgb '#55a868' "
                         f"title '{client_label}'")
        gp += [f"set title \"{title}: {sub}\"", "plot " + ", \\\n     ".join(lines)]
    gp.append("unset multiplot")
    script = os.path.join(out_dir, "timeline.gp")
    with open(script, "w") as f:
        f.write("\n".join(gp) + "\n")
    subprocess.run(["gnuplot", "timeline.gp"], cwd=out_dir, check=True)


def table_rows(R):
    """(scenario, setup, result, ideal / target, met) for the results table, in STEPS
    order, for the scenarios in R (BENCH_ONLY may have left some out)."""
    def f(x, d=2):
        return f"{x:.{d}f}"

    def yes(ok):
        return "yes" if ok else "**no**"

    def floor_text(fl, us):
        if not fl:
            return ""
        return (f"; below kis_fdw, the same requests: libcurl alone {f(fl['curl'], 0)} µs, "
                f"one bare TLS connection {f(fl['tls'], 0)} µs (bench/floor.c); kis_fdw "
                f"{f(us / fl['curl'], 1)}× libcurl alone")

    def spread(r):
        return f"{r['reps']}: " + " / ".join(f"{x:.1f}" for x in r["cpu_us_per_row_all"])

    def two_keys(name, r):
        how = "UNION ALL of two servers" if name.endswith("union") else \
            "hash-partitioned over two servers"
        return ("two keys, " + name.split("-")[-1],
                how + f", a key each, limit 20/s each, rate_limit 19, 2 × {r['symbols'] // 2} "
                "symbols",
                f"{f(r['achieved_rate'] or 0)}/s = {f(r['of_limit'], 3)} of 2 × 19, "
                f"{r['violations']} violations, {r['requests']} requests (a "
                f"{r['requests_by_key']['a']}, b {r['requests_by_key']['b']}), {r['rows']} rows; "
                f"{f(r['time_s'])} s",
                f"ideal {f(r['ideal_s'])} s; ≥ 0.9, 0 violations, {r['symbols']} requests",
                yes(r["met"]))

    rows = {
        "rate-bound": lambda rb: (
            "rate-bound", f"limit 20/s, rate_limit 19, {n['rate-bound']} symbols, 30±10 ms",
            f"{f(rb['achieved_rate'])}/s = {f(rb['of_limit'], 3)} of 19, {rb['violations']} "
            f"violations; {f(rb['time_s'])} s", f"ideal {f(rb['ideal_s'])} s; ≥ 0.97, 0 violations",
            yes(rb["met"])),
        "latency-bound": lambda lb: (
            "latency-bound", f"no limit, 200 ms, max_concurrency 16, {n['latency-bound']} symbols",
            f"{f(lb['time_s'])} s = {f(lb['of_ideal'], 3)} of ideal; mock max in flight "
            f"{lb['max_in_flight']}", f"ideal {f(lb['ideal_s'])} s; ≥ 0.90", yes(lb["met"])),
        "shared": lambda sh: (
            "shared", f"4 sessions, one key, limit 20/s, {n['shared']} symbols each",
            f"{f(sh['achieved_rate'])}/s = {f(sh['of_limit'], 3)} of 19, {sh['violations']} "
            f"violations, {sh['tokens_issued_mock']} token; wall {f(sh['wall_s'])} s",
            f"ideal {f(sh['ideal_s'])} s; ≥ 0.90, 0 violations, 1 token", yes(sh["met"])),
        "same-symbols": lambda ss: (
            "same symbols, many sessions", f"4 sessions × 2 rounds, the same {n['same-symbols']} "
            "symbols, limit 20/s, rate_limit 19, 30±10 ms",
            f"cache_ttl_ms 5000: {ss['cached']['requests']} requests = "
            f"{f(ss['cached']['per_key'])} per distinct key, {f(ss['cached']['wall_s'])} s; "
            f"cache off (in-flight sharing): {ss['in_flight']['requests']} requests, "
            f"{f(ss['in_flight']['wall_s'])} s; no sharing: {ss['unshared']['requests']} "
            f"requests, {f(ss['unshared']['wall_s'])} s ({f(ss['speedup'], 1)}× the cached time)",
            "≤ 1.1 requests per distinct key", yes(ss["met"])),
        "batched": lambda ba: (
            "batched", f"domestic_multi_price, {n['batched']} symbols, limit 20/s",
            f"{ba['requests']} requests, {f(ba['symbols_per_request'], 1)} symbols/request, "
            f"{f(ba['time_s'])} s, {ba['violations']} violations",
            f"ideal {ba['ideal_requests']} requests; ≥ 25 symbols/request", yes(ba["met"])),
        "overhead": lambda ov: (
            "overhead", f"no limit, 0 ms, {n['overhead']:,} symbols ×{n['overhead-reps']}, "
            "max_concurrency 8",
            f"{f(ov['cpu_us_per_request'], 0)} µs backend CPU per cold request (a row each; "
            f"median of {spread(ov)}), {ov['rows_per_s']:.0f} rows/s; CPU: backend "
            f"{f(ov['backend_cpu_share'])}, mock {f(ov['mock_cpu_share'])} cores" +
            floor_text(ov.get("floor"), ov["cpu_us_per_request"]),
            "≤ 60 µs/request", yes(ov["met"])),
        "overhead-batched": lambda ob: (
            "overhead, batched", "as overhead, domestic_multi_price",
            f"{f(ob['cpu_us_per_row'], 1)} µs CPU/row (median of {spread(ob)}; "
            f"{f(ob['cpu_us_per_request'], 0)} µs/request, {ob['requests']} requests), "
            f"{ob['rows_per_s']:.0f} rows/s; CPU: backend "
            f"{f(ob['backend_cpu_share'])}, mock {f(ob['mock_cpu_share'])} cores", "≤ 20 µs/row",
            yes(ob["met"])),
        "cached-join": lambda cj: (
            "cached join", f"{n['cached-join']:,} symbols in a table joined to "
            "domestic_multi_price, every answer cached (cache_ttl_ms)",
            f"fresh sessions: kis_fdw {f(cj['kis_ms'])} ms, local table {f(cj['local_ms'])} ms "
            f"(server time, best of {cj['reps']}): {f(cj['ratio'], 1)}× the local table; "
            f"one session: {f(cj['kis_ms_session'])} ms, {f(cj['local_ms_session'])} ms: "
            f"{f(cj['ratio_session'], 1)}×; {cj['requests']} requests",
            "≤ 3× the local table, 0 requests", yes(cj["met"])),
        "live": lambda lv: (
            "live", f"{lv['symbols']} symbols on the mock's WebSocket (domestic_live, "
            f"domestic_ticks); {lv['ticks']} ticks one by one; a stream of "
            f"{lv['stream_rate']:,.0f} ticks/s (1 record a frame) for {lv['stream_s']} s, "
            "captured every second by \"seq >\"",
            f"read of {lv['symbols']}: {f(lv['read_ms_best'], 3)} ms best, "
            f"{f(lv['read_ms_median'], 3)} ms median server time (local table "
            f"{f(lv['local_ms_best'], 3)} / {f(lv['local_ms_median'], 3)} ms: "
            f"{f(lv['ratio'], 1)}× best, {f(lv['ratio_median'], 1)}× median; {lv['reps']} "
            f"reps), {lv['requests']} REST requests; tick to visible p50 "
            f"{f(lv['latency_p50_ms'])} ms, p99 {f(lv['latency_p99_ms'])} ms, max "
            f"{f(lv['latency_max_ms'])} ms (from before the HTTP POST to the mock, median "
            f"{f(lv['post_ms_median'])} ms, to the psql SELECT that saw it, round trip "
            f"{f(lv['select_rtt_ms_median'])} ms; {f(lv['polls_mean'])} SELECTs a tick), "
            f"{lv['ticks_invisible'] + lv['ticks_unsent']} of {lv['ticks']} never visible; "
            f"cancel while waiting for a first tick: median {f(lv['cancel_ms_median'])} ms, "
            f"max {f(lv['cancel_ms_max'])} ms ({len(lv['cancel_ms_all'])} cancels, from before "
            "pg_cancel_backend in another session to the ERROR); "
            f"stream: {lv['ticks_sent']:,} sent ({lv['sent_per_s']:,.0f}/s), "
            f"{lv['ticks_received']:,} received, {lv['captured']:,} captured, {lv['lost']:,} "
            f"lost; worker CPU {f(lv['worker_cpu_pct'], 1)} % of a core (mock "
            f"{f(lv['mock_cpu_pct'], 0)} %); capture backend RssAnon "
            f"{lv['anon_start_kb']:,} kB before the stream, {lv['anon_series_kb'][0]:,} after "
            f"the first capture, {lv['anon_series_kb'][(len(lv['anon_series_kb']) - 1) // 2]:,} "
            f"halfway, {lv['anon_end_kb']:,} at the end (VmRSS, shared memory touched "
            f"included: {lv['rss_start_kb']:,} → {lv['rss_end_kb']:,} kB)"
            + ("; WORKER RESTARTED" if lv["worker_restarted"] else "")
            + (f"; {lv['reconnects']} reconnects" if lv["reconnects"] else ""),
            "read < 1 ms, 0 requests; p99 ≤ 5 ms; cancel ≤ 20 ms; worker < 10 % of a core, "
            "0 lost, RSS flat (RssAnon ≤ 1 MB more over the second half)", yes(lv["met"])),
        "cancel": lambda ca: (
            "cancel", f"{n['cancel']:,} symbols, 50 ms, cancelled after 1 s, ×{n['cancel-reps']}",
            f"p50 {f(ca['p50_ms'], 1)} ms, p95 {f(ca['p95_ms'], 1)} ms, max {f(ca['max_ms'], 1)} "
            f"ms", "p95 ≤ 20 ms", yes(ca["met"])),
        "two-keys-union": lambda r: two_keys("two-keys-union", r),
        "two-keys-partitioned": lambda r: two_keys("two-keys-partitioned", r),
        "join-rate-bound": lambda r: join_row("join, rate-bound", r,
                                              "limit 20/s, rate_limit 19, 30±10 ms"),
        "join-latency-bound": lambda r: join_row("join, latency-bound", r,
                                                 "no limit, 200 ms, max_concurrency 16"),
        "join-two-keys": lambda j: (
            "join, two keys", f"{j['symbols']} symbols joined to the table hash-partitioned "
            "over two keys; limit 20/s each, rate_limit 19, 30±10 ms",
            f"plain join {j['join']['time_s']:.2f} s ({j['join']['requests']} requests, "
            f"max {j['join']['max_in_flight']} in flight, {j['join']['violations']} violations"
            f"{'' if j['join']['batched_join'] else ', NOT batched'}), ANY form "
            f"{j['any']['time_s']:.2f} s: join/ANY = {j['join_vs_any']:.2f}",
            "join ≤ 1.1× ANY", yes(j["met"])),
        "seed-rate-bound": lambda srb: (
            "seed, rate-bound", "as rate-bound; seed pattern, own key",
            f"{f(srb['time_s'])} s ({f(srb['achieved_rate'])}/s, densest second "
            f"{srb['densest_second']}), {srb['violations']} violations"
            f"{', ABORTED' if srb['aborted'] else ''}; kis_fdw {f(srb.get('speedup', 0))}× faster",
            "kis_fdw ≥ 1.5× faster", yes(srb["met"])),
        "seed-latency-bound": lambda slb: (
            "seed, latency-bound", "as latency-bound; seed pattern, own key",
            f"{f(slb['time_s'])} s, {slb['violations']} violations"
            f"{', ABORTED' if slb['aborted'] else ''}; kis_fdw {f(slb.get('speedup', 0))}× faster",
            "kis_fdw ≥ 5× faster", yes(slb["met"])),
    }
    def row(name):
        """The step's row; a step that failed, or left a figure out, says so instead."""
        r = R[name]
        if "failed" not in r:
            try:
                return rows[name](r)
            except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
                r["failed"] = f"a figure is missing or wrong: {type(exc).__name__}: {exc}"
        return (name, "—", f"**FAILED**: {r['failed']}", "—", "**failed**")

    n = SIZES
    return [row(name) for name, _ in STEPS if name in R]


def join_row(title, j, setup):
    """The results table's row of a join scenario."""
    return (title, f"{j['symbols']} symbols in a table joined on symbol; {setup}",
            f"plain join {j['join']['time_s']:.2f} s ({j['join']['requests']} requests, "
            f"max {j['join']['max_in_flight']} in flight"
            f"{'' if j['join']['batched_join'] else ', NOT batched'}), ANY form "
            f"{j['any']['time_s']:.2f} s: join/ANY = {j['join_vs_any']:.2f}; seed pattern "
            f"{j['seed']['time_s']:.2f} s ({j['seed_vs_join']:.1f}× the join)",
            "join ≤ 1.1× ANY", "yes" if j["met"] else "**no**")


def write_outputs(out_dir, R, meta):
    """results.json (every figure, timelines included) and results.md; returns the table."""
    md = ["| scenario | setup | result | ideal / target | met |", "|---|---|---|---|---|"]
    md += ["| " + " | ".join(r) + " |" for r in table_rows(R)]
    text = "\n".join(md) + "\n"
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(f"kis_fdw benchmarks, {meta['date']}, {meta['machine']}, PostgreSQL "
                f"{meta['postgres']}; CPUs {meta.get('cpu_busy_before', 0):.0%} busy "
                f"before the run, {meta.get('cpu_busy_after', 0):.0%} after"
                f"{'; QUICK mode (BENCH_QUICK=1): fewer symbols, not figures to quote' if meta.get('quick') else ''}"
                f"\n\n{text}\n"
                f"Plot: timeline.png. Suite wall time "
                f"{meta['suite_wall_s']:.0f} s (build, cluster and mock start included).\n")
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump({"meta": meta, "scenarios": R}, f, indent=1)
    return text


def cpu_busy(seconds=1.0):
    """Share of all CPUs busy over a short sample (/proc/stat): with nothing of ours
    running, this is other work on the machine, which skews the figures."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return sum(v), v[3] + v[4]  # total, idle + iowait
    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return 1 - (i1 - i0) / max(t1 - t0, 1)


def machine():
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({model}), {platform.system()} {platform.release()}"


# (scenario, title, mock limit, client limit, its label): the panels of timeline.png
PANELS = [("rate-bound", "kis_fdw, rate-bound", 20, 19, "rate_limit 19/s"),
          ("shared", "kis_fdw, 4 sessions sharing one key", 20, 19, "rate_limit 19/s"),
          ("seed-rate-bound", "seed pattern, rate-bound setup", 20, 12,
           "seed limiter 12/s (sliding window)"),
          ("batched", "kis_fdw, domestic_multi_price (30 symbols a request)", 20, 19,
           "rate_limit 19/s"),
          ("two-keys-union", "kis_fdw, UNION ALL over two keys (limit 20/s each)", 40, 38,
           "2 x rate_limit 19/s")]

STEPS = [("rate-bound", scenario_rate_bound), ("latency-bound", scenario_latency_bound),
         ("shared", scenario_shared), ("same-symbols", scenario_same_symbols),
         ("batched", scenario_batched),
         ("overhead", scenario_overhead),
         ("overhead-batched", lambda: scenario_overhead("overhead-batched",
                                                        "domestic_multi_price", 400000)),
         ("cached-join", scenario_cached_join),
         ("live", scenario_live),
         ("cancel", scenario_cancel),
         ("two-keys-union", lambda: scenario_two_keys("union", 500000)),
         ("two-keys-partitioned", lambda: scenario_two_keys("partitioned", 510000)),
         ("join-rate-bound", lambda: scenario_join("rate-bound", 600000)),
         ("join-latency-bound", lambda: scenario_join("latency-bound", 610000)),
         ("join-two-keys", scenario_join_two_keys),
         ("seed-rate-bound", lambda: run_seed(100000, SIZES["rate-bound"], 20, 30, 10)),
         ("seed-latency-bound", lambda: run_seed(110000, SIZES["latency-bound"], 0, 200, 0))]


def wait_for_server(timeout=60):
    """After a failed step: wait until the server accepts connections again (a backend
    that crashed puts it through recovery), so that the next step is not its victim."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psql("SELECT 1", db="postgres", check=False) == ["1"]:
                return
        except (OSError, subprocess.SubprocessError):
            pass
        time.sleep(0.5)


def measure():
    """Run every scenario; returns {scenario: figures}."""
    setup_database()
    R = {}
    only = os.environ.get("BENCH_ONLY", "").split()
    for name, fn in STEPS:
        if only and name not in only:
            continue
        t = time.monotonic()
        print(f"== {name}", end="", flush=True)
        try:
            R[name] = fn()
            if not isinstance(R[name], dict):
                raise TypeError(f"the scenario returned {R[name]!r}, not its figures")
        except Exception as exc:  # one step's failure, shown in its row; the others go on
            why = " ".join(f"{type(exc).__name__}: {exc}".split()).replace("|", "/")
            R[name] = {"failed": why if len(why) <= 300 else why[:297] + "..."}
            print(f" FAILED ({time.monotonic() - t:.1f} s)", flush=True)
            traceback.print_exc()
            wait_for_server()
            continue
        print(f" ({time.monotonic() - t:.1f} s)", flush=True)
    for seed, fdw, want in (("seed-rate-bound", "rate-bound", 1.5),
                            ("seed-latency-bound", "latency-bound", 5.0)):
        if seed not in R or fdw not in R or "failed" in R[seed] or "failed" in R[fdw]:
            continue
        R[seed]["kis_fdw_time_s"] = R[fdw]["time_s"]
        R[seed]["speedup"] = R[seed]["time_s"] / R[fdw]["time_s"]
        R[seed]["met"] = R[seed]["speedup"] >= want and not R[seed]["aborted"]
    return R


def main():
    """bench.py OUT_DIR measures; bench.py OUT_DIR --replot redraws OUT_DIR/results.json."""
    global OUT_DIR
    out_dir = OUT_DIR = sys.argv[1] if len(sys.argv) > 1 else OUT_DIR
    os.makedirs(out_dir, exist_ok=True)
    if "--replot" in sys.argv[2:]:
        with open(os.path.join(out_dir, "results.json")) as f:
            saved = json.load(f)
        R, meta = saved["scenarios"], saved["meta"]
        SIZES.update(meta.get("sizes", FULL_SIZES))
    else:
        busy = cpu_busy()
        if busy > 0.10:
            print(f"note: {busy:.0%} of the CPUs busy before the run: other work skews the "
                  f"figures (the CPU-bound ones most)", flush=True)
        R = measure()
        meta = {"cpu_busy_before": busy, "cpu_busy_after": cpu_busy(),
                "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                "machine": machine(), "postgres": psql("SHOW server_version")[0],
                "python": platform.python_version(), "quick": QUICK, "sizes": SIZES,
                "suite_wall_s": time.time() - float(os.environ.get("BENCH_T0", time.time()))}
    text = write_outputs(out_dir, R, meta)
    panels = [p for p in PANELS if p[0] in R and "failed" not in R[p[0]]]
    if panels:
        plot(out_dir, R, panels)
    print()
    print(text)
    print(f"wrote {out_dir}/results.json, results.md, timeline.png "
          f"(suite wall time {meta['suite_wall_s']:.0f} s)")
    failed = [name for name, r in R.items() if "failed" in r]
    if failed:
        print(f"FAILED steps: {', '.join(failed)}", file=sys.stderr)
    # the closing count CI reads (each step that ran and gave its figures)
    print(f"bench: {len(R) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
