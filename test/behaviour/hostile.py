"""Behaviour tests: a hostile ordinary role against declared TRs (docs/declared-tables.md,
docs/security.md).  Each test is written as the other role would act: an ordinary role with
USAGE on the server kis and a user mapping of its own (another app key), next to a victim
role with its own mapping.  Each reproduces a gap a hostile review found, fixed since:
declared answers are private to their user mapping, a security-barrier view's condition is
the one pushed down, and params values are printable ASCII.
"""

from .harness import (
    APP_KEY, APP_SECRET, stats, mock_config, symbols, sql_list, check, run, run_all, must)
from .fixtures import BALANCE_PATH, APP_KEY_B, drop_role

INVESTOR_PATH = "/uapi/domestic-stock/v1/quotations/inquire-investor"
VICTIM, ATTACKER = "kis_h_victim", "kis_h_att"


def drop_roles():
    for role in (VICTIM, ATTACKER):
        drop_role(role)
    run("DROP SCHEMA IF EXISTS h_victim, h_att CASCADE")


def two_roles():
    """The victim (app key APP_KEY, account 12345678-01) and the attacker (APP_KEY_B,
    account 87654321-01), each with a schema of its own and USAGE on server kis."""
    drop_roles()
    setup = []
    for role, schema, key, account in ((VICTIM, "h_victim", APP_KEY, "12345678-01"),
                                       (ATTACKER, "h_att", APP_KEY_B, "87654321-01")):
        setup += [f"CREATE ROLE {role}", f"GRANT USAGE ON FOREIGN SERVER kis TO {role}",
                  f"CREATE SCHEMA {schema} AUTHORIZATION {role}",
                  f"CREATE USER MAPPING FOR {role} SERVER kis OPTIONS (app_key '{key}', "
                  f"app_secret '{APP_SECRET}', account '{account}')"]
    setup.append("SELECT kis_fdw_cache_reset()")
    run_all(*setup)


BALANCE_PARAMS = ("CANO=12345678&ACNT_PRDT_CD=01&AFHR_FLPR_YN=N&OFL_YN=&INQR_DVSN=02&"
                  "UNPR_DVSN=01&FUND_STTL_ICLD_YN=N&FNCG_AMT_AUTO_RDPT_YN=N&PRCS_DVSN=00&"
                  "CTX_AREA_FK100=&CTX_AREA_NK100=")


def balance_table(name, extra=""):
    return (f"CREATE FOREIGN TABLE {name} (symbol text OPTIONS (field 'pdno'), "
            f"qty bigint OPTIONS (field 'hldg_qty'), raw jsonb) SERVER kis OPTIONS "
            f"(path '{BALANCE_PATH}', tr_id 'TTTC8434R', rows 'output1', "
            f"params '{BALANCE_PARAMS}'{extra})")


def test_declared_literal_account_answer_shared():
    """Every declared TR's answers are private to the user mapping (they were shared unless
    params used {CANO}/{ACNT_PRDT_CD}).  A victim that writes its account into params literally (or
    reads any credential-dependent TR without them, such as a TR keyed by an HTS user id)
    gets its answer stored in the shared answer store even without cache_ttl_ms, keyed by
    URL and tr_id only.  Another role reads the victim's params in pg_foreign_table (readable
    by every role), declares the same TR on its own mapping (another app key) with
    cache_ttl_ms: it must send its own request, never read the victim's holdings."""
    mock_config(holdings=10)   # one page: a listing that fits one page is stored
    two_roles()
    try:
        must(run(f"SET ROLE {VICTIM}; " + balance_table("h_victim.balance"))[:2], "victim table")
        before = stats()["by_path"].get(BALANCE_PATH, 0)
        rows = must(run(f"SET ROLE {VICTIM}; SELECT count(*) FROM h_victim.balance")[:2], "victim")
        check(rows == [["10"]], f"victim: {rows}")
        # the attacker learns the params (pg_foreign_table is readable by every role)
        seen = must(run(f"SET ROLE {ATTACKER}; SELECT array_to_string(ftoptions, ' ') "
                        f"FROM pg_foreign_table t JOIN pg_class c ON c.oid = t.ftrelid "
                        f"WHERE c.relname = 'balance'")[:2],
                    "attacker reads ftoptions")
        check(seen and "CANO=12345678" in seen[0][0], f"ftoptions as the attacker: {seen}")
        must(run(f"SET ROLE {ATTACKER}; " +
                 balance_table("h_att.steal", ", cache_ttl_ms '3600000'"))[:2], "attacker table")
        plan = must(run(f"SET ROLE {ATTACKER}; EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, "
                        f"SUMMARY OFF) SELECT count(*) FROM h_att.steal")[:2], "attacker")
        lines = [r[0].strip() for r in plan]
        sent = stats()["by_path"].get(BALANCE_PATH, 0) - before
        # the attacker's own request(s) (a stale token of its key may add a retry)
        check(sent >= 2 and "KIS Cache Hits: 0" in lines and
              any(line.startswith("KIS Requests:") and line != "KIS Requests: 0"
                  for line in lines),
              f"the attacker's query (another app key) was answered from the victim's answer: "
              f"{sent} request(s) in all, plan {lines}")
    finally:
        drop_roles()


def test_view_key_restriction_widened():
    """A victim grants a security_barrier view that restricts a declared table's
    param column to one value.  The attacker's own condition on that column (two values: a
    ScalarArrayOpExpr costs no more than the view's '=', and texteq is leakproof, so the
    planner may order it first) must stay a local filter: the view's condition, of the lower
    security level, is the one pushed down, so no request goes out on the victim's app key
    for values the view excludes."""
    two_roles()
    allowed, other = symbols(1)[0], symbols(2)
    try:
        run_all(f"SET ROLE {VICTIM}; CREATE FOREIGN TABLE h_victim.investor (symbol text OPTIONS "
                f"(param 'FID_INPUT_ISCD'), day text OPTIONS (field 'stck_bsop_date')) SERVER kis "
                f"OPTIONS (path '{INVESTOR_PATH}', tr_id 'FHKST01010900', "
                f"params 'FID_COND_MRKT_DIV_CODE=J')",
                f"SET ROLE {VICTIM}; CREATE VIEW h_victim.one WITH (security_barrier) AS "
                f"SELECT * FROM h_victim.investor WHERE symbol = '{allowed}'",
                f"SET ROLE {VICTIM}; GRANT USAGE ON SCHEMA h_victim TO {ATTACKER}",
                f"SET ROLE {VICTIM}; GRANT SELECT ON h_victim.one TO {ATTACKER}")
        rows = must(run(f"SET ROLE {ATTACKER}; SELECT count(*) FROM h_victim.one "
                        f"WHERE symbol IN ({sql_list(other)})")[:2], "attacker")
        check(rows == [["0"]], f"rows through the view: {rows}")
        by_key = stats()["by_appkey"].get(APP_KEY, {})
        asked = {s: by_key.get(s, 0) for s in other}
        check(not any(asked.values()),
              f"requests on the victim's app key for symbols its view excludes: {asked}")
    finally:
        drop_roles()


def test_params_escape_not_in_database_encoding():
    """params accepted %XX escapes of any byte (0x80-0xFF too), and a param column's default
    is that decoded value: the column returned text that is not valid UTF-8.  Such a params
    value is refused when it is set."""
    two_roles()
    try:
        _, err, rc = run(f"SET ROLE {ATTACKER}; CREATE FOREIGN TABLE h_att.bad (symbol text "
                         f"OPTIONS (param 'FID_INPUT_ISCD'), day text OPTIONS "
                         f"(field 'stck_bsop_date')) SERVER kis OPTIONS (path '{INVESTOR_PATH}', "
                         f"tr_id 'FHKST01010900', params 'FID_COND_MRKT_DIV_CODE=J&"
                         f"FID_INPUT_ISCD=%FF%C0')")
        check(rc != 0 and 'invalid value of parameter "FID_INPUT_ISCD"' in err,
              f"a params escape of a non-ASCII byte was accepted: rc {rc}, {err}")
    finally:
        drop_roles()
