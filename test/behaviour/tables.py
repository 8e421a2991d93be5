"""Behaviour tests: paging through the tables.  Holdings (a follow-up page that says
the data changed, a virtual account); domestic_minute (time paging) and market_holidays
(cursor paging over a date range) (issue 14 items 8 and 9); daily tables read every bar
their pushed-down range allows (issue 13 item 3).
"""

import datetime
import hashlib
import json
import os
import re

from kistest import mock
from .harness import (
    MOCK_URL, MOCK_CA, APP_KEY, APP_SECRET, TEST_DIR, ROOT, stats, mock_config, inject, reset_mock,
    symbols, sql_list, Skipped, check, run, Session, run_all, must)
from .fixtures import BALANCE_PATH, run_with_pg_cron


def test_holdings_restart():
    """SYDB0050 (rt_cd "7", "data changed since the query") on a follow-up page:
    the listing starts over once and gives every position once; a second
    SYDB0050 fails with KIS's message and a hint.  An empty account (KIOK0560,
    output1 []) is zero rows."""
    run_all("DROP SERVER IF EXISTS kis_account CASCADE",
            f"CREATE SERVER kis_account FOREIGN DATA WRAPPER kis_fdw OPTIONS "
            f"(base_url '{MOCK_URL}', ca_file '{MOCK_CA}')",
            f"CREATE USER MAPPING FOR CURRENT_USER SERVER kis_account OPTIONS "
            f"(app_key '{APP_KEY}', app_secret '{APP_SECRET}', account '12345678-01')",
            "CREATE FOREIGN TABLE holdings (symbol text, qty bigint) "
            "SERVER kis_account OPTIONS (endpoint 'domestic_holdings')")
    query = "SELECT count(*), count(DISTINCT symbol), sum(qty) FROM holdings"
    whole = [["120", "120", str(sum(1 + 37 * i % 500 for i in range(120)))]]
    check(must(run(query)[:2], "no fault") == whole, "no fault: wrong holdings")
    reset_mock()
    inject(("sydb0050", "*", 1))
    rows, err, rc = run(query)
    check(rc == 0, f"one SYDB0050: {err}")
    check(rows == whole, f"one SYDB0050: {rows}, expected {whole}")
    st = stats()
    check(st["errors"] == {"SYDB0050": 1} and st["pages"] == {BALANCE_PATH: 4},
          f"one SYDB0050: expected pages 1, 2 (SYDB0050), then 1, 2, 3: {st['errors']} {st['pages']}")
    reset_mock()
    inject(("sydb0050", "*", 2))
    rows, err, rc = run("SELECT symbol FROM holdings")
    check(rc != 0 and rows == [], f"two SYDB0050: rows {len(rows)}, stderr {err}")
    check("ERROR:  KIS request for endpoint domestic_holdings failed" in err and
          "DETAIL:  SYDB0050: 조회이후에 자료가 변경되었습니다.(다시 조회하세요)\n" in err and
          "HINT:  The listing was started over once" in err, f"two SYDB0050: {err}")
    check(stats()["pages"] == {BALANCE_PATH: 2}, f"two SYDB0050: pages {stats()['pages']}")
    # an account with no positions: KIOK0560 and output1 []
    run("ALTER USER MAPPING FOR CURRENT_USER SERVER kis_account OPTIONS (SET account '00000000-01')")
    check(must(run(query)[:2], "empty account") == [["0", "0", ""]], "empty account: rows")


def test_holdings_virtual():
    """A virtual account (environment 'virtual'): the virtual tr_id VTTC8434R (the mock,
    a virtual server now, refuses the real one), 20-row pages answered with 20310000,
    and the virtual default rate, 2/s, which the mock enforces: five pages in a row
    without one EGW00201.  Any rate above 2/s would send at least three of the five in
    one second."""
    key = "PSvirtualKey0000000000000000000001"
    mock_config(environment="virtual", holdings=100, rate_limit=2)
    try:
        run_all("DROP SERVER IF EXISTS kis_paper CASCADE",
                f"CREATE SERVER kis_paper FOREIGN DATA WRAPPER kis_fdw OPTIONS "
                f"(environment 'virtual', base_url '{MOCK_URL}', ca_file '{MOCK_CA}', max_retries '0')",
                f"CREATE USER MAPPING FOR CURRENT_USER SERVER kis_paper OPTIONS "
                f"(app_key '{key}', app_secret '{APP_SECRET}', account '12345678-01')",
                "CREATE FOREIGN TABLE paper_holdings (symbol text, qty bigint) "
                "SERVER kis_paper OPTIONS (endpoint 'domestic_holdings')")
        rows = must(run("SELECT count(*), count(DISTINCT symbol), sum(qty) FROM paper_holdings")[:2],
                    "virtual holdings")
        want = [["100", "100", str(sum(1 + 37 * i % 500 for i in range(100)))]]
        check(rows == want, f"virtual holdings: {rows}, expected {want}")
        st = stats()
        check(st["pages"] == {BALANCE_PATH: 5} and st["by_path"] == {BALANCE_PATH: 5},
              f"virtual holdings: expected 5 pages of 20: pages {st['pages']}, by_path {st['by_path']}")
        check(st["violations"] == 0 and st["errors"] == {} and st["bad_requests"] == 0,
              f"virtual holdings: violations {st['violations']}, errors {st['errors']}, "
              f"bad requests {st['bad_requests']}")
    finally:
        mock_config(environment="real", holdings=120)
        run("DROP SERVER IF EXISTS kis_paper CASCADE")


MINUTE_PATH = "/uapi/domestic-stock/v1/quotations/inquire-time-itemchartprice"
HOLIDAY_PATH = "/uapi/domestic-stock/v1/quotations/chk-holiday"
MOCK_TODAY = "2025-12-30"


def minute_close(symbol, hhmm):
    """The close of the mock's minute bar of its today (test/mock_kis.py minute_bars)."""
    g0 = int(hashlib.sha256(f"{symbol}20251230{hhmm}".encode()).hexdigest()[0:8], 16)
    return (1000 + g0 % 99000) // 10 * 10


def first_asked(symbol):
    """The FID_INPUT_HOUR_1 of the first minute request for symbol, in seconds."""
    hours = [h for s, h in stats()["asked"].get(MINUTE_PATH, []) if s == symbol]
    check(hours, f"no minute request for {symbol}")
    return int(hours[0][:2]) * 3600 + int(hours[0][2:4]) * 60 + int(hours[0][4:])


def check_minute_bars(rows, symbol, asked):
    """rows [time, close]: every minute bar from 00:00 to the asked time, once, right."""
    minutes = asked // 60 + 1
    want = {f"{m // 60:02d}:{m % 60:02d}:00": str(minute_close(symbol, f"{m // 60:02d}{m % 60:02d}"))
            for m in range(minutes)}
    got = dict((r[0], r[1]) for r in rows)
    check(len(rows) == minutes and got == want,
          f"{symbol}: {len(rows)} bars, expected {minutes}; wrong: "
          f"{[(t, got.get(t), c) for t, c in want.items() if got.get(t) != c][:5]}")


def test_minute_paging():
    """domestic_minute pages back 30 bars a request, asking again one second before the
    oldest bar, to the first bar of the day: every bar once, ceil(bars / 30) requests,
    each asking before the last page's oldest bar."""
    mock_config(minute_session="0000-2359")
    for sql in ("DROP FOREIGN TABLE IF EXISTS minute",
                "CREATE FOREIGN TABLE minute (symbol text, date date, time time, close numeric) "
                "SERVER kis OPTIONS (endpoint 'domestic_minute')"):
        must(run(sql)[:2], sql)
    syms = symbols(2)
    rows = must(run(f"SELECT symbol, time, close, date FROM minute "
                    f"WHERE symbol IN ({sql_list(syms)}) ORDER BY 1, 2")[:2], "minute bars")
    st = stats()
    requests = 0
    for s in syms:
        asked = first_asked(s)
        check_minute_bars([r[1:3] for r in rows if r[0] == s], s, asked)
        check(all(r[3] == MOCK_TODAY for r in rows if r[0] == s), f"{s}: dates {rows[:2]}")
        pages = -(-(asked // 60 + 1) // 30)
        hours = [h for x, h in st["asked"][MINUTE_PATH] if x == s]
        check(len(hours) == pages and all(h.endswith("59") for h in hours[1:]),
              f"{s}: asked {hours}, expected {pages} pages each one second before the last")
        requests += pages
    check(st["by_path"] == {MINUTE_PATH: requests}, f"requests {st['by_path']}, expected {requests}")


def test_holidays_paging():
    """market_holidays follows the tr_cont cursor (ctx_area_fk/nk sent back) from the
    lower bound, and stops at the page that passes the upper bound; with no upper
    bound, at KIS's last page."""
    for sql in ("DROP FOREIGN TABLE IF EXISTS holidays",
                "CREATE FOREIGN TABLE holidays (date date, market_open boolean) "
                "SERVER kis OPTIONS (endpoint 'market_holidays')"):
        must(run(sql)[:2], sql)
    rows = must(run("SELECT count(*), min(date), max(date) FROM holidays "
                    "WHERE date BETWEEN '2025-01-01' AND '2025-01-25'")[:2], "25 days")
    check(rows == [["25", "2025-01-01", "2025-01-25"]], f"25 days: {rows}")
    check(stats()["pages"] == {HOLIDAY_PATH: 2}, f"25 days: pages {stats()['pages']}")
    reset_mock()
    # the mock's calendar ends 2026-12-31: 61 days, pages of 20
    rows = must(run("SELECT count(*), count(*) FILTER (WHERE market_open) FROM holidays "
                    "WHERE date >= '2026-11-01'")[:2], "no upper bound")
    check(rows == [["61", "42"]], f"no upper bound: {rows}")
    check(stats()["pages"] == {HOLIDAY_PATH: 3} and stats()["errors"] == {},
          f"no upper bound: pages {stats()['pages']}, errors {stats()['errors']}")


def test_holidays_real_answer():
    """The published real chk-holiday answer (test/answers/), replayed as the first page:
    KIS says trading_day (tr_day_yn) on Saturdays and Sundays too, so only market_open
    (opnd_yn) tells the days the exchange trades; the next page follows from the keys
    that answer carries (this page's first and last day)."""
    with open(os.path.join(TEST_DIR, "answers",
                           "chk-holiday-20260105.json"), encoding="utf-8") as f:
        real = json.load(f)
    mock("/__mock/faults", {"faults": [{"kind": "answer", "body": real["answer"],
                                        "headers": {"tr_cont": "M"}}]})
    for sql in ("DROP FOREIGN TABLE IF EXISTS holidays",
                "CREATE FOREIGN TABLE holidays (date date, weekday text, business_day boolean, "
                "trading_day boolean, market_open boolean) "
                "SERVER kis OPTIONS (endpoint 'market_holidays')"):
        must(run(sql)[:2], sql)
    rows = must(run("SELECT date, weekday, business_day, trading_day, market_open FROM holidays "
                    "WHERE date BETWEEN '2026-01-05' AND '2026-02-10' ORDER BY date")[:2], "replay")
    check(stats()["faults_injected"] == {"answer": 1}, f"not replayed: {stats()['faults_injected']}")
    check([r[0] for r in rows] == [str(datetime.date(2026, 1, 5) + datetime.timedelta(days=i))
                                   for i in range(37)], f"days: {[r[0] for r in rows]}")
    for date, weekday, business, trading, market_open in rows:
        day = datetime.date.fromisoformat(date)
        weekend = day.isoweekday() >= 6
        check(weekday == f"{day.isoweekday() % 7 + 1:02d}", f"{date}: weekday {weekday}")
        check(trading == "t", f"{date}: trading_day {trading}, KIS sends Y every day")
        check(market_open == business == ("f" if weekend else "t"),
              f"{date}: market_open {market_open}, business_day {business}")
    check(stats()["pages"] == {HOLIDAY_PATH: 1} and stats()["errors"] == {},
          f"pages {stats()['pages']}, errors {stats()['errors']}")
    run("DROP FOREIGN TABLE holidays")


def readme_minute_recipe():
    """(CREATE TABLE statement, the scheduled INSERT) of the README's minute-bar recipe."""
    root = ROOT
    with open(os.path.join(root, "README.md"), encoding="utf-8") as f:
        blocks = re.findall(r"```sql\n(.*?)```", f.read(), re.S)
    block = next(b for b in blocks if "CREATE TABLE minute_bars" in b)
    create = block.split(";", 1)[0]
    match = re.search(r"SELECT cron\.schedule\('minute_bars', '[^']*', \$\$(.*?)\$\$\);", block, re.S)
    check(match, f"the README's minute-bar recipe has no cron.schedule: {block}")
    return create, match.group(1)


def test_minute_bars_with_pg_cron():
    """The README's minute-bar recipe as written: its table, and its INSERT scheduled by
    pg_cron after the same INSERT stored part of the day: every bar of the day up to the
    scheduled run is stored once."""
    mock_config(minute_session="0000-2359")
    create, insert = readme_minute_recipe()
    syms = symbols(2)
    for sql in ("DROP TABLE IF EXISTS minute_bars", "DROP TABLE IF EXISTS watchlist",
                "DROP FOREIGN TABLE IF EXISTS domestic_minute",
                "IMPORT FOREIGN SCHEMA kis LIMIT TO (domestic_minute) FROM SERVER kis INTO public",
                "CREATE TABLE watchlist (symbol text PRIMARY KEY)",
                f"INSERT INTO watchlist VALUES ({'), ('.join(map(repr, syms))})",
                create, insert):
        must(run(sql)[:2], sql)
    first = int(run("SELECT count(*) FROM minute_bars")[0][0][0])
    check(first > 0 or first_asked(syms[0]) < 60, "the first INSERT stored nothing")
    if os.environ.get("KIS_PG_CRON") != "1":
        raise Skipped("no pg_cron for this PostgreSQL major (the recipe's table and INSERT passed)")
    reset_mock()
    mock_config(minute_session="0000-2359")
    run_with_pg_cron("kis_minute_bars", insert)
    for s in syms:
        rows = must(run(f"SELECT to_char(time, 'HH24:MI:SS'), close FROM minute_bars "
                        f"WHERE symbol = '{s}' AND market = 'J' AND date = '{MOCK_TODAY}' "
                        f"ORDER BY 1")[:2], "stored bars")
        check_minute_bars(rows, s, first_asked(s))
    for sql in ("DROP TABLE minute_bars", "DROP TABLE watchlist", "DROP FOREIGN TABLE domestic_minute"):
        run(sql)


def weekdays(first, last):
    """Weekdays from first to last (datetime.date), the mock's trading days."""
    n, day = 0, first
    while day <= last:
        n += day.weekday() < 5
        day += datetime.timedelta(days=1)
    return n


def test_daily_history_cap():
    """No lower bound on date: page back to the first bar, or an ERROR past 50 pages."""
    run("CREATE FOREIGN TABLE IF NOT EXISTS daily_bars (symbol text, date date, close numeric) "
        "SERVER kis OPTIONS (endpoint 'domestic_daily')")
    today = datetime.date(2025, 12, 30)
    # 30 years of bars: 7,8xx rows, more than 50 pages
    mock_config(data_start="19960102")
    s = Session()
    try:
        rows, err = s.query("SELECT count(*) FROM daily_bars WHERE symbol = '005930'")
        check(rows == [] and 'the history of symbol "005930" is longer than 5000 rows' in err
              and "HINT:  Add a lower bound" in err, f"no cap ERROR: {rows} {err}")
        check(stats()["by_symbol"].get("005930") == 50,
              f"{stats()['by_symbol']} requests, expected 50 pages before the ERROR")
        # the same history with a lower bound: all of it, one page past the first bar
        reset_mock()
        mock_config(data_start="19960102")
        n = weekdays(datetime.date(1996, 1, 2), today)
        rows = must(s.query("SELECT count(*), min(date) FROM daily_bars "
                            "WHERE symbol = '005930' AND date >= '1990-01-01'"), "lower bound")
        check(rows == [[str(n), "1996-01-02"]], f"{rows}, expected {n} bars from 1996-01-02")
        check(stats()["by_symbol"].get("005930") == n // 100 + 1,
              f"{stats()['by_symbol']} requests, expected {n // 100 + 1}")
        # a history within the cap, no lower bound: every bar, then a short page ends it
        reset_mock()
        mock_config(data_start="20100104")
        n = weekdays(datetime.date(2010, 1, 4), today)
        rows = must(s.query("SELECT count(*), min(date) FROM daily_bars WHERE symbol = '000660'"),
                    "no lower bound")
        check(rows == [[str(n), "2010-01-04"]], f"{rows}, expected {n} bars from 2010-01-04")
        check(stats()["by_symbol"].get("000660") == n // 100 + 1,
              f"{stats()['by_symbol']} requests, expected {n // 100 + 1}")
    finally:
        s.close()


def test_wave_spills():
    """Under on_error 'error' a wave's rows wait in a tuplestore: past work_mem
    they go to a temporary file, and the rows are the same as in memory."""
    run("CREATE FOREIGN TABLE IF NOT EXISTS daily_bars (symbol text, date date, close numeric) "
        "SERVER kis OPTIONS (endpoint 'domestic_daily')")
    syms = symbols(20)
    n = weekdays(datetime.date(2024, 1, 1), datetime.date(2025, 12, 30))
    with Session() as s:
        rows, err = s.query("SET work_mem = '64kB'; SET log_temp_files = 0; "
                            "SET client_min_messages = log; "
                            "SELECT count(*), sum(close) FROM daily_bars "
                            f"WHERE symbol IN ({sql_list(syms)}) "
                            "AND date BETWEEN '2024-01-01' AND '2025-12-30'")
    # no sort or hash in this plan: a temporary file can only be the wave's
    check("LOG:  temporary file" in err, f"the wave did not spill past work_mem: {err!r}")
    rows_again = must(run("SELECT count(*), sum(close) FROM daily_bars "
                          f"WHERE symbol IN ({sql_list(syms)}) "
                          "AND date BETWEEN '2024-01-01' AND '2025-12-30'")[:2], "in memory")
    check(rows == rows_again == [[str(20 * n), rows_again[0][1]]],
          f"spilled {rows}, in memory {rows_again}, expected {20 * n} bars")
    check("ERROR" not in err, err)
