#!/usr/bin/env python3
"""Self-check of test/mock_kis.py (standard library only): python3 test/test_mock_kis.py

Starts the mock as a subprocess over plain HTTP, and over HTTPS with a throw-away CA when
the openssl CLI is available, and checks the behaviours the kis_fdw tests rely on: every
endpoint's shape, paging (tr_cont header and ctx cursors, date cursors), errors, faults and
counters. Expected values are recomputed here from the formulas in mock_kis's docstring.
"""

import base64
import datetime
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from urllib.parse import urlencode

HERE = os.path.dirname(os.path.abspath(__file__))
QUOTE = "/uapi/domestic-stock/v1/quotations/inquire-price"
MULT = "/uapi/domestic-stock/v1/quotations/intstock-multprice"
BOOK = "/uapi/domestic-stock/v1/quotations/inquire-asking-price-exp-ccn"
DAILY = "/uapi/domestic-stock/v1/quotations/inquire-daily-itemchartprice"
OVS = "/uapi/overseas-price/v1/quotations/price"
OVS_DAILY = "/uapi/overseas-price/v1/quotations/dailyprice"
BALANCE = "/uapi/domestic-stock/v1/trading/inquire-balance"
HOLIDAY = "/uapi/domestic-stock/v1/quotations/chk-holiday"


def expected_price(symbol, market="J"):
    """stck_prpr, prdy_vrss, stck_sdpr as documented in mock_kis.py."""
    d = hashlib.sha256(symbol.encode()).hexdigest()
    price = (1000 + int(d[0:8], 16) % 99000) // 10 * 10 + {"J": 0, "NX": 10, "UN": 5}[market]
    change = min(((int(d[8:16], 16) >> 8) % 201 - 100) * 10, price - 10)
    return price, change, price - change


def words(text, n=4):
    d = hashlib.sha256(text.encode()).hexdigest()
    return [int(d[i:i + 8], 16) for i in range(0, 8 * n, 8)]


def weekdays(first, last):
    """YYYYMMDD weekdays in [first, last], newest first."""
    day, stop, out = datetime.date.fromisoformat(last[:4] + "-" + last[4:6] + "-" + last[6:]), \
        datetime.date.fromisoformat(first[:4] + "-" + first[4:6] + "-" + first[6:]), []
    while day >= stop:
        if day.weekday() < 5:
            out.append(day.strftime("%Y%m%d"))
        day -= datetime.timedelta(days=1)
    return out


def domestic_close(symbol, date, original=False):
    close = (1000 + words(symbol + date)[0] % 99000) // 10 * 10
    return close * 2 if original and date < "20250101" else close


def overseas_last(symbol):
    """(last, diff, base) in hundredths, per the mock's docstring."""
    h0, h1 = words(symbol, 2)
    last = 1000 + h0 % 49000
    diff = min((h1 >> 8) % 2001 - 1000, last - 100)
    return last, diff, last - diff


def dec4(hundredths):
    sign = "-" if hundredths < 0 else ""
    return f"{sign}{abs(hundredths) // 100}.{abs(hundredths) % 100:02d}00"


def start_mock(cls, args, port_file):
    """Start the mock for a test class; cls.port is its port (the --ws-port-file, if
    any, is written before port_file)."""
    cls.proc = subprocess.Popen(args)
    deadline = time.monotonic() + 10
    while not os.path.exists(port_file):
        if time.monotonic() > deadline:
            raise RuntimeError("mock did not start")
        time.sleep(0.02)
    with open(port_file) as f:
        cls.port = int(f.read())


def stop_mock(cls):
    if cls.proc.poll() is None:
        cls.proc.kill()
        cls.proc.wait()
    shutil.rmtree(cls.dir)


class MockKisCase(unittest.TestCase):
    tls = False

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="mock_kis_test")
        port_file = os.path.join(cls.dir, "port")
        args = [sys.executable, os.path.join(HERE, "mock_kis.py"), "--quiet",
                "--port-file", port_file]
        cls.context = None
        if cls.tls:
            ca, cert, key = (os.path.join(cls.dir, n) for n in ("ca.pem", "server.pem", "server.key"))
            make_certs(cls.dir, ca, cert, key)
            cls.context = ssl.create_default_context(cafile=ca)
            args += ["--cert", cert, "--key", key]
        start_mock(cls, args, port_file)

    @classmethod
    def tearDownClass(cls):
        stop_mock(cls)

    def connect(self):
        if self.context:
            return http.client.HTTPSConnection("localhost", self.port, context=self.context)
        return http.client.HTTPConnection("127.0.0.1", self.port)

    def call(self, method, path, body=None, headers=None, conn=None):
        """Return (status, parsed JSON or raw bytes); a new connection unless conn is given."""
        return self.call_full(method, path, body, headers, conn)[:2]

    def call_full(self, method, path, body=None, headers=None, conn=None):
        """call() plus the response headers."""
        own = conn is None
        conn = conn or self.connect()
        try:
            conn.request(method, path, json.dumps(body) if isinstance(body, dict) else body,
                         headers or {})
            resp = conn.getresponse()
            data = resp.read()
        finally:
            if own:
                conn.close()
        try:
            return resp.status, json.loads(data), resp.headers
        except ValueError:
            return resp.status, data, resp.headers

    def control(self, what, body):
        self.assertEqual(self.call("POST", "/__mock/" + what, body), (200, {"ok": True}))

    def stats(self):
        return self.call("GET", "/__mock/stats")[1]

    def token(self, appkey="AK", appsecret="SEC"):
        return self.call("POST", "/oauth2/tokenP", {"grant_type": "client_credentials",
                                                     "appkey": appkey, "appsecret": appsecret})

    def quote(self, symbol, market="J", token=None, conn=None, **override):
        headers = {"authorization": f"Bearer {token or self.tok}", "appkey": "AK",
                   "appsecret": "SEC", "tr_id": "FHKST01010100", "custtype": "P"}
        headers.update(override)
        path = f"{QUOTE}?FID_COND_MRKT_DIV_CODE={market}&FID_INPUT_ISCD={symbol}"
        return self.call("GET", path, headers=headers, conn=conn)

    def api(self, path, tr_id, params, **override):
        """GET an API path with valid headers; return (status, body, response headers)."""
        headers = {"authorization": f"Bearer {self.tok}", "appkey": "AK", "appsecret": "SEC",
                   "tr_id": tr_id, "custtype": "P"}
        headers.update(override)
        return self.call_full("GET", f"{path}?{urlencode(params)}", headers=headers)

    def setUp(self):
        self.control("reset", {"tokens": True})
        self.control("config", {"environment": "real",
                                "rate_limit": 0, "token_interval": 60, "today": "20251230",
                                "holdings": 120, "multprice_shape": "array",
                                "data_start": "20150102", "token_reuse": 0,
                                "token_latency_ms": 0})
        status, body = self.token()
        self.assertEqual(status, 200, body)
        self.tok = body["access_token"]

    def test_token(self):
        status, body = self.token("AK2")
        self.assertEqual((status, body["token_type"], body["expires_in"]), (200, "Bearer", 86400))
        self.assertRegex(body["access_token_token_expired"], r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
        self.assertEqual(self.token("AK2")[1]["error_code"], "EGW00133")
        self.assertEqual(self.token("BADKEY"), (403, {"error_code": "EGW00103",
                                                      "error_description": "유효하지 않은 AppKey입니다."}))
        self.assertEqual(self.token("AK3", "BADSECRET")[1]["error_code"], "EGW00105")
        s = self.stats()
        self.assertEqual((s["tokens_issued"], s["token_rejections"]), (2, 1))

    def test_token_reuse(self):
        """Within token_reuse seconds of an appkey's last new token, tokenP hands that
        token back (KIS does for 6 hours); with 0, every issuance is a new token."""
        self.control("config", {"token_interval": 0})
        first = self.token("AK4")[1]["access_token"]
        second = self.token("AK4")[1]["access_token"]
        self.assertNotEqual(first, second)
        self.control("config", {"token_reuse": 21600})
        status, body = self.token("AK4")
        self.assertEqual((status, body["access_token"]), (200, second))
        self.assertGreater(body["expires_in"], 0)
        self.assertNotEqual(self.token("AK5")[1]["access_token"], second)
        self.assertEqual(self.stats()["tokens_issued_by_appkey"]["AK4"], 3)

    def test_token_latency(self):
        """token_latency_ms holds every tokenP answer; token_requests counts each
        request on arrival, tokens_issued only what was issued after the wait."""
        self.control("config", {"token_latency_ms": 300})
        before = self.stats()
        start = time.monotonic()
        status, _ = self.token("AK6")
        self.assertEqual(status, 200)
        self.assertGreaterEqual(time.monotonic() - start, 0.3)
        after = self.stats()
        self.assertEqual((after["token_requests"] - before["token_requests"],
                          after["tokens_issued"] - before["tokens_issued"]), (1, 1))

    def test_quote_formula(self):
        for market in ("J", "NX", "UN"):
            status, body = self.quote("005930", market)
            self.assertEqual((status, body["rt_cd"], body["msg_cd"]), (200, "0", "MCA00000"))
            out = body["output"]
            price, change, base = expected_price("005930", market)
            self.assertEqual((out["stck_prpr"], out["prdy_vrss"], out["stck_sdpr"]),
                             (str(price), str(change), str(base)))
            self.assertTrue(all(isinstance(v, str) for v in out.values()))
            self.assertNotIn("hts_kor_isnm", out)
        self.assertEqual(self.stats()["by_symbol"], {"005930": 3})

    def test_symbol_behaviours(self):
        status, body = self.quote("990001")
        self.assertEqual((status, body["rt_cd"], body["output"]["stck_prpr"]), (200, "0", "0"))
        self.assertEqual(self.quote("980001")[1]["msg_cd"], "MCA05918")
        self.assertEqual(self.quote("970001"), (500, b"<html>Internal Server Error</html>"))
        self.assertNotIn("output", self.quote("950001")[1])
        self.assertEqual(self.quote("005930", "W")[1]["msg_cd"], "OPSQ2001")

    def test_header_checks(self):
        self.assertEqual(self.quote("005930", token="nope")[1]["msg_cd"], "EGW00121")
        self.assertEqual(self.quote("005930", appkey="OTHER")[1]["msg_cd"], "EGW00103")
        self.assertEqual(self.quote("005930", tr_id="X")[1]["msg_cd"], "EGW00213")
        status, body = self.quote("005930", custtype="Z")
        self.assertEqual((status, body["msg_cd"]), (500, "EGW00208"))
        self.assertEqual(self.stats()["bad_requests"], 4)

    def test_faults(self):
        self.control("faults", {"faults": [{"kind": "egw00001", "symbol": "000660"},
                                           {"kind": "garbage"}, {"kind": "expire_token"}]})
        self.assertEqual(self.quote("000660")[1]["msg_cd"], "EGW00001")
        self.assertEqual(self.quote("000660"), (200, b"not json at all {"))
        self.assertEqual(self.quote("000660")[1]["msg_cd"], "EGW00123")
        self.assertEqual(self.quote("000660")[1]["msg_cd"], "EGW00123")  # stays expired
        self.assertEqual(self.stats()["faults_injected"],
                         {"egw00001": 1, "garbage": 1, "expire_token": 1})

    def test_drop_and_truncate(self):
        self.control("faults", {"faults": [{"kind": "drop"}, {"kind": "truncate"}]})
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
            self.quote("005930")
        with self.assertRaises(http.client.IncompleteRead):
            self.quote("005930")

    def test_close(self):
        self.control("faults", {"faults": [{"kind": "close"}]})
        status, body, headers = self.api(QUOTE, "FHKST01010100",
                                         {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "005930"})
        self.assertEqual((status, body["rt_cd"], headers["Connection"]), (200, "0", "close"))
        self.assertEqual(self.stats()["faults_injected"], {"close": 1})

    def test_rate_limit(self):
        self.control("config", {"rate_limit": 3})
        statuses = []
        threads = [threading.Thread(target=lambda: statuses.append(self.quote("005930")[0]))
                   for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        s = self.stats()
        self.assertGreater(s["violations"], 0)
        self.assertEqual((s["requests"], statuses.count(500)), (12, s["violations"]))

    def test_keep_alive_and_slow_concurrency(self):
        conn = self.connect()
        self.quote("005930", conn=conn)
        self.quote("000660", conn=conn)
        conn.close()
        self.assertEqual(self.stats()["connections_opened"], 2)  # tokenP in setUp + conn
        slow = threading.Thread(target=self.quote, args=("960001",))
        slow.start()
        time.sleep(0.3)
        started = time.monotonic()
        self.assertEqual(self.quote("005930")[0], 200)
        self.assertLess(time.monotonic() - started, 1)
        self.assertEqual(self.stats()["in_flight"], 1)
        slow.join()

    def test_overlap_fault(self):
        """overlap holds an answer until a second request is in flight, then answers;
        alone, it answers after ms."""
        self.control("faults", {"faults": [{"kind": "overlap", "ms": 30000}]})
        held = threading.Thread(target=self.quote, args=("005930",))
        held.start()
        wait = time.monotonic() + 10
        while self.stats()["in_flight"] < 1 and time.monotonic() < wait:
            time.sleep(0.01)
        self.assertEqual(self.stats()["in_flight"], 1)
        time.sleep(0.3)
        self.assertTrue(held.is_alive())  # held: nothing else is in flight
        self.assertEqual(self.quote("000660")[0], 200)  # the second one releases both
        held.join(10)
        self.assertFalse(held.is_alive())
        self.assertEqual(self.stats()["max_in_flight"], 2)
        self.control("faults", {"faults": [{"kind": "overlap", "ms": 200}]})
        started = time.monotonic()
        self.assertEqual(self.quote("005930")[0], 200)  # alone: answered after ms
        self.assertGreaterEqual(time.monotonic() - started, 0.2)

    def test_hold_fault(self):
        """hold keeps answers until a release, which answers every request that arrived
        before it; a reset releases too; without either, it answers after ms."""
        def in_flight(n):
            wait = time.monotonic() + 10
            while self.stats()["in_flight"] != n and time.monotonic() < wait:
                time.sleep(0.01)
            self.assertEqual(self.stats()["in_flight"], n)

        self.control("faults", {"faults": [{"kind": "hold", "times": -1, "ms": 30000}]})
        held = [threading.Thread(target=self.quote, args=(s,)) for s in ("005930", "000660")]
        for t in held:
            t.start()
        in_flight(2)
        time.sleep(0.3)
        self.assertTrue(all(t.is_alive() for t in held))  # nothing answers them but a release
        self.control("release", {})
        for t in held:
            t.join(10)
        self.assertFalse(any(t.is_alive() for t in held))
        later = threading.Thread(target=self.quote, args=("035420",))
        later.start()     # held by the rule still there, until the next release: a reset
        in_flight(1)
        self.control("reset", {})
        later.join(10)
        self.assertFalse(later.is_alive())
        self.control("faults", {"faults": [{"kind": "hold", "ms": 200}]})
        started = time.monotonic()
        self.assertEqual(self.quote("005930")[0], 200)  # no release: answered after ms
        self.assertGreaterEqual(time.monotonic() - started, 0.2)
        in_flight(0)

    # ---- endpoints beyond inquire-price

    def multprice(self, pairs, start=1, **override):
        params = {}
        for n, (market, symbol) in enumerate(pairs, start):
            params[f"FID_COND_MRKT_DIV_CODE_{n}"] = market
            params[f"FID_INPUT_ISCD_{n}"] = symbol
        return self.api(MULT, override.pop("tr_id", "FHKST11300006"), params, **override)[:2]

    def test_multprice(self):
        pairs = [("J", "005930"), ("NX", "000660"), ("J", "990001"), ("UN", "035720")]
        status, body = self.multprice(pairs)
        self.assertEqual((status, body["rt_cd"]), (200, "0"))
        out = body["output"]
        self.assertEqual([e["inter_shrn_iscd"] for e in out], [s for _, s in pairs])
        for (market, symbol), entry in zip(pairs, out):
            quote = self.quote(symbol, market)[1]["output"]
            if symbol.startswith("99"):
                self.assertEqual((entry["inter2_prpr"], entry["acml_vol"], entry["inter_kor_isnm"]),
                                 ("0", "0", ""))
                continue
            self.assertEqual(entry["inter2_prpr"], str(expected_price(symbol, market)[0]))
            self.assertEqual(entry["inter_kor_isnm"], "종목" + symbol)
            for mine, theirs in (("inter2_prdy_vrss", "prdy_vrss"), ("prdy_vrss_sign", "prdy_vrss_sign"),
                                 ("prdy_ctrt", "prdy_ctrt"), ("acml_vol", "acml_vol"),
                                 ("inter2_oprc", "stck_oprc"), ("inter2_hgpr", "stck_hgpr"),
                                 ("inter2_lwpr", "stck_lwpr"), ("inter2_mxpr", "stck_mxpr"),
                                 ("inter2_llam", "stck_llam")):
                self.assertEqual(entry[mine], quote[theirs], mine)
            self.assertEqual(int(entry["inter2_askp"]), int(quote["stck_prpr"]) + 10)
            self.assertEqual(entry["inter2_bidp"], quote["stck_prpr"])
        s = self.stats()
        self.assertEqual(s["by_path"], {MULT: 1, QUOTE: 4})
        self.assertEqual(s["by_symbol"]["005930"], 2)
        # numbering from 0, a gap, lower-case names; one symbol as array, then as object
        status, body = self.call("GET", f"{MULT}?fid_cond_mrkt_div_code_0=J&fid_input_iscd_0=005930"
                                 "&FID_INPUT_ISCD_7=000660", headers={
                                     "authorization": f"Bearer {self.tok}", "appkey": "AK",
                                     "appsecret": "SEC", "tr_id": "FHKST11300006", "custtype": "P"})
        self.assertEqual([e["inter_shrn_iscd"] for e in body["output"]], ["005930", "000660"])
        self.assertIsInstance(self.multprice([("J", "005930")])[1]["output"], list)
        self.control("config", {"multprice_shape": "object"})
        self.assertEqual(self.multprice([("J", "005930")])[1]["output"]["inter_shrn_iscd"], "005930")
        self.assertIsInstance(self.multprice([("J", "005930"), ("J", "000660")])[1]["output"], list)
        # the unsigned reading: magnitudes only, the direction in prdy_vrss_sign
        self.control("config", {"multprice_signs": "unsigned"})
        down = self.multprice([("J", "000660"), ("J", "005930")])[1]["output"]
        self.assertEqual([(e["inter2_prdy_vrss"], e["prdy_vrss_sign"], e["prdy_ctrt"]) for e in down],
                         [("20", "5", "0.05"), ("880", "2", "2.65")])
        # 30 is the cap; the request still counts once
        self.control("reset", {})
        many = [("J", "%06d" % (100000 + i)) for i in range(31)]
        self.assertEqual(len(self.multprice(many[:30])[1]["output"]), 30)
        status, body = self.multprice(many)
        self.assertEqual((status, body["rt_cd"], body["msg_cd"]), (200, "1", "OPSQ2002"))
        self.assertNotIn("output", body)
        s = self.stats()
        self.assertEqual((s["requests"], s["by_symbol"]["100000"], s["errors"]), (2, 2, {"OPSQ2002": 1}))
        self.assertEqual(self.multprice([("W", "005930")])[1]["msg_cd"], "OPSQ2001")
        self.assertEqual(self.multprice([("J", "005930")], tr_id="FHKST01010100")[1]["msg_cd"],
                         "EGW00213")

    def test_overseas_price(self):
        def price(excd, symb, tr_id="HHDFS00000300"):
            return self.api(OVS, tr_id, {"AUTH": "", "EXCD": excd, "SYMB": symb})[:2]
        status, body = price("NAS", "AAPL")
        self.assertEqual((status, body["rt_cd"], body["msg_cd"]), (200, "0", "MCA00000"))
        out = body["output"]
        last, diff, base = overseas_last("AAPL")
        # real shapes: diff without its sign, the direction in sign and rate
        self.assertEqual((out["rsym"], out["zdiv"], out["last"], out["base"], out["diff"]),
                         ("DNASAAPL", "4", dec4(last), dec4(base), dec4(abs(diff))))
        self.assertRegex(out["last"], r"^\d+\.\d{4}$")
        self.assertLess(diff, 0)
        self.assertEqual((out["sign"], out["diff"], out["rate"]), ("5", "6.5600", "-1.41"))
        up = price("NAS", "MSFT")[1]["output"]
        self.assertEqual((up["sign"], up["diff"], up["rate"]), ("2", "5.3000", "+1.52"))
        flat = price("NAS", "AGO")[1]["output"]
        self.assertEqual((flat["sign"], flat["diff"], flat["rate"]), ("0", "0.0000", " 0.00"))
        self.assertEqual(out["ordy"], "매수가능")
        self.assertEqual(price("BAQ", "AAPL")[1]["output"]["rsym"], "DBAQAAPL")  # daytime NAS
        self.assertEqual(price("NYS", "IBM")[1]["output"]["rsym"], "DNYSIBM")
        self.assertEqual(price("HKS", "0700")[1]["output"]["rsym"], "DHKS0700")
        blank = price("NYS", "AAPL")[1]
        self.assertEqual(blank["rt_cd"], "0")
        self.assertTrue(blank["output"] and all(v == "" for v in blank["output"].values()))
        other = "ZZZQ"
        home = "NAS" if hashlib.sha256(other.encode()).digest()[0] % 2 == 0 else "NYS"
        self.assertEqual(price(home, other)[1]["output"]["rsym"], f"D{home}{other}")
        self.assertEqual(price({"NAS": "NYS", "NYS": "NAS"}[home], other)[1]["output"]["last"], "")
        status, body = price("XXX", "AAPL")
        self.assertEqual((status, body["rt_cd"], body["msg_cd"]), (200, "1", "OPSQ2001"))
        self.assertEqual(price("NAS", "AAPL", tr_id="FHKST01010100")[1]["msg_cd"], "EGW00213")
        self.assertEqual(self.stats()["by_symbol"]["AAPL"], 5)
        # outside trading hours a listed symbol has an empty last, its identity intact
        self.control("config", {"overseas_session": "closed"})
        closed = price("NAS", "AAPL")[1]["output"]
        self.assertEqual((closed["last"], closed["rsym"], closed["diff"], closed["base"]),
                         ("", "DNASAAPL", out["diff"], out["base"]))
        self.assertEqual(price("NYS", "AAPL")[1]["output"]["rsym"], "")

    def test_overseas_signs(self):
        """Every overseas diff is unsigned; sign and rate agree with the signed difference."""
        for symbol in ("AAPL", "MSFT", "TSLA", "NVDA", "AMZN", "AGO"):
            out = self.api(OVS, "HHDFS00000300", {"AUTH": "", "EXCD": "NAS", "SYMB": symbol})[1]["output"]
            diff = overseas_last(symbol)[1]
            self.assertEqual(out["diff"], dec4(abs(diff)), symbol)
            self.assertEqual(out["sign"], "2" if diff > 0 else "5" if diff < 0 else "0", symbol)
            self.assertRegex(out["rate"], r"^\+\d+\.\d\d$" if diff > 0 else
                             r"^-\d+\.\d\d$" if diff < 0 else r"^ 0\.00$")

    def daily(self, symbol, first, last, period="D", adj="0", market="J"):
        return self.api(DAILY, "FHKST03010100", {
            "FID_COND_MRKT_DIV_CODE": market, "FID_INPUT_ISCD": symbol, "FID_INPUT_DATE_1": first,
            "FID_INPUT_DATE_2": last, "FID_PERIOD_DIV_CODE": period, "FID_ORG_ADJ_PRC": adj})[:2]

    def test_domestic_daily(self):
        status, body = self.daily("005930", "20251201", "20251231")
        self.assertEqual((status, body["rt_cd"]), (200, "0"))
        rows = body["output2"]
        self.assertEqual([r["stck_bsop_date"] for r in rows], weekdays("20251201", "20251230"))
        self.assertEqual(rows[0]["stck_clpr"], str(domestic_close("005930", "20251230")))
        for newer, older in zip(rows, rows[1:]):
            self.assertEqual(int(newer["stck_clpr"]) - int(older["stck_clpr"]), int(newer["prdy_vrss"]))
            self.assertLessEqual(int(newer["stck_lwpr"]), int(newer["stck_clpr"]))
            self.assertGreaterEqual(int(newer["stck_hgpr"]), int(newer["stck_oprc"]))
        self.assertEqual((rows[0]["flng_cls_code"], rows[0]["mod_yn"], rows[0]["revl_issu_reas"]),
                         ("00", "N", ""))
        summary = body["output1"]
        self.assertEqual((summary["hts_kor_isnm"], summary["stck_prpr"]),
                         ("종목005930", str(expected_price("005930")[0])))
        # capped at the newest 100; paging back with DATE_2 = oldest - 1 day covers the range
        rows = self.daily("005930", "20240101", "20251231")[1]["output2"]
        self.assertEqual([r["stck_bsop_date"] for r in rows], weekdays("20240101", "20251230")[:100])
        collected, last = [], "20251231"
        while True:
            page = self.daily("000660", "20250101", last)[1]["output2"]
            collected += [r["stck_bsop_date"] for r in page]
            if len(page) < 100:
                break
            oldest = datetime.datetime.strptime(page[-1]["stck_bsop_date"], "%Y%m%d").date()
            last = (oldest - datetime.timedelta(days=1)).strftime("%Y%m%d")
        self.assertEqual(collected, weekdays("20250101", "20251230"))
        # periods: last trading day of each week / month / year, the current one up to today
        dates = lambda period, first: [r["stck_bsop_date"] for r in
                                       self.daily("005930", first, "20251231", period)[1]["output2"]]
        self.assertEqual(dates("W", "20251201"), ["20251230", "20251226", "20251219", "20251212",
                                                  "20251205"])
        self.assertEqual(dates("M", "20250801"), ["20251230", "20251128", "20251031", "20250930",
                                                  "20250829"])
        self.assertEqual(dates("Y", "20210101"), ["20251230", "20241231", "20231229", "20221230",
                                                  "20211231"])
        # original prices differ (x2) only before 20250101
        adj = self.daily("005930", "20241230", "20250102", adj="0")[1]["output2"]
        org = self.daily("005930", "20241230", "20250102", adj="1")[1]["output2"]
        self.assertEqual([r["stck_bsop_date"] for r in org], ["20250102", "20250101", "20241231", "20241230"])
        self.assertEqual([int(o["stck_clpr"]) / int(a["stck_clpr"]) for o, a in zip(org, adj)], [1, 1, 2, 2])
        self.assertEqual(org[2]["stck_clpr"], str(domestic_close("005930", "20241231", original=True)))
        # errors and edge cases
        for args in (("20251231", "20251201"), ("2025120", "20251231"), ("20251301", "20251231"),
                     ("20251201", "20251231", "X"), ("20251201", "20251231", "D", "2")):
            status, body = self.daily("005930", *args)
            self.assertEqual((status, body["rt_cd"], body["msg_cd"]), (200, "1", "OPSQ2002"), args)
        self.assertEqual(self.daily("005930", "20251227", "20251228")[1]["output2"], [])  # weekend
        self.assertEqual(self.daily("005930", "20260101", "20260131")[1]["output2"], [])  # future
        self.assertEqual(self.daily("005930", "20100101", "20141231")[1]["output2"], [])  # pre-data
        body = self.daily("990001", "20251201", "20251231")[1]
        self.assertEqual((body["rt_cd"], body["output2"], body["output1"]["stck_prpr"]), ("0", [], "0"))
        self.assertEqual(self.daily("980001", "20251201", "20251231")[1]["msg_cd"], "MCA05918")
        self.assertEqual(self.daily("005930", "20251201", "20251231", market="Q")[1]["msg_cd"], "OPSQ2001")
        # config data_start: a longer (or shorter) history, paging back ends there
        self.assertEqual(self.daily("005930", "19900101", "20150106")[1]["output2"][-1]["stck_bsop_date"],
                         "20150102")
        self.control("config", {"data_start": "19900102"})
        self.assertEqual([r["stck_bsop_date"] for r in
                          self.daily("005930", "19891225", "19900105")[1]["output2"]],
                         ["19900105", "19900104", "19900103", "19900102"])
        # requests are counted per appkey header too
        by_appkey = self.stats()["by_appkey"]
        self.assertEqual(set(by_appkey), {"AK"})
        self.assertGreater(by_appkey["AK"]["005930"], 1)
        # --today / config today moves everything
        self.control("config", {"today": "20250103"})
        self.assertEqual([r["stck_bsop_date"] for r in
                          self.daily("005930", "20241230", "20251231")[1]["output2"]],
                         ["20250103", "20250102", "20250101", "20241231", "20241230"])

    def overseas_daily(self, excd, symb, bymd="", gubn="0", modp="1"):
        return self.api(OVS_DAILY, "HHDFS76240000", {"AUTH": "", "EXCD": excd, "SYMB": symb,
                        "GUBN": gubn, "BYMD": bymd, "MODP": modp, "KEYB": ""})[:2]

    def test_library_trs(self):
        """The library's TRs (mock_library.py): real shapes, real-only TRs refused on the
        virtual host, rankings ordered, minute bars paged back by NEXT/KEYB."""
        lib = "/uapi/domestic-stock/v1/quotations/"
        status, body, _ = self.api(lib + "inquire-investor", "FHKST01010900",
                                   {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "005930"})
        rows = body["output"]
        self.assertEqual((status, body["rt_cd"], len(rows)), (200, "0", 30))
        self.assertEqual((rows[0]["stck_bsop_date"], rows[0]["frgn_ntby_qty"],
                          rows[0]["prdy_vrss_sign"]), ("20251230", "", "0"))  # before the close
        for r in rows[1:]:
            for who in ("prsn", "frgn", "orgn"):
                self.assertEqual(int(r[f"{who}_ntby_qty"]),
                                 int(r[f"{who}_shnu_vol"]) - int(r[f"{who}_seln_vol"]))
        self.assertEqual(self.api(lib + "inquire-investor", "FHKST01010900",
                                  {"FID_COND_MRKT_DIV_CODE": "J",
                                   "FID_INPUT_ISCD": "980001"})[1]["msg_cd"], "MCA05918")
        params = {"FID_COND_MRKT_DIV_CODE": "J", "FID_COND_SCR_DIV_CODE": "20171",
                  "FID_INPUT_ISCD": "1001"}
        rows = self.api(lib + "volume-rank", "FHPST01710000", params)[1]["output"]
        self.assertEqual([r["data_rank"] for r in rows], [str(i) for i in range(1, 31)])
        self.assertEqual([int(r["acml_vol"]) for r in rows],
                         sorted((int(r["acml_vol"]) for r in rows), reverse=True))
        self.assertEqual(self.api(lib + "volume-rank", "FHPST01710000",
                                  dict(params, FID_COND_SCR_DIV_CODE="1"))[1]["msg_cd"], "OPSQ2002")
        # minute bars: 120 newest first, then the page before KEYB
        minute = "/uapi/overseas-price/v1/quotations/inquire-time-itemchartprice"
        ask = {"AUTH": "", "EXCD": "NAS", "SYMB": "AAPL", "NMIN": "1", "PINC": "1",
               "NEXT": "", "NREC": "120", "FILL": "", "KEYB": ""}
        first = self.api(minute, "HHDFS76950200", ask)[1]
        bars = first["output2"]
        self.assertEqual((len(bars), first["output1"]["next"], bars[0]["xhms"]), (120, "1", "160000"))
        keyb = bars[-1]["xymd"] + "%06d" % (int(bars[-1]["xhms"]) - 100)
        second = self.api(minute, "HHDFS76950200", dict(ask, NEXT="1", KEYB=keyb))[1]["output2"]
        self.assertEqual(second[0]["xymd"] + second[0]["xhms"], keyb)
        self.control("config", {"environment": "virtual"})
        self.assertEqual(self.api(lib + "volume-rank", "FHPST01710000", params)[1]["msg_cd"],
                         "EGW00213")

    def test_overseas_daily(self):
        status, body = self.overseas_daily("NAS", "TSLA")
        self.assertEqual((status, body["rt_cd"]), (200, "0"))
        rows = body["output2"]
        self.assertEqual([r["xymd"] for r in rows], weekdays("20250101", "20251230")[:100])
        self.assertEqual(body["output1"], {"rsym": "DNASTSLA", "zdiv": "4", "nrec": "100"})
        self.assertEqual(rows[0]["clos"], dec4(1000 + words("TSLA20251230")[0] % 49000))
        for r in rows:
            self.assertRegex(r["clos"], r"^\d+\.\d{4}$")
            self.assertTrue(float(r["low"]) <= float(r["clos"]) <= float(r["high"]))
        for newer, older in zip(rows, rows[1:]):
            change = float(newer["clos"]) - float(older["clos"])
            self.assertEqual(newer["diff"][0] != "-", True)  # real answers: no sign on diff
            self.assertAlmostEqual(abs(change), float(newer["diff"]))
            self.assertEqual(newer["sign"], "2" if change > 0 else "5" if change < 0 else "3")
            self.assertEqual(newer["rate"][0], "+" if change > 0 else "-" if change < 0 else " ")
        self.assertEqual(self.overseas_daily("NAS", "TSLA", "20251231")[1]["output2"], rows)
        # paging back by BYMD ends at the first bar, 20150102
        page = self.overseas_daily("NAS", "TSLA", "20150301")[1]
        self.assertEqual([r["xymd"] for r in page["output2"]], weekdays("20150102", "20150227"))
        self.assertEqual(page["output1"]["nrec"], str(len(page["output2"])))
        self.assertEqual(self.overseas_daily("NAS", "TSLA", "20141231")[1]["output2"], [])
        first = page["output2"][-1]  # the first bar has no previous close: flat
        self.assertEqual((first["xymd"], first["sign"], first["diff"], first["rate"]),
                         ("20150102", "3", "0.0000", " 0.00"))
        months = self.overseas_daily("NAS", "TSLA", "20251231", gubn="2")[1]["output2"]
        self.assertEqual([r["xymd"] for r in months[:3]], ["20251230", "20251128", "20251031"])
        self.assertEqual([r["xymd"] for r in self.overseas_daily("NAS", "TSLA", "20251231", gubn="1")
                          [1]["output2"][:2]], ["20251230", "20251226"])
        unadj = self.overseas_daily("NAS", "TSLA", "20250102", modp="0")[1]["output2"]
        adj = self.overseas_daily("NAS", "TSLA", "20250102", modp="1")[1]["output2"]
        self.assertEqual([round(float(u["clos"]) / float(a["clos"]), 6) for u, a in zip(unadj, adj)][:3],
                         [1, 1, 2])
        body = self.overseas_daily("NYS", "TSLA")[1]
        self.assertEqual((body["rt_cd"], body["output2"], body["output1"]["nrec"]), ("0", [], "0"))
        self.assertEqual(self.overseas_daily("BAQ", "TSLA")[1]["msg_cd"], "OPSQ2001")
        self.assertEqual(self.overseas_daily("NAS", "TSLA", "2025")[1]["msg_cd"], "OPSQ2002")
        self.assertEqual(self.overseas_daily("NAS", "TSLA", gubn="3")[1]["msg_cd"], "OPSQ2002")

    def test_order_book(self):
        def book(symbol, market="J"):
            return self.api(BOOK, "FHKST01010200", {"FID_COND_MRKT_DIV_CODE": market,
                                                    "FID_INPUT_ISCD": symbol})[:2]
        status, body = book("005930", "NX")
        self.assertEqual((status, body["rt_cd"]), (200, "0"))
        price = expected_price("005930", "NX")[0]
        b, e = body["output1"], body["output2"]
        self.assertEqual([int(b[f"askp{k}"]) for k in range(1, 11)], [price + 10 * k for k in range(1, 11)])
        self.assertEqual([int(b[f"bidp{k}"]) for k in range(1, 11)], [price - 10 * k for k in range(10)])
        asks = [int(b[f"askp_rsqn{k}"]) for k in range(1, 11)]
        bids = [int(b[f"bidp_rsqn{k}"]) for k in range(1, 11)]
        raw = hashlib.sha256(b"005930:book").digest()
        self.assertEqual(asks + bids, [10 * (1 + x) for x in raw[:20]])
        self.assertEqual((int(b["total_askp_rsqn"]), int(b["total_bidp_rsqn"])), (sum(asks), sum(bids)))
        self.assertEqual((b["aspr_acpt_hour"], b["new_mkop_cls_code"], b["askp_rsqn_icdc3"]),
                         ("153000", "20", "0"))
        quote = self.quote("005930", "NX")[1]["output"]
        self.assertEqual((e["stck_prpr"], e["stck_sdpr"], e["antc_cnpr"], e["antc_mkop_cls_code"]),
                         (quote["stck_prpr"], quote["stck_sdpr"], quote["stck_prpr"], "311"))
        body = book("990001")[1]
        self.assertEqual(body["rt_cd"], "0")
        self.assertTrue(all(v == "0" for v in body["output1"].values()))
        self.assertEqual(body["output2"]["stck_prpr"], "0")
        self.assertEqual(book("980001")[1]["msg_cd"], "MCA05918")

    def balance(self, cano="12345678", tr_id="TTTC8434R", tr_cont=None, fk="", nk="", **override):
        headers = dict(override)
        if tr_cont is not None:
            headers["tr_cont"] = tr_cont
        return self.api(BALANCE, tr_id, {
            "CANO": cano, "ACNT_PRDT_CD": "01", "AFHR_FLPR_YN": "N", "OFL_YN": "", "INQR_DVSN": "02",
            "UNPR_DVSN": "01", "FUND_STTL_ICLD_YN": "N", "FNCG_AMT_AUTO_RDPT_YN": "N",
            "PRCS_DVSN": "00", "CTX_AREA_FK100": fk, "CTX_AREA_NK100": nk}, **headers)

    def all_pages(self, tr_id, cano="12345678"):
        """[(response tr_cont, page body)] following the cursors to the end, on a server
        of the tr_id's environment."""
        self.control("config", {"environment": "virtual" if tr_id.startswith("V") else "real"})
        pages, status, body, headers = [], *self.balance(cano, tr_id)
        while True:
            self.assertEqual((status, body["rt_cd"]), (200, "0"), body)
            pages.append((headers["tr_cont"], body))
            if headers["tr_cont"] != "M":
                return pages
            status, body, headers = self.balance(cano, tr_id, "N", body["ctx_area_fk100"],
                                                 body["ctx_area_nk100"])

    def test_balance_real_shapes(self):
        """Success codes other than MCA00000, msg1 padded to 80 CP949 bytes, ctx_area_fk100
        set on the last page too, an empty account with KIOK0560, SYDB0050 mid-listing."""
        pages = self.all_pages("TTTC8434R")
        self.assertEqual({b["msg_cd"] for _, b in pages}, {"KIOK0510"})
        self.assertEqual(len(pages[0][1]["msg1"].encode("cp949")), 80)
        self.assertEqual(pages[0][1]["msg1"].rstrip(), "조회가 완료되었습니다")
        last = pages[-1][1]
        self.assertEqual((pages[-1][0], last["ctx_area_fk100"].rstrip(), last["ctx_area_nk100"].strip()),
                         ("D", "12345678^01^N^N^01^01^N^", ""))
        self.assertEqual({b["msg_cd"] for _, b in self.all_pages("VTTC8434R")}, {"20310000"})
        empty = self.all_pages("TTTC8434R", "00000000")
        self.assertEqual([(c, b["rt_cd"], b["msg_cd"], b["output1"]) for c, b in empty],
                         [("D", "0", "KIOK0560", [])])
        # sydb0050 skips first pages and hits the next follow-up page
        self.control("faults", {"faults": [{"kind": "sydb0050"}]})
        status, first, headers = self.balance()
        self.assertEqual((status, first["rt_cd"], headers["tr_cont"]), (200, "0", "M"))
        status, body, headers = self.balance("12345678", "TTTC8434R", "N", first["ctx_area_fk100"],
                                             first["ctx_area_nk100"])
        self.assertEqual((status, body["rt_cd"], body["msg_cd"], body["msg1"].rstrip()),
                         (200, "7", "SYDB0050", "조회이후에 자료가 변경되었습니다.(다시 조회하세요)"))
        self.assertNotIn("output1", body)
        self.assertEqual(self.stats()["errors"], {"SYDB0050": 1})
        self.assertEqual(len(self.all_pages("TTTC8434R")), 3)  # used up

    def test_balance_paging(self):
        pages = self.all_pages("TTTC8434R")
        self.assertEqual([(c, len(b["output1"])) for c, b in pages], [("M", 50), ("M", 50), ("D", 20)])
        rows = [r for _, b in pages for r in b["output1"]]
        self.assertEqual([r["pdno"] for r in rows], ["%06d" % (100000 + 7 * i) for i in range(120)])
        for i in (0, 1, 119):
            r, price = rows[i], expected_price(rows[i]["pdno"])[0]
            qty = 1 + (i * 37) % 500
            self.assertEqual((r["prdt_name"], r["hldg_qty"], r["ord_psbl_qty"], r["prpr"]),
                             ("종목" + r["pdno"], str(qty), str(qty), str(price)))
            self.assertEqual(float(r["pchs_avg_pric"]), price - 100)
            self.assertEqual((int(r["pchs_amt"]), int(r["evlu_amt"]), int(r["evlu_pfls_amt"])),
                             (qty * (price - 100), qty * price, qty * 100))
            self.assertRegex(r["evlu_pfls_rt"], r"^\d+\.\d\d$")
        summary = pages[0][1]["output2"]
        self.assertEqual(len(summary), 1)
        self.assertEqual(summary, pages[-1][1]["output2"])
        total = summary[0]
        self.assertEqual(int(total["pchs_amt_smtl_amt"]), sum(int(r["pchs_amt"]) for r in rows))
        self.assertEqual(int(total["evlu_amt_smtl_amt"]), sum(int(r["evlu_amt"]) for r in rows))
        self.assertEqual(int(total["evlu_pfls_smtl_amt"]), sum(int(r["evlu_pfls_amt"]) for r in rows))
        self.assertEqual(int(total["tot_evlu_amt"]),
                         int(total["evlu_amt_smtl_amt"]) + int(total["dnca_tot_amt"]))
        self.assertEqual(len(pages[0][1]["ctx_area_nk100"]), 100)
        # virtual: 20 a page; the config changes the position count
        self.assertEqual([len(b["output1"]) for _, b in self.all_pages("VTTC8434R")], [20] * 6)
        self.control("config", {"holdings": 20})
        self.assertEqual([(c, len(b["output1"])) for c, b in self.all_pages("VTTC8434R")], [("D", 20)])
        self.control("config", {"holdings": 21})
        self.assertEqual([len(b["output1"]) for _, b in self.all_pages("VTTC8434R")], [20, 1])
        s = self.stats()
        self.assertEqual(s["pages"], {BALANCE: 3 + 6 + 1 + 2})
        self.assertEqual(s["by_path"], {BALANCE: 12})
        self.assertEqual(s["by_symbol"], {})

    def test_balance_errors(self):
        pages = self.all_pages("TTTC8434R", "00000000")
        self.assertEqual([(c, b["output1"]) for c, b in pages], [("D", [])])
        self.assertEqual(pages[0][1]["output2"][0]["evlu_amt_smtl_amt"], "0")
        for cano in ("99999999", "1234", ""):
            status, body, headers = self.balance(cano)
            self.assertEqual((status, body["rt_cd"], body["msg_cd"]), (200, "1", "OPSQ2000"))
            self.assertNotIn("tr_cont", headers)
        self.assertEqual(self.balance(tr_cont="")[2]["tr_cont"], "M")  # blank = first page
        first = self.balance()[1]
        fk, nk = first["ctx_area_fk100"], first["ctx_area_nk100"]
        # the cursor is reusable (retries) and works with trailing spaces trimmed
        self.assertEqual(self.balance("12345678", "TTTC8434R", "N", fk, nk)[1]["output1"][0]["pdno"],
                         "%06d" % (100000 + 7 * 50))
        trimmed = self.balance("12345678", "TTTC8434R", "N", fk.rstrip(), nk.rstrip())
        self.assertEqual(trimmed[2]["tr_cont"], "M")
        forged = nk.rstrip()[:-6] + "000075"  # never issued
        for bad in (("N", fk, forged), ("N", fk, ""), ("N", "87654321^01", nk), ("X", fk, nk)):
            status, body, _ = self.balance("12345678", "TTTC8434R", *bad)
            self.assertEqual((status, body["rt_cd"], body["msg_cd"]), (200, "1", "OPSQ2002"), bad)
        self.assertEqual(self.balance("87654321", "TTTC8434R", "N", fk, nk)[1]["msg_cd"], "OPSQ2002")
        self.assertEqual(self.balance(tr_id="TTTC8434X")[1]["msg_cd"], "EGW00213")
        self.control("reset", {})  # forgets the cursors
        self.assertEqual(self.balance("12345678", "TTTC8434R", "N", fk, nk)[1]["msg_cd"], "OPSQ2002")

    def test_balance_flags(self):
        """inquire-balance refuses a missing or undocumented flag (OPSQ2002), as KIS
        refuses a request without its required fields, and takes every documented value."""
        sys.path.insert(0, HERE)
        import mock_kis
        base = {"CANO": "12345678", "ACNT_PRDT_CD": "01", "AFHR_FLPR_YN": "N", "OFL_YN": "",
                "INQR_DVSN": "02", "UNPR_DVSN": "01", "FUND_STTL_ICLD_YN": "N",
                "FNCG_AMT_AUTO_RDPT_YN": "N", "PRCS_DVSN": "00", "CTX_AREA_FK100": "",
                "CTX_AREA_NK100": ""}
        self.assertEqual(len(mock_kis.BALANCE_FLAGS), 7)
        refused = []
        for name in list(mock_kis.BALANCE_FLAGS) + ["ctx_area_fk100", "ctx_area_nk100"]:
            upper = name.upper()
            missing = {k: v for k, v in base.items() if k != upper}
            refused.append(self.api(BALANCE, "TTTC8434R", missing)[1]["msg_cd"])
            if name.startswith("ctx"):
                continue
            for wrong in ("Z", "03", " "):
                refused.append(self.api(BALANCE, "TTTC8434R", dict(base, **{upper: wrong}))[1]["msg_cd"])
            for good in mock_kis.BALANCE_FLAGS[name]:
                status, body, _ = self.api(BALANCE, "TTTC8434R", dict(base, **{upper: good}))
                self.assertEqual((status, body["msg_cd"]), (200, "KIOK0510"), (upper, good))
        self.assertEqual(set(refused), {"OPSQ2002"})
        self.assertEqual(len(refused), 7 * 4 + 2)
        # a real client's parameters, lower-case names as in the official Postman collection
        status, body, _ = self.api(BALANCE, "TTTC8434R", {k.lower(): v for k, v in base.items()})
        self.assertEqual(body["msg_cd"], "KIOK0510")

    def test_environments(self):
        """A real server takes the real tr_ids, a virtual one the virtual ones (EGW00213
        otherwise); TRs for real accounts only are refused on a virtual server."""
        self.assertEqual(self.balance(tr_id="VTTC8434R")[1]["msg_cd"], "EGW00213")
        self.assertEqual(self.balance(tr_id="TTTC8434R")[1]["msg_cd"], "KIOK0510")
        self.control("config", {"environment": "virtual"})
        self.assertEqual(self.balance(tr_id="TTTC8434R")[1]["msg_cd"], "EGW00213")
        self.assertEqual(self.balance(tr_id="VTTC8434R")[1]["msg_cd"], "20310000")
        self.assertEqual(self.quote("005930")[1]["msg_cd"], "MCA00000")   # same tr_id in both
        self.assertEqual(self.multprice([("J", "005930")])[1]["msg_cd"], "EGW00213")
        self.assertEqual(self.api("/uapi/domestic-stock/v1/quotations/chk-holiday", "CTCA0903R",
                                  {"BASS_DT": "20251230", "CTX_AREA_FK": "", "CTX_AREA_NK": ""}
                                  )[1]["msg_cd"], "EGW00213")
        self.assertEqual(self.stats()["environment"], "virtual")
        self.assertEqual(self.call("POST", "/__mock/config", {"environment": "paper"})[0], 400)

    def test_token_credentials(self):
        """A token belongs to the app key and secret that obtained it: another secret
        with it is EGW00105 (another app key EGW00103: test_header_checks)."""
        self.assertEqual(self.quote("005930", appsecret="SEC2")[1]["msg_cd"], "EGW00105")
        self.assertEqual(self.balance(appsecret="SEC2")[1]["msg_cd"], "EGW00105")
        self.assertEqual(self.quote("005930")[1]["msg_cd"], "MCA00000")
        status, body = self.token("AK7", "SEC7")
        self.assertEqual(status, 200)
        self.assertEqual(self.quote("005930", token=body["access_token"], appkey="AK7",
                                    appsecret="SEC")[1]["msg_cd"], "EGW00105")
        self.assertEqual(self.quote("005930", token=body["access_token"], appkey="AK7",
                                    appsecret="SEC7")[1]["msg_cd"], "MCA00000")

    def test_new_endpoints_share_pipeline(self):
        # faults: "*" reaches account requests; a symbol rule matches any carried symbol
        self.control("faults", {"faults": [{"kind": "egw00001", "symbol": "000660"},
                                           {"kind": "http500"}]})
        self.assertEqual(self.multprice([("J", "005930"), ("J", "000660")])[1]["msg_cd"], "EGW00001")
        self.assertEqual(self.balance()[:2], (500, b"Internal Server Error"))
        self.control("faults", {"faults": [{"kind": "numbers", "symbol": "AAPL"},
                                           {"kind": "bad_shape", "symbol": "005930"},
                                           {"kind": "numbers"}]})
        out = self.api(OVS, "HHDFS00000300", {"AUTH": "", "EXCD": "NAS", "SYMB": "AAPL"})[1]["output"]
        self.assertEqual((type(out["last"]), out["last"]), (float, overseas_last("AAPL")[0] / 100))
        self.assertIsInstance(out["rsym"], str)
        body = self.daily("005930", "20251201", "20251231")[1]
        self.assertEqual((body["output1"], body["output2"]), ([], {}))
        rows = self.balance()[1]["output1"]
        self.assertIsInstance(rows[0]["hldg_qty"], int)
        # header checks and the rate limit: one unit per request
        self.assertEqual(self.balance(custtype="Z")[:2][1]["msg_cd"], "EGW00208")
        self.assertEqual(self.balance(appkey="OTHER")[1]["msg_cd"], "EGW00103")
        self.control("faults", {"faults": [{"kind": "truncate"}]})
        with self.assertRaises(http.client.IncompleteRead):
            self.balance()
        # the rate limit: one unit per request, however many symbols it carries
        self.control("reset", {})
        self.control("config", {"rate_limit": 2})
        many = [("J", "%06d" % (100000 + i)) for i in range(30)]
        statuses = []
        threads = [threading.Thread(target=lambda: statuses.append(self.multprice(many)[0]))
                   for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        s = self.stats()
        self.assertTrue(0 < s["violations"] < 5, s["violations"])  # <= 2 windows, 2 units each
        self.assertEqual((s["requests"], statuses.count(500)), (5, s["violations"]))
        self.assertEqual((s["by_path"], s["by_symbol"]["100000"]), ({MULT: 5}, 5))

    def test_config_and_flags(self):
        for bad in ({"today": "20251301"}, {"holdings": -1}, {"multprice_shape": "list"},
                    {"environment": "demo"},
                    {"multprice_signs": "yes"}, {"overseas_session": "night"}, {"nope": 1}):
            self.assertEqual(self.call("POST", "/__mock/config", bad)[0], 400, bad)
        s = self.stats()
        self.assertEqual((s["today"], s["holdings"], s["multprice_shape"]), ("20251230", 120, "array"))
        sys.path.insert(0, HERE)
        import mock_kis
        args = mock_kis.parse_args(["--today", "20240102"])
        self.assertEqual((args.today, args.holdings, args.multprice_shape), ("20240102", 120, "array"))
        self.assertEqual(mock_kis.parse_args([]).today, "20251230")
        self.assertEqual(self.call("GET", "/uapi/nowhere")[0], 404)
        self.assertEqual(self.stats()["by_path"], {"/uapi/nowhere": 1})

    def test_holiday_pages_as_real_kis(self):
        """chk-holiday answers BASS_DT 20260105 exactly as real KIS did (the published
        answer in test/answers/), and continues from the keys real KIS sends."""
        with open(os.path.join(HERE, "answers", "chk-holiday-20260105.json"), encoding="utf-8") as f:
            real = json.load(f)
        status, body, headers = self.api(HOLIDAY, "CTCA0903R", real["request"])
        self.assertEqual((status, body, headers["tr_cont"]), (200, real["answer"], "M"))
        params = {"BASS_DT": "20260105", "CTX_AREA_FK": body["ctx_area_fk"],
                  "CTX_AREA_NK": body["ctx_area_nk"]}
        status, body, headers = self.api(HOLIDAY, "CTCA0903R", params, tr_cont="N")
        days = [r["bass_dt"] for r in body["output"]]
        self.assertEqual((days[0], days[-1], len(days)), ("20260129", "20260221", 24))
        self.assertEqual((body["ctx_area_fk"], body["ctx_area_nk"], body["msg_cd"]),
                         ("20260129".ljust(20), "20260221".ljust(20), "KIOK0500"))
        # the calendar ends 2026-12-31 (the year after today): the last page says so
        params = {"BASS_DT": "20261201", "CTX_AREA_FK": "20261201", "CTX_AREA_NK": "20261224"}
        status, body, headers = self.api(HOLIDAY, "CTCA0903R", params, tr_cont="N")
        self.assertEqual(([r["bass_dt"] for r in body["output"]][-1], body["msg_cd"],
                          headers["tr_cont"], body["ctx_area_nk"]),
                         ("20261231", "KIOK0510", "D", "20261231".ljust(20)))
        self.assertEqual(body["output"][-1]["bzdy_yn"] + body["output"][-1]["opnd_yn"], "YN")
        for fk, nk in (("20260104", "20260110"), ("20260110", "20260109"), ("", "20260110")):
            params = {"BASS_DT": "20260105", "CTX_AREA_FK": fk, "CTX_AREA_NK": nk}
            self.assertEqual(self.api(HOLIDAY, "CTCA0903R", params, tr_cont="N")[1]["msg_cd"],
                             "OPSQ2002", (fk, nk))
        self.assertEqual(self.stats()["pages"], {HOLIDAY: 3})

    def test_answer_fault(self):
        """An "answer" rule replays the body and headers it was given, once."""
        recorded = {"rt_cd": "0", "msg_cd": "KIOK0500", "output": [{"bass_dt": "20200101"}]}
        self.control("faults", {"faults": [{"kind": "answer", "body": recorded,
                                            "headers": {"tr_cont": "M"}}]})
        params = {"BASS_DT": "20260105", "CTX_AREA_FK": "", "CTX_AREA_NK": ""}
        status, body, headers = self.api(HOLIDAY, "CTCA0903R", params)
        self.assertEqual((status, body, headers["tr_cont"]), (200, recorded, "M"))
        self.assertEqual(self.api(HOLIDAY, "CTCA0903R", params)[1]["output"][0]["bass_dt"],
                         "20260105")
        self.assertEqual(self.call("POST", "/__mock/faults",
                                   {"faults": [{"kind": "answer"}]})[0], 400)

    def test_master_files(self):
        """The master files: zip archives of CP949 lines as KIS publishes them (every line
        61 + tail bytes, the name blank-padded to 40 bytes, LF), read here as OTA's parsers
        read them (the tail sliced from the end), one download counted per file, faults."""
        import io
        import zipfile
        tails = {"kospi": 227, "kosdaq": 221, "konex": 184}
        for market, tail in tails.items():
            status, data = self.call("GET", f"/common/master/{market}_code.mst.zip")
            self.assertEqual(status, 200)
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                self.assertEqual(z.namelist(), [f"{market}_code.mst"])
                self.assertEqual(z.getinfo(f"{market}_code.mst").compress_type, zipfile.ZIP_DEFLATED)
                raw = z.read(f"{market}_code.mst").split(b"\n")
            self.assertEqual(raw[-1], b"")
            self.assertEqual({len(line) for line in raw[:-1]}, {61 + tail})
            lines = [line.decode("cp949") for line in raw[:-1]]
            rows = [(line[0:9].rstrip(), line[9:21].rstrip(), line[21:-tail].strip(), line[-tail:])
                    for line in lines]
            self.assertTrue(all(len(r[3].encode()) == tail for r in rows))
            codes = [r[0] for r in rows]
            self.assertEqual(len(codes), len(set(codes)))
            if market == "kospi":
                code, isin, name, fields = rows[0]
                self.assertEqual((code, name), ("005930", "삼성전자"))
                self.assertEqual(raw[0][21:61], "삼성전자".encode("cp949").ljust(40))
                self.assertRegex(isin, r"^KR7005930\d{3}$")
                # base price at 41 (9), listed date at 105 (8), shares in thousands at
                # 113 (15), market cap in 억 won at 212 (9)
                base = expected_price("005930")[2]
                shares = 1000000 + words("005930:master", 1)[0] % 1000000000
                self.assertEqual(int(fields[41:50]), base)
                self.assertRegex(fields[105:113], r"^2025\d{4}$")
                self.assertEqual(int(fields[113:128]), shares // 1000)
                self.assertEqual(int(fields[212:221]), base * shares // 10 ** 8)
                self.assertEqual(fields[0:2], "ST")
        self.assertEqual(len(rows), 121)   # konex: 1 named + 120
        self.assertEqual((rows[0][0], rows[0][3][-3:]), ("217320", "NN "))  # a blank last flag
        self.assertEqual(self.stats()["downloads"],
                         {f"{m}_code.mst.zip": 1 for m in tails})
        self.assertEqual(self.stats()["requests"], 0)
        self.assertEqual(self.call("GET", "/common/master/nyse_code.mst.zip")[0], 404)
        self.control("faults", {"faults": [{"kind": "http500", "symbol": "konex_code.mst.zip"},
                                           {"kind": "layout", "symbol": "konex_code.mst.zip"}]})
        self.assertEqual(self.call("GET", "/common/master/konex_code.mst.zip")[0], 500)
        status, data = self.call("GET", "/common/master/konex_code.mst.zip")
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            self.assertEqual({len(line) for line in z.read("konex_code.mst").split(b"\n")[:-1]},
                             {61 + 184 + 1})
        self.assertEqual(self.call("GET", "/common/master/konex_code.mst.zip")[0], 200)

    def test_zz_sigterm(self):
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(timeout=5), 0)
        self.assertLess(time.monotonic() - started, 1)


# --------------------------------------------------------------------------- WebSocket

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_DEFAULTS = {"ws_first_tick": True, "ws_tick_rate": 0, "ws_records_per_frame": 1,
               "ws_max_subscriptions": 41, "ws_in_use": False, "ws_pingpong_s": 0,
               "ws_pingpong_strict": False, "ws_time": "090000", "today": "20251230"}


class WsClient:
    """A tiny RFC 6455 client: masks what it sends, checks the server does not mask."""

    def __init__(self, port, path="/tryitout/H0STCNT0", key=None, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.key = key or base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {self.key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, self.buf = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1])
        self.headers = {k.strip().lower(): v.strip() for k, _, v in
                        (line.partition(":") for line in lines[1:])}

    def send_frame(self, opcode, payload, fin=True, mask=True):
        n = len(payload)
        head = bytes(((0x80 if fin else 0) | opcode,))
        bit = 0x80 if mask else 0
        if n < 126:
            head += bytes((bit | n,))
        elif n < 65536:
            head += bytes((bit | 126,)) + n.to_bytes(2, "big")
        else:
            head += bytes((bit | 127,)) + n.to_bytes(8, "big")
        if mask:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            head += key
        self.sock.sendall(head + payload)

    def send_json(self, obj):
        self.send_frame(1, json.dumps(obj).encode())

    def _fill(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("server closed the connection")
            self.buf += chunk

    def recv_frame(self):
        """(opcode, payload, length bytes used: 0, 2 or 8)."""
        self._fill(2)
        b0, b1 = self.buf[0], self.buf[1]
        assert b0 & 0x80, "the server sends final frames only"
        assert not b1 & 0x80, "server frames must not be masked"
        n, at, ext = b1 & 0x7F, 2, 0
        if n == 126:
            self._fill(4)
            n, at, ext = int.from_bytes(self.buf[2:4], "big"), 4, 2
        elif n == 127:
            self._fill(10)
            n, at, ext = int.from_bytes(self.buf[2:10], "big"), 10, 8
        self._fill(at + n)
        payload, self.buf = self.buf[at:at + n], self.buf[at + n:]
        return b0 & 0x0F, payload, ext

    def recv_text(self):
        while True:
            opcode, payload, _ = self.recv_frame()
            if opcode == 1:
                return payload.decode()
            if opcode == 8:
                raise EOFError(f"close frame {payload!r}")

    def recv_json(self):
        return json.loads(self.recv_text())

    def at_eof(self, timeout=3.0):
        """True when the server closes the TCP connection (without a close frame)
        within timeout; frames before the end fail the check."""
        self.sock.settimeout(timeout)
        try:
            if self.buf:
                return False
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def ws_request(key, tr_id="H0STCNT0", tr_key="005930", tr_type="1"):
    return {"header": {"approval_key": key, "custtype": "P", "tr_type": tr_type,
                       "content-type": "utf-8"},
            "body": {"input": {"tr_id": tr_id, "tr_key": tr_key}}}


def data_frame(text):
    """(tr_id, count, [records as field lists]) of a data frame; fields split evenly."""
    flag, tr_id, count, payload = text.split("|", 3)
    assert flag == "0", text[:40]
    fields = payload.split("^")
    width = len(fields) // int(count)
    assert width * int(count) == len(fields), (count, len(fields))
    return tr_id, int(count), [fields[i:i + width] for i in range(0, len(fields), width)]


def clock_plus(hhmmss, n):
    t = (int(hhmmss[:2]) * 3600 + int(hhmmss[2:4]) * 60 + int(hhmmss[4:]) + n) % 86400
    return f"{t // 3600:02d}{t % 3600 // 60:02d}{t % 60:02d}"


def krx_tick(price):
    for limit, tick in ((2000, 1), (5000, 5), (20000, 10), (50000, 50),
                        (200000, 100), (500000, 500)):
        if price < limit:
            return tick
    return 1000


class MockKisWsCase(unittest.TestCase):
    """The WebSocket side: --ws-port, /oauth2/Approval, subscribe acks, data frames,
    PINGPONG, faults and the tick rate thread (mock_kis docstring, "Real-time WebSocket")."""

    connect = MockKisCase.connect
    call = MockKisCase.call
    call_full = MockKisCase.call_full
    control = MockKisCase.control
    stats = MockKisCase.stats
    context = None

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="mock_kis_ws_test")
        port_file, ws_file = (os.path.join(cls.dir, n) for n in ("port", "ws_port"))
        start_mock(cls, [sys.executable, os.path.join(HERE, "mock_kis.py"),
                         "--quiet", "--port-file", port_file,
                         "--ws-port", "0", "--ws-port-file", ws_file], port_file)
        with open(ws_file) as f:
            cls.ws_port = int(f.read())

    @classmethod
    def tearDownClass(cls):
        stop_mock(cls)

    def setUp(self):
        self.control("reset", {"tokens": True})
        self.control("config", WS_DEFAULTS)
        self.clients = []
        self.key = self.approval()

    def tearDown(self):
        for client in self.clients:
            client.close()

    def approval(self, appkey="AK", secret="SEC", field="secretkey"):
        status, body = self.call("POST", "/oauth2/Approval", {
            "grant_type": "client_credentials", "appkey": appkey, field: secret})
        self.assertEqual(status, 200, body)
        return body["approval_key"]

    def ws(self, **kw):
        client = WsClient(self.ws_port, **kw)
        self.clients.append(client)
        if client.status == 101:
            client.sock.settimeout(5)
        return client

    def subscribe(self, client, tr_id="H0STCNT0", tr_key="005930", tr_type="1", key=None):
        client.send_json(ws_request(key or self.key, tr_id, tr_key, tr_type))
        return client.recv_json()

    def ws_post(self, what, body=None):
        status, answer = self.call("POST", "/__mock/ws/" + what, body or {})
        self.assertEqual(status, 200, answer)
        return answer

    def ws_stats(self):
        return self.stats()["ws"]

    def test_handshake(self):
        # RFC 6455 section 1.3's example key and accept value
        client = self.ws(key="dGhlIHNhbXBsZSBub25jZQ==")
        self.assertEqual(client.status, 101)
        self.assertEqual(client.headers["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        self.assertEqual(client.headers["upgrade"].lower(), "websocket")
        other = self.ws(path="/")
        expected = base64.b64encode(hashlib.sha1((other.key + WS_GUID).encode()).digest())
        self.assertEqual(other.headers["sec-websocket-accept"], expected.decode())
        # not an upgrade: 400, not counted
        sock = socket.create_connection(("127.0.0.1", self.ws_port), timeout=5)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(sock.recv(100).startswith(b"HTTP/1.1 400 "))
        sock.close()
        s = self.ws_stats()
        self.assertEqual((s["connections"], s["open"]), (2, 2))

    def test_approval(self):
        self.assertRegex(self.key, r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
        self.assertEqual(len(self.key), 36)
        self.assertEqual(self.approval(), self.key)             # reused
        other = self.approval("AK2")
        self.assertNotEqual(other, self.key)
        body = {"grant_type": "client_credentials", "appkey": "AK", "secretkey": "BADSECRET"}
        self.assertEqual(self.call("POST", "/oauth2/Approval", body),
                         (403, {"error_code": "EGW00105",
                                "error_description": "유효하지 않은 AppSecret입니다."}))
        body = {"grant_type": "client_credentials", "appkey": "BADKEY", "secretkey": "SEC"}
        self.assertEqual(self.call("POST", "/oauth2/Approval", body)[1]["error_code"], "EGW00103")
        # tokenP's field name is refused: the approval wants "secretkey"
        body = {"grant_type": "client_credentials", "appkey": "AK", "appsecret": "SEC"}
        self.assertEqual(self.call("POST", "/oauth2/Approval", body),
                         (403, {"error_code": "EGW00104",
                                "error_description": "AppSecret은 필수입니다."}))
        body = {"grant_type": "password", "appkey": "AK", "secretkey": "SEC"}
        self.assertEqual(self.call("POST", "/oauth2/Approval", body)[1]["error_code"], "EGW00112")
        s = self.stats()
        self.assertEqual((s["approval_requests"], s["approvals_issued"], s["tokens_issued"]),
                         (7, 2, 0))
        self.assertEqual(s["errors"], {"EGW00105": 1, "EGW00103": 1, "EGW00104": 1,
                                       "EGW00112": 1})
        # approval keys survive a plain reset, not one with tokens
        self.control("reset", {})
        self.assertEqual(self.approval(), self.key)
        self.control("reset", {"tokens": True})
        self.assertNotEqual(self.approval(), self.key)

    def test_subscribe_ack_and_first_tick(self):
        client = self.ws()
        ack = self.subscribe(client)
        self.assertEqual(ack["header"], {"tr_id": "H0STCNT0", "tr_key": "005930",
                                         "encrypt": "N"})
        body = ack["body"]
        self.assertEqual((body["rt_cd"], body["msg_cd"], body["msg1"]),
                         ("0", "OPSP0000", "SUBSCRIBE SUCCESS"))
        self.assertEqual(set(body["output"]), {"iv", "key"})
        tr_id, count, records = data_frame(client.recv_text())
        self.assertEqual((tr_id, count, len(records[0])), ("H0STCNT0", 1, 46))
        price = expected_price("005930")[0]
        self.assertEqual(records[0][:3], ["005930", "090000", str(price)])
        s = self.ws_stats()
        self.assertEqual((s["subscriptions"], s["per_key"], s["ticks_sent"], s["frames_sent"],
                          s["subscribe_requests"]),
                         (["H0STCNT0:005930"], {"AK": 1}, 1, 1, 1))
        ack = self.subscribe(client, tr_type="2")
        self.assertEqual((ack["body"]["rt_cd"], ack["body"]["msg_cd"], ack["body"]["msg1"]),
                         ("0", "OPSP0001", "UNSUBSCRIBE SUCCESS"))
        ack = self.subscribe(client, tr_type="2")
        self.assertEqual((ack["body"]["rt_cd"], ack["body"]["msg_cd"]), ("1", "OPSP0003"))
        s = self.ws_stats()
        self.assertEqual((s["subscriptions"], s["unsubscribe_requests"]), ([], 2))
        self.assertEqual(self.ws_post("tick", {"tr_id": "H0STCNT0", "tr_key": "005930"}),
                         {"sent": 0})
        # ws_first_tick false: the ack alone
        self.control("config", {"ws_first_tick": False})
        self.assertEqual(self.subscribe(client)["body"]["msg_cd"], "OPSP0000")
        self.assertEqual(self.ws_post("tick", {"tr_id": "H0STCNT0", "tr_key": "005930"}),
                         {"sent": 1})
        # the counter went on: this is the second record of 005930
        self.assertEqual(data_frame(client.recv_text())[2][0][1], "090001")

    def test_already_max_and_errors(self):
        self.control("config", {"ws_max_subscriptions": 3, "ws_first_tick": False})
        client = self.ws()
        for key in ("005930", "000660", "035420"):
            self.assertEqual(self.subscribe(client, tr_key=key)["body"]["msg_cd"], "OPSP0000")
        ack = self.subscribe(client, tr_key="005930")
        self.assertEqual((ack["body"]["rt_cd"], ack["body"]["msg_cd"], ack["body"]["msg1"]),
                         ("1", "OPSP0002", "ALREADY IN SUBSCRIBE"))
        self.assertNotIn("output", ack["body"])
        ack = self.subscribe(client, tr_key="207940")
        self.assertEqual((ack["body"]["rt_cd"], ack["body"]["msg_cd"], ack["body"]["msg1"]),
                         ("1", "OPSP0008", "MAX SUBSCRIBE OVER"))
        self.assertEqual(self.ws_stats()["subscriptions"],
                         ["H0STCNT0:000660", "H0STCNT0:005930", "H0STCNT0:035420"])
        ack = self.subscribe(client, tr_key="005930", key="not-an-approval-key")
        self.assertEqual((ack["body"]["rt_cd"], ack["body"]["msg_cd"]), ("1", "MOCK0001"))
        ack = self.subscribe(client, tr_id="H0XXXXX0")
        self.assertEqual((ack["header"]["tr_id"], ack["body"]["rt_cd"], ack["body"]["msg_cd"]),
                         ("H0XXXXX0", "1", "MOCK0002"))
        ack = self.subscribe(client, tr_type="0")
        self.assertEqual(ack["body"]["msg_cd"], "MOCK0003")
        client.send_frame(1, b"not json")
        self.assertEqual(client.recv_json()["body"]["msg_cd"], "MOCK0004")
        s = self.ws_stats()
        self.assertEqual(s["per_key"], {"AK": 3})
        self.assertEqual(s["acks"], {"OPSP0000": 3, "OPSP0002": 1, "OPSP0008": 1,
                                     "MOCK0001": 1, "MOCK0002": 1, "MOCK0003": 1,
                                     "MOCK0004": 1})
        self.assertIn("MOCK0004", s["last_error"])

    def test_already_in_use(self):
        self.control("config", {"ws_first_tick": False})
        first, second = self.ws(), self.ws()
        self.assertEqual(self.subscribe(first)["body"]["msg_cd"], "OPSP0000")
        ack = self.subscribe(second, tr_key="000660")
        self.assertEqual((ack["body"]["rt_cd"], ack["body"]["msg_cd"], ack["body"]["msg1"]),
                         ("1", "OPSP8996", "ALREADY IN USE appkey"))
        # another app key is free to use the second socket
        self.assertEqual(self.subscribe(second, key=self.approval("AK2"))["body"]["msg_cd"],
                         "OPSP0000")
        # the key is free once its socket closes (a close frame, answered in kind)
        first.send_frame(8, (1000).to_bytes(2, "big"))
        self.assertEqual(first.recv_frame()[:2], (8, (1000).to_bytes(2, "big")))
        self.assertTrue(first.at_eof())
        deadline = time.monotonic() + 3
        while self.ws_stats()["open"] != 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(self.subscribe(second, tr_key="000660")["body"]["msg_cd"], "OPSP0000")
        self.assertEqual(self.ws_stats()["per_key"], {"AK": 1, "AK2": 1})
        # ws_in_use: every subscribe is refused, as if another program held the key
        self.control("config", {"ws_in_use": True})
        third = self.ws()
        self.assertEqual(self.subscribe(third, key=self.approval("AK3"))["body"]["msg_cd"],
                         "OPSP8996")

    def test_tick_values(self):
        """Records follow the documented formulas: price + (n % 5) * tick, the ws_time
        clock + n seconds, CNTG_VOL 10 * (1 + n % 10) and ACML_VOL adding up."""
        self.control("config", {"ws_time": "235958", "ws_first_tick": False,
                                "ws_records_per_frame": 100})
        client = self.ws()
        self.subscribe(client, tr_key="000660")
        self.assertEqual(self.ws_post("tick", {"tr_id": "H0STCNT0", "tr_key": "000660",
                                               "count": 7}), {"sent": 7})
        _, count, records = data_frame(client.recv_text())
        self.assertEqual(count, 7)
        price, change, base = expected_price("000660")
        tick = krx_tick(price)
        acml = int(self.quote_acml("000660"))
        for n, rec in enumerate(records):
            p = price + (n % 5) * tick
            acml += 10 * (1 + n % 10)
            self.assertEqual(len(rec), 46)
            self.assertEqual((rec[0], rec[1], rec[2], rec[4], rec[10], rec[11], rec[12], rec[13],
                              rec[33]),
                             ("000660", clock_plus("235958", n), str(p), str(p - base),
                              str(p + tick), str(p), str(10 * (1 + n % 10)), str(acml),
                              "20251230"))
            self.assertEqual(rec[21], "1" if n % 2 == 0 else "5")
        # a fixed price
        self.ws_post("tick", {"tr_id": "H0STCNT0", "tr_key": "000660", "count": 2,
                              "price": "12345"})
        _, _, records = data_frame(client.recv_text())
        self.assertEqual([r[2] for r in records], ["12345", "12345"])
        self.assertEqual(records[0][1], "000005")   # wrapped past midnight
        status, body = self.call("POST", "/__mock/ws/tick", {"tr_id": "NOPE", "tr_key": "x"})
        self.assertEqual(status, 400)
        status, body = self.call("POST", "/__mock/ws/tick",
                                 {"tr_id": "H0STCNT0", "tr_key": "000660", "price": "1.5"})
        self.assertEqual(status, 400)

    def quote_acml(self, symbol):
        """acml_vol of inquire-price (the REST mock) for symbol."""
        tok = self.call("POST", "/oauth2/tokenP", {"grant_type": "client_credentials",
                                                   "appkey": "AKQ", "appsecret": "SEC"})[1]
        headers = {"authorization": f"Bearer {tok['access_token']}", "appkey": "AKQ",
                   "appsecret": "SEC", "tr_id": "FHKST01010100", "custtype": "P"}
        status, body = self.call(
            "GET", f"{QUOTE}?FID_COND_MRKT_DIV_CODE=J&FID_INPUT_ISCD={symbol}", headers=headers)
        self.assertEqual(status, 200)
        return body["output"]["acml_vol"]

    def test_other_trs(self):
        client = self.ws()
        self.assertEqual(self.subscribe(client, "H0STASP0", "005930")["body"]["msg_cd"],
                         "OPSP0000")
        tr_id, count, records = data_frame(client.recv_text())
        price = expected_price("005930")[0]
        tick = krx_tick(price)
        self.assertEqual((tr_id, count, len(records[0])), ("H0STASP0", 1, 59))
        rec = records[0]
        self.assertEqual(rec[:5], ["005930", "090000", "0", str(price + tick),
                                   str(price + 2 * tick)])
        self.assertEqual((rec[13], rec[14]), (str(price), str(price - tick)))   # BIDP1, 2
        self.assertEqual(int(rec[43]), sum(int(x) for x in rec[23:33]))  # TOTAL_ASKP_RSQN
        self.assertEqual(int(rec[44]), sum(int(x) for x in rec[33:43]))
        self.assertEqual(self.subscribe(client, "HDFSCNT0", "DNASAAPL")["body"]["msg_cd"],
                         "OPSP0000")
        tr_id, count, records = data_frame(client.recv_text())
        self.assertEqual((tr_id, count, len(records[0])), ("HDFSCNT0", 1, 26))
        rec = records[0]
        last, diff, base = overseas_last("AAPL")
        self.assertEqual(rec[:3] + rec[11:15], ["DNASAAPL", "AAPL", "4", dec4(last), "5",
                                                 dec4(abs(diff)), "-1.41"])
        self.assertEqual((rec[5], rec[19]), ("090000", "1"))   # XHMS, EVOL

    def test_multi_record_frames(self):
        self.control("config", {"ws_first_tick": False, "ws_records_per_frame": 5})
        client = self.ws()
        self.subscribe(client)
        self.assertEqual(self.ws_post("tick", {"tr_id": "H0STCNT0", "tr_key": "005930",
                                               "count": 12}), {"sent": 12})
        frames = [client.recv_text() for _ in range(3)]
        self.assertEqual([f.split("|")[2] for f in frames], ["005", "005", "002"])
        self.assertEqual([len(f.split("|", 3)[3].split("^")) for f in frames],
                         [5 * 46, 5 * 46, 2 * 46])
        clocks = [rec[1] for f in frames for rec in data_frame(f)[2]]
        self.assertEqual(clocks, [clock_plus("090000", n) for n in range(12)])
        # 40 records: over 8 kB, a 16-bit length; 400: over 64 kB, a 64-bit length
        for count, ext in ((40, 2), (400, 8)):
            self.control("config", {"ws_records_per_frame": count})
            self.ws_post("tick", {"tr_id": "H0STCNT0", "tr_key": "005930", "count": count})
            opcode, payload, used = client.recv_frame()
            self.assertEqual((opcode, used), (1, ext))
            self.assertGreater(len(payload), 8192 if count == 40 else 65535)
            _, n, records = data_frame(payload.decode())
            self.assertEqual((n, {len(r) for r in records}), (count, {46}))
        s = self.ws_stats()
        self.assertEqual((s["ticks_sent"], s["frames_sent"]), (452, 5))

    def test_fragmented_and_control_frames(self):
        client = self.ws()
        text = json.dumps(ws_request(self.key)).encode()
        client.send_frame(1, text[:10], fin=False)
        client.send_frame(9, b"hello")                  # a ping between the fragments
        client.send_frame(0, text[10:30], fin=False)
        client.send_frame(10, b"unasked pong")          # ignored
        client.send_frame(0, text[30:])
        self.assertEqual(client.recv_frame()[:2], (10, b"hello"))
        self.assertEqual(client.recv_json()["body"]["msg_cd"], "OPSP0000")
        self.assertEqual(self.ws_stats()["rfc_pings"], 1)
        # an unmasked client frame: close 1002, then the connection ends
        client.send_frame(1, text, mask=False)
        while True:
            opcode, payload, _ = client.recv_frame()
            if opcode == 8:
                break
        self.assertEqual(int.from_bytes(payload[:2], "big"), 1002)
        self.assertTrue(client.at_eof())
        self.assertIn("unmasked", self.ws_stats()["last_error"])
        # a continuation without a message is a protocol error too
        other = self.ws()
        other.send_frame(0, b"x")
        self.assertEqual(int.from_bytes(other.recv_frame()[1][:2], "big"), 1002)

    def test_pingpong(self):
        client = self.ws()
        self.assertEqual(self.ws_post("pingpong"), {"sent": 1})
        text = client.recv_text()
        msg = json.loads(text)
        self.assertEqual(list(msg), ["header"])
        self.assertEqual(msg["header"]["tr_id"], "PINGPONG")
        self.assertRegex(msg["header"]["datetime"], r"^20251230\d{6}$")
        client.send_frame(1, text.encode())            # echo it, as KIS wants
        deadline = time.monotonic() + 3
        while self.ws_stats()["pingpong_echoed"] != 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        s = self.ws_stats()
        self.assertEqual((s["pingpong_sent"], s["pingpong_echoed"]), (1, 1))
        # every ws_pingpong_s seconds
        self.control("config", {"ws_pingpong_s": 0.2})
        started = time.monotonic()
        for _ in range(2):
            self.assertEqual(client.recv_json()["header"]["tr_id"], "PINGPONG")
        self.assertLess(time.monotonic() - started, 2)

    def test_pingpong_strict(self):
        """Strict: a socket that does not echo a PINGPONG within 2 s is closed; one that
        echoes stays, and an RFC pong is not an echo."""
        self.control("config", {"ws_pingpong_strict": True})
        echoing, silent = self.ws(), self.ws()
        self.assertEqual(self.ws_post("pingpong"), {"sent": 2})
        echoing.send_frame(1, echoing.recv_text().encode())
        silent.recv_text()
        silent.send_frame(10, b"")                       # an RFC pong: not enough
        self.assertTrue(silent.at_eof(timeout=4))
        time.sleep(0.1)
        s = self.ws_stats()
        self.assertEqual((s["open"], s["pingpong_echoed"]), (1, 1))
        self.assertIn("PINGPONG", s["last_error"])
        echoing.send_frame(9, b"still there")
        self.assertEqual(echoing.recv_frame()[:2], (10, b"still there"))

    def test_drop_refuse_reset(self):
        self.control("config", {"ws_first_tick": False})
        a, b = self.ws(), self.ws()
        self.subscribe(a)
        self.subscribe(b, key=self.approval("AK2"), tr_key="000660")
        self.assertEqual(len(self.ws_stats()["subscriptions"]), 2)
        self.assertEqual(self.ws_post("drop"), {"dropped": 2})
        self.assertTrue(a.at_eof())                      # no close frame before the end
        self.assertTrue(b.at_eof())
        s = self.ws_stats()
        self.assertEqual((s["open"], s["subscriptions"], s["per_key"]), (0, [], {}))
        # the app key is free again on a new socket
        c = self.ws()
        self.assertEqual(self.subscribe(c)["body"]["msg_cd"], "OPSP0000")
        self.assertEqual(self.ws_post("refuse", {"times": 2}), {"ok": True})
        self.assertEqual([self.ws().status for _ in range(3)], [503, 503, 101])
        s = self.ws_stats()
        self.assertEqual((s["refused"], s["connections"]), (2, 4))
        # reset closes the sockets and zeroes the ws counters
        self.ws_post("refuse", {"times": 5})
        self.control("reset", {})
        self.assertTrue(c.at_eof())
        s = self.ws_stats()
        self.assertEqual((s["connections"], s["refused"], s["open"], s["ticks_sent"],
                          s["refusals_pending"]), (0, 0, 0, 0, 0))
        self.assertEqual(self.ws().status, 101)

    def test_flags_and_config(self):
        """--ws-* flags set the ws_* config keys; bad values are refused both ways."""
        files = [os.path.join(self.dir, n) for n in ("flags_port", "flags_ws_port")]
        proc = subprocess.Popen([sys.executable, os.path.join(HERE, "mock_kis.py"), "--quiet",
                                 "--port-file", files[0], "--ws-port", "0",
                                 "--ws-port-file", files[1], "--ws-first-tick", "false",
                                 "--ws-records-per-frame", "3", "--ws-time", "153000",
                                 "--ws-max-subscriptions", "40", "--ws-pingpong-strict", "1"])
        try:
            deadline = time.monotonic() + 10
            while not os.path.exists(files[0]) and time.monotonic() < deadline:
                time.sleep(0.02)
            with open(files[0]) as f, open(files[1]) as g:
                port, ws_port = int(f.read()), int(g.read())
            self.assertNotEqual(port, ws_port)
            conn = http.client.HTTPConnection("127.0.0.1", port)
            conn.request("GET", "/__mock/stats")
            s = json.loads(conn.getresponse().read())
            conn.close()
            self.assertEqual({k: s[k] for k in WS_DEFAULTS if k != "today"},
                             {"ws_first_tick": False, "ws_tick_rate": 0.0,
                              "ws_records_per_frame": 3, "ws_max_subscriptions": 40,
                              "ws_in_use": False, "ws_pingpong_s": 0.0,
                              "ws_pingpong_strict": True, "ws_time": "153000"})
            client = WsClient(ws_port)
            client.close()
            self.assertEqual(client.status, 101)
        finally:
            proc.terminate()
            self.assertEqual(proc.wait(timeout=5), 0)
        self.assertFalse(os.path.exists(files[1]))      # removed on exit, as --port-file
        bad = subprocess.run([sys.executable, os.path.join(HERE, "mock_kis.py"), "--quiet",
                              "--ws-port", "0", "--ws-time", "250000"], capture_output=True)
        self.assertEqual(bad.returncode, 2)
        for change in ({"ws_time": "9am"}, {"ws_records_per_frame": 0}, {"ws_in_use": "maybe"},
                       {"ws_tick_rate": -1}):
            self.assertEqual(self.call("POST", "/__mock/config", change)[0], 400, change)

    def test_tick_rate(self):
        """ws_tick_rate 50 over 40 subscriptions: 2,000 ticks/s, every one delivered."""
        self.control("config", {"ws_first_tick": False})
        client = self.ws()
        symbols = [f"{100000 + i:06d}" for i in range(40)]
        for symbol in symbols:
            self.assertEqual(self.subscribe(client, tr_key=symbol)["body"]["msg_cd"],
                             "OPSP0000")
        received = []
        per_symbol = {}

        def read():
            client.sock.settimeout(1.0)
            try:
                while True:
                    _, count, records = data_frame(client.recv_text())
                    received.append(count)
                    for rec in records:
                        per_symbol[rec[0]] = per_symbol.get(rec[0], 0) + 1
            except (socket.timeout, EOFError, OSError):
                pass
        reader = threading.Thread(target=read)
        reader.start()
        started = time.monotonic()
        self.control("config", {"ws_tick_rate": 50})
        time.sleep(2.0)
        self.control("config", {"ws_tick_rate": 0})
        elapsed = time.monotonic() - started
        reader.join(timeout=10)
        sent = self.ws_stats()["ticks_sent"]
        self.assertEqual(sum(received), sent)
        self.assertGreaterEqual(sent / elapsed, 1500, (sent, elapsed))
        self.assertLessEqual(sent, 2000 * elapsed * 1.1)
        self.assertEqual(set(per_symbol), set(symbols))
        self.assertGreater(min(per_symbol.values()), 0.75 * max(per_symbol.values()))
        # batching: with ws_records_per_frame 10 the same rate takes fewer frames
        self.control("reset", {})
        self.control("config", {"ws_first_tick": False, "ws_records_per_frame": 10})
        client = self.ws()
        for symbol in symbols[:4]:
            self.subscribe(client, tr_key=symbol)
        self.control("config", {"ws_tick_rate": 500})
        time.sleep(1.0)
        self.control("config", {"ws_tick_rate": 0})
        time.sleep(0.1)
        s = self.ws_stats()
        self.assertGreater(s["ticks_sent"], 1000)
        self.assertLess(s["frames_sent"], s["ticks_sent"])


def make_certs(directory, ca, cert, key):
    """A throw-away CA and a server certificate for 127.0.0.1 / localhost."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", ca,
            "-days", "2", "-subj", "/CN=mock-kis test CA",
            # Python 3.13 verifies strictly: a CA needs its key usage
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", "server.csr",
            "-subj", "/CN=localhost")
    with open(os.path.join(directory, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nauthorityKeyIdentifier=keyid,issuer\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", ca, "-CAkey", "ca.key",
            "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", "ext.cnf")


@unittest.skipUnless(shutil.which("openssl"), "openssl CLI not installed")
class MockKisTlsCase(MockKisCase):
    tls = True


if __name__ == "__main__":
    unittest.main()
