#!/usr/bin/env python3
"""Mock KIS (Korea Investment & Securities) Open API server for kis_fdw tests and benchmarks.

Python 3 standard library only. It imitates the parts of the KIS REST API that kis_fdw
uses, answers deterministically, and can inject faults, latency and rate limits on demand.

    python3 test/mock_kis.py [--host H] [--port P] [--port-file F] [--pid-file F]
                             [--cert PEM --key PEM] [--rate-limit N]
                             [--latency-ms N] [--jitter-ms N]
                             [--token-interval S] [--token-ttl S] [--quiet]

With --port 0 (the default) a free port is chosen; --port-file receives it (written
atomically) once the server listens. SIGTERM or SIGINT stops the server within ~0.1 s.

KIS endpoints
-------------
POST /oauth2/tokenP
    Body {"grant_type":"client_credentials","appkey":..,"appsecret":..}. Rejections are
    HTTP 403 {"error_code","error_description"}: unparsable body EGW00101, grant_type
    missing EGW00115 or wrong EGW00112, appkey missing EGW00102 or starting "BAD"
    EGW00103, appsecret missing EGW00104 or starting "BAD" EGW00105, a second issuance
    for the same appkey within --token-interval seconds EGW00133.

GET /uapi/domestic-stock/v1/quotations/inquire-price?FID_COND_MRKT_DIV_CODE=J&FID_INPUT_ISCD=005930
    Parameter names in either case. Checks, in order (failures are HTTP 500 envelopes with
    rt_cd "1" and count as bad_requests): authorization "Bearer <issued token>" (EGW00121
    unknown, EGW00123 expired), appkey header (EGW00102 missing, EGW00103 not the token's),
    appsecret header (EGW00104), tr_id FHKST01010100 (EGW00213), custtype P/B (EGW00208).
    Then the per-appkey rate limit (fixed windows of one wall-clock second, HTTP 500
    EGW00201), then injected faults, then the market (J, NX or UN; else 200 OPSQ2001).
    The symbol's first two digits select a fixed behaviour:
        99  not listed: 200 rt_cd "0" MCA00000, every field present, numbers "0", text ""
        98  200 rt_cd "1" MCA05918 (종목코드 오류), no output (also for an empty symbol)
        97  HTTP 500 with the non-JSON body <html>Internal Server Error</html>
        96  normal data after a 3 second pause
        95  200 rt_cd "0" MCA00000 without "output"
        ..  anything else: normal data
    Any other path is an HTTP 404 EGW00101 envelope (a bad_request).

Deterministic quote data (see quote_output; all values are JSON strings)
-----------------------------------------------------------------------
    d  = sha256(symbol as UTF-8).hexdigest()
    h0, h1, h2, h3, h4, h5 = int(d[0:8],16), int(d[8:16],16), ... int(d[40:48],16)
    stck_prpr   p      = (1000 + h0 % 99000) // 10 * 10 + {J: 0, NX: 10, UN: 5}[market]
    prdy_vrss   change = min(((h1 >> 8) % 201 - 100) * 10, p - 10)   (the cap keeps base > 0)
    stck_sdpr   base   = p - change
    prdy_vrss_sign     = "2" if change > 0, "3" if change == 0, "5" if change < 0
    prdy_ctrt          = round(change * 100 / base, 2), halves away from zero, 2 decimals
                         (the same as PostgreSQL round(numeric, 2)), e.g. "-1.25", "0.00"
    acml_vol    vol    = h2 % 10000000;  acml_tr_pbmn = vol * p
    stck_oprc   open   = max(10, base + (h3 % 21 - 10) * 10)
    stck_hgpr   high   = max(open, p) + (h3 >> 8) % 11 * 10
    stck_lwpr   low    = max(10, min(open, p) - (h3 >> 16) % 11 * 10)
    stck_mxpr / stck_llam = base * 13 // 10 // 10 * 10  /  base * 7 // 10 // 10 * 10
    per = (100 + h4 % 4900) / 100, pbr = (10 + (h4 >> 16) % 500) / 100 (2 decimals);
    eps = p * 100 // per_cents, bps = p * 100 // pbr_cents, both with ".00" appended
    lstn_stcn shares = 1000000 + h5 % 1000000000; hts_avls = p * shares // 100000000
    bstp_kor_isnm is "" when h0 is odd; Y/N flags are "N"; dates are YYYYMMDD in 2025.
    Nothing depends on time or randomness; the stock name is absent, as in real KIS.

Control API (same port and scheme, no auth, never counted or rate limited)
--------------------------------------------------------------------------
GET  /__mock/stats[?timeline=1]  counters, current config, pending faults; timeline=1 adds
                                 "timeline": request start times in seconds since reset
POST /__mock/reset   {"tokens": true}?  zero counters, drop faults, rate windows and
                                 issuance times; issued tokens stay valid unless tokens=true
POST /__mock/config  {"rate_limit", "latency_ms", "jitter_ms", "token_interval", "token_ttl"}
POST /__mock/faults  {"faults": [{"kind", "symbol": "005930" | "*", "times": 1 | -1, "ms"}]}
    kinds: http500 egw00201 egw00001 egw00002 drop truncate garbage bad_shape numbers huge
    slow expire_token invalid_token (inquire-price, after the rate check) and egw00133
    (the next tokenP). The first matching rule with times left fires and uses one up.

Counters: requests (API requests, rejected ones included), in_flight, max_in_flight,
by_symbol, connections_accepted (every TCP accept), connections_opened (connections that
carried at least one KIS request, so stats polling does not disturb it), tls_failures,
tokens_issued, tokens_issued_by_appkey, token_rejections, violations, bad_requests,
faults_injected (by kind), errors (error answers by msg_cd / error_code).
"""

import argparse
import datetime
import hashlib
import json
import os
import random
import re
import secrets
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

QUOTE_PATH = "/uapi/domestic-stock/v1/quotations/inquire-price"
QUOTE_TR_ID = "FHKST01010100"
MARKET_OFFSET = {"J": 0, "NX": 10, "UN": 5}
KST = datetime.timezone(datetime.timedelta(hours=9))  # Korea: UTC+9, no DST
JSON_TYPE = "application/json; charset=utf-8"
HANDSHAKE_TIMEOUT = 10.0   # seconds a client gets to finish the TLS handshake
TIMELINE_CAP = 100_000     # request start times kept for /__mock/stats?timeline=1
HUGE_BYTES = 20 * 1024 * 1024

MESSAGES = {
    "MCA00000": "정상처리 되었습니다.",
    "MCA05918": "종목코드 오류입니다.",
    "OPSQ2001": "시장분류코드 오류입니다.",
    "EGW00001": "일시적 오류가 발생했습니다.",
    "EGW00002": "서버 에러가 발생했습니다.",
    "EGW00101": "유효하지 않은 요청입니다.",
    "EGW00102": "AppKey는 필수입니다.",
    "EGW00103": "유효하지 않은 AppKey입니다.",
    "EGW00104": "AppSecret은 필수입니다.",
    "EGW00105": "유효하지 않은 AppSecret입니다.",
    "EGW00112": "유효하지 않은 grant 입니다.",
    "EGW00115": "권한부여 타입(grant_type)은 필수입니다.",
    "EGW00121": "유효하지 않은 token 입니다.",
    "EGW00123": "기간이 만료된 token 입니다.",
    "EGW00133": "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)",
    "EGW00201": "초당 거래건수를 초과하였습니다.",
    "EGW00208": "유효하지 않은 custtype 입니다.",
    "EGW00213": "유효하지 않은 tr_id 입니다.",
}

FAULT_KINDS = frozenset((
    "http500", "egw00201", "egw00001", "egw00002", "drop", "truncate", "garbage",
    "bad_shape", "numbers", "huge", "slow", "expire_token", "invalid_token", "egw00133",
))
# Settable through --options and /__mock/config, with the type each is parsed as.
CONFIG_TYPES = {"rate_limit": int, "latency_ms": float, "jitter_ms": float,
                "token_interval": float, "token_ttl": float}
COUNTERS = ("requests", "max_in_flight", "connections_accepted", "connections_opened",
            "tls_failures", "tokens_issued", "token_rejections", "violations", "bad_requests")
# Fields the "numbers" fault sends as JSON numbers instead of strings.
NUMBER_FIELDS = ("stck_prpr", "prdy_vrss", "stck_oprc", "stck_hgpr", "stck_lwpr",
                 "stck_mxpr", "stck_llam", "stck_sdpr", "acml_vol", "acml_tr_pbmn")
SECTORS = ("전기·전자", "화학", "서비스업", "금융업", "운수장비", "의약품", "유통업", "철강·금속")
NUMERIC = re.compile(r"-?\d+(\.\d+)?")


# --------------------------------------------------------------------------- quote data

def _decimal2(hundredths):
    """Integer hundredths as a 2-decimal string: -125 -> "-1.25"."""
    sign = "-" if hundredths < 0 else ""
    return f"{sign}{abs(hundredths) // 100}.{abs(hundredths) % 100:02d}"


def _pct(num, den):
    """num * 100 / den rounded to 2 decimals, halves away from zero (PostgreSQL round)."""
    q, r = divmod(abs(num) * 10000, den)
    if 2 * r >= den:
        q += 1
    return _decimal2(-q if num < 0 else q)


def _tick(price):
    """KRX tick size (호가단위) for a price."""
    for limit, tick in ((2000, 1), (5000, 5), (20000, 10), (50000, 50),
                        (200000, 100), (500000, 500)):
        if price < limit:
            return tick
    return 1000


def _date(n):
    """A YYYYMMDD date in 2025 chosen by n."""
    return (datetime.date(2025, 1, 1) + datetime.timedelta(days=n % 365)).strftime("%Y%m%d")


def quote_output(symbol, market):
    """The inquire-price "output" object: a pure function of (symbol, market).

    The formula is spelled out in the module docstring; keep the two in step.
    """
    d = hashlib.sha256(symbol.encode()).hexdigest()
    h0, h1, h2, h3, h4, h5 = (int(d[i:i + 8], 16) for i in range(0, 48, 8))
    price = (1000 + h0 % 99000) // 10 * 10 + MARKET_OFFSET[market]
    change = min(((h1 >> 8) % 201 - 100) * 10, price - 10)
    base = price - change
    opn = max(10, base + (h3 % 21 - 10) * 10)
    high = max(opn, price) + (h3 >> 8) % 11 * 10
    low = max(10, min(opn, price) - (h3 >> 16) % 11 * 10)
    upper, lower = base * 13 // 10 // 10 * 10, base * 7 // 10 // 10 * 10
    vol = h2 % 10_000_000
    prev_vol = 1 + (h3 >> 4) % 10_000_000
    shares = 1_000_000 + h5 % 1_000_000_000
    par = (100, 500, 5000)[h5 % 3]
    per_c, pbr_c = 100 + h4 % 4900, 10 + (h4 >> 16) % 500
    y_high = max(high, base) + (h5 >> 4) % 100 * 10
    y_low = max(10, min(low, base) - (h5 >> 12) % 100 * 10)
    y_high_date, y_low_date = _date(h5 >> 20), _date(h4 >> 20)
    pivot = (high + low + price) // 3
    s = str
    return {
        "iscd_stat_cls_code": "55",
        "marg_rate": "20.00",
        "rprs_mrkt_kor_name": ("KOSPI200", "KOSPI", "KOSDAQ")[h4 % 3],
        "new_hgpr_lwpr_cls_code": "",
        "bstp_kor_isnm": "" if h0 % 2 else SECTORS[h1 % len(SECTORS)],
        "temp_stop_yn": "N",
        "oprc_rang_cont_yn": "N",
        "clpr_rang_cont_yn": "N",
        "crdt_able_yn": "N",
        "grmn_rate_cls_code": "40",
        "elw_pblc_yn": "N",
        "stck_prpr": s(price),
        "prdy_vrss": s(change),
        "prdy_vrss_sign": "2" if change > 0 else "5" if change < 0 else "3",
        "prdy_ctrt": _pct(change, base),
        "acml_tr_pbmn": s(vol * price),
        "acml_vol": s(vol),
        "prdy_vrss_vol_rate": _pct(vol, prev_vol),
        "stck_oprc": s(opn),
        "stck_hgpr": s(high),
        "stck_lwpr": s(low),
        "stck_mxpr": s(upper),
        "stck_llam": s(lower),
        "stck_sdpr": s(base),
        "wghn_avrg_stck_prc": f"{(high + low) // 2}.00",
        "hts_frgn_ehrt": _pct(h5 % 5000, 10000),
        "frgn_ntby_qty": s(h2 % 200_001 - 100_000),
        "pgtr_ntby_qty": s(h3 % 200_001 - 100_000),
        "pvt_scnd_dmrs_prc": s(pivot + high - low),
        "pvt_frst_dmrs_prc": s(2 * pivot - low),
        "pvt_pont_val": s(pivot),
        "pvt_frst_dmsp_prc": s(2 * pivot - high),
        "pvt_scnd_dmsp_prc": s(pivot - high + low),
        "dmrs_val": s(high),
        "dmsp_val": s(low),
        "cpfn": s(shares * par // 100_000_000),
        "rstc_wdth_prc": s(upper - base),
        "stck_fcam": s(par),
        "stck_sspr": s(base * 8 // 10 // 10 * 10),
        "aspr_unit": s(_tick(price)),
        "hts_deal_qty_unit_val": "1",
        "lstn_stcn": s(shares),
        "hts_avls": s(price * shares // 100_000_000),
        "per": _decimal2(per_c),
        "pbr": _decimal2(pbr_c),
        "stac_month": "12",
        "vol_tnrt": _pct(vol, shares),
        "eps": f"{price * 100 // per_c}.00",
        "bps": f"{price * 100 // pbr_c}.00",
        "d250_hgpr": s(y_high),
        "d250_hgpr_date": y_high_date,
        "d250_hgpr_vrss_prpr_rate": _pct(price - y_high, y_high),
        "d250_lwpr": s(y_low),
        "d250_lwpr_date": y_low_date,
        "d250_lwpr_vrss_prpr_rate": _pct(price - y_low, y_low),
        "stck_dryy_hgpr": s(y_high),
        "dryy_hgpr_vrss_prpr_rate": _pct(price - y_high, y_high),
        "dryy_hgpr_date": y_high_date,
        "stck_dryy_lwpr": s(y_low),
        "dryy_lwpr_vrss_prpr_rate": _pct(price - y_low, y_low),
        "dryy_lwpr_date": y_low_date,
        "w52_hgpr": s(y_high),
        "w52_hgpr_vrss_prpr_ctrt": _pct(price - y_high, y_high),
        "w52_hgpr_date": y_high_date,
        "w52_lwpr": s(y_low),
        "w52_lwpr_vrss_prpr_ctrt": _pct(price - y_low, y_low),
        "w52_lwpr_date": y_low_date,
        "whol_loan_rmnd_rate": _pct(h3 % 500, 10000),
        "ssts_yn": "N",
        "stck_shrn_iscd": symbol,
        "fcam_cnnm": "원",
        "cpfn_cnnm": "억",
        "apprch_rate": _pct(price - y_low, max(1, y_high - y_low)),
        "frgn_hldn_qty": s(shares * (h5 % 5000) // 10000),
        "vi_cls_code": "N",
        "ovtm_vi_cls_code": "N",
        "last_ssts_cntg_qty": s(h4 % 10000),
        "invt_caful_yn": "N",
        "mrkt_warn_cls_code": "00",
        "short_over_yn": "N",
        "sltr_yn": "N",
        "mang_issu_cls_code": "N",
    }


def unlisted_output(symbol):
    """What KIS answers for an unknown code: every field, numbers "0", everything else ""."""
    return {k: "0" if NUMERIC.fullmatch(v) and not k.endswith("_date")
            and k != "stck_shrn_iscd" else ""
            for k, v in quote_output(symbol, "J").items()}


# --------------------------------------------------------------------------- shared state

class MockState:
    """Configuration, tokens, fault rules and counters, all guarded by one lock."""

    def __init__(self, config, tls):
        self.lock = threading.Lock()
        self.config = dict(config)
        self.tls = tls
        self.tokens = {}    # token -> {"appkey", "expires" (epoch seconds), "expired"}
        self.in_flight = 0  # survives resets: those requests are still running
        self._clear()

    def _clear(self):
        """Zero everything a reset forgets (caller holds the lock, or no one shares it yet)."""
        self.t0 = time.monotonic()
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.counters["max_in_flight"] = self.in_flight
        self.by_symbol, self.tokens_by_appkey = {}, {}
        self.faults_injected, self.errors = {}, {}
        self.timeline, self.faults = [], []
        self.rate_windows = {}  # appkey -> [window second, requests in it]
        self.last_issue = {}    # appkey -> time.monotonic() of its last token issuance

    @staticmethod
    def _inc(table, key):
        table[key] = table.get(key, 0) + 1

    def bump(self, counter):
        with self.lock:
            self.counters[counter] += 1

    def count_error(self, code):
        with self.lock:
            self._inc(self.errors, code)

    def reset(self, forget_tokens):
        with self.lock:
            self._clear()
            if forget_tokens:
                self.tokens.clear()

    def configure(self, changes):
        unknown = set(changes) - set(CONFIG_TYPES)
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        parsed = {key: CONFIG_TYPES[key](value) for key, value in changes.items()}
        if any(value < 0 for value in parsed.values()):
            raise ValueError("config values must not be negative")
        with self.lock:
            self.config.update(parsed)

    def add_faults(self, faults):
        if not isinstance(faults, list):
            raise ValueError('"faults" must be a list')
        rules = []
        for fault in faults:
            if not isinstance(fault, dict) or fault.get("kind") not in FAULT_KINDS:
                raise ValueError(f"bad fault rule {fault!r}; kinds: {sorted(FAULT_KINDS)}")
            rules.append({"kind": fault["kind"], "symbol": str(fault.get("symbol", "*")),
                          "times": int(fault.get("times", 1)), "ms": float(fault.get("ms", 3000))})
        with self.lock:
            self.faults.extend(rule for rule in rules if rule["times"] != 0)

    def take_fault(self, symbol, token_endpoint=False):
        """Fire the first matching rule (egw00133 rules only match tokenP) and return it."""
        with self.lock:
            for rule in self.faults:
                if token_endpoint != (rule["kind"] == "egw00133"):
                    continue
                if not token_endpoint and rule["symbol"] not in ("*", symbol):
                    continue
                if rule["times"] > 0:
                    rule["times"] -= 1
                    if rule["times"] == 0:
                        self.faults.remove(rule)
                self._inc(self.faults_injected, rule["kind"])
                return dict(rule)
        return None

    def issue_token(self, appkey):
        """Return (token, expiry epoch, ttl), or None when the issuance interval forbids it."""
        now = time.monotonic()
        with self.lock:
            last = self.last_issue.get(appkey)
            if last is not None and now - last < self.config["token_interval"]:
                self.counters["token_rejections"] += 1
                return None
            self.last_issue[appkey] = now
            ttl = self.config["token_ttl"]
            token = "eyJ" + secrets.token_urlsafe(222)  # opaque, ~300 chars like a KIS JWT
            expires = time.time() + ttl
            self.tokens[token] = {"appkey": appkey, "expires": expires, "expired": False}
            self.counters["tokens_issued"] += 1
            self._inc(self.tokens_by_appkey, appkey)
            return token, expires, ttl

    def check_token(self, token):
        """Return (msg_cd or None, appkey of the token)."""
        with self.lock:
            info = self.tokens.get(token)
            if info is None:
                return "EGW00121", None
            if info["expired"] or time.time() >= info["expires"]:
                return "EGW00123", info["appkey"]
            return None, info["appkey"]

    def expire_token(self, token):
        with self.lock:
            if token in self.tokens:  # a reset with "tokens": true may have dropped it
                self.tokens[token]["expired"] = True

    def over_rate(self, appkey, arrival):
        """Count a request in its appkey's one-second window; True if over the limit."""
        with self.lock:
            limit = self.config["rate_limit"]
            if limit <= 0:
                return False
            window = int(arrival)
            slot = self.rate_windows.get(appkey)
            if slot is None or slot[0] != window:
                slot = self.rate_windows[appkey] = [window, 0]
            slot[1] += 1
            if slot[1] <= limit:
                return False
            self.counters["violations"] += 1
            return True

    def begin_request(self, symbol):
        """Account for an API request whose headers were read; return its arrival time."""
        with self.lock:
            self.counters["requests"] += 1
            self.in_flight += 1
            self.counters["max_in_flight"] = max(self.counters["max_in_flight"], self.in_flight)
            if symbol:
                self._inc(self.by_symbol, symbol)
            if len(self.timeline) < TIMELINE_CAP:
                self.timeline.append(time.monotonic() - self.t0)
        return time.time()

    def end_request(self):
        with self.lock:
            self.in_flight -= 1

    def latency(self):
        """Seconds to delay an API answer: latency_ms ± uniform jitter_ms, at least 0."""
        with self.lock:
            base, jitter = self.config["latency_ms"], self.config["jitter_ms"]
        return max(0.0, base + random.uniform(-jitter, jitter)) / 1000

    def snapshot(self, with_timeline):
        with self.lock:
            snap = dict(self.counters, in_flight=self.in_flight,
                        by_symbol=dict(self.by_symbol),
                        tokens_issued_by_appkey=dict(self.tokens_by_appkey),
                        faults_injected=dict(self.faults_injected),
                        errors=dict(self.errors),
                        faults_pending=[dict(rule) for rule in self.faults],
                        tls=self.tls, **self.config)
            if with_timeline:
                snap["timeline"] = [round(t, 6) for t in self.timeline]
        return snap


# --------------------------------------------------------------------------- HTTP handler

class KisHandler(BaseHTTPRequestHandler):
    """One instance per connection; keep-alive loops over requests in handle()."""

    protocol_version = "HTTP/1.1"
    server_version = "mock-kis/1.0"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    counted = False                 # this connection already counted in connections_opened

    def log_message(self, format, *args):
        """Per-request logging is off."""

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    # ---- plumbing

    def _dispatch(self):
        url = urlsplit(self.path)
        body = self._read_body()
        if url.path.startswith("/__mock/"):
            self._control(url, body)
            return
        if not self.counted:
            self.counted = True
            self.server.state.bump("connections_opened")
        if url.path == "/oauth2/tokenP" and self.command == "POST":
            self._token(body)
        else:
            self._api(url)

    def _read_body(self):
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:  # cannot find the next request on this connection
            self.close_connection = True
            return b""
        return self.rfile.read(length)

    def _send(self, status, body, ctype=JSON_TYPE, length=None):
        """Send a whole answer; length overrides Content-Length (for "truncate")."""
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status, obj):
        self._send(status, json.dumps(obj, ensure_ascii=False).encode())

    def _send_kis(self, status, msg_cd, **extra):
        """Send a KIS envelope; rt_cd is "0" only for MCA00000."""
        rt_cd = "0" if msg_cd == "MCA00000" else "1"
        if rt_cd != "0":
            self.server.state.count_error(msg_cd)
        self._send_json(status, {"rt_cd": rt_cd, "msg_cd": msg_cd,
                                 "msg1": MESSAGES[msg_cd], **extra})

    def _hang_up(self):
        """Close the TCP connection at once, whatever was (not) sent."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # ---- control API

    def _control(self, url, body):
        state = self.server.state
        route = (self.command, url.path)
        if route == ("GET", "/__mock/stats"):
            timeline = parse_qs(url.query).get("timeline", ["0"])[-1] not in ("0", "false")
            self._send_json(200, state.snapshot(timeline))
            return
        try:
            payload = json.loads(body or b"{}")
            if not isinstance(payload, dict):
                raise ValueError("body must be a JSON object")
            if route == ("POST", "/__mock/reset"):
                state.reset(bool(payload.get("tokens")))
            elif route == ("POST", "/__mock/config"):
                state.configure(payload)
            elif route == ("POST", "/__mock/faults"):
                state.add_faults(payload.get("faults"))
            else:
                self._send_json(404, {"ok": False, "error": f"no route {self.command} {url.path}"})
                return
        except (TypeError, ValueError) as exc:
            self._send_json(400, {"ok": False, "error": str(exc)})
            return
        self._send_json(200, {"ok": True})

    # ---- POST /oauth2/tokenP

    def _token_error(self, code):
        self.server.state.count_error(code)
        self._send_json(403, {"error_code": code, "error_description": MESSAGES[code]})

    def _token(self, body):
        state = self.server.state
        try:
            req = json.loads(body)
        except ValueError:
            req = None
        if not isinstance(req, dict):
            return self._token_error("EGW00101")
        appkey, appsecret = req.get("appkey"), req.get("appsecret")
        if not req.get("grant_type"):
            return self._token_error("EGW00115")
        if req["grant_type"] != "client_credentials":
            return self._token_error("EGW00112")
        if not appkey or not isinstance(appkey, str):
            return self._token_error("EGW00102")
        if appkey.startswith("BAD"):
            return self._token_error("EGW00103")
        if not appsecret or not isinstance(appsecret, str):
            return self._token_error("EGW00104")
        if appsecret.startswith("BAD"):
            return self._token_error("EGW00105")
        issued = None if state.take_fault(None, token_endpoint=True) else state.issue_token(appkey)
        if issued is None:
            return self._token_error("EGW00133")
        token, expires, ttl = issued
        self._send_json(200, {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(ttl) if float(ttl).is_integer() else ttl,
            "access_token_token_expired":
                datetime.datetime.fromtimestamp(expires, KST).strftime("%Y-%m-%d %H:%M:%S"),
        })

    # ---- API requests (/uapi/...)

    def _api(self, url):
        state = self.server.state
        params = {k.lower(): v[-1] for k, v in
                  parse_qs(url.query, keep_blank_values=True).items()}
        is_quote = self.command == "GET" and url.path == QUOTE_PATH
        symbol = params.get("fid_input_iscd", "")
        arrival = state.begin_request(symbol if is_quote else None)
        try:
            time.sleep(state.latency())
            if is_quote:
                self._inquire_price(symbol, params.get("fid_cond_mrkt_div_code", ""), arrival)
            else:
                state.bump("bad_requests")
                self._send_kis(404, "EGW00101")
        finally:
            state.end_request()

    def _check_headers(self):
        """KIS gateway header checks; return (msg_cd or None, token, appkey)."""
        h = self.headers
        scheme, _, token = (h.get("authorization") or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return "EGW00121", None, None
        err, appkey = self.server.state.check_token(token)
        if err is None:
            if not h.get("appkey"):
                err = "EGW00102"
            elif h.get("appkey") != appkey:
                err = "EGW00103"
            elif not h.get("appsecret"):
                err = "EGW00104"
            elif h.get("tr_id") != QUOTE_TR_ID:
                err = "EGW00213"
            elif h.get("custtype") not in ("P", "B"):
                err = "EGW00208"
        return err, token, appkey

    def _inquire_price(self, symbol, market, arrival):
        state = self.server.state
        err, token, appkey = self._check_headers()
        if err:
            state.bump("bad_requests")
            return self._send_kis(500, err)
        if state.over_rate(appkey, arrival):
            return self._send_kis(500, "EGW00201")
        fault = state.take_fault(symbol)
        if fault and self._inject(fault, token, symbol, market):
            return None
        if market not in MARKET_OFFSET:
            return self._send_kis(200, "OPSQ2001")
        prefix = symbol[:2]
        if prefix == "98" or not symbol:
            return self._send_kis(200, "MCA05918")
        if prefix == "97":
            return self._send(500, b"<html>Internal Server Error</html>", "text/html")
        if prefix == "95":
            return self._send_kis(200, "MCA00000")
        if prefix == "99":
            return self._send_kis(200, "MCA00000", output=unlisted_output(symbol))
        if prefix == "96":
            time.sleep(3)
        return self._send_kis(200, "MCA00000", output=quote_output(symbol, market))

    def _inject(self, fault, token, symbol, market):
        """Apply a fired fault rule; return True if it answered (or hung up)."""
        kind = fault["kind"]
        if kind == "slow":
            time.sleep(fault["ms"] / 1000)
            return False
        if kind == "http500":
            self._send(500, b"Internal Server Error", "text/plain; charset=utf-8")
        elif kind in ("egw00201", "egw00001", "egw00002"):
            self._send_kis(500, kind.upper())
        elif kind == "expire_token":
            self.server.state.expire_token(token)
            self._send_kis(500, "EGW00123")
        elif kind == "invalid_token":
            self._send_kis(500, "EGW00121")
        elif kind == "drop":
            self._hang_up()
        elif kind == "garbage":
            self._send(200, b"not json at all {")
        elif kind == "bad_shape":
            self._send_kis(200, "MCA00000", output=[])
        else:  # numbers, huge, truncate: variations of a normal answer
            output = quote_output(symbol or "000000", market if market in MARKET_OFFSET else "J")
            extra = {}
            if kind == "numbers":
                output.update((key, int(output[key])) for key in NUMBER_FIELDS)
            elif kind == "huge":
                extra["padding"] = "x" * HUGE_BYTES
            body = json.dumps({"rt_cd": "0", "msg_cd": "MCA00000", "msg1": MESSAGES["MCA00000"],
                               "output": output, **extra}, ensure_ascii=False).encode()
            if kind == "truncate":
                self.close_connection = True
                self._send(200, body[:len(body) // 2], length=len(body))
                self._hang_up()
            else:
                self._send(200, body)
        return True


# --------------------------------------------------------------------------- server

class MockServer(ThreadingHTTPServer):
    """Threaded HTTP(S) server; TLS handshakes run in the per-connection thread."""

    daemon_threads = True
    request_queue_size = 128  # benchmark bursts open many connections at once

    def __init__(self, address, state, ssl_context=None):
        self.state = state
        self.ssl_context = ssl_context
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, KisHandler)

    def server_bind(self):
        # HTTPServer.server_bind would call socket.getfqdn(), a DNS lookup we do not need.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def get_request(self):
        conn, addr = super().get_request()
        self.state.bump("connections_accepted")
        return conn, addr

    def finish_request(self, request, client_address):
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            conn = self.ssl_context.wrap_socket(request, server_side=True)
        except OSError:  # ssl.SSLError, timeouts, resets: the client gave up or refused us
            self.state.bump("tls_failures")
            return
        conn.settimeout(None)
        try:
            super().finish_request(conn, client_address)
        finally:
            conn.close()

    def handle_error(self, request, client_address):
        # Clients vanishing mid-request (resets, TLS EOFs) are normal here; report only bugs.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


# --------------------------------------------------------------------------- main

def write_atomic(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    os.replace(tmp, path)


def parse_args(argv):
    p = argparse.ArgumentParser(description="Mock KIS Open API server for kis_fdw tests.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--port-file", help="write the listening port here")
    p.add_argument("--pid-file", help="write the process id here")
    p.add_argument("--cert", help="server certificate chain (PEM); enables HTTPS")
    p.add_argument("--key", help="private key (PEM) for --cert")
    p.add_argument("--rate-limit", type=int, default=0,
                   help="API requests per appkey per second (0 = unlimited)")
    p.add_argument("--latency-ms", type=float, default=0)
    p.add_argument("--jitter-ms", type=float, default=0)
    p.add_argument("--token-interval", type=float, default=60,
                   help="minimum seconds between token issuances per appkey")
    p.add_argument("--token-ttl", type=float, default=86400, help="token lifetime, seconds")
    p.add_argument("--quiet", action="store_true", help="no startup line either")
    args = p.parse_args(argv)
    if bool(args.cert) != bool(args.key):
        p.error("--cert and --key go together")
    return args


def main(argv=None):
    args = parse_args(argv)
    ssl_context = None
    if args.cert:
        ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ssl_context.minimum_version = ssl.TLSVersion.TLSv1_2
        ssl_context.load_cert_chain(args.cert, args.key)
    state = MockState({key: getattr(args, key) for key in CONFIG_TYPES}, tls=bool(ssl_context))
    server = MockServer((args.host, args.port), state, ssl_context)
    port = server.server_address[1]
    written = [path for path in (args.pid_file, args.port_file) if path]
    if args.pid_file:
        write_atomic(args.pid_file, str(os.getpid()))
    if args.port_file:
        write_atomic(args.port_file, str(port))
    if not args.quiet:
        scheme = "https" if ssl_context else "http"
        print(f"mock_kis: listening on {scheme}://{args.host}:{port} (pid {os.getpid()})",
              file=sys.stderr, flush=True)

    def stop(signum, frame):
        # shutdown() waits for serve_forever() to return, so it cannot run on this thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
        for path in written:
            try:
                os.unlink(path)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
