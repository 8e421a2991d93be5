"""The mock's routes for the library of declared tables (docs/library-trs.md).

Nine KIS TRs beyond the built-in endpoints, answered with the shapes real KIS sends: field
names, string values, signs, blanks, rows newest first, page sizes.  Every value is a pure
function of the request (and the mock's settable "today"), so tests can recompute it.

mock_kis.py adds these routes to its ENDPOINTS with endpoints(module), passing itself, so
that this file shares its helpers (kis, _words, quote_numbers, ...) without a second copy.

Sources of the shapes: docs/library-trs.md, which cites the official samples
(koreainvestment/open-trading-api) and the answers published by other clients.
"""

import datetime
import re

INVESTOR_PATH = "/uapi/domestic-stock/v1/quotations/inquire-investor"
VOLUME_RANK_PATH = "/uapi/domestic-stock/v1/quotations/volume-rank"
FLUCTUATION_PATH = "/uapi/domestic-stock/v1/ranking/fluctuation"
MARKET_CAP_PATH = "/uapi/domestic-stock/v1/ranking/market-cap"
INDEX_PRICE_PATH = "/uapi/domestic-stock/v1/quotations/inquire-index-price"
INDEX_DAILY_PATH = "/uapi/domestic-stock/v1/quotations/inquire-daily-indexchartprice"
ETF_PRICE_PATH = "/uapi/etfetn/v1/quotations/inquire-price"
FINANCIAL_RATIO_PATH = "/uapi/domestic-stock/v1/finance/financial-ratio"
OVERSEAS_MINUTE_PATH = "/uapi/overseas-price/v1/quotations/inquire-time-itemchartprice"

INVESTOR_DAYS = 30        # business days per inquire-investor answer
RANK_ROWS = 30            # rows of a ranking ("최대 30건")
RANK_UNIVERSE = 60        # symbols a ranking ranks, per market code
INDEX_BARS = 50           # bars per inquire-daily-indexchartprice call
RATIO_ROWS = {"0": 10, "1": 30}   # years / quarters per financial-ratio answer
OVERSEAS_MINUTE_MAX = 120  # NREC's cap
OVERSEAS_MINUTE_DAYS = 30  # how far back minute bars go ("약 1개월")
# regular session, exchange-local time, and its offset to KST in hours
OVERSEAS_SESSION = {"NAS": ("0930", "1600", 14), "NYS": ("0930", "1600", 14),
                    "AMS": ("0930", "1600", 14), "HKS": ("0930", "1600", 1),
                    "TSE": ("0900", "1500", 0), "SHS": ("0930", "1500", 1),
                    "SZS": ("0930", "1500", 1), "HSX": ("0915", "1445", 2),
                    "HNX": ("0900", "1445", 2)}
RANK_MARKETS = ("0000", "0001", "1001", "2001")
INDEX_NAMES = {"0001": "종합", "0002": "대형주", "1001": "KOSDAQ", "2001": "KOSPI200"}


def _index_code(text):
    return text if re.fullmatch(r"\d{4}", text or "") else None


def endpoints(m):
    """{path: m.Endpoint} for the library's TRs; m is the mock_kis module."""

    def business_days(last, n):
        """The n business days up to last, newest first (the mock's calendar)."""
        days, day = [], last
        while len(days) < n:
            if m.calendar_day(day)["bzdy_yn"] == "Y":
                days.append(day)
            day -= m.ONE_DAY
        return days

    def market_of(call):
        market = call.params.get("fid_cond_mrkt_div_code", "")
        return market if market in m.MARKET_OFFSET else None

    # ------------------------------------------------------------ investor flows
    def investor_row(symbol, day, blank):
        g = m._words(f"investor{symbol}{m.ymd(day)}", 6)
        q = m.quote_numbers(symbol, "J")
        close = max(10, q.price + (g[0] % 21 - 10) * 10)
        change = (g[1] % 21 - 10) * 10
        row = {"stck_bsop_date": m.ymd(day), "stck_clpr": str(close),
               "prdy_vrss": str(change), "prdy_vrss_sign": m._sign(change)}
        flows = {}
        for who, k in (("prsn", 2), ("frgn", 3), ("orgn", 4)):
            buy, sell = g[k] % 5_000_000, (g[k] >> 8) % 5_000_000
            flows.update({f"{who}_ntby_qty": buy - sell,
                          f"{who}_ntby_tr_pbmn": (buy - sell) * close // 1_000_000,
                          f"{who}_shnu_vol": buy, f"{who}_shnu_tr_pbmn": buy * close // 1_000_000,
                          f"{who}_seln_vol": sell,
                          f"{who}_seln_tr_pbmn": sell * close // 1_000_000})
        if blank:
            # today's row before the close: flows blank, no change (docs/library-trs.md)
            row.update(prdy_vrss="0", prdy_vrss_sign="0")
            flows = dict.fromkeys(flows, "")
        row.update({k: str(v) for k, v in flows.items()})
        return row

    def inquire_investor(call):
        symbol, market = call.symbols[0], market_of(call)
        if market is None:
            return m.kis("OPSQ2001")
        special = m._prefix_reply(symbol)
        if special:
            return special
        if symbol[:2] == "99":
            return m.kis("MCA00000", output=[])
        today = call.state.today()
        rows = [investor_row(symbol, day, blank=(day == today and
                                                 call.state.setting("investor_today") == "blank"))
                for day in business_days(today, INVESTOR_DAYS)]
        return m.kis("MCA00000", output=rows)

    # ------------------------------------------------------------ rankings
    def universe(code):
        """The symbols a ranking of market code ranks: generated, distinct, sorted."""
        seen = set()
        for i in range(RANK_UNIVERSE * 2):
            h = m._words(f"rank{code}{i}", 1)[0]
            seen.add(f"{h % 900000 + 100000:06d}")
            if len(seen) == RANK_UNIVERSE:
                break
        return sorted(seen)

    def rank_entry(symbol):
        q = m.quote_numbers(symbol, "J")
        shares = 1_000_000 + q.h[5] % 1_000_000_000
        return q, shares

    def ranking(call, screen, order):
        p = call.params
        if p.get("fid_cond_mrkt_div_code") != "J" or p.get("fid_cond_scr_div_code") != screen:
            return None, m.kis("OPSQ2002")
        code = p.get("fid_input_iscd", "")
        if code not in RANK_MARKETS:
            return None, m.kis("OPSQ2002")
        entries = [(symbol,) + rank_entry(symbol) for symbol in universe(code)]
        entries.sort(key=order)
        return entries[:RANK_ROWS], None

    def common(symbol, q):
        return {"hts_kor_isnm": m.stock_name(symbol), "stck_prpr": str(q.price),
                "prdy_vrss_sign": m._sign(q.change), "prdy_vrss": str(q.change),
                "prdy_ctrt": m._pct(q.change, q.base), "acml_vol": str(q.vol)}

    def volume_rank(call):
        rows, err = ranking(call, "20171", lambda e: (-e[1].vol, e[0]))
        if err:
            return err
        out = []
        for i, (symbol, q, shares) in enumerate(rows):
            out.append({"data_rank": str(i + 1), "mksc_shrn_iscd": symbol, **common(symbol, q),
                        "prdy_vol": str(q.prev_vol), "lstn_stcn": str(shares),
                        "avrg_vol": str((q.vol + q.prev_vol) // 2),
                        "n_befr_clpr_vrss_prpr_rate": m._pct(q.change, q.base),
                        "vol_inrt": m._pct(q.vol - q.prev_vol, max(q.prev_vol, 1)),
                        "vol_tnrt": m._pct(q.vol, shares), "nday_vol_tnrt": m._pct(q.vol, shares),
                        "avrg_tr_pbmn": str(q.vol * q.price), "tr_pbmn_tnrt": "0.00",
                        "nday_tr_pbmn_tnrt": "0.00", "acml_tr_pbmn": str(q.vol * q.price)})
        return m.kis("MCA00000", output=out)

    def fluctuation(call):
        falling = call.params.get("fid_rank_sort_cls_code", "0") == "1"
        rate = lambda e: e[1].change * 10**6 // e[1].base
        rows, err = ranking(call, "20170", lambda e: (rate(e) if falling else -rate(e), e[0]))
        if err:
            return err
        out = []
        for i, (symbol, q, _) in enumerate(rows):
            out.append({"stck_shrn_iscd": symbol, "data_rank": str(i + 1), **common(symbol, q),
                        "stck_hgpr": str(q.high), "hgpr_hour": "100000",
                        "acml_hgpr_date": m.ymd(call.state.today()), "stck_lwpr": str(q.low),
                        "lwpr_hour": "093000", "acml_lwpr_date": m.ymd(call.state.today()),
                        "lwpr_vrss_prpr_rate": m._pct(q.price - q.low, q.low),
                        "dsgt_date_clpr_vrss_prpr_rate": m._pct(q.change, q.base),
                        "cnnt_ascn_dynu": str(q.h[2] % 5), "hgpr_vrss_prpr_rate":
                            m._pct(q.price - q.high, q.high),
                        "cnnt_down_dynu": str(q.h[3] % 5), "oprc_vrss_prpr_sign": "2",
                        "oprc_vrss_prpr": "0", "oprc_vrss_prpr_rate": "0.00", "prd_rsfl": "0",
                        "prd_rsfl_rate": "0.00"})
        return m.kis("MCA00000", output=out)

    def market_cap(call):
        cap = lambda e: e[1].price * e[2]
        rows, err = ranking(call, "20174", lambda e: (-cap(e), e[0]))
        if err:
            return err
        total = sum(cap((s,) + rank_entry(s)) for s in universe(call.params["fid_input_iscd"]))
        out = []
        for i, (symbol, q, shares) in enumerate(rows):
            out.append({"mksc_shrn_iscd": symbol, "data_rank": str(i + 1), **common(symbol, q),
                        "lstn_stcn": str(shares), "stck_avls": str(q.price * shares // 10**8),
                        "mrkt_whol_avls_rlim": m._pct(q.price * shares, total)})
        return m.kis("MCA00000", output=out)

    # ------------------------------------------------------------ indices
    def index_value(code, day):
        """Hundredths (close, open, high, low) and (volume, value) of an index on a day."""
        g = m._words(f"index{code}{m.ymd(day)}", 4)
        close = 50_000 + g[0] % 300_000
        opn = close + g[1] % 4001 - 2000
        high = max(opn, close) + (g[1] >> 12) % 1000
        low = min(opn, close) - (g[1] >> 22) % 1000
        return (close, opn, high, low), (g[2] % 1_000_000, g[3] % 20_000_000)

    def index_prelude(call):
        p = call.params
        if p.get("fid_cond_mrkt_div_code") != "U":
            return None, m.kis("OPSQ2001")
        code = _index_code(p.get("fid_input_iscd"))
        if code is None:
            return None, m.kis("OPSQ2002")
        return code, None

    def index_price(call):
        code, err = index_prelude(call)
        if err:
            return err
        today = call.state.today()
        (close, opn, high, low), (vol, value) = index_value(code, today)
        prev = close - (m._words(f"indexchange{code}{m.ymd(today)}", 1)[0] % 6001 - 3000)
        d2 = m._decimal2
        g = m._words(f"breadth{code}{m.ymd(today)}", 2)
        return m.kis("MCA00000", output={
            "bstp_nmix_prpr": d2(close), "bstp_nmix_prdy_vrss": d2(close - prev),
            "prdy_vrss_sign": m._sign(close - prev), "bstp_nmix_prdy_ctrt": m._pct(close - prev, prev),
            "acml_vol": str(vol), "prdy_vol": str(vol // 2), "acml_tr_pbmn": str(value),
            "prdy_tr_pbmn": str(value // 2), "bstp_nmix_oprc": d2(opn),
            "prdy_nmix_vrss_nmix_oprc": d2(opn - prev), "oprc_vrss_prpr_sign": m._sign(opn - prev),
            "bstp_nmix_oprc_prdy_ctrt": m._pct(opn - prev, prev), "bstp_nmix_hgpr": d2(high),
            "prdy_nmix_vrss_nmix_hgpr": d2(high - prev), "hgpr_vrss_prpr_sign": m._sign(high - prev),
            "bstp_nmix_hgpr_prdy_ctrt": m._pct(high - prev, prev), "bstp_nmix_lwpr": d2(low),
            "prdy_clpr_vrss_lwpr": d2(low - prev), "lwpr_vrss_prpr_sign": m._sign(low - prev),
            "prdy_clpr_vrss_lwpr_rate": m._pct(low - prev, prev),
            "ascn_issu_cnt": str(g[0] % 900), "uplm_issu_cnt": str(g[0] % 7),
            "stnr_issu_cnt": str(g[1] % 100), "down_issu_cnt": str(g[1] % 900),
            "lslm_issu_cnt": "0"})

    def index_daily(call):
        code, err = index_prelude(call)
        if err:
            return err
        p = call.params
        first, last = m.parse_ymd(p.get("fid_input_date_1")), m.parse_ymd(p.get("fid_input_date_2"))
        period = p.get("fid_period_div_code", "")
        if first is None or last is None or first > last or period not in m.PERIODS:
            return m.kis("OPSQ2002")
        today = call.state.today()
        dates = bar_dates_business(period, last, today, INDEX_BARS, first)
        rows = []
        for day in dates:
            (close, opn, high, low), (vol, value) = index_value(code, day)
            rows.append({"stck_bsop_date": m.ymd(day), "bstp_nmix_prpr": m._decimal2(close),
                         "bstp_nmix_oprc": m._decimal2(opn), "bstp_nmix_hgpr": m._decimal2(high),
                         "bstp_nmix_lwpr": m._decimal2(low), "acml_vol": str(vol),
                         "acml_tr_pbmn": str(value), "mod_yn": "N"})
        (close, _, _, _), (vol, value) = index_value(code, today)
        return m.kis("MCA00000", output1={"hts_kor_isnm": INDEX_NAMES.get(code, "업종" + code),
                                          "bstp_nmix_prpr": m._decimal2(close),
                                          "acml_vol": str(vol), "acml_tr_pbmn": str(value),
                                          "bstp_cls_code": code}, output2=rows)

    def bar_dates_business(period, last, today, limit, first):
        return [d for d in m.bar_dates(period, last, today, limit * 2, first)
                if period != "D" or m.calendar_day(d)["bzdy_yn"] == "Y"][:limit]

    # ------------------------------------------------------------ ETF/ETN
    def etf_price(call):
        symbol = call.symbols[0]
        if call.params.get("fid_cond_mrkt_div_code") != "J":
            return m.kis("OPSQ2001")
        special = m._prefix_reply(symbol)
        if special:
            return special
        q = m.quote_numbers(symbol, "J")
        g = m._words("etf" + symbol, 4)
        # NAV in hundredths, a little off the price; the premium follows
        nav = q.price * 100 + g[0] % 2001 - 1000
        prev_nav = q.base * 100 + g[1] % 2001 - 1000
        shares = 1_000_000 + g[2] % 500_000_000
        return m.kis("MCA00000", output={
            **{k: v for k, v in common(symbol, q).items() if k != "hts_kor_isnm"},
            "prdy_vol": str(q.prev_vol), "stck_mxpr": str(q.upper), "stck_llam": str(q.lower),
            "stck_prdy_clpr": str(q.base), "stck_oprc": str(q.open), "stck_hgpr": str(q.high),
            "stck_lwpr": str(q.low), "prdy_last_nav": m._decimal2(prev_nav),
            "nav": m._decimal2(nav), "nav_prdy_vrss": m._decimal2(nav - prev_nav),
            "nav_prdy_vrss_sign": m._sign(nav - prev_nav),
            "nav_prdy_ctrt": m._pct(nav - prev_nav, prev_nav),
            "trc_errt": m._decimal2(g[3] % 200), "dprt": m._pct(q.price * 100 - nav, nav),
            "stck_sdpr": str(q.base), "etf_crcl_stcn": str(shares),
            "etf_ntas_ttam": str(shares * prev_nav // 100 // 10**8),
            "etf_cu_unit_scrt_cnt": "100000", "etf_cnfg_issu_cnt": str(10 + g[3] % 190),
            "etf_trc_ert_mltp": ("1.00", "2.00", "-1.00")[g[2] % 3],
            "etf_dvdn_cycl": "", "crcd": "KRW", "mtrt_date": "0", "shrg_type_code": "  ",
            "etf_trgt_nmix_bstp_code": "2001", "etf_rprs_bstp_kor_isnm": "KOSPI200",
            "etf_div_name": "수익증권형", "lstn_stcn": str(shares)})

    # ------------------------------------------------------------ financial ratios
    def financial_ratio(call):
        p, symbol = call.params, call.symbols[0]
        kind = p.get("fid_div_cls_code", "")
        if kind not in RATIO_ROWS or p.get("fid_cond_mrkt_div_code") != "J":
            return m.kis("OPSQ2002")
        special = m._prefix_reply(symbol)
        if special:
            return special
        today = call.state.today()
        year, month = today.year - 1, 12
        rows = []
        for _ in range(RATIO_ROWS[kind]):
            g = m._words(f"ratio{symbol}{year}{month:02d}", 6)
            s = lambda x, span: m._decimal2(x % (2 * span) - span)
            rows.append({"stac_yymm": f"{year}{month:02d}", "grs": s(g[0], 5000),
                         "bsop_prfi_inrt": s(g[1], 9000), "ntin_inrt": s(g[2], 9000),
                         "roe_val": s(g[3], 3000), "eps": m._decimal2(g[4] % 1_000_000),
                         "sps": str(g[5] % 100_000), "bps": m._decimal2(g[4] % 10_000_000),
                         "rsrv_rate": m._decimal2(g[5] % 5_000_000),
                         "lblt_rate": m._decimal2(g[0] % 30_000)})
            if kind == "0":
                year -= 1
            else:
                month -= 3
                if month <= 0:
                    year, month = year - 1, month + 12
        return m.kis("MCA00000", output=rows)

    # ------------------------------------------------------------ overseas minute bars
    def minute_times(excd, day, nmin):
        """The bar starts of a session day, local time, as datetimes, newest first."""
        start, stop, _ = OVERSEAS_SESSION[excd]
        first = datetime.datetime.combine(day, datetime.time(int(start[:2]), int(start[2:])))
        last = datetime.datetime.combine(day, datetime.time(int(stop[:2]), int(stop[2:])))
        times, t = [], last
        while t >= first:
            times.append(t)
            t -= datetime.timedelta(minutes=nmin)
        return times

    def overseas_minute(call):
        p = call.params
        symbol, excd = p.get("symb", ""), p.get("excd", "")
        if excd not in OVERSEAS_SESSION:
            return m.kis("OPSQ2001")
        try:
            nmin, nrec = int(p.get("nmin", "")), int(p.get("nrec", ""))
        except ValueError:
            return m.kis("OPSQ2002")
        keyb, nxt = p.get("keyb", ""), p.get("next", "")
        if not 1 <= nmin <= 60 or not 1 <= nrec <= OVERSEAS_MINUTE_MAX \
                or nxt not in ("", "1") or (nxt == "1") != bool(keyb) \
                or (keyb and not re.fullmatch(r"\d{14}", keyb)):
            return m.kis("OPSQ2002")
        start, stop, kst_offset = OVERSEAS_SESSION[excd]
        summary = {"rsym": f"D{excd}{symbol}", "zdiv": "4", "stim": start + "00",
                   "etim": stop + "00", "sktm": "", "ektm": "", "next": "0", "more": "0",
                   "nrec": "0"}
        if not m.is_listed(symbol, excd):
            return m.kis("MCA00000", output1=summary, output2=[])
        until = (datetime.datetime.strptime(keyb, "%Y%m%d%H%M%S") if keyb else None)
        today = call.state.today()
        rows, more = [], False
        for day in business_days(today, OVERSEAS_MINUTE_DAYS):
            for t in minute_times(excd, day, nmin):
                if until is not None and t > until:
                    continue
                if len(rows) == nrec:
                    more = True
                    break
                g = m._words(f"{symbol}{t:%Y%m%d%H%M}{nmin}", 4)
                close = 10_000 + g[0] % 490_000
                opn = max(100, close + g[1] % 2001 - 1000)
                high = max(opn, close) + (g[1] >> 12) % 500
                low = max(1, min(opn, close) - (g[1] >> 22) % 500)
                vol = g[2] % 100_000
                kst = t + datetime.timedelta(hours=kst_offset)
                rows.append({"tymd": f"{t:%Y%m%d}", "xymd": f"{t:%Y%m%d}", "xhms": f"{t:%H%M%S}",
                             "kymd": f"{kst:%Y%m%d}", "khms": f"{kst:%H%M%S}",
                             "open": m._decimal4(opn), "high": m._decimal4(high),
                             "low": m._decimal4(low), "last": m._decimal4(close),
                             "evol": str(vol), "eamt": str(vol * close // 10_000)})
            if more:
                break
        call.state.count_page(call.path)
        summary.update(next="1" if more else "0", nrec=str(len(rows)))
        return m.kis("MCA00000", output1=summary, output2=rows)

    Endpoint, one = m.Endpoint, m._one
    real_only = frozenset()
    return {
        INVESTOR_PATH: Endpoint(frozenset({"FHKST01010900"}), inquire_investor,
                                one("fid_input_iscd"),
                                ("stck_clpr", "prdy_vrss", "frgn_ntby_qty", "prsn_ntby_qty")),
        VOLUME_RANK_PATH: Endpoint(frozenset({"FHPST01710000"}), volume_rank, lambda p: [],
                                   ("stck_prpr", "acml_vol"), virtual=real_only),
        FLUCTUATION_PATH: Endpoint(frozenset({"FHPST01700000"}), fluctuation, lambda p: [],
                                   ("stck_prpr", "prdy_ctrt"), virtual=real_only),
        MARKET_CAP_PATH: Endpoint(frozenset({"FHPST01740000"}), market_cap, lambda p: [],
                                  ("stck_prpr", "stck_avls"), virtual=real_only),
        INDEX_PRICE_PATH: Endpoint(frozenset({"FHPUP02100000"}), index_price, lambda p: [],
                                   ("bstp_nmix_prpr",), virtual=real_only),
        INDEX_DAILY_PATH: Endpoint(frozenset({"FHKUP03500100"}), index_daily, lambda p: [],
                                   ("bstp_nmix_prpr",)),
        ETF_PRICE_PATH: Endpoint(frozenset({"FHPST02400000"}), etf_price, one("fid_input_iscd"),
                                 ("stck_prpr", "nav"), virtual=real_only),
        FINANCIAL_RATIO_PATH: Endpoint(frozenset({"FHKST66430300"}), financial_ratio,
                                       one("fid_input_iscd"), ("grs", "eps"), virtual=real_only),
        OVERSEAS_MINUTE_PATH: Endpoint(frozenset({"HHDFS76950200"}), overseas_minute, one("symb"),
                                       ("last", "evol"), virtual=real_only),
    }
