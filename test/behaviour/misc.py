"""Behaviour tests: the rest.  Connections (connect_timeout_ms, keep-alive, base_url's
scheme and host name), the README's recipe and tables checked against the catalogue,
the docs/ files source comments cite, jansson's allocator left to other modules.
"""

import os
import subprocess
import tempfile

from kistest import PSQL, mock
from .harness import (
    MOCK_URL, MOCK_CA, WORK, PGHOST, PGPORT, DB, WAIT, TEST_DIR, ROOT, stats, inject, reset_mock,
    symbols, sql_list, Skipped, check, check_prices, run, Session, run_all, must, create_server,
    set_server, wait_until)
from .fixtures import run_with_pg_cron, PlainMock


def test_connect_timeout():
    """connect_timeout_ms bounds the connection (TLS handshake included) on its
    own: a server that accepts TCP but never answers the handshake fails the
    key after connect_timeout_ms, not after timeout_ms."""
    import socket
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes the TCP handshake; nobody reads
    port = silent.getsockname()[1]
    try:
        create_server("kis_silent", "kis_prices_silent",
                      f"base_url 'https://127.0.0.1:{port}', ca_file '{MOCK_CA}', rate_limit '0', "
                      "timeout_ms '600000', connect_timeout_ms '200', max_retries '0'")
        rows, err, rc = run("SET statement_timeout = '30s'; "
                            f"SELECT symbol, price FROM kis_prices_silent WHERE symbol = '{symbols(1)[0]}'")
        check(rc != 0 and "connect_timeout_ms (200 ms)" in err and "statement timeout" not in err,
              f"expected the connect timeout: {err}")
    finally:
        silent.close()
        run("DROP SERVER IF EXISTS kis_silent CASCADE")


def test_mv_refresh_with_pg_cron():
    """The README's recipe: a quotes materialized view refreshed by pg_cron;
    a failed refresh (KIS down, on_error 'error') keeps the previous rows."""
    syms = symbols(3)
    run_all("DROP MATERIALIZED VIEW IF EXISTS quotes",
            f"CREATE MATERIALIZED VIEW quotes AS SELECT symbol, price, fetched_at "
            f"FROM kis_prices WHERE symbol = ANY (ARRAY[{sql_list(syms)}])",
            "CREATE UNIQUE INDEX ON quotes (symbol)",
            "REFRESH MATERIALIZED VIEW CONCURRENTLY quotes")
    before, _, _ = run("SELECT symbol, price, fetched_at FROM quotes ORDER BY symbol")
    check_prices([r[:2] for r in before], syms, "materialized quotes")

    # KIS failing for every symbol: the refresh errors and the old rows stay
    inject(*[("http500", s, -1) for s in syms])
    _, err, rc = run("REFRESH MATERIALIZED VIEW CONCURRENTLY quotes")
    check(rc != 0 and "KIS request for symbol" in err, f"refresh did not fail cleanly: {err}")
    after_failure, _, _ = run("SELECT symbol, price, fetched_at FROM quotes ORDER BY symbol")
    check(after_failure == before, f"a failed refresh changed the view: {after_failure}")
    reset_mock()

    # pg_cron runs the refresh; the view goes in every case (a later test makes a "quotes")
    try:
        if os.environ.get("KIS_PG_CRON") != "1":
            raise Skipped("no pg_cron for this PostgreSQL major (the failed-refresh half passed)")
        run_with_pg_cron("kis_quotes", "REFRESH MATERIALIZED VIEW CONCURRENTLY quotes")
        after, _, _ = run("SELECT symbol, price, fetched_at > "
                          f"'{before[0][2]}'::timestamptz FROM quotes ORDER BY symbol")
        check_prices([r[:2] for r in after], syms, "quotes after the scheduled refresh")
        check(all(r[2] == "t" for r in after), f"pg_cron's refresh did not refetch: {after}")
    finally:
        run("DROP MATERIALIZED VIEW quotes")


def ran(result, what):
    """run()'s result of a statement that must succeed without a WARNING: its rows."""
    rows, err, rc = result
    check(rc == 0 and "WARNING" not in err, f"{what}: {err}")
    return rows


def _tick_capture_recipe():
    """The README's tick-capture statements, as written."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    block = readme.split("<!-- tick-capture:begin -->\n```sql\n", 1)[1].split("```", 1)[0]
    create, subscribe, schedule = [st.strip() for st in block.split(";\n") if st.strip()]
    body = schedule.split("$$", 2)[1].strip()
    return create, subscribe, body


def test_tick_capture_recipe():
    """The README's tick capture: pin the watch list, then INSERT what domestic_ticks
    has past the history's max(seq), through pg_cron where the major has it.  Every
    tick the mock sent for the watch list is stored once; a second capture appends
    only the new ones."""
    create, subscribe, capture = _tick_capture_recipe()
    watch = ["005930", "000660"]
    run_all("DROP TABLE IF EXISTS tick_history, watchlist",
            "DROP FOREIGN TABLE IF EXISTS domestic_ticks",
            "CREATE TABLE watchlist (symbol text)",
            "INSERT INTO watchlist VALUES " + ", ".join("('%s')" % w for w in watch),
            "IMPORT FOREIGN SCHEMA kis LIMIT TO (domestic_ticks) FROM SERVER kis INTO public")
    try:
        run_all(create)
        rows = ran(run(subscribe), "the recipe's subscribe")
        check(rows == [["2"]], f"kis_fdw_live_subscribe took {rows}")
        # what earlier tests left in the ring is not this test's: the history
        # starts at the ring's newest tick, a row that the checks leave out
        ran(run("INSERT INTO tick_history (seq) SELECT coalesce(max(seq), 0) FROM domestic_ticks"),
             "the starting point")

        def send(n):
            for w in watch:
                got = mock("/__mock/ws/tick", {"tr_id": "H0STCNT0", "tr_key": w, "count": n})
                check(got.get("sent") == n, f"the mock sent {got} ticks of {w}")

        def history():
            r = ran(run("SELECT symbol, count(*), count(DISTINCT seq) FROM tick_history "
                         "WHERE symbol IS NOT NULL GROUP BY symbol ORDER BY symbol"), "tick_history")
            return {sym: (int(n), int(d)) for sym, n, d in r}

        def arrived(n):
            r = ran(run("SELECT symbol, count(*) FROM domestic_ticks WHERE symbol IN "
                         f"({sql_list(watch)}) AND seq > (SELECT coalesce(max(seq), 0) "
                         "FROM tick_history) GROUP BY symbol ORDER BY symbol"), "ticks")
            return r == [[w, str(n)] for w in sorted(watch)]

        send(3)
        wait_until(lambda: arrived(3), "the ticks in the ring")
        if os.environ.get("KIS_PG_CRON") == "1":
            run_with_pg_cron("kis_ticks", capture)
        else:
            ran(run(capture), "the capture")
        first = history()
        check(first == {w: (3, 3) for w in watch}, f"first capture stored {first}")
        send(2)
        wait_until(lambda: arrived(2), "the new ticks in the ring")
        ran(run(capture), "the second capture")
        second = history()
        check(second == {w: (5, 5) for w in watch}, f"second capture stored {second}")
    finally:
        run(f"SELECT kis_fdw_live_unsubscribe('kis', ARRAY[{sql_list(watch)}])")
        run_all("DROP TABLE IF EXISTS tick_history, watchlist",
                "DROP FOREIGN TABLE IF EXISTS domestic_ticks")


def test_keepalive_reuse():
    set_server(max_concurrency="4")
    first, second = symbols(20), symbols(20)
    with Session() as s:
        check_prices(must(s.query(f"SELECT symbol, price FROM kis_prices "
                                  f"WHERE symbol IN ({sql_list(first)})"), "first"), first)
        opened = stats()["connections_opened"]
        check(1 <= opened <= 5, f"first query opened {opened} connections, expected 1..5")
        check_prices(must(s.query(f"SELECT symbol, price FROM kis_prices "
                                  f"WHERE symbol IN ({sql_list(second)})"), "second"), second)
        again = stats()["connections_opened"]
    print(f"    (connections_opened {opened} then {again})")
    check(again == opened, f"second query opened {again - opened} new connections")


def test_readme_tables_in_sync():
    """The README's endpoint and column tables are what the catalogue says."""
    root = ROOT
    p = subprocess.run([PSQL, "-X", "-q", "-h", PGHOST, "-p", PGPORT, "-U", "postgres", "-d", DB,
                        "-f", os.path.join(root, "scripts", "endpoint-tables.sql")],
                       capture_output=True, text=True, timeout=WAIT)
    check(p.returncode == 0 and not p.stderr, f"endpoint-tables.sql: {p.stderr}")
    with open(os.path.join(root, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    begin, end = "<!-- endpoint-tables:begin -->\n", "<!-- endpoint-tables:end -->"
    check(begin in readme and end in readme, "README has no endpoint-tables markers")
    section = readme.split(begin, 1)[1].split(end, 1)[0]
    check(section.strip() == p.stdout.strip(),
          "README's endpoint tables differ from the catalogue: regenerate them with "
          "psql -X -q -f scripts/endpoint-tables.sql")


def test_readme_layout_matches_src():
    """The README's layout table names every file in src/ (the map tells the truth),
    and no file that is gone."""
    import re
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    layout = readme.split("## Layout\n", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"src/(\w+)\.c", layout)) | set(re.findall(r"`(\w+)\.h`", layout))
    named |= {n for n in re.findall(r"src/(\w+)\.h", layout)}
    sources = {f[:-2] for f in os.listdir(os.path.join(ROOT, "src")) if f.endswith(".c")}
    private = {f[:-2] for f in os.listdir(os.path.join(ROOT, "src"))
               if f.endswith(".h") and f[:-2] not in sources}
    missing = sorted((sources | private) - named)
    gone = sorted(n for n in re.findall(r"src/(\w+)\.c", layout) if n not in sources)
    check(not missing and not gone,
          f"README layout: src files missing {missing}, files named that are gone {gone}")


def test_upper_case_scheme():
    """base_url 'HTTP://...' passes the validator, so requests must work with it too."""
    with PlainMock() as plain:
        try:
            create_server("kis_upper", "kis_prices_upper",
                          f"base_url 'HTTP://127.0.0.1:{plain.port}', rate_limit '0'")
            syms = symbols(2)
            rows, err, rc = run(f"SELECT symbol, price FROM kis_prices_upper "
                                f"WHERE symbol IN ({sql_list(syms)})")
            check(rc == 0, f"a server with base_url 'HTTP://...' failed: {err}")
            check_prices(rows, syms)
        finally:
            run("DROP SERVER IF EXISTS kis_upper CASCADE")


def _blocked_signals(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("SigBlk:"):
                return line.split()[1]
    raise AssertionError("no SigBlk")


def test_host_name():
    """base_url with a host name, not only an IP address.  Signals are blocked only while
    curl starts a resolve (docs/design.md, "Name resolution"): after a scan whose name
    started curl's resolver thread, the backend's mask is what it was, and it still takes
    a cancel."""
    import socket
    port = MOCK_URL.rsplit(":", 1)[1].rstrip("/")
    # curl answers "localhost" itself; the machine's own name goes to getaddrinfo on a
    # thread, whatever it then resolves to (the certificate names neither: an error)
    own = socket.gethostname()
    check(own.lower() != "localhost", "this machine is named localhost")
    try:
        create_server("kis_byname", "kis_prices_byname",
                      f"base_url 'https://localhost:{port}', ca_file '{MOCK_CA}', rate_limit '0'")
        create_server("kis_byown", "kis_prices_byown",
                      f"base_url 'https://{own}:{port}', ca_file '{MOCK_CA}', rate_limit '0', "
                      f"connect_timeout_ms '2000'")
        syms = symbols(3)
        with Session() as s:
            pid = s.pid()
            before = _blocked_signals(pid)
            check_prices(must(s.query(f"SELECT symbol, price FROM kis_prices_byname "
                                      f"WHERE symbol IN ({sql_list(syms)})"), "by name"), syms)
            _, err = s.query(f"SELECT symbol, price FROM kis_prices_byown "
                             f"WHERE symbol = '{syms[0]}'")
            check("ERROR" in err and own in err, f"by the machine's name {own!r}: {err!r}")
            check(s.alive, "the backend died")
            after = _blocked_signals(pid)
            check(after == before, f"signals blocked before the scans {before}, after {after}")
            _, err = s.query("SELECT pg_sleep(30) FROM (SELECT pg_cancel_backend(pg_backend_pid())) c")
            check("canceling statement due to user request" in err,
                  f"a cancel after the scans: {err!r}")
    finally:
        run("DROP SERVER IF EXISTS kis_byname CASCADE")
        run("DROP SERVER IF EXISTS kis_byown CASCADE")


def test_docs_cited_exist():
    """Source comments cite the project's own docs/ files, and those files exist."""
    import re
    root = ROOT
    cited, stray = set(), []
    for d in ("", "src", "fuzz", "test", "test/behaviour", "bench", "scripts"):
        for name in sorted(os.listdir(os.path.join(root, d))):
            if not name.endswith((".c", ".h", ".sql", ".py", ".sh")):
                continue
            with open(os.path.join(root, d, name), encoding="utf-8") as f:
                text = f.read()
            cited.update(re.findall(r"docs/([\w.-]+\.md)", text))
            stray += [f"{d}/{name}: {m}" for m in re.findall(r"(?<!docs/)\b(DESIGN\.md|kis-api\.md)", text)]
            stray += [f"{d}/{name}: {m}" for m in re.findall(r"(?<![\w/.])(shared/[\w.-]+\.md)", text)]
    check(not stray, f"comments cite files outside docs/: {stray}")
    missing = [c for c in sorted(cited) if not os.path.exists(os.path.join(root, "docs", c))]
    check(cited and not missing, f"cited docs missing: {missing} (cited: {sorted(cited)})")


def test_jansson_untouched():
    """kis_fdw leaves jansson's process-wide allocator to other modules: a module
    using jansson in a backend that ran kis_fdw scans still gets malloc and free."""
    here = TEST_DIR
    pg_config = os.environ.get("PG_CONFIG") or os.path.join(os.environ["KIS_PGBIN"], "pg_config")
    include = subprocess.run([pg_config, "--includedir-server"], capture_output=True, text=True,
                             check=True).stdout.strip()
    build = tempfile.mkdtemp(prefix="jansson_probe.", dir=WORK)
    lib = os.path.join(build, "jansson_probe.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-I", include, "-o", lib,
                    os.path.join(here, "jansson_probe.c"), "-ljansson"], check=True)
    os.chmod(build, 0o755)
    syms = symbols(3)
    try:
        with Session() as s:
            check_prices(must(s.query(f"SELECT symbol, price FROM kis_prices "
                                      f"WHERE symbol IN ({sql_list(syms)})"), "scan"), syms)
            must(s.query(f"CREATE FUNCTION jansson_probe_allocator() RETURNS boolean "
                         f"AS '{lib}' LANGUAGE C STRICT"), "create probe")
            rows = must(s.query("SELECT jansson_probe_allocator()"), "probe")
            check(rows == [["t"]], f"jansson's allocator was changed in this backend: {rows}")
    finally:
        run("DROP FUNCTION IF EXISTS jansson_probe_allocator()")
