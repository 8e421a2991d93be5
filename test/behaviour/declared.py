"""Behaviour tests: KIS TRs declared as foreign tables (docs/declared-tables.md).  A param
column is keyed like symbol: one request per distinct value, concurrent, under the rate
gate, batched in joins; account TRs stay private to their mapping; and a declared TR's
answers, which nothing checks against the request, never stand for a catalogue table's.
"""

from kistest import mock
from .harness import (
    APP_KEY, APP_SECRET, stats, mock_config, symbols, sql_list, check, run, run_all, must,
    set_server)
from .fixtures import (hold_first_for_company, BALANCE_PATH, cached_table,
                       check_cached_per_mapping)

INVESTOR_PATH = "/uapi/domestic-stock/v1/quotations/inquire-investor"
INVESTOR = ("CREATE FOREIGN TABLE {name} (symbol text OPTIONS (param 'FID_INPUT_ISCD'), "
            "day date OPTIONS (field 'stck_bsop_date'), "
            "foreign_net bigint OPTIONS (field 'frgn_ntby_qty')) SERVER kis OPTIONS "
            "(path '" + INVESTOR_PATH + "', tr_id 'FHKST01010900', "
            "params 'FID_COND_MRKT_DIV_CODE=J', rows 'output')")


def investor_table(name="investor_decl"):
    run_all(f"DROP FOREIGN TABLE IF EXISTS {name}", INVESTOR.format(name=name))


def sent(path):
    return stats()["by_path"].get(path, 0)


def test_declared_concurrent_under_the_gate():
    """40 symbols of a declared table: 40 requests, several in flight at once (arranged by
    the mock's overlap fault, not by timing), none over the mock's rate limit, every
    symbol's 30 rows carrying its own symbol."""
    investor_table()
    try:
        mock_config(rate_limit=20, latency_ms=20)
        set_server(rate_limit="18")
        hold_first_for_company()
        syms = symbols(40)
        rows = must(run(f"SELECT symbol, count(*) FROM investor_decl "
                        f"WHERE symbol IN ({sql_list(syms)}) GROUP BY symbol ORDER BY symbol")[:2],
                    "40 symbols")
        s = stats()
        check(rows == [[sym, "30"] for sym in sorted(syms)], f"rows per symbol: {rows[:3]}...")
        check(s["by_path"].get(INVESTOR_PATH) == 40 and s["requests"] == 40,
              f"requests {s['requests']} ({s['by_path']}), expected 40")
        check(s["max_in_flight"] > 1, f"max_in_flight {s['max_in_flight']}: not concurrent")
        check(s["violations"] == 0, f"{s['violations']} rate violations with rate_limit 18 < 20")
    finally:
        run("DROP FOREIGN TABLE IF EXISTS investor_decl")


def test_declared_batched_join():
    """A join on a param column is the batched join: one request per distinct symbol of
    the other side, duplicates asked once."""
    investor_table()
    syms = symbols(25)
    try:
        run_all("DROP TABLE IF EXISTS decl_portfolio",
                "CREATE TABLE decl_portfolio (symbol text, qty int)",
                f"INSERT INTO decl_portfolio SELECT s, 1 FROM unnest(ARRAY[{sql_list(syms)}]) s, "
                f"generate_series(1, 2)")
        plan = must(run("EXPLAIN (COSTS OFF) SELECT * FROM decl_portfolio p "
                        "JOIN investor_decl i ON i.symbol = p.symbol")[:2], "plan")
        check(any("KIS Batched Join" in line[0] for line in plan), f"plan: {plan}")
        rows = must(run("SELECT count(*), count(DISTINCT i.symbol) FROM decl_portfolio p "
                        "JOIN investor_decl i ON i.symbol = p.symbol")[:2], "join")
        check(rows == [["1500", "25"]], f"join rows {rows}, expected 25 symbols x 2 x 30")
        check(sent(INVESTOR_PATH) == 25, f"{sent(INVESTOR_PATH)} requests, expected 25")
    finally:
        run_all("DROP TABLE IF EXISTS decl_portfolio", "DROP FOREIGN TABLE IF EXISTS investor_decl")


def test_declared_account_answers_private():
    """An account TR ({CANO}) is cached per user mapping only: of two roles on one app key
    with different accounts, each sends its own request and reads its own account; a
    repeat of one is served from the cache."""
    mock_config(holdings=10)   # one page: a listing that fits one page is cached
    check_cached_per_mapping(
        "kis_decl", "balance_decl",
        "symbol text OPTIONS (field 'pdno'), qty bigint OPTIONS (field 'hldg_qty'), raw jsonb",
        f"path '{BALANCE_PATH}', tr_id 'TTTC8434R', rows 'output1', paging 'continuation', "
        "cache_ttl_ms '60000', params 'CANO={CANO}&ACNT_PRDT_CD={ACNT_PRDT_CD}&AFHR_FLPR_YN=N&"
        "OFL_YN=&INQR_DVSN=02&UNPR_DVSN=01&FUND_STTL_ICLD_YN=N&FNCG_AMT_AUTO_RDPT_YN=N&"
        "PRCS_DVSN=00'",
        {"kis_d1": (APP_KEY, "12345678-01"), "kis_d2": (APP_KEY, "22222222-01")},
        ("kis_d1", "kis_d1", "kis_d2", "kis_d2", "kis_d1"), "10")


def test_declared_answers_never_stand_for_catalogue():
    """An ordinary role declares a TR whose requests are byte for byte a catalogue table's
    (inquire-price, same parameters, same tr_id), with the cache on.  Its answers, which no
    check confirms, serve its own repeats but never the victim's catalogue table: the victim
    sends its own request, and the attacker's cache entry does not stand for it."""
    cached_table(60000)
    sym = symbols(1)[0]
    run_all("DROP SCHEMA IF EXISTS decl_att CASCADE",
            "DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'kis_decl_att') THEN "
            "EXECUTE 'DROP OWNED BY kis_decl_att'; EXECUTE 'DROP ROLE kis_decl_att'; END IF; END $$",
            "CREATE ROLE kis_decl_att",
            "GRANT USAGE ON FOREIGN SERVER kis TO kis_decl_att",
            "CREATE SCHEMA decl_att AUTHORIZATION kis_decl_att",
            f"CREATE USER MAPPING FOR kis_decl_att SERVER kis OPTIONS "
            f"(app_key '{APP_KEY}', app_secret '{APP_SECRET}')")
    try:
        must(run("SET ROLE kis_decl_att; CREATE FOREIGN TABLE decl_att.price_twin ("
                 "symbol text OPTIONS (param 'FID_INPUT_ISCD'), price numeric OPTIONS "
                 "(field 'stck_prpr')) SERVER kis OPTIONS (path "
                 "'/uapi/domestic-stock/v1/quotations/inquire-price', tr_id 'FHKST01010100', "
                 "params 'FID_COND_MRKT_DIV_CODE=J', cache_ttl_ms '60000')")[:2], "declare")
        for who, sql, expect in (
                ("attacker", f"SET ROLE kis_decl_att; SELECT price FROM decl_att.price_twin "
                             f"WHERE symbol = '{sym}'", 1),
                ("attacker again", f"SET ROLE kis_decl_att; SELECT price FROM decl_att.price_twin "
                                   f"WHERE symbol = '{sym}'", 1),
                ("victim", f"SELECT price FROM kis_prices_cached WHERE symbol = '{sym}'", 2),
                ("victim again", f"SELECT price FROM kis_prices_cached WHERE symbol = '{sym}'", 2)):
            rows = must(run(sql)[:2], who)
            check(len(rows) == 1, f"{who}: {rows}")
            got = stats()["by_symbol"].get(sym, 0)
            check(got == expect, f"{who}: the mock saw {got} requests for {sym}, expected {expect}")
    finally:
        run_all("DROP SCHEMA IF EXISTS decl_att CASCADE", "DROP OWNED BY kis_decl_att",
                "DROP ROLE IF EXISTS kis_decl_att", "DROP FOREIGN TABLE IF EXISTS kis_prices_cached")


def test_declared_continuation_bad_row():
    """A declared TR with paging 'continuation' whose first page holds an element that
    is not an object: that row fails as such (on_error decides), its page's other rows
    and the next page's still come.  The rows of a page are held until the last page
    is in; a failed one used to be copied as a document it did not have, an ERROR
    "out of memory" instead of the row's own."""
    run_all("DROP FOREIGN TABLE IF EXISTS balance_pages",
            "CREATE FOREIGN TABLE balance_pages (symbol text OPTIONS (field 'pdno'), "
            "qty bigint OPTIONS (field 'hldg_qty'), error text) SERVER kis OPTIONS "
            f"(path '{BALANCE_PATH}', tr_id 'TTTC8434R', rows 'output1', "
            "paging 'continuation', params 'CANO={CANO}&ACNT_PRDT_CD={ACNT_PRDT_CD}')",
            "ALTER USER MAPPING FOR CURRENT_USER SERVER kis OPTIONS (ADD account '12345678-01')")
    pages = [({"tr_cont": "M"}, {"rt_cd": "0", "msg_cd": "MCA00000", "msg1": "ok",
                                 "ctx_area_fk100": "F1", "ctx_area_nk100": "N1",
                                 "output1": [{"pdno": "005930", "hldg_qty": "1"}, 5]}),
             ({"tr_cont": "D"}, {"rt_cd": "0", "msg_cd": "MCA00000", "msg1": "ok",
                                 "ctx_area_fk100": "F1", "ctx_area_nk100": "",
                                 "output1": [{"pdno": "000660", "hldg_qty": "2"}]})]

    def arrange():
        mock("/__mock/faults", {"faults": [{"kind": "answer", "symbol": "*", "times": 1,
                                            "headers": h, "body": b} for h, b in pages]})
    try:
        arrange()
        rows, err, rc = run("SELECT symbol, qty FROM balance_pages")
        check(rc != 0 and "sent a row that is not an object" in err and "out of memory" not in err,
              f"expected the row's own failure: {rows} {err!r}")
        run("ALTER FOREIGN TABLE balance_pages OPTIONS (ADD on_error 'row')")
        arrange()
        rows = must(run("SELECT symbol, qty, error FROM balance_pages ORDER BY symbol")[:2],
                    "on_error 'row'")
        check(rows == [["000660", "2", ""], ["005930", "1", ""],
                       ["", "", "TR TTTC8434R sent a row that is not an object"]],
              f"rows {rows}")
    finally:
        run_all("DROP FOREIGN TABLE IF EXISTS balance_pages",
                "ALTER USER MAPPING FOR CURRENT_USER SERVER kis OPTIONS (DROP account)")
