"""Behaviour tests: answers parsed keeping only the row fields a table reads (issue 25,
docs/design.md, "Parsing answers").  A table's rows, errors and messages are the same
whether its answers keep only those fields (any table without a raw column) or every
field (a table that reads its raw column): on every endpoint under every on_error, for a
table reading all its columns and for one reading none; and on answers made unusual:
numbers, nested values, escapes, nesting deeper than the picking parser reads, integers
beyond 64 bits, a field that is an object.
"""

import json

from kistest import mock
from mock_kis import quote_output
from .encoding import encoded_database, run_utf8
from .harness import check, run, run_all, reset_mock, set_server
from .views import data_columns, each_on_error, endpoint_queries


def _same(picked, whole, what, extra_columns=1, db=None):
    """Run both; the same exit code and messages, and the same rows once the whole
    table's extra columns are cut; the picked result."""
    a, b = ((run(picked), run(whole)) if db is None else
            (run_utf8(picked, db), run_utf8(whole, db)))
    check(a[2] == b[2], f"{what}: exit {a[2]} picked, {b[2]} whole: {a[1]!r} / {b[1]!r}")
    check(a[1] == b[1], f"{what}: messages differ, picked {a[1]!r}, whole {b[1]!r}")
    if a[2] == 0:
        check(sorted(a[0]) == sorted(r[:-extra_columns] for r in b[0]),
              f"{what}: rows differ, picked {sorted(a[0])[:3]}, whole {sorted(b[0])[:3]}")
    return a


def test_picked_rows_every_endpoint():
    """Every endpoint, every on_error: the catalogue's table (its answers' rows keep the
    fields it reads) and the same table with a raw column read too (they keep all) give
    the same rows, errors and messages, reading every column and reading none (count(*):
    only the fields the endpoint's own rules read, such as paging dates)."""
    run_all("DROP SCHEMA IF EXISTS p_pick CASCADE", "DROP SCHEMA IF EXISTS p_whole CASCADE",
            "CREATE SCHEMA p_pick", "CREATE SCHEMA p_whole",
            "ALTER USER MAPPING FOR CURRENT_USER SERVER kis OPTIONS (ADD account '12345678-01')",
            "IMPORT FOREIGN SCHEMA kis FROM SERVER kis INTO p_pick",
            "IMPORT FOREIGN SCHEMA kis FROM SERVER kis INTO p_whole")
    try:
        for endpoint, where in endpoint_queries():
            cols = data_columns(f"p_pick.{endpoint}", ("fetched_at", "raw"))
            run_all(f"ALTER FOREIGN TABLE p_whole.{endpoint} ADD COLUMN IF NOT EXISTS raw jsonb")
            for on_error, keys in each_on_error(endpoint, where, ("p_pick", "p_whole")):
                what = f"{endpoint} on_error '{on_error}'"
                _same(f"SELECT {cols} FROM p_pick.{endpoint} WHERE {keys}",
                      f"SELECT {cols}, raw IS NULL FROM p_whole.{endpoint} WHERE {keys}", what)
                _same(f"SELECT count(*) FROM p_pick.{endpoint} WHERE {keys}",
                      f"SELECT count(*), count(raw) FROM p_whole.{endpoint} WHERE {keys}",
                      what + ", no column")
    finally:
        run("ALTER USER MAPPING FOR CURRENT_USER SERVER kis OPTIONS (DROP account)")
        run("DROP SCHEMA IF EXISTS p_pick CASCADE")
        run("DROP SCHEMA IF EXISTS p_whole CASCADE")


def _answer(output, **top):
    """inquire-price's answer with this output (and other top-level members)."""
    return {"rt_cd": "0", "msg_cd": "MCA00000", "msg1": "정상처리 되었습니다.",
            "output": output} | top


def test_picked_unusual_answers():
    """Answers unlike the mock's usual ones give the same rows, or the same error, picked
    and whole; among them those the picking parser leaves to jansson (nesting deeper than
    it reads, an integer beyond 64 bits, which jansson refuses)."""
    cols = "symbol text, price numeric, change numeric, volume bigint"
    # the same table name in both: messages name it
    run_all("DROP SCHEMA IF EXISTS p_pick CASCADE", "DROP SCHEMA IF EXISTS p_whole CASCADE",
            "CREATE SCHEMA p_pick", "CREATE SCHEMA p_whole",
            f"CREATE FOREIGN TABLE p_pick.quotes ({cols}) SERVER kis "
            f"OPTIONS (endpoint 'domestic_price')",
            f"CREATE FOREIGN TABLE p_whole.quotes ({cols}, raw jsonb) SERVER kis "
            f"OPTIONS (endpoint 'domestic_price')")
    set_server(max_retries="0")  # an answer jansson refuses is retried otherwise
    usual = quote_output("005930", "J")
    deep = "x"
    for _ in range(40):
        deep = {"d": [deep]}
    cases = {
        "numbers": dict(usual, stck_prpr=71000, prdy_vrss=-1.5, acml_vol=123456789012),
        "reals": dict(usual, stck_prpr=7.1e4, prdy_vrss=1e-300),
        "nested, not read": dict(usual, extra={"a": [1, {"b": "c", "n": None}], "t": True}),
        "escapes": dict(usual, hts_kor_isnm='삼성 "전자"\\ \t\n\u0001 é ☃ 𝄞',
                        **{'ke"y\\': "v", "\u00e9": "w"}),
        "deep, not read": dict(usual, extra=deep),
        "integer beyond 64 bits": dict(usual, extra=2 ** 70),
        "a read field an object": dict(usual, stck_prpr={"v": "1"}),
        "a read field missing": {k: v for k, v in usual.items() if k != "acml_vol"},
        "read fields null and true": dict(usual, acml_vol=None, prdy_vrss=True),
    }
    top = {"output2": [usual, {"x": usual}], "ctx": "k"}
    try:
        for what, output in cases.items():
            for extra in ({}, top):
                reset_mock()
                mock("/__mock/faults", {"faults": [
                    {"kind": "answer", "symbol": "*", "times": -1,
                     "body": _answer(output, **extra), "headers": {}}]})
                _same("SELECT symbol, price, change, volume FROM p_pick.quotes "
                      "WHERE symbol = '005930'",
                      "SELECT symbol, price, change, volume, raw IS NULL FROM p_whole.quotes "
                      "WHERE symbol = '005930'",
                      f"{what}{' with more members' if extra else ''}")
    finally:
        reset_mock()
        run("DROP SCHEMA IF EXISTS p_pick CASCADE")
        run("DROP SCHEMA IF EXISTS p_whole CASCADE")


def test_picked_escapes_other_encodings():
    """In EUC_KR, LATIN1 and SQL_ASCII databases, answers that write Korean as \\u escapes
    (in a field read, in one not read, in the message of a refusal) give the same rows
    and messages picked and whole.  PostgreSQL's parser writes an escape in the database
    encoding, jansson in UTF-8: outside UTF-8 an answer with one is read by jansson."""
    usual = quote_output("005930", "J")
    # 징 in EUC_KR is C2 A1, which is also UTF-8 (for "¡"); 카 is not UTF-8 there.  The
    # message is ASCII, or its Korean would make any answer jansson's in EUC_KR
    answers = {
        "a field read": _answer(dict(usual, bstp_kor_isnm="징"), msg1="OK"),
        "a field read, not UTF-8 in EUC_KR": _answer(dict(usual, bstp_kor_isnm="징카 의약품")),
        "a field not read": _answer(dict(usual, bstp_kor_isnm="의약", rprs_mrkt_kor_name="징"),
                                    msg1="OK"),
        "a refusal": {"rt_cd": "1", "msg_cd": "OPSQ9999", "msg1": "징 오류 é", "output": {}},
    }
    cols = "symbol text, price numeric, sector text OPTIONS (field 'bstp_kor_isnm')"
    for encoding in ("EUC_KR", "LATIN1", "SQL_ASCII"):
        db = "kis_pick_" + encoding.lower()
        # raw as text: it keeps the escapes a jsonb column would have to convert
        encoded_database(db, encoding, "CREATE SCHEMA p_pick", "CREATE SCHEMA p_whole",
                         f"CREATE FOREIGN TABLE p_pick.quotes ({cols}) SERVER kis "
                         f"OPTIONS (endpoint 'domestic_price')",
                         f"CREATE FOREIGN TABLE p_whole.quotes ({cols}, raw text) SERVER kis "
                         f"OPTIONS (endpoint 'domestic_price')")
        try:
            for what, body in answers.items():
                reset_mock()
                mock("/__mock/faults", {"faults": [
                    {"kind": "answer", "symbol": "*", "times": -1, "body": body,
                     "headers": {}, "ascii": True}]})
                _same("SELECT symbol, price, sector FROM p_pick.quotes WHERE symbol = '005930'",
                      "SELECT symbol, price, sector, raw IS NULL FROM p_whole.quotes "
                      "WHERE symbol = '005930'", f"{encoding}, {what}", db=db)
        finally:
            reset_mock()
            run(f"DROP DATABASE IF EXISTS {db}", db="postgres")
