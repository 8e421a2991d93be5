#!/usr/bin/env python3
"""Self-check of test/mock_kis.py (standard library only): python3 test/test_mock_kis.py

Starts the mock as a subprocess over plain HTTP, and over HTTPS with a throw-away CA when
the openssl CLI is available, and checks the behaviours the kis_fdw tests rely on. The
expected quote values are recomputed here from the formula in mock_kis's docstring.
"""

import hashlib
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
QUOTE = "/uapi/domestic-stock/v1/quotations/inquire-price"


def expected_price(symbol, market="J"):
    """stck_prpr, prdy_vrss, stck_sdpr as documented in mock_kis.py."""
    d = hashlib.sha256(symbol.encode()).hexdigest()
    price = (1000 + int(d[0:8], 16) % 99000) // 10 * 10 + {"J": 0, "NX": 10, "UN": 5}[market]
    change = min(((int(d[8:16], 16) >> 8) % 201 - 100) * 10, price - 10)
    return price, change, price - change


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
        cls.proc = subprocess.Popen(args)
        deadline = time.monotonic() + 10
        while not os.path.exists(port_file):
            if time.monotonic() > deadline:
                raise RuntimeError("mock did not start")
            time.sleep(0.02)
        with open(port_file) as f:
            cls.port = int(f.read())

    @classmethod
    def tearDownClass(cls):
        if cls.proc.poll() is None:
            cls.proc.kill()
            cls.proc.wait()
        shutil.rmtree(cls.dir)

    def connect(self):
        if self.context:
            return http.client.HTTPSConnection("localhost", self.port, context=self.context)
        return http.client.HTTPConnection("127.0.0.1", self.port)

    def call(self, method, path, body=None, headers=None, conn=None):
        """Return (status, parsed JSON or raw bytes); a new connection unless conn is given."""
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
            return resp.status, json.loads(data)
        except ValueError:
            return resp.status, data

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

    def setUp(self):
        self.control("reset", {"tokens": True})
        self.control("config", {"rate_limit": 0, "token_interval": 60})
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

    def test_zz_sigterm(self):
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(timeout=5), 0)
        self.assertLess(time.monotonic() - started, 1)


def make_certs(directory, ca, cert, key):
    """A throw-away CA and a server certificate for 127.0.0.1 / localhost."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", ca,
            "-days", "2", "-subj", "/CN=mock-kis test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", "server.csr",
            "-subj", "/CN=localhost")
    with open(os.path.join(directory, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", ca, "-CAkey", "ca.key",
            "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", "ext.cnf")


@unittest.skipUnless(shutil.which("openssl"), "openssl CLI not installed")
class MockKisTlsCase(MockKisCase):
    tls = True


if __name__ == "__main__":
    unittest.main()
