#!/usr/bin/env python3
"""Write the seed corpus of fuzz/kis_fuzz (fuzz/corpus/) from real answers of the mock KIS
server (test/mock_kis.py), so that the seeds have the shapes kis_fdw really meets.

    python3 fuzz/make_corpus.py [OUTDIR]        (default: fuzz/corpus next to this file)

Starts the mock over plain HTTP on a free port, asks it what kis_fdw would ask (same
parameters, same paging), and writes one file per scenario in the harness's input layout
(see the header of fuzz/fuzz_kis.c): 5 header bytes, then segments "status tr_cont body"
separated by "\\n~~\\n".  Python 3 standard library only.
"""

import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
MOCK = os.path.join(HERE, "..", "test", "mock_kis.py")
SEP = b"\n~~\n"
# fuzz_kis.c: http_statuses[] and tr_conts[]
STATUS = {200: 0, 500: 1, 403: 2, 401: 3, 404: 4, 429: 5, 408: 6, 502: 7, 503: 8, 0: 9}
TR_CONT = {"": 0, "M": 1, "F": 2, "D": 3, "E": 4, "N": 5}
MODES = {"domestic_price": 0, "domestic_multi_price": 1, "overseas_price": 2,
         "domestic_daily": 3, "overseas_daily": 4, "domestic_orderbook": 5,
         "domestic_holdings": 6, "token": 7,
         # fuzz_kis.c: b % 8 + 7 * (b / 8 % 2) for the endpoints after the seventh
         "domestic_minute": 8, "market_holidays": 9, "domestic_symbols": 10}
DOMESTIC = ["005930", "000660", "035420", "051910", "006400", "035720", "068270",
            "207940", "005380", "000270", "105560", "055550", "012330", "028260",
            "066570", "003550", "017670", "015760", "034730", "032830", "096770",
            "011200", "009150", "018260", "086790", "010130", "030200", "033780",
            "024110", "316140", "090430", "251270", "036570", "000810", "010950",
            "034020", "003670", "047050", "009540", "011170"]
OVERSEAS = ["AAPL", "MSFT", "TSLA", "NVDA", "AMZN", "IBM", "KO", "JPM", "SPY", "0700"]
TODAY = datetime.date(2025, 12, 30)   # the mock's and the harness's "today"
APPKEY, SECRET = "PSfuzzcorpusKey", "fuzz-corpus-secret"

PATHS = {
    "domestic_price": ("/uapi/domestic-stock/v1/quotations/inquire-price", "FHKST01010100"),
    "domestic_multi_price": ("/uapi/domestic-stock/v1/quotations/intstock-multprice",
                             "FHKST11300006"),
    "overseas_price": ("/uapi/overseas-price/v1/quotations/price", "HHDFS00000300"),
    "domestic_daily": ("/uapi/domestic-stock/v1/quotations/inquire-daily-itemchartprice",
                       "FHKST03010100"),
    "overseas_daily": ("/uapi/overseas-price/v1/quotations/dailyprice", "HHDFS76240000"),
    "domestic_orderbook": ("/uapi/domestic-stock/v1/quotations/inquire-asking-price-exp-ccn",
                           "FHKST01010200"),
    "domestic_holdings": ("/uapi/domestic-stock/v1/trading/inquire-balance", "TTTC8434R"),
    "domestic_minute": ("/uapi/domestic-stock/v1/quotations/inquire-time-itemchartprice",
                        "FHKST03010200"),
    "market_holidays": ("/uapi/domestic-stock/v1/quotations/chk-holiday", "CTCA0903R"),
}


class Mock:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="kis_corpus.")
        portfile = os.path.join(self.dir, "port")
        self.proc = subprocess.Popen([sys.executable, MOCK, "--quiet", "--port-file", portfile,
                                      "--token-interval", "0", "--holdings", "120"])
        for _ in range(200):
            if os.path.exists(portfile) and os.path.getsize(portfile) > 0:
                break
            time.sleep(0.05)
        self.url = "http://127.0.0.1:%s" % open(portfile).read().strip()
        self.renew_token()

    def renew_token(self):
        self.token = json.loads(self.post("/oauth2/tokenP", {
            "grant_type": "client_credentials", "appkey": APPKEY,
            "appsecret": SECRET})[1])["access_token"]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)

    def _open(self, req):
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as e:
            return e.code, e.read(), e.headers

    def post(self, path, body):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        status, data, _ = self._open(req)
        return status, data

    def download(self, name):
        """A master file as the mock serves it: (status, bytes)."""
        status, data, _ = self._open(urllib.request.Request(self.url + "/common/master/" + name))
        return status, data

    def control(self, path, body):
        self.post(path, body)

    def get(self, endpoint, params, tr_cont=None, tr_id=None):
        path, default_tr_id = PATHS[endpoint]
        headers = {"authorization": "Bearer " + self.token, "appkey": APPKEY,
                   "appsecret": SECRET, "tr_id": tr_id or default_tr_id, "custtype": "P"}
        if tr_cont:
            headers["tr_cont"] = tr_cont
        url = self.url + path + "?" + urllib.parse.urlencode(params)
        status, data, h = self._open(urllib.request.Request(url, headers=headers))
        return status, data, (h.get("tr_cont") or "").strip() if h else ""


def seg(status, body, tr_cont=""):
    return bytes([STATUS.get(status, 0), TR_CONT.get(tr_cont, 0)]) + body


def seed(mode, nkeys=1, flags=0, from_off=0, to_off=0, segments=()):
    return bytes([MODES[mode], nkeys - 1, flags, from_off, to_off]) + SEP.join(segments)


def compact(body):
    """The mock's answer re-serialised without spaces (smaller seeds, same shape)."""
    try:
        return json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":")).encode()
    except ValueError:
        return body


def jd_minus(days):
    return TODAY - datetime.timedelta(days=days)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
    os.makedirs(out, exist_ok=True)
    m = Mock()
    seeds = {}
    try:
        def price(sym, market="J", fault=None):
            if fault:
                m.control("/__mock/faults", {"faults": [{"kind": fault, "symbol": "*", "times": 1}]})
            try:
                s, b, _ = m.get("domestic_price", {"FID_COND_MRKT_DIV_CODE": market,
                                                   "FID_INPUT_ISCD": sym})
            except Exception:       # drop / truncate: what arrived is what we keep
                return 500, b""
            return s, b

        # --- domestic_price (inquire-price): object rows
        s, b = price("005930")
        seeds["price-ok"] = seed("domestic_price", 1, segments=[seg(s, compact(b))])
        seeds["price-3"] = seed("domestic_price", 3, segments=[
            seg(*price(sym)) for sym in DOMESTIC[:3]])
        seeds["price-notlisted-99"] = seed("domestic_price", 1, segments=[seg(*price("990001"))])
        seeds["price-business-98"] = seed("domestic_price", 1, segments=[seg(*price("980001"))])
        s, b = price("970001")
        seeds["price-html500-97"] = seed("domestic_price", 1, segments=[seg(s, b)] * 4)
        seeds["price-no-output-95"] = seed("domestic_price", 1, segments=[seg(*price("950001"))])
        for fault in ("http500", "egw00201", "egw00001", "egw00002", "garbage", "bad_shape",
                      "numbers", "expire_token", "invalid_token"):
            s, b = price("005930", fault=fault)
            if fault in ("expire_token", "invalid_token"):
                m.renew_token()
            ok_s, ok_b = price("005930")
            seeds["price-fault-" + fault] = seed("domestic_price", 1,
                                                 segments=[seg(s, b), seg(ok_s, compact(ok_b))])
        # truncate: half the body, then the connection is gone
        s, b = price("005930")
        seeds["price-truncated"] = seed("domestic_price", 1,
                                        segments=[seg(200, b[:len(b) // 2]), seg(s, compact(b))])
        seeds["price-bad-market"] = seed("domestic_price", 1, segments=[seg(*price("005930", "XX"))])

        # --- domestic_multi_price: batched, array or object
        def multi(pairs, shape="array"):
            m.control("/__mock/config", {"multprice_shape": shape})
            params = {}
            for i, (sym, mk) in enumerate(pairs, 1):
                params["FID_COND_MRKT_DIV_CODE_%d" % i] = mk
                params["FID_INPUT_ISCD_%d" % i] = sym
            s, b, _ = m.get("domestic_multi_price", params)
            m.control("/__mock/config", {"multprice_shape": "array"})
            return s, compact(b)

        seeds["multi-3"] = seed("domestic_multi_price", 3,
                                segments=[seg(*multi([(x, "J") for x in DOMESTIC[:3]]))])
        seeds["multi-object-1"] = seed("domestic_multi_price", 1,
                                       segments=[seg(*multi([("005930", "J")], "object"))])
        m.control("/__mock/config", {"multprice_signs": "unsigned"})  # direction in the sign
        seeds["multi-unsigned"] = seed("domestic_multi_price", 3,
                                       segments=[seg(*multi([(x, "J") for x in DOMESTIC[:3]]))])
        m.control("/__mock/config", {"multprice_signs": "signed"})
        seeds["multi-two-markets"] = seed(
            "domestic_multi_price", 2, flags=0x40,
            segments=[seg(*multi([("005930", "J"), ("005930", "NX"),
                                  ("000660", "J"), ("000660", "NX")]))])
        seeds["multi-35-two-batches"] = seed(
            "domestic_multi_price", 35,
            segments=[seg(*multi([(x, "J") for x in DOMESTIC[:30]])),
                      seg(*multi([(x, "J") for x in DOMESTIC[30:35]]))])
        s, b = multi([(x, "J") for x in DOMESTIC[:3]])
        doc = json.loads(b)
        doc["output"][1]["inter2_prpr"] = "0"
        doc["output"] = doc["output"][:1] + doc["output"][1:2]   # third symbol missing
        seeds["multi-notlisted-missing"] = seed(
            "domestic_multi_price", 3,
            segments=[seg(s, json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode())])
        m.control("/__mock/faults", {"faults": [{"kind": "bad_shape", "symbol": "*", "times": 1}]})
        seeds["multi-bad-shape"] = seed("domestic_multi_price", 2,
                                        segments=[seg(*multi([(x, "J") for x in DOMESTIC[:2]]))])
        m.control("/__mock/faults", {"faults": [{"kind": "numbers", "symbol": "*", "times": 1}]})
        seeds["multi-numbers"] = seed("domestic_multi_price", 2,
                                      segments=[seg(*multi([(x, "J") for x in DOMESTIC[:2]]))])

        # --- overseas_price
        def ovs(sym, excd):
            s, b, _ = m.get("overseas_price", {"AUTH": "", "EXCD": excd, "SYMB": sym})
            return s, compact(b)

        seeds["overseas-ok"] = seed("overseas_price", 2, segments=[seg(*ovs("AAPL", "NAS")),
                                                                   seg(*ovs("MSFT", "NAS"))])
        seeds["overseas-unlisted"] = seed("overseas_price", 1, segments=[seg(*ovs("AAPL", "NYS"))])
        seeds["overseas-bad-excd"] = seed("overseas_price", 1, segments=[seg(*ovs("AAPL", "XXX"))])
        m.control("/__mock/config", {"overseas_session": "closed"})  # last "" when closed
        seeds["overseas-closed"] = seed("overseas_price", 2, segments=[seg(*ovs("AAPL", "NAS")),
                                                                       seg(*ovs("MSFT", "NAS"))])
        m.control("/__mock/config", {"overseas_session": "open"})

        # --- domestic_daily: date paging exactly as requests.c pages
        def ddaily(sym, period, start, end):
            pages, page_to = [], end
            while True:
                s, b, _ = m.get("domestic_daily", {
                    "FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": sym,
                    "FID_INPUT_DATE_1": start.strftime("%Y%m%d"),
                    "FID_INPUT_DATE_2": page_to.strftime("%Y%m%d"),
                    "FID_PERIOD_DIV_CODE": period, "FID_ORG_ADJ_PRC": "0"})
                pages.append(seg(s, compact(b)))
                rows = json.loads(b).get("output2") or []
                if len(rows) < 100:
                    return pages
                oldest = datetime.datetime.strptime(rows[-1]["stck_bsop_date"], "%Y%m%d").date()
                if oldest <= start or oldest > page_to:
                    return pages
                page_to = oldest - datetime.timedelta(days=1)

        # flags: bits 2-3 period, bit 4 from, bit 5 to; from = today - 7*b3, to = today - b4
        seeds["ddaily-paged"] = seed("domestic_daily", 1, flags=0x30, from_off=60, to_off=0,
                                     segments=ddaily("005930", "D", jd_minus(420), TODAY))
        seeds["ddaily-open"] = seed("domestic_daily", 1, flags=0x00,
                                    segments=ddaily("005930", "D", datetime.date(1900, 1, 1),
                                                    TODAY)[:1])
        seeds["ddaily-weekly"] = seed("domestic_daily", 1, flags=0x14, from_off=52,
                                      segments=ddaily("000660", "W", jd_minus(364), TODAY))
        seeds["ddaily-notlisted"] = seed("domestic_daily", 1, flags=0x10, from_off=5,
                                         segments=ddaily("990001", "D", jd_minus(35), TODAY))

        # --- overseas_daily
        def odaily(sym, gubn, start, end):
            pages, page_to = [], end
            while True:
                s, b, _ = m.get("overseas_daily", {
                    "AUTH": "", "EXCD": "NAS", "SYMB": sym, "GUBN": gubn,
                    "BYMD": page_to.strftime("%Y%m%d"), "MODP": "1", "KEYB": ""})
                pages.append(seg(s, compact(b)))
                rows = json.loads(b).get("output2") or []
                if len(rows) < 100:
                    return pages
                oldest = datetime.datetime.strptime(rows[-1]["xymd"], "%Y%m%d").date()
                if oldest <= start or oldest > page_to:
                    return pages
                page_to = oldest - datetime.timedelta(days=1)

        seeds["odaily-paged"] = seed("overseas_daily", 1, flags=0x12, from_off=45,
                                     segments=odaily("AAPL", "0", jd_minus(315), TODAY))
        seeds["odaily-open"] = seed("overseas_daily", 1, flags=0x00,
                                    segments=odaily("AAPL", "0", TODAY, TODAY)[:1])

        # --- domestic_orderbook: output1 object + output2 extra
        def book(sym):
            s, b, _ = m.get("domestic_orderbook", {"FID_COND_MRKT_DIV_CODE": "J",
                                                   "FID_INPUT_ISCD": sym})
            return s, compact(b)

        seeds["book-ok"] = seed("domestic_orderbook", 1, segments=[seg(*book("005930"))])
        seeds["book-notlisted"] = seed("domestic_orderbook", 1, segments=[seg(*book("990001"))])

        # --- cursor paging by tr_cont and ctx_area_* (suffix: "100" for holdings)
        def cursor_pages(endpoint, params, suffix, tr_id=None, limit=20):
            pages, cont, fk, nk = [], None, "", ""
            for _ in range(limit):
                s, b, tr = m.get(endpoint, dict(params, **{
                    "CTX_AREA_FK" + suffix: fk, "CTX_AREA_NK" + suffix: nk}),
                    tr_cont=cont, tr_id=tr_id)
                pages.append(seg(s, compact(b), tr))
                if tr not in ("M", "F"):
                    return pages
                doc = json.loads(b)
                fk, nk, cont = doc["ctx_area_fk" + suffix], doc["ctx_area_nk" + suffix], "N"
            return pages

        # --- domestic_holdings
        def holdings(cano, tr_id="TTTC8434R"):
            return cursor_pages("domestic_holdings", {
                "CANO": cano, "ACNT_PRDT_CD": "01", "AFHR_FLPR_YN": "N", "OFL_YN": "",
                "INQR_DVSN": "02", "UNPR_DVSN": "01", "FUND_STTL_ICLD_YN": "N",
                "FNCG_AMT_AUTO_RDPT_YN": "N", "PRCS_DVSN": "00"}, "100", tr_id)

        seeds["holdings-3-pages"] = seed("domestic_holdings", 1, segments=holdings("12345678"))
        seeds["holdings-virtual"] = seed("domestic_holdings", 1, flags=0x01,
                                         segments=holdings("12345678", "VTTC8434R")[:2])
        seeds["holdings-empty"] = seed("domestic_holdings", 1, segments=holdings("00000000"))
        seeds["holdings-bad-account"] = seed("domestic_holdings", 1,
                                             segments=holdings("99999999"))
        # SYDB0050 on page 2: the listing starts over from page 1
        m.control("/__mock/faults", {"faults": [{"kind": "sydb0050", "symbol": "*", "times": 1}]})
        seeds["holdings-restart"] = seed("domestic_holdings", 1,
                                         segments=holdings("12345678") + holdings("12345678"))

        # --- domestic_minute: time paging from 10:00 (the harness's clock) back
        def minute(sym, session="0900-1530"):
            m.control("/__mock/config", {"minute_session": session})
            pages, hour = [], "100000"
            while True:
                s, b, _ = m.get("domestic_minute", {
                    "FID_ETC_CLS_CODE": "", "FID_COND_MRKT_DIV_CODE": "J",
                    "FID_INPUT_ISCD": sym, "FID_INPUT_HOUR_1": hour,
                    "FID_PW_DATA_INCU_YN": "N"})
                pages.append(seg(s, compact(b)))
                rows = json.loads(b).get("output2") or []
                if len(rows) < 30:
                    return pages
                oldest = rows[-1]["stck_cntg_hour"]
                t = int(oldest[:2]) * 3600 + int(oldest[2:4]) * 60 + int(oldest[4:]) - 1
                if t < 0:
                    return pages
                hour = "%02d%02d%02d" % (t // 3600, t // 60 % 60, t % 60)

        seeds["minute-paged"] = seed("domestic_minute", 1, segments=minute("005930"))
        seeds["minute-whole-day"] = seed("domestic_minute", 2,
                                         segments=minute("000660", "0000-2359"))
        seeds["minute-notlisted"] = seed("domestic_minute", 1, segments=minute("990001"))

        # --- market_holidays: cursor paging with ctx_area_fk / ctx_area_nk
        def holidays(start):
            return cursor_pages("market_holidays", {"BASS_DT": start}, "", limit=30)

        # flags bit 4: from = today - 7 * 10 days; bit 5: to = today
        seeds["holidays-range"] = seed("market_holidays", 1, flags=0x30, from_off=10,
                                       segments=holidays(jd_minus(70).strftime("%Y%m%d")))
        seeds["holidays-open-end"] = seed("market_holidays", 1, flags=0x00,
                                          segments=holidays(TODAY.strftime("%Y%m%d")))

        # --- domestic_symbols: the master files (zip archives); nkeys 1 KOSPI, 3 all
        files = {m: m + "_code.mst.zip" for m in ("kospi", "kosdaq", "konex")}
        seeds["symbols-kospi"] = seed("domestic_symbols", 1,
                                      segments=[seg(*m.download(files["kospi"]))])
        seeds["symbols-all"] = seed("domestic_symbols", 3, segments=[
            seg(*m.download(files[k])) for k in ("kospi", "kosdaq", "konex")])
        m.control("/__mock/faults", {"faults": [
            {"kind": "http500", "symbol": files["kospi"], "times": 1}]})
        seeds["symbols-500-then-ok"] = seed("domestic_symbols", 1, segments=[
            seg(*m.download(files["kospi"])), seg(*m.download(files["kospi"]))])

        # --- tokenP answers
        s, b = m.post("/oauth2/tokenP", {"grant_type": "client_credentials",
                                         "appkey": APPKEY, "appsecret": SECRET})
        seeds["token-ok"] = seed("token", segments=[seg(s, b)])
        s, b = m.post("/oauth2/tokenP", {"grant_type": "client_credentials",
                                         "appkey": "BADkey", "appsecret": SECRET})
        seeds["token-bad-key"] = seed("token", segments=[seg(s, b)])
        m.control("/__mock/faults", {"faults": [{"kind": "egw00133", "symbol": "*", "times": 1}]})
        s2, b2 = m.post("/oauth2/tokenP", {"grant_type": "client_credentials",
                                           "appkey": APPKEY, "appsecret": SECRET})
        s3, b3 = m.post("/oauth2/tokenP", {"grant_type": "client_credentials",
                                           "appkey": APPKEY, "appsecret": SECRET})
        seeds["token-egw00133-then-ok"] = seed("token", segments=[seg(s2, b2), seg(s3, b3)])
        seeds["token-expires-in-only"] = seed("token", segments=[seg(200, json.dumps(
            {"access_token": "eyJfuzz", "token_type": "Bearer", "expires_in": 86400}).encode())])
        seeds["token-expires-in-string"] = seed("token", segments=[seg(200, json.dumps(
            {"access_token": "eyJfuzz", "expires_in": "86400",
             "access_token_token_expired": "2025-12-31 10:00:00"}).encode())])
        seeds["token-500-html"] = seed("token", segments=[
            seg(500, b"<html>Internal Server Error</html>"),
            seg(200, json.dumps({"access_token": "eyJfuzz", "expires_in": 86400.5}).encode())])
    finally:
        m.stop()

    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as fp:
            fp.write(data)
    print("%d seeds written to %s (largest %d bytes)" %
          (len(seeds), out, max(len(d) for d in seeds.values())))


if __name__ == "__main__":
    main()
