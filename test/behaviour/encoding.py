"""Behaviour tests: databases not in UTF-8.  KIS's Korean text and messages are
converted to the database encoding, or the error names the column.
"""

from .harness import MOCK_URL, MOCK_CA, APP_KEY, APP_SECRET, symbols, check, run


def encoded_database(db, encoding, *statements):
    """A fresh database in that encoding with the extension, server kis (the mock),
    our user mapping, then the given statements."""
    run(f"DROP DATABASE IF EXISTS {db}", db="postgres")
    _, err, rc = run(f"CREATE DATABASE {db} ENCODING '{encoding}' LOCALE 'C' TEMPLATE template0",
                     db="postgres")
    check(rc == 0, f"CREATE DATABASE: {err}")
    for sql in ("CREATE EXTENSION kis_fdw",
                f"CREATE SERVER kis FOREIGN DATA WRAPPER kis_fdw OPTIONS "
                f"(base_url '{MOCK_URL}', ca_file '{MOCK_CA}', rate_limit '0', max_retries '0')",
                f"CREATE USER MAPPING FOR CURRENT_USER SERVER kis "
                f"OPTIONS (app_key '{APP_KEY}', app_secret '{APP_SECRET}')",
                *statements):
        _, err, rc = run(sql, db=db)
        check(rc == 0, f"{encoding}: {sql}: {err}")


def test_encoding_error_names_column():
    """A value the database encoding cannot hold (a Korean name in a LATIN1
    database) is an error naming the column, not a crash."""
    try:
        encoded_database("kis_latin1", "LATIN1",
                         "CREATE FOREIGN TABLE m (name text, symbol text, market text) "
                         "SERVER kis OPTIONS (endpoint 'domestic_multi_price')")
        sym = symbols(1)[0]
        _, err, rc = run(f"SELECT * FROM m WHERE symbol = '{sym}'", db="kis_latin1")
        check(rc != 0 and 'column "name"' in err and "terminated" not in err,
              f"expected an error naming column name: {err}")
        rows, err, rc = run(f"SELECT symbol, market FROM m WHERE symbol = '{sym}'", db="kis_latin1")
        check(rc == 0 and rows == [[sym, "J"]], f"the columns that fit still read: {rows} {err}")
    finally:
        run("DROP DATABASE IF EXISTS kis_latin1", db="postgres")


def run_utf8(sql, db):
    """run() with the client in UTF-8, whatever the database encoding."""
    return run(f"SET client_encoding TO 'UTF8'; {sql}", db=db)


def test_encoding_messages():
    """KIS's Korean messages reach EUC_KR and LATIN1 databases: converted where the
    encoding has the characters, as \\uXXXX where it has not, never an encoding error."""
    msg = "MCA05918: 종목코드 오류입니다."
    escaped = "MCA05918: " + "".join(f"\\u{ord(c):04X}" if ord(c) > 127 else c
                                     for c in "종목코드 오류입니다.")
    badkey = "BADencodingKey000000000000000000000"
    for encoding, expect in (("EUC_KR", msg), ("LATIN1", escaped)):
        db = f"kis_{encoding.lower()}"
        try:
            encoded_database(
                db, encoding,
                "CREATE FOREIGN TABLE p (symbol text, price numeric, error text, raw text) "
                "SERVER kis OPTIONS (endpoint 'domestic_price', on_error 'row')",
                "CREATE FOREIGN TABLE d (symbol text, date date, close numeric, name text, raw jsonb) "
                "SERVER kis OPTIONS (endpoint 'domestic_daily')",
                "CREATE SERVER kis_bad FOREIGN DATA WRAPPER kis_fdw OPTIONS "
                f"(base_url '{MOCK_URL}', ca_file '{MOCK_CA}', rate_limit '0')",
                f"CREATE USER MAPPING FOR CURRENT_USER SERVER kis_bad "
                f"OPTIONS (app_key '{badkey}', app_secret '{APP_SECRET}')",
                "CREATE FOREIGN TABLE p_bad (symbol text, price numeric) "
                "SERVER kis_bad OPTIONS (endpoint 'domestic_price')")
            good, bad = symbols(1)[0], "98" + symbols(1)[0][2:]
            # the error column (on_error 'row')
            rows, err, rc = run_utf8(f"SELECT symbol, price, error FROM p WHERE symbol = '{bad}'", db)
            check(rc == 0 and rows == [[bad, "", expect]],
                  f"{encoding}: error column: expected {expect!r}, got {rows} {err}")
            # errdetail (on_error 'error')
            _, err, rc = run_utf8(f"ALTER FOREIGN TABLE p OPTIONS (SET on_error 'error'); "
                                  f"SELECT * FROM p WHERE symbol = '{bad}'", db)
            check(rc != 0 and f"DETAIL:  {expect}" in err and "invalid byte sequence" not in err,
                  f"{encoding}: errdetail: expected {expect!r}: {err}")
            # the skip WARNING
            rows, err, rc = run_utf8(f"ALTER FOREIGN TABLE p OPTIONS (SET on_error 'skip'); "
                                     f"SELECT symbol FROM p WHERE symbol IN ('{good}', '{bad}')", db)
            check(rc == 0 and rows == [[good]] and f"{bad}: {expect}" in err,
                  f"{encoding}: skip WARNING: expected {expect!r}: {rows} {err}")
            # a token refusal's errdetail
            _, err, rc = run_utf8(f"SELECT * FROM p_bad WHERE symbol = '{good}'", db)
            check(rc != 0 and "EGW00103" in err and "invalid byte sequence" not in err and
                  ("유효하지 않은 AppKey" in err if encoding == "EUC_KR" else "\\uC720" in err),
                  f"{encoding}: token refusal detail: {err}")
            # raw as text: the whole answer row, Korean converted or escaped, valid JSON
            # (json's operators cannot read \\u escapes LATIN1 lacks: only json_in there)
            test = ("raw::json->>'stck_prpr' = price::text" if encoding == "EUC_KR" else
                    "raw::json IS NOT NULL AND strpos(raw, '\\u') > 0 AND strpos(raw, 'stck_prpr') > 0")
            rows, err, rc = run_utf8(f"SELECT {test} FROM p WHERE symbol = '{good}'", db)
            check(rc == 0 and rows == [["t"]], f"{encoding}: raw as text: {rows} {err}")
            # data columns: Korean where the encoding has it, else an error naming the column
            rows, err, rc = run_utf8(f"SELECT name, raw->>'stck_bsop_date' IS NOT NULL FROM d "
                                     f"WHERE symbol = '{good}' AND date = '2025-01-02'", db)
            if encoding == "EUC_KR":
                check(rc == 0 and rows == [[f"종목{good}", "t"]], f"EUC_KR: data columns: {rows} {err}")
            else:
                check(rc != 0 and 'column "name"' in err, f"LATIN1: data column error: {err}")
        finally:
            run(f"DROP DATABASE IF EXISTS {db}", db="postgres")
