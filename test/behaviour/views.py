"""Behaviour tests: answers served as the rows a reader made of them (issue 25,
docs/cache.md, "Views").  A reader with cache_ttl_ms keeps, beside a shared answer, the
tuples it made of it; the next reader that makes rows the same way gets those tuples
instead of the answer.  What they check: the rows are the same as without a cache, on
every endpoint under every on_error; a view is served only to a reader that makes rows
the same way (columns, fields, types, the settings the types read, the database); a view
never outlives its answer; and another role's table cannot change what we read.
"""

import json
import time

from .harness import (
    stats, check, check_prices, run, run_all, must, symbols, sql_list, reset_mock)
from .fixtures import ordinary_role

ON_ERRORS = ("error", "skip", "row")
# a value for each key column of kis_fdw_endpoints(); under on_error 'skip' and 'row' the
# domestic symbols add one not listed (99...) and one KIS refuses (98...): failures too
FAILING = ", '991234', '981234'"
KEY_VALUES = {
    "symbol": "symbol IN ('005930', '000660')",
    "market": "market = 'J'",
    "exchange": "exchange = 'NAS'",
    "index_code": "index_code = '0001'",
    "period_type": "period_type = '0'",
    "period": "period = 'D'",
    "date": "date BETWEEN '2025-01-02' AND '2025-01-09'",
}
OVERSEAS_SYMBOLS = "symbol IN ('AAPL', 'MSFT')"


def explain_json(sql):
    """The Foreign Scan / join node's properties of EXPLAIN (ANALYZE, VERBOSE) sql."""
    rows, err, rc = run(f"EXPLAIN (ANALYZE, VERBOSE, COSTS OFF, TIMING OFF, SUMMARY OFF, "
                        f"FORMAT JSON) {sql}")
    check(rc == 0, f"EXPLAIN {sql}: {err}")
    plan = json.loads("\n".join("|".join(r) for r in rows))[0]["Plan"]

    def find(node):
        if "KIS Requests" in node:
            return node
        for child in node.get("Plans", []):
            got = find(child)
            if got:
                return got
        return None
    return find(plan)


def views_of(sql):
    node = explain_json(sql)
    check(node is not None, f"no kis node in the plan of {sql}")
    return node.get("KIS Cache Views", 0), node["KIS Requests"], node.get("KIS Cache Hits", 0)


def endpoint_queries():
    """(endpoint, WHERE) for every endpoint a table reads by request (not streamed, not
    a master file), from kis_fdw_endpoints(); "%s" where failing symbols may go."""
    rows, err, rc = run("SELECT endpoint, key_columns FROM kis_fdw_endpoints() "
                        "WHERE endpoint NOT LIKE '%live%' AND endpoint NOT IN "
                        "('domestic_ticks', 'domestic_symbols') ORDER BY 1")
    check(rc == 0, err)
    out = []
    for endpoint, keys in rows:
        conds = [KEY_VALUES[k.strip()] for k in keys.split(",") if k.strip()]
        if endpoint.startswith("overseas"):
            conds = [OVERSEAS_SYMBOLS if c == KEY_VALUES["symbol"] else c for c in conds]
        conds = [c.replace("')", "'%s)") if c == KEY_VALUES["symbol"] else c for c in conds]
        out.append((endpoint, " AND ".join(conds) or "true"))
    return out


def data_columns(table, leave_out=("fetched_at",)):
    """table's columns but those in leave_out, quoted, comma-separated."""
    cols, err, rc = run(f"SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) "
                        f"FROM pg_attribute WHERE attrelid = '{table}'::regclass AND attnum > 0 "
                        f"AND NOT attisdropped AND attname <> ALL ('{{{','.join(leave_out)}}}')")
    check(rc == 0, f"columns of {table}: {err}")
    return cols[0][0]


def each_on_error(endpoint, where, schemas):
    """Each on_error in turn, set on the endpoint's table in every schema; yields
    (on_error, where with the failing symbols under 'skip' and 'row')."""
    for on_error in ON_ERRORS:
        for schema in schemas:
            run(f"ALTER FOREIGN TABLE {schema}.{endpoint} OPTIONS (DROP on_error)")
            run(f"ALTER FOREIGN TABLE {schema}.{endpoint} OPTIONS (ADD on_error '{on_error}')")
        yield on_error, where.replace("%s", FAILING if on_error != "error" else "")


def test_views_same_rows_every_endpoint():
    """Every endpoint, every on_error: a table without a cache, and one with cache_ttl_ms
    read twice (the second read is served from the cache, as views where the endpoint's
    answers allow), give the same rows or the same error; the two cached reads the same
    fetched_at.  Under 'skip' and 'row' the domestic symbols include failing ones (an
    answer with a failed key has no view).  Tables from IMPORT FOREIGN SCHEMA (every
    column); the server has the account the holdings need."""
    run_all("DROP SCHEMA IF EXISTS v_plain CASCADE", "DROP SCHEMA IF EXISTS v_ttl CASCADE",
            "CREATE SCHEMA v_plain", "CREATE SCHEMA v_ttl",
            "ALTER USER MAPPING FOR CURRENT_USER SERVER kis OPTIONS (ADD account '12345678-01')",
            "IMPORT FOREIGN SCHEMA kis FROM SERVER kis INTO v_plain",
            "IMPORT FOREIGN SCHEMA kis FROM SERVER kis INTO v_ttl",
            "SELECT kis_fdw_cache_reset()")
    viewed = set()
    try:
        for endpoint, where in endpoint_queries():
            cols = data_columns(f"v_plain.{endpoint}")
            # a failed key's fetched_at is when it failed: a new one each time
            when = ("CASE WHEN error IS NULL THEN fetched_at END"
                    if '"error"' in cols.split(", ") or "error" in cols.split(", ")
                    else "fetched_at")
            run(f"ALTER FOREIGN TABLE v_ttl.{endpoint} OPTIONS (ADD cache_ttl_ms '3600000')")
            for on_error, keys in each_on_error(endpoint, where, ("v_plain", "v_ttl")):
                plain = f"SELECT {cols} FROM v_plain.{endpoint} WHERE {keys}"
                cached = f"SELECT {cols}, {when} FROM v_ttl.{endpoint} WHERE {keys}"
                p_rows, p_err, p_rc = run(plain)
                first = run(cached)
                # counted from here: EXPLAIN ANALYZE reads too, and the first page of a
                # time-paged table asks for "now", a new request each second
                before = stats()["requests"]
                views = views_of(cached)[0] if first[2] == 0 else 0
                second = run(cached)
                # a listing of several pages is never cached: new pages, new fetched_at
                served = stats()["requests"] == before
                what = f"{endpoint} on_error '{on_error}'"
                check(first[2] == p_rc and second[2] == p_rc,
                      f"{what}: exit {p_rc} without a cache, {first[2]} and {second[2]} with")
                check(first[1] == p_err and second[1] == p_err,
                      f"{what}: messages differ: {p_err!r} / {first[1]!r} / {second[1]!r}")
                if p_rc != 0:
                    continue
                check(sorted(r[:-1] for r in first[0]) == sorted(p_rows),
                      f"{what}: cached rows differ from uncached: {first[0][:3]} / {p_rows[:3]}")
                cut = len(first[0][0]) if served and first[0] else -1
                check(sorted(r[:cut] for r in second[0]) == sorted(r[:cut] for r in first[0]),
                      f"{what}: a {'served ' if served else ''}read differs: "
                      f"{second[0][:3]} / {first[0][:3]}")
                if views > 0:
                    viewed.add(endpoint)
            run(f"ALTER FOREIGN TABLE v_plain.{endpoint} OPTIONS (DROP on_error)")
    finally:
        run("ALTER USER MAPPING FOR CURRENT_USER SERVER kis OPTIONS (DROP account)")
        run("DROP SCHEMA IF EXISTS v_plain CASCADE")
        run("DROP SCHEMA IF EXISTS v_ttl CASCADE")
    print(f"    (served as views: {', '.join(sorted(viewed))})")
    for endpoint in ("domestic_price", "domestic_multi_price", "overseas_price"):
        check(endpoint in viewed, f"{endpoint}: no answer was served as a view")


def cached_multi(name="v_multi", columns="symbol text, price numeric, fetched_at timestamptz",
                 ttl="3600000", server="kis"):
    run_all(f"DROP FOREIGN TABLE IF EXISTS {name}",
            f"CREATE FOREIGN TABLE {name} ({columns}) SERVER {server} "
            f"OPTIONS (endpoint 'domestic_multi_price', cache_ttl_ms '{ttl}')")


def test_views_served_to_a_join():
    """A portfolio of 90 symbols joined to domestic_multi_price with a TTL: the first
    join sends 3 requests and keeps its rows; a new session's join is served the 3
    answers as views, sends nothing, and returns the same rows (fetched_at too); the
    prices are those of the join unbatched and of = ANY."""
    syms = symbols(90)
    cached_multi()
    run_all("DROP TABLE IF EXISTS v_portfolio",
            "CREATE TABLE v_portfolio (symbol text, qty int)",
            f"INSERT INTO v_portfolio SELECT s, 10 FROM unnest(ARRAY[{sql_list(syms)}]) s",
            "ANALYZE v_portfolio", "SELECT kis_fdw_cache_reset()")
    join = ("SELECT p.symbol, q.price, q.fetched_at FROM v_portfolio p "
            "JOIN v_multi q USING (symbol) ORDER BY 1")
    first = must(run(join)[:2], "first join")
    check(stats()["requests"] == 3, f"{stats()['requests']} requests for 90 symbols")
    check_prices([r[:2] for r in first], syms, "first join")
    views, requests, hits = views_of(join)
    check((views, requests, hits) == (3, 0, 3),
          f"second join: {views} views, {requests} requests, {hits} hits; expected 3, 0, 3")
    check(must(run(join)[:2], "served join") == first, "a join served views has other rows")
    # other plans ask other batches (other answers): the same prices
    off = must(run(f"SET kis_fdw.enable_batched_join = off; {join}")[:2], "unbatched")
    check([r[:2] for r in off] == [r[:2] for r in first], f"unbatched: {off[:2]} / {first[:2]}")
    anyq = must(run(f"SELECT symbol, price FROM v_multi WHERE symbol = ANY "
                    f"(ARRAY[{sql_list(syms)}]) ORDER BY 1")[:2], "= ANY")
    check(anyq == [r[:2] for r in first], f"= ANY: {anyq[:2]} / {first[:2]}")


def test_view_per_layout():
    """Two tables read the same answers with other columns: price as text, price from
    another field, a column more.  Each is served only a view made its own way: every
    read returns its own values, alternating in any order."""
    syms = symbols(30)
    layouts = {
        "v_num": "symbol text, price numeric",
        "v_text": "symbol text, price text",
        "v_high": "symbol text, price numeric OPTIONS (field 'inter2_hgpr')",
        "v_more": "symbol text, price numeric, volume bigint",
    }
    for name, cols in layouts.items():
        cached_multi(name, cols)
    run("SELECT kis_fdw_cache_reset()")
    expect = {}
    for rnd in range(3):
        for name in layouts:
            rows = must(run(f"SELECT symbol, price FROM {name} WHERE symbol IN "
                            f"({sql_list(syms)}) ORDER BY 1")[:2], name)
            if rnd == 0:
                expect[name] = rows
            check(rows == expect[name], f"round {rnd} {name}: {rows[:2]} / {expect[name][:2]}")
    check_prices(expect["v_num"], syms, "v_num")
    check_prices(expect["v_text"], syms, "v_text")
    check(expect["v_high"] != expect["v_num"], "the high price read as the price")
    check(stats()["requests"] == 1, f"{stats()['requests']} requests, expected 1")
    views, requests, _ = views_of(f"SELECT * FROM v_high WHERE symbol IN ({sql_list(syms)})")
    check(views == 1 and requests == 0, f"v_high: {views} views, {requests} requests")


def test_view_follows_settings():
    """fetched_at read as text depends on TimeZone and DateStyle: a view made under one
    setting is not served under another (the text is made again), and both are right."""
    sym = symbols(1)
    run_all("DROP FOREIGN TABLE IF EXISTS v_when",
            "CREATE FOREIGN TABLE v_when (symbol text, fetched_at text) SERVER kis "
            "OPTIONS (endpoint 'domestic_multi_price', cache_ttl_ms '3600000')",
            "DROP FOREIGN TABLE IF EXISTS v_when_ts",
            "CREATE FOREIGN TABLE v_when_ts (symbol text, fetched_at timestamptz) SERVER kis "
            "OPTIONS (endpoint 'domestic_multi_price', cache_ttl_ms '3600000')")
    sql = f"SELECT fetched_at FROM v_when WHERE symbol = '{sym[0]}'"
    ts = f"SELECT fetched_at FROM v_when_ts WHERE symbol = '{sym[0]}'"
    utc = must(run(f"SET TimeZone = 'UTC'; {sql}")[:2], "UTC")
    seoul = must(run(f"SET TimeZone = 'Asia/Seoul'; {sql}")[:2], "Seoul")
    utc_again = must(run(f"SET TimeZone = 'UTC'; {sql}")[:2], "UTC again")
    check(utc == utc_again and utc != seoul, f"UTC {utc}, Seoul {seoul}, UTC again {utc_again}")
    same, _, _ = run(f"SET TimeZone = 'UTC'; SELECT '{utc[0][0]}'::timestamptz = "
                     f"'{seoul[0][0]}'::timestamptz AND '{utc[0][0]}'::timestamptz = ({ts})")
    check(same == [["t"]], f"the texts name other moments: {utc} {seoul}")
    check(stats()["requests"] == 1, f"{stats()['requests']} requests, expected 1")


def test_view_never_outlives_its_answer():
    """A view is served only while its answer is: once the answer is older than the
    reader's cache_ttl_ms, a request is sent and no view is served; after
    kis_fdw_cache_reset() too."""
    syms = symbols(3)
    cached_multi("v_ttl_short")
    sql = f"SELECT symbol, price FROM v_ttl_short WHERE symbol IN ({sql_list(syms)})"
    must(run(sql)[:2], "first")
    check(views_of(sql)[:2] == (1, 0), "the second read was not served a view")
    run_all("ALTER FOREIGN TABLE v_ttl_short OPTIONS (SET cache_ttl_ms '100')")
    time.sleep(0.3)
    views, requests, _ = views_of(sql)
    check((views, requests) == (0, 1), f"after expiry: {views} views, {requests} requests")
    run("SELECT kis_fdw_cache_reset()")
    views, requests, _ = views_of(sql)
    check((views, requests) == (0, 1), f"after a reset: {views} views, {requests} requests")


def test_view_not_for_domains():
    """A column of a domain type is made by its input function each time: its check may
    change.  Such a table is served the answer, never a view, and a constraint added
    later is enforced on the cached answer as on a fresh one."""
    syms = symbols(2)
    run_all("DROP FOREIGN TABLE IF EXISTS v_dom", "DROP DOMAIN IF EXISTS v_price",
            "CREATE DOMAIN v_price AS numeric")
    cached_multi("v_dom", "symbol text, price v_price")
    sql = f"SELECT symbol, price FROM v_dom WHERE symbol IN ({sql_list(syms)}) ORDER BY 1"
    check_prices(must(run(sql)[:2], "first"), syms)
    views, requests, hits = views_of(sql)
    check((views, requests, hits) == (0, 0, 1), f"{views} views, {requests} requests, {hits} hits")
    run_all("ALTER DOMAIN v_price ADD CONSTRAINT tiny CHECK (VALUE < 0) NOT VALID")
    _, err, rc = run(sql)
    check(rc != 0 and "tiny" in err, f"the new constraint was not applied: {err}")
    run_all("DROP FOREIGN TABLE v_dom", "DROP DOMAIN v_price")


def test_view_not_for_kis_dates():
    """A KIS field read as a date or time type could say "now" or "today", whose value is
    the reader's moment: such a table is served the answer, never a view (fetched_at, our
    own text of a timestamp, may be one: test_views_served_to_a_join)."""
    syms = symbols(2)
    cached_multi("v_date", "symbol text, price numeric, listed date OPTIONS (field 'no_such')")
    sql = f"SELECT symbol, price, listed FROM v_date WHERE symbol IN ({sql_list(syms)}) ORDER BY 1"
    rows = must(run(sql)[:2], "first")
    check_prices([r[:2] for r in rows], syms)
    views, requests, hits = views_of(sql)
    check((views, requests, hits) == (0, 0, 1), f"{views} views, {requests} requests, {hits} hits")
    run("DROP FOREIGN TABLE v_date")


def test_view_settings_changed_mid_cursor():
    """Another role's cursor changes TimeZone between two FETCHes of a table that makes
    rows one at a time (on_error 'skip'), with our layout: the answer whose rows were made
    under two settings keeps no view, and we read our own fetched_at (found by the hostile
    review of views)."""
    syms = symbols(31)
    cached_multi("v_ts", "symbol text, fetched_at timestamp")
    cached_multi("v_tstz", "symbol text, fetched_at timestamptz")
    with ordinary_role("v_evil2") as evil:
        run("SELECT kis_fdw_cache_reset()")
        _, err, rc = run(
            f"SET ROLE {evil}; "
            f"CREATE FOREIGN TABLE {evil}.t (symbol text, fetched_at timestamp) SERVER kis "
            "OPTIONS (endpoint 'domestic_multi_price', cache_ttl_ms '3600000', on_error 'skip'); "
            "SET TimeZone = 'Asia/Seoul'; BEGIN; "
            f"DECLARE c CURSOR FOR SELECT symbol, fetched_at FROM {evil}.t "
            f"WHERE symbol IN ({sql_list(syms)}); "
            "FETCH 1 FROM c; SET TimeZone = 'UTC'; FETCH ALL FROM c; COMMIT")
        check(rc == 0, f"the other role's cursor: {err}")
        rows, err, rc = run(
            "SET TimeZone = 'Asia/Seoul'; "
            "SELECT count(*), count(*) FILTER (WHERE a.fetched_at = "
            "b.fetched_at AT TIME ZONE 'Asia/Seoul') FROM v_ts a JOIN v_tstz b USING (symbol) "
            f"WHERE a.symbol IN ({sql_list(syms)}) AND b.symbol IN ({sql_list(syms)})")
        check(rc == 0 and rows == [["31", "31"]],
              f"fetched_at made under another TimeZone was served: {rows} {err}")


def test_view_at_most_four():
    """Five tables make rows of the same answer five ways: four views are kept, the fifth
    is served the answer (a role trying one setting after another cannot fill the store
    with views of one answer)."""
    syms = symbols(3)
    layouts = ["numeric", "text", "float8", "varchar", "int8"]
    for i, t in enumerate(layouts):
        cached_multi(f"v_way{i}", f"symbol text, price {t}")
    run("SELECT kis_fdw_cache_reset()")
    for i in range(len(layouts)):
        must(run(f"SELECT * FROM v_way{i} WHERE symbol IN ({sql_list(syms)})")[:2], f"way {i}")
    views = [views_of(f"SELECT * FROM v_way{i} WHERE symbol IN ({sql_list(syms)})")[0]
             for i in range(len(layouts))]
    check(views == [1, 1, 1, 1, 0], f"views served per way: {views}")
    check(stats()["requests"] == 1, f"{stats()['requests']} requests, expected 1")


def test_view_slot_given_up():
    """Four ways keep views of one answer; two of them end (their tables dropped).  A fifth
    way is served the answer on its first read (every view loses its mark), takes an unread
    view's slot on its second and is served its view from the third on; the ways still read
    keep theirs, and the answer is asked for once."""
    syms = symbols(3)
    layouts = ["numeric", "text", "float8", "varchar", "int8"]
    for i, t in enumerate(layouts):
        cached_multi(f"v_slot{i}", f"symbol text, price {t}")
    run("SELECT kis_fdw_cache_reset()")
    reset_mock()
    where = f"WHERE symbol IN ({sql_list(syms)})"
    for i in range(4):
        must(run(f"SELECT * FROM v_slot{i} {where}")[:2], f"way {i}")
    run_all("DROP FOREIGN TABLE v_slot0", "DROP FOREIGN TABLE v_slot1")
    fifth = [views_of(f"SELECT * FROM v_slot4 {where}")[0] for _ in range(3)]
    check(fifth == [0, 0, 1], f"views served to the fifth way, read by read: {fifth}")
    kept = [views_of(f"SELECT * FROM v_slot{i} {where}")[0] for i in (2, 3, 4)]
    check(kept == [1, 1, 1], f"views served to the ways still read: {kept}")
    check(stats()["requests"] == 1, f"{stats()['requests']} requests, expected 1")


def test_view_slot_not_taken_by_another_role():
    """Our four ways keep views of one answer.  An ordinary role with its own user mapping on
    our server (so its quotes have our answer ids) reads the same answer under one TimeZone
    after another, each a new way of making rows: it is served the answer each time, and our
    four ways keep their views (a want of a slot only ever gives up the wanting role's own)."""
    syms = symbols(3)
    layouts = ["numeric", "text", "float8", "varchar"]
    for i, t in enumerate(layouts):
        cached_multi(f"v_keep{i}", f"symbol text, price {t}")
    run("SELECT kis_fdw_cache_reset()")
    reset_mock()
    where = f"WHERE symbol IN ({sql_list(syms)})"
    for i in range(len(layouts)):
        must(run(f"SELECT * FROM v_keep{i} {where}")[:2], f"our way {i}")
    with ordinary_role("v_churn") as other:
        _, err, rc = run(
            f"SET ROLE {other}; "
            f"CREATE FOREIGN TABLE {other}.t (symbol text, price numeric, fetched_at timestamptz) "
            "SERVER kis OPTIONS (endpoint 'domestic_multi_price', cache_ttl_ms '3600000')")
        check(rc == 0, f"the other role's table: {err}")
        for tz in ("UTC", "Asia/Seoul", "America/New_York", "Europe/London", "Asia/Tokyo"):
            rows, err, rc = run(f"SET ROLE {other}; SET TimeZone = '{tz}'; "
                                f"SELECT symbol, price FROM {other}.t {where}")
            check(rc == 0 and len(rows) == 3, f"the other role's read under {tz}: {err}")
        kept = [views_of(f"SELECT * FROM v_keep{i} {where}")[0] for i in range(len(layouts))]
        check(kept == [1, 1, 1, 1], f"views served to our ways after the other role's: {kept}")
    check(stats()["requests"] == 1, f"{stats()['requests']} requests, expected 1")


def test_view_hostile_role():
    """An ordinary role with its own user mapping (another app key) on our server, so its
    quotes have our answer ids, declares tables that make other rows of the same answers
    (price from the high price; the same layout as ours) and reads them before and after
    us.  We always read our own prices; the views it kept are never served to us unless
    made exactly our way."""
    syms = symbols(30)
    cached_multi("v_ours", "symbol text, price numeric")
    with ordinary_role("v_evil") as evil:
        _, err, rc = run(
            f"SET ROLE {evil}; "
            f"CREATE FOREIGN TABLE {evil}.high (symbol text, price numeric OPTIONS "
            "(field 'inter2_hgpr')) SERVER kis OPTIONS "
            "(endpoint 'domestic_multi_price', cache_ttl_ms '3600000'); "
            f"CREATE FOREIGN TABLE {evil}.plain (symbol text, price numeric) SERVER kis "
            "OPTIONS (endpoint 'domestic_multi_price', cache_ttl_ms '3600000')")
        check(rc == 0, f"the other role's setup: {err}")
        # both keys' tokens first: the counts below are of quotes only
        warm = symbols(1)
        _, err, rc = run(f"SET ROLE {evil}; SELECT * FROM {evil}.plain WHERE symbol = '{warm[0]}'")
        check(rc == 0, f"the other role's first read: {err}")
        must(run(f"SELECT * FROM v_ours WHERE symbol = '{warm[0]}'")[:2], "our first read")
        run("SELECT kis_fdw_cache_reset()")
        reset_mock()
        ours = f"SELECT symbol, price FROM v_ours WHERE symbol IN ({sql_list(syms)}) ORDER BY 1"
        where = f"WHERE symbol IN ({sql_list(syms)})"
        for step in range(3):
            rows, err, rc = run(f"SET ROLE {evil}; SELECT symbol, price FROM {evil}.high {where}; "
                                f"SELECT symbol, price FROM {evil}.plain {where}; "
                                f"SELECT symbol, price FROM {evil}.high {where}")
            check(rc == 0 and len(rows) == 90, f"step {step}: the other role's reads: {err}")
            check_prices(must(run(ours)[:2], f"step {step}: ours"), syms, f"step {step}")
        views, requests, _ = views_of(ours)
        check((views, requests) == (1, 0), f"ours: {views} views, {requests} requests")
        check(stats()["requests"] == 1, f"{stats()['requests']} requests, expected 1: "
              f"{stats()['by_symbol']}")
