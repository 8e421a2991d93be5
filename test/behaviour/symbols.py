"""Behaviour tests: domestic_symbols, the stock master files, one download per market
(issue 14 item 7).
"""

import hashlib
import os
import re

from kistest import mock, mock_price
from .harness import (
    MOCK_URL, MOCK_CA, DB, APP_SECRET, stats, inject, reset_mock, wait_until, check, run, Session,
    run_all, must)
from .fixtures import PlainMock


MASTER_FILES = {"KOSPI": "kospi_code.mst.zip", "KOSDAQ": "kosdaq_code.mst.zip",
                "KONEX": "konex_code.mst.zip"}
MASTER_ROWS = {"KOSPI": 805, "KOSDAQ": 1603, "KONEX": 121}   # test/mock_kis.py
APP_KEY_SYMBOLS = "PSsymbolsKeyNeverIssuedAToken0000000"  # a key with no token anywhere


def reset_downloads():
    """reset_mock, and forget the downloads kept in the store (KIS_DOWNLOAD_TTL_MS)."""
    reset_mock()
    run("SELECT kis_fdw_cache_reset()")


def symbols_table(db=DB):
    for sql in ("DROP SERVER IF EXISTS kis_master CASCADE",
                f"CREATE SERVER kis_master FOREIGN DATA WRAPPER kis_fdw OPTIONS (base_url "
                f"'{MOCK_URL}', ca_file '{MOCK_CA}', master_url '{MOCK_URL}/common/master', "
                f"max_retries '1')",
                f"CREATE USER MAPPING FOR CURRENT_USER SERVER kis_master "
                f"OPTIONS (app_key '{APP_KEY_SYMBOLS}', app_secret '{APP_SECRET}')",
                "IMPORT FOREIGN SCHEMA kis LIMIT TO (domestic_symbols) FROM SERVER kis_master "
                "INTO public"):
        must(run(sql, db=db)[:2], sql)


def test_symbols_downloads():
    """domestic_symbols downloads each market's master file once per scan (a market
    condition limits which), asks KIS for no token, retries a failed download, and
    reports an archive it cannot read as that market's failure (on_error applies)."""
    symbols_table()
    reset_downloads()
    query = "SELECT market, count(*), count(DISTINCT symbol) FROM domestic_symbols GROUP BY 1 ORDER BY 1"
    rows = must(run(query)[:2], "all markets")
    check(rows == [[m, str(n), str(n)] for m, n in sorted(MASTER_ROWS.items())], f"rows {rows}")
    st = stats()
    check(st["downloads"] == {f: 1 for f in MASTER_FILES.values()},
          f"downloads {st['downloads']}, expected one per market")
    check(st["tokens_issued"] == 0 and st["requests"] == 0,
          f"a download needs no token: tokens {st['tokens_issued']}, requests {st['requests']}")
    rows, err, rc = run(f"SELECT count(*) FROM kis_fdw_stats WHERE key_hash = "
                        f"left(encode(sha256('{APP_KEY_SYMBOLS}'), 'hex'), 12) AND tokens_issued > 0")
    check(rc == 0 and rows == [["0"]], f"kis_fdw_stats: {rows} {err}")
    reset_downloads()
    rows = must(run("SELECT count(*) FROM domestic_symbols WHERE market IN ('KOSDAQ', 'KONEX') "
                    "AND name LIKE '%종목%'")[:2], "two markets")
    check(rows == [[str(1600 + 120)]], f"two markets: {rows}")
    check(stats()["downloads"] == {MASTER_FILES["KOSDAQ"]: 1, MASTER_FILES["KONEX"]: 1},
          f"two markets: downloads {stats()['downloads']}")
    # a failed download is retried
    reset_downloads()
    inject(("http500", MASTER_FILES["KOSPI"], 1))
    rows = must(run("SELECT count(*) FROM domestic_symbols WHERE market = 'KOSPI'")[:2], "retry")
    check(rows == [[str(MASTER_ROWS["KOSPI"])]] and
          stats()["downloads"] == {MASTER_FILES["KOSPI"]: 2}, f"retry: {rows} {stats()['downloads']}")
    # an archive that cannot be read: the market's failure
    for kind, problem in (("garbage", "not a zip archive"),
                          ("truncate", "not a zip archive")):
        reset_downloads()
        inject((kind, MASTER_FILES["KONEX"], -1))
        _, err, rc = run("SELECT count(*) FROM domestic_symbols")
        check(rc != 0 and 'KIS request for market "KONEX" failed' in err and problem in err,
              f"{kind}: {err}")
        rows, err, rc = run("ALTER FOREIGN TABLE domestic_symbols OPTIONS (ADD on_error 'skip'); "
                            "SELECT market, count(*) FROM domestic_symbols GROUP BY 1 ORDER BY 1")
        check(rc == 0 and rows == [["KOSDAQ", "1603"], ["KOSPI", "805"]] and "WARNING" in err
              and "KONEX" in err, f"{kind} under on_error skip: {rows} {err}")
        run("ALTER FOREIGN TABLE domestic_symbols OPTIONS (DROP on_error)")
    run("DROP SERVER kis_master CASCADE")


def test_symbols_exact_layout():
    """Master lines are read at fixed offsets, never by stripping: a KONEX line whose last
    flag is blank keeps its fields in place; a file whose lines are not exactly 61 + tail
    bytes (KIS changed its layout) is an error naming the file and the line, never rows
    with shifted fields."""
    symbols_table()
    code = "217320"
    d = hashlib.sha256(code.encode()).hexdigest()
    price = mock_price(code)
    base = price - min(((int(d[8:16], 16) >> 8) % 201 - 100) * 10, price - 10)
    shares = 1000000 + int(hashlib.sha256(f"{code}:master".encode()).hexdigest()[0:8], 16) % 10 ** 9
    rows = must(run(f"SELECT name, group_code, base_price, lot_size, preferred_code, market_cap, "
                    f"(raw->>'lstn_stcn')::bigint FROM domestic_symbols "
                    f"WHERE market = 'KONEX' AND symbol = '{code}'")[:2], "KONEX")
    check(rows == [["썬테크", "ST", str(base), "1", "0", str(base * shares // 10 ** 8),
                    str(shares // 1000)]], f"a KONEX line with a blank last flag: {rows}")
    reset_downloads()
    inject(("layout", MASTER_FILES["KONEX"], -1))
    _, err, rc = run("SELECT count(*) FROM domestic_symbols WHERE market IN ('KONEX', 'KOSPI')")
    # every line is unreadable: more than kis_fdw's limit of such lines (docs/security.md)
    check(rc != 0 and "the master file of KONEX" in err and "line 1 of konex_code.mst: 246 "
          "bytes where a KONEX line has 245" in err, f"a changed layout: {err}")
    rows, err, rc = run("ALTER FOREIGN TABLE domestic_symbols OPTIONS (ADD on_error 'skip'); "
                        "SELECT market, count(*) FROM domestic_symbols GROUP BY 1 ORDER BY 1")
    check(rc == 0 and rows == [["KOSDAQ", "1603"], ["KOSPI", "805"]] and "konex_code.mst" in err,
          f"a changed layout under on_error skip: {rows} {err}")
    run("DROP SERVER kis_master CASCADE")


def test_symbols_without_mapping():
    """The master files are public downloads: a role with no user mapping reads
    domestic_symbols, and no token is asked for; a credentialed table on the same
    server still fails with the core's "user mapping not found", and a mapping
    without app_key still gets its error.  With a mapping the rows are the same and
    still no token is asked for, also when max_concurrency 1 makes the markets'
    downloads wait for one another (which once sent them through the token and
    the rate gate)."""
    role = "kis_no_mapping"
    symbols_table()
    run(f"DROP OWNED BY {role}; DROP ROLE {role}")  # a leftover of an earlier run
    run_all(f"CREATE ROLE {role}", f"GRANT SELECT ON domestic_symbols TO {role}",
            "CREATE FOREIGN TABLE nomap_price (symbol text, price numeric) "
            "SERVER kis_master OPTIONS (endpoint 'domestic_price')",
            f"GRANT SELECT ON nomap_price TO {role}",
            "ALTER SERVER kis_master OPTIONS (ADD max_concurrency '8')",
            f"ALTER USER MAPPING FOR CURRENT_USER SERVER kis_master "
            f"OPTIONS (SET app_key '{APP_KEY_SYMBOLS}NoMap')")
    want = [[m, str(n)] for m, n in sorted(MASTER_ROWS.items())]
    query = "SELECT market, count(*) FROM domestic_symbols GROUP BY 1 ORDER BY 1"
    try:
        # SET ROLE NONE: the session's own role, whose mapping has credentials
        for who, concurrency in ((role, "8"), (role, "1"), ("NONE", "1"), ("NONE", "8")):
            run_all(f"ALTER SERVER kis_master OPTIONS (SET max_concurrency '{concurrency}')")
            reset_downloads()
            what = f"{who}, max_concurrency {concurrency}"
            rows = must(run(f"SET ROLE {who}; {query}")[:2], what)
            st = stats()
            check(rows == want, f"{what}: rows {rows}")
            check(st["downloads"] == {f: 1 for f in MASTER_FILES.values()},
                  f"{what}: downloads {st['downloads']}")
            check(st["tokens_issued"] == 0 and st["token_rejections"] == 0 and st["requests"] == 0,
                  f"{what}: a download asks for no token: tokens {st['tokens_issued']}, "
                  f"rejections {st['token_rejections']}, requests {st['requests']}")
        rows, err, rc = run("SELECT count(*) FROM kis_fdw_stats WHERE key_hash = left(encode("
                            f"sha256('{APP_KEY_SYMBOLS}NoMap'), 'hex'), 12) AND tokens_issued > 0")
        check(rc == 0 and rows == [["0"]], f"kis_fdw_stats: {rows} {err}")
        # a table that needs credentials: the core's error, unchanged
        _, err, rc = run(f"SET ROLE {role}; SELECT * FROM nomap_price WHERE symbol = '005930'")
        check(rc != 0 and "user mapping not found" in err, f"domestic_price, no mapping: {err}")
        # a mapping without credentials: its error, also for domestic_symbols
        run_all(f"CREATE USER MAPPING FOR {role} SERVER kis_master OPTIONS (account '12345678-01')")
        for table in ("domestic_symbols", "nomap_price WHERE symbol = '005930'"):
            _, err, rc = run(f"SET ROLE {role}; SELECT count(*) FROM {table}")
            check(rc != 0 and 'user mapping for server "kis_master" has no app_key' in err,
                  f"{table}, mapping without app_key: {err}")
    finally:
        run("DROP SERVER kis_master CASCADE")
        run(f"DROP OWNED BY {role}; DROP ROLE {role}")


def test_symbols_in_euc_kr():
    """Names arrive in CP949 and are converted to the database encoding: in an EUC_KR
    database they can be searched and read back as the same text."""
    run("DROP DATABASE IF EXISTS kis_euckr", db="postgres")
    _, err, rc = run("CREATE DATABASE kis_euckr ENCODING 'EUC_KR' LC_COLLATE 'C' LC_CTYPE 'C' "
                     "TEMPLATE template0", db="postgres")
    check(rc == 0, f"CREATE DATABASE: {err}")
    try:
        must(run("CREATE EXTENSION kis_fdw", db="kis_euckr")[:2], "extension")
        symbols_table(db="kis_euckr")
        rows = must(run("SELECT symbol, name, convert_to(name, 'EUC_KR') = "
                        "convert_to('삼성전자', 'EUC_KR') FROM domestic_symbols "
                        "WHERE market = 'KOSPI' AND name LIKE '삼성전자%' ORDER BY 1",
                        db="dbname=kis_euckr client_encoding=UTF8")[:2], "EUC_KR")
        check(rows == [["005930", "삼성전자", "t"], ["005935", "삼성전자우", "f"]], f"EUC_KR: {rows}")
    finally:
        run("DROP DATABASE IF EXISTS kis_euckr", db="postgres")



def zip_archive(name, data, declared=None):
    """A zip archive of one deflated member, whose headers say it inflates to
    declared bytes (default: its real size)."""
    import struct
    import zlib
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = comp.compress(data) + comp.flush()
    usize = len(data) if declared is None else declared
    crc, fname = zlib.crc32(data), name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034b50, 20, 0, 8, 0, 0, crc, len(body), usize,
                        len(fname), 0) + fname
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 20, 20, 0, 8, 0, 0, crc, len(body),
                          usize, len(fname), 0, 0, 0, 0, 0, 0) + fname
    end = struct.pack("<IHHHHIIH", 0x06054b50, 0, 0, 1, 1, len(central),
                      len(local) + len(body), 0)
    return local + body + central + end


def serve_master(market, archive):
    """The mock serves archive as market's master file from now on."""
    import base64
    mock("/__mock/faults", {"faults": [{"kind": "file", "symbol": MASTER_FILES[market],
                                        "times": -1, "body": base64.b64encode(archive).decode()}]})


def peak_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.M).group(1))


def test_symbols_zip_limits():
    """A master file over a limit is an ERROR naming the limit, found before
    anything is inflated or parsed: a zip bomb (3 kB of deflate, 3 MB of short
    lines, each once an error row), a member that says it is huge, too many
    unreadable lines leave the backend's peak memory where it was; too many
    listings."""
    symbols_table()
    query = "SELECT count(*) FROM domestic_symbols WHERE market = 'KOSPI'"
    import io
    import zipfile
    import mock_kis
    real = zipfile.ZipFile(io.BytesIO(mock_kis.master_zip("kospi"))).read("kospi_code.mst")
    line = real.split(b"\n")[0].rstrip(b"\r")
    listings = b"".join(b"%06d" % i + line[6:] + b"\n" for i in range(20001))
    cases = (
        ("a bomb", zip_archive("kospi_code.mst", b"x\r\n" * 1000000),
         "inflates more than kis_fdw's limit of 100 to 1"),
        ("a member said to be huge", zip_archive("kospi_code.mst", os.urandom(200000), 17 << 20),
         "larger than kis_fdw's limit of 16777216 bytes"),
        ("101 unreadable lines", zip_archive("kospi_code.mst", b"x\r\n" * 101),
         "more than kis_fdw's limit of 100 lines cannot be read (the first: line 1 of "
         "kospi_code.mst"),
        # last: 20000 listings are allowed, and their rows take memory
        ("20001 listings", zip_archive("kospi_code.mst", listings),
         "more than kis_fdw's limit of 20000 listings"))
    try:
        with Session() as s:
            must(s.query(query), "warm-up")
            before = peak_rss_kb(s.pid())
            for what, archive, limit in cases:
                reset_downloads()
                serve_master("KOSPI", archive)
                rows, err = s.query(query)
                check(not rows and "ERROR" in err and limit in err,
                      f"{what} ({len(archive)} bytes): {rows} {err}")
                check(s.alive, f"{what}: the session is gone")
                grew = peak_rss_kb(s.pid()) - before
                check(grew < 32 * 1024 or "listings" in what,
                      f"{what}: the backend's peak memory grew by {grew} kB")
    finally:
        reset_downloads()
        run("DROP SERVER kis_master CASCADE")


def test_symbols_downloads_shared():
    """Sessions share a download: one that starts while another's download of the
    same file is on its way waits for it, and a later one within the download TTL
    is served from the store.  Three queries, one download."""
    symbols_table()
    query = "SELECT count(*) FROM domestic_symbols WHERE market = 'KOSPI'"
    want = [[str(MASTER_ROWS["KOSPI"])]]
    reset_downloads()
    mock("/__mock/faults", {"faults": [{"kind": "slow", "symbol": MASTER_FILES["KOSPI"],
                                        "ms": 2000}]})
    try:
        with Session() as a, Session() as b:
            first = a.background(query)
            wait_until(lambda: stats()["downloads"].get(MASTER_FILES["KOSPI"]) == 1,
                       "the first session's download to reach the mock")
            rows, err = b.query(query)
            check(rows == want, f"the second session: {rows} {err}")
            first.join()
            check(first.result[0] == want, f"the first session: {first.result}")
        rows = must(run(query)[:2], "a later query")
        check(rows == want, f"a later query: {rows}")
        check(stats()["downloads"] == {MASTER_FILES["KOSPI"]: 1},
              f"three queries, downloads {stats()['downloads']}")
    finally:
        run("DROP SERVER kis_master CASCADE")


def test_master_url_upper_case_scheme():
    """master_url 'HTTP://...' passes the validator, so downloads must work with it
    too (its scheme is read in lower case, as base_url's)."""
    with PlainMock() as plain:
        try:
            symbols_table()
            run_all("ALTER SERVER kis_master OPTIONS (SET master_url "
                    f"'HTTP://127.0.0.1:{plain.port}/common/master')")
            rows, err, rc = run("SELECT count(*) FROM domestic_symbols WHERE market = 'KONEX'")
            check(rc == 0 and rows == [[str(MASTER_ROWS["KONEX"])]],
                  f"master_url 'HTTP://...': {rows} {err}")
        finally:
            run("DROP SERVER IF EXISTS kis_master CASCADE")
