#!/usr/bin/env python3
"""test/sqlsmith/run.py: random queries (sqlsmith) against kis tables under assertions.

Run by test/sqlsmith/run.sh, which starts the target cluster (kis_fdw preloaded, the
database of test/sqlsmith/schema.sql) and names it and the mock in the environment:

    run.py --queries N --seeds S[,S...] [--sample N]

1. Replays every reproducer in test/sqlsmith/repro/ (one statement each, a fresh
   session, statement_timeout 10 s): it passes when the backend survives, the server
   log shows no TRAP or crash, and the error (if any) is not SQLSTATE class XX.
2. Runs sqlsmith once per seed (--max-queries N, --exclude-catalog, as role smith),
   logging its errors with their query into a database of another cluster (--log-to:
   a crash restarts every session of the target, the log's included).
3. Fails when any query crashed a backend (the connection lost, SQLSTATE 08000),
   raised a TRAP, or an error of class XX (XX000: elog's "cannot happen") that is not
   PostgreSQL's own (core-errors.txt), or hung (no query ended for HANG_S seconds,
   although sqlsmith sets statement_timeout 1 s); each such query is written to
   test/sqlsmith/repro/ as a reproducer (one per distinct message, unless one with
   that message is there already) for step 1 of every later run.

The counts printed (queries generated, errors by kind, mock requests, kis scans) say
how much of the run reached kis tables.  With --sample N, the first N queries of the
first seed (sqlsmith --dry-run) are EXPLAINed and those planned with a KIS Batched
Join counted.  Prints "N passed, M failed" last, like the other suites.
"""

import argparse
import hashlib
import json
import os
import re
import ssl
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPRO = os.path.join(HERE, "repro")
ENV = os.environ
PSQL = os.path.join(ENV["KIS_PGBIN"], "psql")
SERVER_LOG = ENV["KIS_SMITH_LOG"]
HOST, PORT = ENV["KIS_SMITH_HOST"], ENV["KIS_SMITH_PORT"]
TARGET = f"host={HOST} port={PORT} dbname=kis_smith user=smith"
ADMIN = f"host={HOST} port={PORT} dbname=kis_smith user=postgres"
LOGDB = f"host={ENV['KIS_PGHOST']} port={ENV['KIS_PGPORT']} dbname=smithlog user=postgres"
CORE = os.path.join(HERE, "core-errors.txt")
HANG_S = 120    # no query ended for this long: a hang (sqlsmith's statement_timeout is 1 s)
CRASH_RE = re.compile(r"TRAP:|terminated by signal|PANIC:|was terminated by exception")

# the tables --log-to fills (sqlsmith 1.4's log.cc writes these columns)
LOG_SCHEMA = """
CREATE TABLE instance (id bigserial PRIMARY KEY, rev text, target text, hostname text,
                       version text, seed text, t timestamptz DEFAULT now());
CREATE TABLE error (id bigint, msg text, query text, sqlstate text,
                    t timestamptz DEFAULT now());
CREATE TABLE stat (id bigint, generated bigint, level float8, nodes float8,
                   retries float8, impedance text, updated timestamptz);
"""


def psql(conninfo, sql, options=None, check=True, timeout=None):
    env = dict(ENV, PGOPTIONS=options or "")
    p = subprocess.run([PSQL, "-X", "-q", "-At", "-v", "VERBOSITY=verbose",
                        "-d", conninfo, "-c", sql],
                       env=env, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"psql failed ({p.returncode}): {sql[:200]}\n{p.stderr}")
    return p


def log_size():
    return os.path.getsize(SERVER_LOG)


def log_since(offset):
    with open(SERVER_LOG, "rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace")


def wait_ready(limit=120):
    """After a crash the postmaster reinitializes: wait until it accepts us again."""
    for _ in range(limit * 4):
        if psql(ADMIN, "SELECT 1", check=False).returncode == 0:
            return
        time.sleep(0.25)
    raise RuntimeError("the target cluster did not come back")


def mock_stats():
    ctx = ssl.create_default_context(cafile=ENV["KIS_MOCK_CA"])
    with urllib.request.urlopen(ENV["KIS_MOCK_URL"] + "/__mock/stats", context=ctx) as r:
        return json.load(r)


def first_line(msg):
    return (msg or "").strip().splitlines()[0] if (msg or "").strip() else ""


def normalized(kind, msg):
    """The key of a finding: its first line without numbers (and, but for a TRAP's
    assertion and file, without quoted names), so that variants of one defect, e.g.
    "wrong varnullingrels (b 4) ... for Var 3/2", are one."""
    line = first_line(msg)
    if not line.startswith("TRAP:"):
        line = re.sub(r'"[^"]*"', '"?"', line)
    return kind + ": " + re.sub(r"\d+", "N", line)


def crash_events(log):
    """What each backend crash in a piece of the server log was: its TRAP line, else
    the signal (in the order the postmaster reported them)."""
    events, trap = [], None
    for line in log.splitlines():
        if "TRAP:" in line:
            trap = re.sub(r",? PID: \d+", "", line[line.index("TRAP:"):].strip())
        m = re.search(r"was terminated by (signal \d+.*|exception.*)$", line)
        if m:
            events.append(trap or ("crash: " + m.group(1)))
            trap = None
    return events


def known_findings():
    """The keys of the reproducers in the tree (their first line says)."""
    keys = set()
    for name in os.listdir(REPRO):
        if name.endswith(".sql"):
            with open(os.path.join(REPRO, name), encoding="utf-8") as f:
                m = re.match(r"-- sqlsmith \(seed [^)]*\): ([^:]+): (.*)", f.readline())
            if m:
                keys.add(normalized(m.group(1), m.group(2)))
    return keys


# ---------------------------------------------------------------- 1. reproducers

def replay(path):
    """None when the statement of path runs without a crash, TRAP or XX error, else why."""
    with open(path, encoding="utf-8") as f:
        sql = f.read()
    before = log_size()
    try:
        p = psql(TARGET, sql, options="-c statement_timeout=10s -c client_min_messages=error",
                 check=False, timeout=HANG_S)
    except subprocess.TimeoutExpired:
        psql(ADMIN, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
             "WHERE usename = 'smith'", check=False)
        return f"hang: no answer in {HANG_S} s with statement_timeout 10 s"
    out = p.stdout + p.stderr
    crash = CRASH_RE.findall(log_since(before))
    if p.returncode == 2 or crash:
        wait_ready()
        trap = [l for l in log_since(before).splitlines() if "TRAP:" in l]
        return "crash: " + (trap[0].strip() if trap else first_line(out))
    m = re.search(r"ERROR:\s+(XX\d\d\d): (.*)", out)
    if m:
        return f"{m.group(1)}: {m.group(2)}"
    return None


def replay_all():
    passed = failed = 0
    for name in sorted(os.listdir(REPRO)):
        if not name.endswith(".sql"):
            continue
        why = replay(os.path.join(REPRO, name))
        if why is None:
            print(f"ok sqlsmith reproducer {name}")
            passed += 1
        else:
            print(f"FAIL sqlsmith reproducer {name}: {why}")
            failed += 1
    return passed, failed


# ---------------------------------------------------------------- 2. sqlsmith

def stuck_query():
    """The statement sqlsmith's backend runs now, if any."""
    return psql(ADMIN, "SELECT query FROM pg_stat_activity WHERE state = 'active' "
                "AND application_name LIKE 'sqlsmith%dut' LIMIT 1").stdout.strip()


def run_sqlsmith(seed, queries, work):
    """One sqlsmith run: (instance id, queries generated, the statement it hung on
    or None).  sqlsmith prints a character a query: silent for HANG_S seconds, with
    its statement_timeout 1 s, the backend hangs; it is terminated then."""
    err_path = os.path.join(work, f"sqlsmith-{seed}.log")
    before = psql(LOGDB, "SELECT coalesce(max(id), 0) FROM instance").stdout.strip()
    hung = None
    with open(err_path, "w") as err:
        p = subprocess.Popen(["sqlsmith", f"--target={TARGET}", f"--log-to={LOGDB}",
                              f"--seed={seed}", f"--max-queries={queries}",
                              "--exclude-catalog", "--verbose"],
                             stdout=subprocess.DEVNULL, stderr=err)
        size, since = -1, time.monotonic()
        while p.poll() is None:
            time.sleep(1)
            now_size = os.path.getsize(err_path)
            if now_size != size:
                size, since = now_size, time.monotonic()
            elif time.monotonic() - since > HANG_S and hung is None:
                hung = stuck_query() or "(no active statement)"
                psql(ADMIN, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE application_name LIKE 'sqlsmith%dut'", check=False)
                p.kill()
        p.wait()
    with open(err_path, errors="replace") as f:
        text = f.read()
    m = re.findall(r"^queries: (\d+)", text, re.M)
    generated = int(m[-1]) if m else 0
    iid = psql(LOGDB, f"SELECT id FROM instance WHERE id > {before} ORDER BY id LIMIT 1").stdout.strip()
    if (p.returncode != 0 and hung is None) or not iid:
        raise RuntimeError(f"sqlsmith seed {seed} failed ({p.returncode}):\n{text[-2000:]}")
    return int(iid), generated, hung


def findings(iid):
    """[(kind, message, query)] of one run: crashes and class XX errors."""
    out = psql(LOGDB, f"""
        SELECT json_agg(json_build_array(sqlstate, msg, query) ORDER BY t)
        FROM error WHERE id = {iid}
          AND (sqlstate LIKE 'XX%' OR sqlstate = '08000'
               OR msg ~ 'server closed the connection unexpectedly')""").stdout.strip()
    rows = json.loads(out) if out else []
    return [("crash" if s == "08000" or "server closed" in (m or "") else s, m, q)
            for s, m, q in rows or []]


def error_summary(iid):
    out = psql(LOGDB, f"""
        SELECT json_agg(json_build_array(n, e) ORDER BY n DESC) FROM (
          SELECT count(*) n, left(split_part(msg, E'\\n', 1), 90) e FROM error
          WHERE id = {iid} GROUP BY 2 ORDER BY 1 DESC LIMIT 12) s""").stdout.strip()
    return json.loads(out) if out else []


def core_errors():
    """The patterns of core-errors.txt: PostgreSQL's own internal errors."""
    with open(CORE, encoding="utf-8") as f:
        return [re.compile(line.strip()) for line in f
                if line.strip() and not line.startswith("#")]


def save(kind, detail, query, seed):
    body = query.strip().rstrip(";")
    digest = hashlib.sha1(body.encode()).hexdigest()[:12]
    name = f"{kind.lower()}-{digest}.sql"
    path = os.path.join(REPRO, name)
    if not os.path.exists(path):
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"-- sqlsmith (seed {seed}): {kind}: {detail}\n{body};\n")
    return name


# ---------------------------------------------------------------- batched join sample

def sample_plans(seed, n, work):
    """Of sqlsmith's first n queries for seed, how many plan a KIS Batched Join."""
    gen = subprocess.run(["sqlsmith", f"--target={TARGET}", f"--seed={seed}",
                          f"--max-queries={n}", "--exclude-catalog", "--dry-run"],
                         capture_output=True, text=True)
    queries = [q.strip() for q in re.split(r";\n", gen.stdout) if q.strip()]
    script = os.path.join(work, f"sample-{seed}.sql")
    with open(script, "w") as f:
        for q in queries:
            f.write(f"EXPLAIN (COSTS OFF)\n{q};\n")
    p = subprocess.run([PSQL, "-X", "-q", "-d", TARGET, "-f", script],
                       env=dict(ENV, PGOPTIONS="-c statement_timeout=2s"),
                       capture_output=True, text=True)
    blocks = re.split(r"^ *QUERY PLAN *$", p.stdout, flags=re.M)[1:]
    plans = len(blocks)
    kis = sum(1 for b in blocks if "Foreign Scan" in b or "KIS Batched Join" in b)
    batched = sum(1 for b in blocks if "KIS Batched Join" in b)
    return len(queries), plans, kis, batched


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--sample", type=int, default=0)
    ap.add_argument("--no-save", action="store_true", help="report findings, write no file")
    args = ap.parse_args()
    work = ENV["KIS_WORK"]
    os.makedirs(REPRO, exist_ok=True)

    passed, failed = replay_all()

    psql(f"host={ENV['KIS_PGHOST']} port={ENV['KIS_PGPORT']} dbname=postgres user=postgres",
         "DROP DATABASE IF EXISTS smithlog", check=False)
    psql(f"host={ENV['KIS_PGHOST']} port={ENV['KIS_PGPORT']} dbname=postgres user=postgres",
         "CREATE DATABASE smithlog")
    psql(LOGDB, LOG_SCHEMA)

    total = 0
    requests0 = mock_stats()["requests"]
    for seed in [s for s in args.seeds.split(",") if s]:
        before = log_size()
        iid, generated, hung = run_sqlsmith(seed, args.queries, work)
        total += generated
        found = findings(iid)
        if hung is not None:
            found.append(("hang", f"no query ended in {HANG_S} s (statement_timeout 1 s)", hung))
        events = crash_events(log_since(before))
        print(f"sqlsmith seed {seed}: {generated} queries; errors by message:")
        for n, e in error_summary(iid):
            print(f"  {n:7d}  {e}")
        # a crash's query goes with the postmaster's report of it, in order
        crashes = iter(events)
        known, core = known_findings(), core_errors()
        seen, saved, in_core = set(), [], 0
        for kind, msg, query in found:
            if kind == "crash":
                msg = next(crashes, "crash: " + first_line(msg))
            detail = " ".join(first_line(msg).split())[:200]
            if kind.startswith("XX") and any(p.search(detail) for p in core):
                in_core += 1
                continue
            key = normalized(kind, detail)
            if key in seen:
                continue
            seen.add(key)
            if key in known or args.no_save or query.startswith("(no active"):
                saved.append(f"{kind}: {detail} (known)")
            else:
                saved.append(f"{kind}: {detail} -> repro/{save(kind, detail, query, seed)}")
        crashes_in_log = events
        found = [f for f in found
                 if not f[0].startswith("XX") or not any(p.search(f[1]) for p in core)]
        if in_core:
            print(f"  ({in_core} internal errors of PostgreSQL itself, core-errors.txt)")
        if found or crashes_in_log:
            failed += 1
            print(f"FAIL sqlsmith seed {seed}: {len(found)} queries crashed or raised XX, "
                  f"{len(crashes_in_log)} backend crashes in the server log")
            for line in saved:
                print(f"  {line}")
            if crashes_in_log:
                wait_ready()
        else:
            passed += 1
            print(f"ok sqlsmith seed {seed} ({generated} queries)")

    scans = psql(ADMIN, "SELECT coalesce(sum(scans), 0) FROM kis_fdw_stats").stdout.strip()
    print(f"sqlsmith: {total} queries in all; the mock answered "
          f"{mock_stats()['requests'] - requests0} API requests; kis scans: {scans}")
    if args.sample:
        seed = args.seeds.split(",")[0]
        n, plans, kis, batched = sample_plans(seed, args.sample, work)
        print(f"sample of seed {seed}: {n} queries, {plans} planned, {kis} with a kis scan, "
              f"{batched} with a KIS Batched Join")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
