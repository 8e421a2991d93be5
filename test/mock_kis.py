#!/usr/bin/env python3
"""Mock KIS (Korea Investment & Securities) Open API server for kis_fdw tests and benchmarks.

Python 3 standard library only. It imitates the parts of the KIS REST API that kis_fdw
uses, answers deterministically, and can inject faults, latency and rate limits on demand.

    python3 test/mock_kis.py [--host H] [--port P] [--port-file F] [--pid-file F]
                             [--cert PEM --key PEM] [--environment real|virtual]
                             [--rate-limit N]
                             [--latency-ms N] [--jitter-ms N]
                             [--token-interval S] [--token-ttl S] [--token-reuse S]
                             [--token-latency-ms N]
                             [--today YYYYMMDD]
                             [--holdings N] [--multprice-shape array|object]
                             [--multprice-signs signed|unsigned]
                             [--overseas-session open|closed]
                             [--ws-port P [--ws-port-file F]] [--ws-first-tick B]
                             [--ws-tick-rate N] [--ws-records-per-frame N]
                             [--ws-max-subscriptions N] [--ws-in-use B] [--ws-pingpong-s S]
                             [--ws-pingpong-strict B] [--ws-time HHMMSS] [--quiet]

With --port 0 (the default) a free port is chosen; --port-file receives it (written
atomically) once the server listens. SIGTERM or SIGINT stops the server within ~0.1 s.
--today (default 20251230, a Tuesday) is the mock's "today" for everything date-related;
nothing depends on the wall clock except token expiry and the rate-limit windows.
--ws-port runs the real-time WebSocket listener (see "Real-time WebSocket") on a second
port (0: a free one), written to --ws-port-file before --port-file is written; without
--ws-port there is no listener (the ws control routes still answer). The --ws-* value
flags set the ws_* config keys, as /__mock/config does (booleans: true/false/1/0).

KIS endpoints
-------------
POST /oauth2/tokenP
    Body {"grant_type":"client_credentials","appkey":..,"appsecret":..}. Rejections are
    HTTP 403 {"error_code","error_description"}: unparsable body EGW00101, grant_type
    missing EGW00115 or wrong EGW00112, appkey missing EGW00102 or starting "BAD"
    EGW00103, appsecret missing EGW00104 or starting "BAD" EGW00105, a second issuance
    for the same appkey within --token-interval seconds EGW00133. Within --token-reuse
    seconds (0, the default: never) of an appkey's last new token, an issuance hands back
    that same token, as KIS does for 6 hours. Each request takes --token-latency-ms (0)
    before anything is decided or counted but token_requests (counted on arrival).

POST /oauth2/Approval
    The WebSocket approval key. Body {"grant_type":"client_credentials","appkey":..,
    "secretkey":..} (secretkey, not appsecret: a body with only "appsecret" has no secret,
    EGW00104). Rejections exactly as tokenP's (HTTP 403 {"error_code",
    "error_description"}: EGW00101, EGW00115, EGW00112, EGW00102, EGW00103 appkey "BAD..",
    EGW00104, EGW00105 secretkey "BAD.."), but no issuance interval and no latency.
    Answer 200 {"approval_key": a 36-character uuid4}, one per (appkey, secretkey): asked
    again, the same key. Counted: approval_requests (every request), approvals_issued
    (new keys). Keys survive /__mock/reset unless "tokens": true.

Every GET /uapi endpoint below (the ENDPOINTS table) runs the same pipeline:
  1. Counted: requests, by_path[path], by_symbol[s] for each symbol the request carries
     (FID_INPUT_ISCD, SYMB, or every FID_INPUT_ISCD_n), timeline; then latency_ms ± jitter.
  2. Header checks, in order (failures are HTTP 500 envelopes with rt_cd "1" and count as
     bad_requests): authorization "Bearer <issued token>" (EGW00121 unknown, EGW00123
     expired), appkey header (EGW00102 missing, EGW00103 not the token's), appsecret header
     (EGW00104) or not the secret that obtained the token (EGW00105), tr_id one of the
     endpoint's in this server's environment (EGW00213: config environment "real" takes
     the real tr_ids, "virtual" the virtual ones; a TR KIS offers to real accounts only,
     intstock-multprice and chk-holiday, is EGW00213 on a virtual server), custtype P/B
     (EGW00208).
  3. The per-appkey rate limit: fixed windows of one wall-clock second, one unit per
     request whatever it carries; over the limit HTTP 500 EGW00201 (counts violations).
  4. Injected faults: the first rule whose "symbol" is "*" or one of the request's
     symbols (account requests carry none, so only "*" rules reach them).
  5. The endpoint's own checks and answer, HTTP 200; rt_cd "0" always with msg_cd
     MCA00000 (inquire-balance: see there), failures rt_cd "1" with the msg_cd given
     below and no output.
Parameter names in either case; of a repeated parameter the last wins. Any other path,
or another method on these paths, is an HTTP 404 EGW00101 envelope (a bad_request).

Domestic symbols: the first two digits select a fixed behaviour on inquire-price,
inquire-daily-itemchartprice and inquire-asking-price-exp-ccn (intstock-multprice: see there):
    99  not listed: 200 rt_cd "0" MCA00000, all fields present, numbers "0", text ""
    98  200 rt_cd "1" MCA05918 (종목코드 오류), no output (also for an empty symbol)
    97  HTTP 500 with the non-JSON body <html>Internal Server Error</html>
    96  normal data after a 3 second pause
    95  200 rt_cd "0" MCA00000 without any "output"/"output1"/"output2"
    ..  anything else: normal data
The market FID_COND_MRKT_DIV_CODE is J, NX or UN, else 200 rt_cd "1" OPSQ2001 (checked
before the symbol). Stock name (where an endpoint has one): "종목" + symbol.

GET /uapi/domestic-stock/v1/quotations/inquire-price               tr_id FHKST01010100
    FID_COND_MRKT_DIV_CODE, FID_INPUT_ISCD. output: the quote object below (no name field,
    as in real KIS).

GET /uapi/domestic-stock/v1/quotations/intstock-multprice         tr_id FHKST11300006
    FID_COND_MRKT_DIV_CODE_n + FID_INPUT_ISCD_n for any n >= 0 (KIS documents 1..30; the
    official sample starts at 0); pairs are taken in n order, blank or missing symbols are
    skipped, a missing market means J. 0 or more than 30 symbols: rt_cd "1" OPSQ2002; a
    market not J/NX/UN: OPSQ2001; any symbol 97..: the HTML 500; any 95..: no output; any
    96..: one 3 second pause. output: an array, one object per symbol in request order:
        inter_shrn_iscd symbol, inter_kor_isnm name, inter2_prpr p, inter2_prdy_vrss change,
        prdy_vrss_sign, prdy_ctrt, acml_vol, acml_tr_pbmn, inter2_oprc/hgpr/lwpr/mxpr/llam
        (= stck_oprc/hgpr/lwpr/mxpr/llam), inter2_sdpr and inter2_prdy_clpr (= base),
        inter2_askp p + 10, inter2_bidp p, total_askp_rsqn / total_bidp_rsqn (as the order
        book), all for that symbol's market exactly as inquire-price computes them.
    A 98 or 99 symbol gives an entry with inter_shrn_iscd kept, numbers "0", text "".
    Config multprice_shape "object" (default "array") makes output a single object when
    exactly one symbol was asked. Config multprice_signs "unsigned" (default "signed")
    sends inter2_prdy_vrss and prdy_ctrt without their "-" (the direction stays in
    prdy_vrss_sign), as one client reports real KIS doing (docs/kis-answers.md).

GET /uapi/domestic-stock/v1/quotations/inquire-asking-price-exp-ccn  tr_id FHKST01010200
    FID_COND_MRKT_DIV_CODE, FID_INPUT_ISCD. With p, change, base... of inquire-price:
    output1 {aspr_acpt_hour "153000", askpK = p + 10K and bidpK = p - 10(K-1) for K=1..10,
        askp_rsqnK = 10 * (1 + b[K-1]), bidp_rsqnK = 10 * (1 + b[K+9]) where b = the bytes
        of sha256(symbol + ":book"), askp_rsqn_icdcK / bidp_rsqn_icdcK "0", total_askp_rsqn /
        total_bidp_rsqn the sums, total_*_icdc, ovtm_total_* "0", ntby_aspr_rsqn = total bid
        - total ask, new_mkop_cls_code "20"}
    output2 {antc_mkop_cls_code "311", stck_prpr p, stck_oprc/hgpr/lwpr/sdpr as inquire-price,
        antc_cnpr p, antc_cntg_vrss_sign / antc_cntg_vrss / antc_cntg_prdy_ctrt = prdy_vrss_sign
        / prdy_vrss / prdy_ctrt, antc_vol = h2 % 100000, stck_shrn_iscd symbol, vi_cls_code "N"}
    99: every output1 field "0"; output2 numbers "0", text "".

GET /uapi/domestic-stock/v1/quotations/inquire-daily-itemchartprice  tr_id FHKST03010100
    FID_COND_MRKT_DIV_CODE, FID_INPUT_ISCD, FID_INPUT_DATE_1 (start), FID_INPUT_DATE_2 (end),
    FID_PERIOD_DIV_CODE D/W/M/Y, FID_ORG_ADJ_PRC 0 adjusted (also blank) / 1 original.
    A date not a valid YYYYMMDD, DATE_1 > DATE_2, another period or flag: rt_cd "1" OPSQ2002.
    output1 (summary, from inquire-price for that market): hts_kor_isnm name, stck_shrn_iscd,
        stck_prpr, prdy_vrss, prdy_vrss_sign, prdy_ctrt, stck_prdy_clpr (= base), acml_vol,
        acml_tr_pbmn, prdy_vol (1 + (h3 >> 4) % 10000000), prdy_vrss_vol, stck_oprc, stck_hgpr,
        stck_lwpr, stck_mxpr, stck_llam, askp p + 10, bidp p, vol_tnrt, stck_fcam, lstn_stcn,
        cpfn, hts_avls, per, eps, pbr.
    output2: the bars (see "Bars") dated in [DATE_1, DATE_2], newest first, at most 100 (the
        newest 100 of the range; page back with DATE_2 = oldest date - 1 day). Each row:
        stck_bsop_date, stck_clpr, stck_oprc, stck_hgpr, stck_lwpr, acml_vol, acml_tr_pbmn
        (= vol * close), flng_cls_code "00", prtt_rate "0.00", mod_yn "N", prdy_vrss_sign,
        prdy_vrss (close - the previous bar's close; 0 for the very first bar), revl_issu_reas "".
    An empty range gives output2 []. 99: output1 numbers "0" / text "", output2 [].

GET /uapi/overseas-price/v1/quotations/price                        tr_id HHDFS00000300
    AUTH (ignored), EXCD, SYMB. EXCD must be one of NAS NYS AMS BAQ BAY BAA HKS TSE SHS SZS
    SHI SZI HSX HNX, else rt_cd "1" OPSQ2001. Listing (LISTING table): AAPL MSFT TSLA NVDA
    AMZN on NAS, IBM KO JPM on NYS, SPY on AMS, 0700 on HKS, 7203 on TSE; any other symbol
    on NAS if sha256(symbol)'s first byte is even, else NYS. BAQ/BAY/BAA (US daytime) count
    as NAS/NYS/AMS. Listed: output {rsym "D" + EXCD + SYMB, zdiv "4", base, pvol, last, sign,
    diff, rate, tvol, tamt, ordy "매수가능"} with, in hundredths (prices are printed with 4
    decimals, e.g. "189.2500"; diff WITHOUT its sign, as real KIS sends it):
        last = 1000 + h0 % 49000;  diff = min((h1 >> 8) % 2001 - 1000, last - 100)
        base = last - diff;  sign "2"/"0"/"5" for diff > 0 / = 0 / < 0 (real KIS sends "0")
        rate = round(diff * 100 / base, 2) as for prdy_ctrt, written as real answers write
               it: "+1.52" when positive, "-1.41" when negative, " 0.00" (leading blank)
    AAPL is down (sign "5", diff "6.5600", rate "-1.41"); AGO (NAS) is flat.
    Config overseas_session "closed" (default "open") sends listed symbols with last ""
    and every other field as usual, as real KIS does outside trading hours.
        pvol = h2 % 100000000;  tvol = h3 % 50000000;  tamt = tvol * last // 100 (integers)
    Not listed on that exchange (or SYMB blank): rt_cd "0", every output field "".

GET /uapi/overseas-price/v1/quotations/dailyprice                   tr_id HHDFS76240000
    AUTH, EXCD, SYMB, GUBN 0 day / 1 week / 2 month, BYMD end date (blank = today), MODP
    0 unadjusted (also blank) / 1 adjusted, KEYB (ignored). EXCD as for price but without
    BAQ/BAY/BAA (no daytime bars): else OPSQ2001; a bad GUBN, BYMD or MODP: OPSQ2002.
    output2: the 100 newest bars dated <= BYMD, newest first; rows {xymd, clos, sign, diff,
        rate, open, high, low, tvol, tamt, pbid, vbid, pask, vask} (4-decimal prices; diff
        and rate against the previous bar, diff unsigned and rate written as for price;
        sign "2"/"3"/"5"; the first bar, 20150102, is flat).
    output1 {rsym "D" + EXCD + SYMB, zdiv "4", nrec str(len(output2))}. Not listed on EXCD:
    output1 {rsym "", zdiv "", nrec "0"}, output2 [].

GET /uapi/domestic-stock/v1/trading/inquire-balance   tr_id TTTC8434R (real, 50 rows a page)
                                                      or VTTC8434R (virtual, 20 rows a page)
    CANO, ACNT_PRDT_CD, AFHR_FLPR_YN, OFL_YN, INQR_DVSN, UNPR_DVSN, FUND_STTL_ICLD_YN,
    FNCG_AMT_AUTO_RDPT_YN, PRCS_DVSN, CTX_AREA_FK100, CTX_AREA_NK100, all required (blank
    where blank is meant). CANO not 8 digits, ACNT_PRDT_CD not 2 digits, or CANO 99999999:
    rt_cd "1" OPSQ2000. Any of the seven flags missing or not one of the official samples'
    values (BALANCE_FLAGS: AFHR_FLPR_YN N/Y/X, OFL_YN blank, INQR_DVSN 01/02, UNPR_DVSN 01,
    FUND_STTL_ICLD_YN N/Y, FNCG_AMT_AUTO_RDPT_YN N, PRCS_DVSN 00/01), or a CTX parameter
    missing: rt_cd "1" OPSQ2002. The answer does not depend on the flags' values.
    The account holds config holdings (default 120) positions; CANO 00000000 holds none.
    Position i (0-based): pdno = "%06d" % (100000 + 7i), prdt_name name, p = inquire-price J
    price of pdno, hldg_qty = ord_psbl_qty = 1 + 37i % 500, pchs_avg_pric = p - 100 (printed
    "%d.0000"), pchs_amt = qty * avg, prpr p, evlu_amt = qty * p, evlu_pfls_amt = evlu_amt -
    pchs_amt, evlu_pfls_rt = round(evlu_pfls_amt * 100 / pchs_amt, 2), fltt_rt = prdy_ctrt,
    bfdy_cprs_icdc = prdy_vrss, trad_dvsn_name "현금", the other documented fields "0"/"".
    Paging: request header tr_cont blank/absent = first page (CTX params ignored), "N" = the
    page that CTX_AREA_NK100 names; any other tr_cont, or an FK100/NK100 (compared without
    trailing spaces) that this server did not issue for the account: rt_cd "1" OPSQ2002.
    Page k holds positions [k*size, (k+1)*size). The answer carries body ctx_area_fk100 =
    FK = "CANO^ACNT_PRDT_CD^N^N^01^01^N^" on EVERY page, the last one too (as real KIS), and
    ctx_area_nk100 = FK + "^" + "%06d" % next index ("" on the last page), both
    space-padded to 100 characters like real KIS, so send them back URL-encoded; RESPONSE
    HEADER tr_cont "M" when more pages follow, else "D" (also with no positions): only the
    header says whether to go on. Cursors stay valid (retries may reuse them) until
    /__mock/reset. rt_cd "0" with msg_cd KIOK0510 (real) or 20310000 (virtual), KIOK0560
    for an account with no positions (output1 []), as real KIS; msg1 blank-padded to 80
    bytes of CP949.
    output1: the page's positions (an array); output2: [one summary over ALL positions]:
        pchs_amt_smtl_amt / evlu_amt_smtl_amt / evlu_pfls_smtl_amt = sums; scts_evlu_amt =
        evlu sum; dnca_tot_amt = nxdy_excc_amt = prvs_rcdl_excc_amt = cash = 1000 * (h0 of
        sha256(CANO) % 100000); tot_evlu_amt = nass_amt = evlu sum + cash;
        bfdy_tot_asst_evlu_amt = sum(qty * base) + cash; asst_icdc_amt = the difference;
        the other documented fields "0"/"".
    Every page served counts in pages[path].

GET /uapi/domestic-stock/v1/quotations/inquire-time-itemchartprice  tr_id FHKST03010200
    FID_ETC_CLS_CODE (ignored), FID_COND_MRKT_DIV_CODE, FID_INPUT_ISCD, FID_INPUT_HOUR_1
    (HHMMSS), FID_PW_DATA_INCU_YN Y/N; a bad time or flag: OPSQ2002. Prefixes as above
    (99: output2 []). output1: as inquire-daily-itemchartprice's. output2: today's minute
    bars from the first minute of config minute_session ("HHMM-HHMM", default
    "0000-2359": a client asking at any wall-clock time gets bars) to min(its last, the
    asked time), newest first, at most 30 (page back with an earlier time). Row: stck_bsop_date today, stck_cntg_hour "HHMM00", with g0..g2 the
    words of sha256(symbol + YYYYMMDD + HHMM): stck_prpr close = (1000 + g0 % 99000) // 10
    * 10, stck_oprc/hgpr/lwpr as for daily bars, cntg_vol = g2 % 100000, acml_tr_pbmn the
    day's sum of vol * close up to that bar. Each asked [symbol, time] is listed in stats
    "asked"[path].

GET /uapi/domestic-stock/v1/quotations/chk-holiday                   tr_id CTCA0903R
    BASS_DT (YYYYMMDD, else OPSQ2002), CTX_AREA_FK, CTX_AREA_NK. The calendar from BASS_DT
    to December 31 of the year after today, 24 days a page as real KIS pages it: output
    [{bass_dt, wday_dvsn_cd 01 Sunday..07 Saturday, bzdy_yn, tr_day_yn, opnd_yn,
    sttl_day_yn}]; weekends and 01-01 03-01 05-05 06-06 08-15 10-03 10-09 12-25 "N" but
    tr_day_yn, which is "Y" on every day as in real answers; 12-31 a business day without
    trading. Body ctx_area_fk / ctx_area_nk = this page's first / last day, space-padded
    to 20; msg_cd KIOK0500 (msg1 padded to 80 bytes) while more follow, else KIOK0510;
    response header tr_cont "M" when more follow, else "D". Request tr_cont "N" continues
    the day after CTX_AREA_NK and needs BASS_DT <= CTX_AREA_FK <= CTX_AREA_NK (blanks
    stripped), else OPSQ2002. Every page served counts in pages[path].

GET /common/master/{kospi,kosdaq,konex}_code.mst.zip   (no auth, not rate limited)
    KIS's stock master files: a zip archive (deflate) of {market}_code.mst, one CP949 line
    per listing, LF-terminated, exactly 61 + tail bytes as in the real files: short code
    (9), standard code (12: "KR7" + code + "00" + a check digit), the name blank-padded to
    40 bytes, then the fixed tail of 227 (kospi), 221 (kosdaq) or 184 (konex) bytes with
    the fields kis_fdw reads at the offsets of the real files (MASTER_OFFSETS; numbers
    zero-padded, the rest blank; lstn_stcn in thousands of shares, prdy_avls_scal in 억
    won). Listings: MASTER_NAMED (e.g. 005930 삼성전자) then MASTER_COUNT generated ones
    "{MARKET}종목NNNN" from MASTER_FIRST. stck_sdpr is inquire-price's base price (J);
    trht_yn "Y" when h0 % 50 == 0, mang_issu_yn "Y" when h1 % 40 == 0 (h = words of
    sha256(code + ":master")); a code ending in 5 is a preferred share (prst_cls_code "1",
    par 100); the lines of MASTER_BLANK_FLAG end in a blank flag. Faults with "symbol" the
    file name (or "*"): http500, garbage (not a zip), truncate (half the archive), layout
    (every line one byte longer, as if KIS had added a field), file (the rule's "body",
    base64, served as the archive: a test's own zip), slow (the archive after "ms").
    Counted in stats "downloads" by file name, not in requests.

Bars (both daily endpoints)
---------------------------
Trading days are Monday..Friday (no holidays) from data_start (config, default 20150102) up
to today; there is no bar before data_start, so paging back ends. A bar is dated on the last trading day of
its period: every trading day (D / GUBN 0), the ISO week (W / 1), the month (M / 2), the
year (Y); the current period's bar is its latest trading day <= today. With g0..g3 the
first four 8-hex-digit words of sha256(symbol + YYYYMMDD), as integers:
    domestic  close = (1000 + g0 % 99000) // 10 * 10;  open = max(10, close + (g1 % 21 - 10) * 10)
              high = max(open, close) + (g1 >> 8) % 11 * 10
              low = max(10, min(open, close) - (g1 >> 16) % 11 * 10);  vol = g2 % 10000000
    overseas  in hundredths: close = 1000 + g0 % 49000;  open = max(1, close + g1 % 201 - 100)
              high = max(open, close) + (g1 >> 8) % 101
              low = max(1, min(open, close) - (g1 >> 16) % 101)
              tvol = g2 % 50000000;  tamt = tvol * close // 100 (an integer)
              pbid = max(1, close - 1), pask = close + 1
              vbid = 1 + g3 % 1000, vask = 1 + (g3 >> 12) % 1000
Original (unadjusted) prices are the adjusted ones times 2 on dates before 20250101
(domestic FID_ORG_ADJ_PRC=1, overseas MODP=0); volumes are the same either way.

Deterministic quote data (see quote_numbers / quote_output; all values are JSON strings)
---------------------------------------------------------------------------------------
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

Real-time WebSocket (--ws-port; docs/live.md)
------------------------------------------------------
Plain ws, any request path (samples send /tryitout/H0STCNT0). Handshake: GET with
Upgrade: websocket, Connection: Upgrade, Sec-WebSocket-Version 13 and a
Sec-WebSocket-Key, answered 101 with Sec-WebSocket-Accept = base64(sha1(key + RFC 6455
GUID)); anything else HTTP 400; while /__mock/ws/refuse has refusals left, HTTP 503 (one
used up per handshake). Frames (RFC 6455, server side): client frames must be masked
(else close 1002 and the TCP connection ends); reserved bits, unknown opcodes, a
continuation without a message, a new message inside a fragmented one, fragmented or over
125-byte control frames: close 1002; a text message not UTF-8: 1007; over 1 MiB: 1009.
Fragmented client messages are joined (control frames may come between the fragments);
ping -> pong with its payload (counted rfc_pings); pong ignored; close -> a close frame
with the client's code (1000 if none), then the TCP close; binary messages are ignored.
Server frames are unmasked and final, with 7-, 16- or 64-bit lengths as the size needs.

Text messages from the client:
    {"header":{"approval_key","custtype":"P","tr_type":"1"|"2","content-type":"utf-8"},
     "body":{"input":{"tr_id","tr_key"}}}    tr_type "1" subscribes, "2" unsubscribes.
    {"header":{"tr_id":"PINGPONG",..}} (no body): the echo of a PINGPONG (counted
    pingpong_echoed, and clears the socket's pending PINGPONG).
Each subscribe/unsubscribe is answered with one ack, a text frame
    {"header":{"tr_id","tr_key","encrypt":"N"},"body":{"rt_cd","msg_cd","msg1"[,"output"]}}
with tr_id/tr_key as asked ("" when the message could not be read); rt_cd "0" acks carry
"output" {"iv": 16 hex digits, "key": 32 hex digits} (of sha256(tr_id:tr_key); nothing is
encrypted), the others none. In the order checked:
    MOCK0004 "1"  not a JSON object with header and body.input.tr_id/tr_key   (mock's own)
    MOCK0001 "1"  approval_key not issued by /oauth2/Approval                 (mock's own)
    MOCK0003 "1"  tr_type not "1" or "2"                                       (mock's own)
    MOCK0002 "1"  tr_id not H0STCNT0, H0STASP0 or HDFSCNT0                     (mock's own)
    OPSP8996 "1"  ALREADY IN USE appkey: another socket holds the approval key's app key
                  (the first socket to subscribe under an app key holds it until that
                  socket closes or is dropped), or any subscribe while ws_in_use is true
    OPSP0003 "1"  UNSUBSCRIBE ERROR(not found!): unsubscribing what this socket does not
                  subscribe (under that app key)
    OPSP0001 "0"  UNSUBSCRIBE SUCCESS
    OPSP0002 "1"  ALREADY IN SUBSCRIBE: nothing changes, the subscription stays (harmless;
                  rt_cd "1" as third-party captures show it)
    OPSP0008 "1"  MAX SUBSCRIBE OVER: the app key already has ws_max_subscriptions
    OPSP0000 "0"  SUBSCRIBE SUCCESS; with ws_first_tick, one data record follows at once
The MOCK* codes stand for answers real KIS gives in an undocumented form; match on rt_cd.
Any tr_key is accepted (real KIS does not check it either).

Data frames: text "0|TR_ID|NNN|" + the records, NNN the record count zero-padded to 3,
every record's fields (TR_FIELDS order in mock_ws.py = docs/live.md) joined by
"^" and the records joined by "^" too; at most ws_records_per_frame records a frame.
Records come from a tick state per (tr_id, tr_key), shared by every socket and zeroed by
/__mock/reset: record n (0, 1, ...) of it has clock = ws_time + n seconds (wrapping at
midnight), today = config today. Whatever is not listed is "0" (or as noted).
  H0STCNT0 (46 fields), tr_key a domestic symbol; q = inquire-price's numbers for it on
    market J (quote_numbers), tick = the KRX tick size of q's price (_tick):
    p = q.price + (n % 5) * tick, or the tick request's "price" (whole won);
    vol = 10 * (1 + n % 10); record n is a buy (CCLD_DVSN "1") when n is even, else "5".
    MKSC_SHRN_ISCD tr_key, STCK_CNTG_HOUR clock, STCK_PRPR p, PRDY_VRSS p - q.base with
    PRDY_VRSS_SIGN and PRDY_CTRT as inquire-price computes them, WGHN_AVRG_STCK_PRC as
    inquire-price's, STCK_OPRC q.open, STCK_HGPR max(q.high, p), STCK_LWPR min(q.low, p),
    ASKP1 p + tick, BIDP1 p, CNTG_VOL vol, ACML_VOL q.vol + the vols of records 0..n,
    ACML_TR_PBMN q.vol * q.price + the sum of vol * p, SELN/SHNU_CNTG_CSNU the sell/buy
    records so far, NTBY_CNTG_CSNU buys - sells, SELN/SHNU_CNTG_SMTN their volumes, CTTR
    shnu * 100 / seln, SHNU_RATE shnu * 100 / (shnu + seln), PRDY_VOL_VRSS_ACML_VOL_RATE
    and PRDY_SMNS_HOUR_ACML_VOL_RATE ACML_VOL * 100 / q.prev_vol, PRDY_SMNS_HOUR_ACML_VOL
    q.prev_vol, OPRC/HGPR/LWPR_HOUR 090000/100000/110000 with p against open/high/low
    (sign and difference), BSOP_DATE today, NEW_MKOP_CLS_CODE "20", TRHT_YN "N",
    ASKP_RSQN1 / BIDP_RSQN1 and TOTAL_* the inquire-asking-price quantities (book_sizes),
    VOL_TNRT ACML_VOL * 100 / lstn_stcn, HOUR_CLS_CODE "0", MRKT_TRTM_CLS_CODE "N",
    VI_STND_PRC q.base. Rates are 2-decimal strings as prdy_ctrt.
  H0STASP0 (59 fields): MKSC_SHRN_ISCD, BSOP_HOUR clock, HOUR_CLS_CODE "0", p as above,
    ASKPk p + k * tick, BIDPk p - (k - 1) * tick, ASKP_RSQNk / BIDP_RSQNk the book_sizes
    quantities + n % 10, TOTAL_ASKP/BIDP_RSQN their sums, ANTC_CNTG_VRSS_SIGN "3",
    ANTC_CNTG_PRDY_CTRT "0.00", ACML_VOL q.vol + 100 * n, STCK_DEAL_CLS_CODE "0".
  HDFSCNT0 (26 fields), tr_key "D" (or "R") + exchange (3) + symbol, e.g. DNASAAPL:
    with last0, diff, base of the overseas price formula for the symbol (hundredths,
    printed with 4 decimals): last = last0 + n % 5, or the tick request's "price" (at most
    2 decimals); evol = 1 + n % 10, a buy when n is even. RSYM tr_key, SYMB symbol, ZDIV
    "4", TYMD/XYMD/KYMD today, XHMS/KHMS clock, OPEN base, HIGH max(base, last0 + 4, last),
    LOW min(base, last0, last) (at least 0.01), LAST last, SIGN "2"/"3"/"5", DIFF |last - base| (no sign),
    RATE (last - base) * 100 / base ("-1.41"), PBID last - 1, PASK last + 1, VBID / VASK
    as the daily bars' (from h3 of the symbol), EVOL evol, TVOL h3 % 50000000 + the evols,
    TAMT the sum of evol * last in whole units (// 100), BIVL / ASVL bought / sold volume, STRN BIVL * 100 / ASVL,
    MTYP "1".
The tick state does not depend on timing, so a test knows record n of a symbol exactly.

Sending: POST /__mock/ws/tick sends now; with ws_tick_rate > 0 a background thread sends
each subscription ws_tick_rate records a second (2,000 a second over 40 subscriptions is
sustained), owed records batched up to ws_records_per_frame a frame. Every ws_pingpong_s
seconds (0: never) each socket gets {"header":{"tr_id":"PINGPONG","datetime":
"YYYYMMDDHHMMSS"}} (config today + the wall clock's Korean time of day). With
ws_pingpong_strict a socket that has not echoed a PINGPONG text frame 2 s after it was
sent is closed (TCP close without a close frame; an RFC pong does not count), as KIS
closes sockets that only pong. A send blocked 30 s aborts the socket.

Config keys (command line --ws-...; /__mock/config):
    ws_first_tick (true)   one record right after each OPSP0000 ack
    ws_tick_rate (0)       records per second per subscription from the rate thread
    ws_records_per_frame (1)  at most this many records in one data frame (1..1000)
    ws_max_subscriptions (41) per app key; the next subscribe is OPSP0008
    ws_in_use (false)      every subscribe is OPSP8996, as if another program held the key
    ws_pingpong_s (0)      seconds between PINGPONGs to every socket (0: never)
    ws_pingpong_strict (false)  close a socket that does not echo a PINGPONG within 2 s
    ws_time ("090000")     HHMMSS: the clock of record 0 of every tick state

Control routes (POST, JSON body, on the HTTP port):
    /__mock/ws/tick {"tr_id","tr_key","count" (1),"price" (optional string)}
        count records to every socket that subscribes (tr_id, tr_key), ws_records_per_frame
        to a frame; answers {"sent": records sent} (0 when nobody subscribes; a bad tr_id,
        count or price is HTTP 400)
    /__mock/ws/drop      abort every socket (TCP close, no close frame) and forget their
                         subscriptions and app key holds, as KIS does; {"dropped": sockets}
    /__mock/ws/pingpong  one PINGPONG to every socket now; {"sent": sockets}
    /__mock/ws/refuse {"times": N}  answer the next N handshakes HTTP 503; {"ok": true}
/__mock/reset also closes every socket (abruptly), zeroes the ws counters, tick states and
pending refusals (approval keys stay unless "tokens": true).

Control API (same port and scheme, no auth, never counted or rate limited)
--------------------------------------------------------------------------
GET  /__mock/stats[?timeline=1]  counters, current config, pending faults; timeline=1 adds
                                 "timeline": request start times in seconds since reset
POST /__mock/reset   {"tokens": true}?  zero counters, drop faults, rate windows, issuance
                                 times and balance cursors; issued tokens stay valid unless
                                 tokens=true; the config stays
POST /__mock/config  {"environment" ("real" | "virtual"), "rate_limit", "latency_ms", "jitter_ms", "token_interval", "token_ttl",
                      "token_reuse", "token_latency_ms",
                      "today" ("YYYYMMDD"), "data_start" ("YYYYMMDD", the first bar),
                      "holdings" (0..100000),
                      "multprice_shape" ("array" | "object"),
                      "multprice_signs" ("signed" | "unsigned"),
                      "overseas_session" ("open" | "closed"),
                      "minute_session" ("HHMM-HHMM"),
                      "investor_today" ("blank" | "filled"),
                      the ws_* keys of "Real-time WebSocket"}
POST /__mock/faults  {"faults": [{"kind", "symbol": "005930" | "*", "times": 1 | -1, "ms",
                                  "body" (answer: an object; file: base64), "headers",
                                  "ascii" (answer: non-ASCII text as \\u escapes)}]}
POST /__mock/release  answers every request the hold fault holds now
    kinds: http500 egw00201 egw00001 egw00002 drop truncate garbage bad_shape numbers huge
    slow overlap hold close expire_token invalid_token answer (any /uapi endpoint, after the
    rate check),
    egw00133 (the next tokenP) and sydb0050 (the next follow-up page, request tr_cont "N":
    HTTP 200 rt_cd "7" SYDB0050 "the data changed since the query", as real KIS answers
    when the account changes while it is listed), stray (the normal answer of a
    single-symbol endpoint for symbol STRAY_SYMBOL instead of the one asked: what a client
    reads when an answer to another request, smuggled onto its kept-alive connection, comes
    first). answer is HTTP 200 with the rule's "body" object and "headers" {name: value}: a
    recorded real answer replayed. The first matching rule with times left
    fires and uses one up. close answers normally with "Connection: close" and then closes
    the connection. slow holds the answer ms; overlap holds it until another API request has
    been in flight beside it (then answers at once), at most ms: a client that sends requests
    concurrently then shows max_in_flight >= 2 for certain, one that sends them one at a
    time shows 1. hold holds the answer until the first POST /__mock/release (or reset) after
    the request arrived, at most ms: the test decides when the answers come, once what it
    waits for has happened (every request counted in_flight is answered by a release).
    numbers, huge, truncate and bad_shape vary the endpoint's normal answer (for
    inquire-price always the data of the symbol, or of 000000 when blank, whatever its
    prefix): numbers turns the endpoint's price/quantity fields into JSON numbers, huge
    adds a 20 MiB "padding" field, truncate sends half the body and hangs up, bad_shape
    turns every output object into [] and every output array into {}.

Counters: requests (API requests, rejected ones included), in_flight, max_in_flight,
by_symbol, by_appkey (by_symbol per appkey request header), by_path (API requests by URL path, so its values sum to requests), pages
(inquire-balance pages served, by path), connections_accepted (every TCP accept),
connections_opened (connections that carried at least one KIS request, so stats polling does
not disturb it), tls_failures, token_requests (tokenP requests received), tokens_issued,
tokens_issued_by_appkey, token_rejections, violations, bad_requests, faults_injected (by kind), errors (error answers by msg_cd /
error_code), approval_requests, approvals_issued.
"ws": connections (handshakes accepted), open (sockets now), refused (503 handshakes),
subscribe_requests / unsubscribe_requests (messages with tr_type "1" / "2"), subscriptions
(sorted "TR_ID:tr_key" over all sockets), per_key (app key -> subscriptions), ticks_sent
(records), frames_sent (data frames), pingpong_sent, pingpong_echoed, rfc_pings, acks (by
msg_cd), last_error (the latest refused ack, protocol error or strict close, "" after a
reset), refusals_pending, approval_keys (issued, kept).
"""

import argparse
import base64
import datetime
import hashlib
import io
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
import zipfile

import mock_library
import mock_ws
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, NamedTuple, Optional
from urllib.parse import parse_qs, urlsplit

QUOTE_PATH = "/uapi/domestic-stock/v1/quotations/inquire-price"
MULTPRICE_PATH = "/uapi/domestic-stock/v1/quotations/intstock-multprice"
BOOK_PATH = "/uapi/domestic-stock/v1/quotations/inquire-asking-price-exp-ccn"
DAILY_PATH = "/uapi/domestic-stock/v1/quotations/inquire-daily-itemchartprice"
OVERSEAS_PATH = "/uapi/overseas-price/v1/quotations/price"
OVERSEAS_DAILY_PATH = "/uapi/overseas-price/v1/quotations/dailyprice"
BALANCE_PATH = "/uapi/domestic-stock/v1/trading/inquire-balance"
MINUTE_PATH = "/uapi/domestic-stock/v1/quotations/inquire-time-itemchartprice"
HOLIDAY_PATH = "/uapi/domestic-stock/v1/quotations/chk-holiday"
MASTER_DIR = "/common/master/"
QUOTE_TR_ID = "FHKST01010100"
MARKET_OFFSET = {"J": 0, "NX": 10, "UN": 5}
KST = datetime.timezone(datetime.timedelta(hours=9))  # Korea: UTC+9, no DST
JSON_TYPE = "application/json; charset=utf-8"
HANDSHAKE_TIMEOUT = 10.0   # seconds a client gets to finish the TLS handshake
TIMELINE_CAP = 100_000     # request start times kept for /__mock/stats?timeline=1
HUGE_BYTES = 20 * 1024 * 1024
STRAY_SYMBOL = "000660"    # whose answer the stray fault sends
MAX_MULTPRICE = 30         # symbols per intstock-multprice call
MAX_BARS = 100             # rows per daily-chart call
MAX_HOLDINGS = 100_000
DATA_START = "20150102"    # default data_start: the first bar of every symbol
SPLIT_DATE = datetime.date(2025, 1, 1)  # original prices are doubled before it
ONE_DAY = datetime.timedelta(days=1)
CTX_WIDTH = 100            # ctx_area_fk100 / nk100 are space-padded to this

MESSAGES = {
    "MCA00000": "정상처리 되었습니다.",
    "KIOK0500": "조회가 계속됩니다..다음버튼을 Click 하십시오.",
    "KIOK0510": "조회가 완료되었습니다",
    "KIOK0560": "조회할 내용이 없습니다",
    "20310000": "모의투자 조회가 완료되었습니다.",
    "SYDB0050": "조회이후에 자료가 변경되었습니다.(다시 조회하세요)",
    "MCA05918": "종목코드 오류입니다.",
    "OPSQ2000": "유효하지 않은 계좌번호입니다.",
    "OPSQ2001": "시장분류코드 오류입니다.",
    "OPSQ2002": "입력 필드값 오류입니다.",
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
    "bad_shape", "numbers", "huge", "slow", "overlap", "hold", "close", "expire_token", "invalid_token", "egw00133",
    "sydb0050", "answer", "layout", "stray", "file",
))
# rt_cd "0" codes: quotations answer MCA00000; inquire-balance KIOK0510 (real),
# 20310000 (virtual) and KIOK0560 for an empty account. SYDB0050 comes with rt_cd "7".
SUCCESS_CODES = frozenset(("MCA00000", "KIOK0500", "KIOK0510", "KIOK0560", "20310000"))
RT_CD = {"SYDB0050": "7"}
MSG1_BYTES = 80            # account answers pad msg1 with blanks to 80 bytes of CP949
COUNTERS = ("requests", "max_in_flight", "connections_accepted", "connections_opened",
            "tls_failures", "token_requests", "tokens_issued", "token_rejections", "violations",
            "bad_requests", "approval_requests", "approvals_issued")
SECTORS = ("전기·전자", "화학", "서비스업", "금융업", "운수장비", "의약품", "유통업", "철강·금속")
NUMERIC = re.compile(r"-?\d+(\.\d+)?")
# Overseas quotation exchange codes (EXCD) -> the exchange a symbol is listed on.
EXCHANGES = {"NAS": "NAS", "NYS": "NYS", "AMS": "AMS", "BAQ": "NAS", "BAY": "NYS",
             "BAA": "AMS", "HKS": "HKS", "TSE": "TSE", "SHS": "SHS", "SZS": "SZS",
             "SHI": "SHI", "SZI": "SZI", "HSX": "HSX", "HNX": "HNX"}
DAYTIME_EXCHANGES = frozenset(("BAQ", "BAY", "BAA"))
# inquire-balance's seven flags and the values the official samples document for each
# (koreainvestment/open-trading-api, examples_llm/domestic_stock/inquire_balance)
BALANCE_FLAGS = {"afhr_flpr_yn": ("N", "Y", "X"), "ofl_yn": ("",), "inqr_dvsn": ("01", "02"),
                 "unpr_dvsn": ("01",), "fund_sttl_icld_yn": ("N", "Y"),
                 "fncg_amt_auto_rdpt_yn": ("N",), "prcs_dvsn": ("00", "01")}
LISTING = {"AAPL": "NAS", "MSFT": "NAS", "TSLA": "NAS", "NVDA": "NAS", "AMZN": "NAS",
           "IBM": "NYS", "KO": "NYS", "JPM": "NYS", "SPY": "AMS", "0700": "HKS", "7203": "TSE"}
PERIODS = {"D", "W", "M", "Y"}
OVERSEAS_PERIODS = {"0": "D", "1": "W", "2": "M"}
BALANCE_PAGE_SIZE = {"TTTC8434R": 50, "VTTC8434R": 20}
MAX_MINUTE_BARS = 30       # rows per inquire-time-itemchartprice call
HOLIDAY_PAGE = 24          # days per chk-holiday page, as in real answers
HOLIDAY_CTX_WIDTH = 20     # chk-holiday's ctx_area_fk / nk are space-padded to this
# Fixed closed days of the mock's calendar (MMDD), and the KRX year-end closing day
# (a business day without trading).
CLOSED_DAYS = frozenset(("0101", "0301", "0505", "0606", "0815", "1003", "1009", "1225"))
YEAR_END = "1231"


# --------------------------------------------------------------------------- configuration

def _non_negative(kind, cap=None):
    def parse(value):
        parsed = kind(value)
        if parsed < 0:
            raise ValueError("config values must not be negative")
        if cap is not None and parsed > cap:
            raise ValueError(f"config value {parsed} is over {cap}")
        return parsed
    return parse


def _yyyymmdd(value):
    text = str(value)
    if parse_ymd(text) is None:
        raise ValueError(f"not a YYYYMMDD date: {value!r}")
    return text


def _choice(key, *values):
    def parse(value):
        if value not in values:
            raise ValueError(f"{key} must be one of {', '.join(map(repr, values))}")
        return value
    return parse


_multprice_shape = _choice("multprice_shape", "array", "object")


def _hhmm_range(value):
    """ "HHMM-HHMM": the first and last minute bar of the day."""
    match = re.fullmatch(r"([01]\d|2[0-3])([0-5]\d)-([01]\d|2[0-3])([0-5]\d)", str(value))
    if not match or match.group(1) + match.group(2) > match.group(3) + match.group(4):
        raise ValueError(f"not a HHMM-HHMM range: {value!r}")
    return str(value)


# Settable on the command line and through /__mock/config: key -> parser (raises ValueError).
CONFIG_TYPES = {"environment": _choice("environment", "real", "virtual"),
                "rate_limit": _non_negative(int), "latency_ms": _non_negative(float),
                "jitter_ms": _non_negative(float), "token_interval": _non_negative(float),
                "token_ttl": _non_negative(float), "token_reuse": _non_negative(float),
                "token_latency_ms": _non_negative(float),
                "today": _yyyymmdd, "data_start": _yyyymmdd,
                "holdings": _non_negative(int, MAX_HOLDINGS),
                "multprice_shape": _multprice_shape,
                "multprice_signs": _choice("multprice_signs", "signed", "unsigned"),
                "overseas_session": _choice("overseas_session", "open", "closed"),
                "minute_session": _hhmm_range,
                "investor_today": _choice("investor_today", "blank", "filled")}
CONFIG_TYPES.update(mock_ws.config_types(_non_negative))   # the ws_* keys


# --------------------------------------------------------------------------- formatting

def _decimal2(hundredths):
    """Integer hundredths as a 2-decimal string: -125 -> "-1.25"."""
    sign = "-" if hundredths < 0 else ""
    return f"{sign}{abs(hundredths) // 100}.{abs(hundredths) % 100:02d}"


def _decimal4(hundredths):
    """Integer hundredths as a 4-decimal string: 18925 -> "189.2500", -5 -> "-0.0500"."""
    return _decimal2(hundredths) + "00"


def _pct(num, den):
    """num * 100 / den rounded to 2 decimals, halves away from zero (PostgreSQL round)."""
    q, r = divmod(abs(num) * 10000, den)
    if 2 * r >= den:
        q += 1
    return _decimal2(-q if num < 0 else q)


def _overseas_rate(num, den):
    """An overseas rate as real answers write it: "+1.44", "-4.17", " 0.00" (a blank for
    the sign of zero)."""
    rate = _pct(num, den)
    return "+" + rate if num > 0 else " " + rate if num == 0 else rate


def _sign(change, flat="3"):
    return "2" if change > 0 else "5" if change < 0 else flat


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


def _words(text, n):
    """The first n 8-hex-digit words of sha256(text) as integers."""
    d = hashlib.sha256(text.encode()).hexdigest()
    return [int(d[i:i + 8], 16) for i in range(0, 8 * n, 8)]


def zeroed(obj, keep=(), text=()):
    """The not-found variant of an output object: numeric values "0", dates, `text` keys and
    other text "", `keep` keys unchanged."""
    return {k: v if k in keep else
            "0" if NUMERIC.fullmatch(v) and not k.endswith("_date") and k not in text else ""
            for k, v in obj.items()}


def stock_name(symbol):
    return "종목" + symbol


# --------------------------------------------------------------------------- dates

def parse_ymd(text):
    """A YYYYMMDD string as a date, or None when it is not one."""
    if not isinstance(text, str) or not re.fullmatch(r"\d{8}", text):
        return None
    try:
        return datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def ymd(day):
    return day.strftime("%Y%m%d")


def _period_bounds(day, period):
    """First and last calendar day of the D/W/M/Y period holding day."""
    if period == "D":
        return day, day
    if period == "W":
        start = day - datetime.timedelta(days=day.weekday())
        return start, start + datetime.timedelta(days=6)
    if period == "M":
        start = day.replace(day=1)
        return start, (start + datetime.timedelta(days=32)).replace(day=1) - ONE_DAY
    return day.replace(month=1, day=1), day.replace(month=12, day=31)


def bar_dates(period, end, today, limit, first_day):
    """Dates of the newest `limit` bars dated <= end and >= first_day, newest first."""
    dates, cursor = [], min(end, today)
    while cursor >= first_day and len(dates) < limit:
        start, stop = _period_bounds(cursor, period)
        day = min(stop, today)
        while day >= start and day.weekday() >= 5:
            day -= ONE_DAY
        if start <= day <= cursor and day >= first_day:
            dates.append(day)
        cursor = start - ONE_DAY
    return dates


# --------------------------------------------------------------------------- domestic data

class Quote(NamedTuple):
    """The integers behind an inquire-price answer (see the module docstring)."""
    h: tuple
    price: int
    change: int
    base: int
    open: int
    high: int
    low: int
    upper: int
    lower: int
    vol: int
    prev_vol: int


def quote_numbers(symbol, market):
    h0, h1, h2, h3, h4, h5 = h = tuple(_words(symbol, 6))
    price = (1000 + h0 % 99000) // 10 * 10 + MARKET_OFFSET[market]
    change = min(((h1 >> 8) % 201 - 100) * 10, price - 10)
    base = price - change
    opn = max(10, base + (h3 % 21 - 10) * 10)
    high = max(opn, price) + (h3 >> 8) % 11 * 10
    low = max(10, min(opn, price) - (h3 >> 16) % 11 * 10)
    return Quote(h, price, change, base, opn, high, low,
                 base * 13 // 10 // 10 * 10, base * 7 // 10 // 10 * 10,
                 h2 % 10_000_000, 1 + (h3 >> 4) % 10_000_000)


def quote_output(symbol, market):
    """The inquire-price "output" object: a pure function of (symbol, market).

    The formula is spelled out in the module docstring; keep the two in step.
    """
    q = quote_numbers(symbol, market)
    h0, h1, h2, h3, h4, h5 = q.h
    price, change, base, high, low, upper = q.price, q.change, q.base, q.high, q.low, q.upper
    vol = q.vol
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
        "prdy_vrss_sign": _sign(change),
        "prdy_ctrt": _pct(change, base),
        "acml_tr_pbmn": s(vol * price),
        "acml_vol": s(vol),
        "prdy_vrss_vol_rate": _pct(vol, q.prev_vol),
        "stck_oprc": s(q.open),
        "stck_hgpr": s(high),
        "stck_lwpr": s(low),
        "stck_mxpr": s(upper),
        "stck_llam": s(q.lower),
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
    return zeroed(quote_output(symbol, "J"), text=("stck_shrn_iscd",))


def book_sizes(symbol):
    """(ask quantities, bid quantities) for levels 1..10 of the order book."""
    b = hashlib.sha256((symbol + ":book").encode()).digest()
    return [10 * (1 + x) for x in b[0:10]], [10 * (1 + x) for x in b[10:20]]


def multprice_entry(symbol, market):
    q = quote_numbers(symbol, market)
    out = quote_output(symbol, market)
    asks, bids = book_sizes(symbol)
    return {
        "inter_shrn_iscd": symbol,
        "inter_kor_isnm": stock_name(symbol),
        "inter2_prpr": out["stck_prpr"],
        "inter2_prdy_vrss": out["prdy_vrss"],
        "prdy_vrss_sign": out["prdy_vrss_sign"],
        "prdy_ctrt": out["prdy_ctrt"],
        "acml_vol": out["acml_vol"],
        "acml_tr_pbmn": out["acml_tr_pbmn"],
        "inter2_oprc": out["stck_oprc"],
        "inter2_hgpr": out["stck_hgpr"],
        "inter2_lwpr": out["stck_lwpr"],
        "inter2_mxpr": out["stck_mxpr"],
        "inter2_llam": out["stck_llam"],
        "inter2_sdpr": out["stck_sdpr"],
        "inter2_prdy_clpr": out["stck_sdpr"],
        "inter2_askp": str(q.price + 10),
        "inter2_bidp": str(q.price),
        "total_askp_rsqn": str(sum(asks)),
        "total_bidp_rsqn": str(sum(bids)),
    }


def order_book(symbol, market):
    """(output1, output2) of inquire-asking-price-exp-ccn."""
    q = quote_numbers(symbol, market)
    out = quote_output(symbol, market)
    asks, bids = book_sizes(symbol)
    book = {"aspr_acpt_hour": "153000"}
    book.update((f"askp{k}", str(q.price + 10 * k)) for k in range(1, 11))
    book.update((f"bidp{k}", str(q.price - 10 * (k - 1))) for k in range(1, 11))
    book.update((f"askp_rsqn{k}", str(n)) for k, n in enumerate(asks, 1))
    book.update((f"bidp_rsqn{k}", str(n)) for k, n in enumerate(bids, 1))
    book.update((f"askp_rsqn_icdc{k}", "0") for k in range(1, 11))
    book.update((f"bidp_rsqn_icdc{k}", "0") for k in range(1, 11))
    book.update(total_askp_rsqn=str(sum(asks)), total_bidp_rsqn=str(sum(bids)),
                total_askp_rsqn_icdc="0", total_bidp_rsqn_icdc="0",
                ovtm_total_askp_icdc="0", ovtm_total_bidp_icdc="0",
                ovtm_total_askp_rsqn="0", ovtm_total_bidp_rsqn="0",
                ntby_aspr_rsqn=str(sum(bids) - sum(asks)), new_mkop_cls_code="20")
    expected = {
        "antc_mkop_cls_code": "311",
        "stck_prpr": out["stck_prpr"],
        "stck_oprc": out["stck_oprc"],
        "stck_hgpr": out["stck_hgpr"],
        "stck_lwpr": out["stck_lwpr"],
        "stck_sdpr": out["stck_sdpr"],
        "antc_cnpr": out["stck_prpr"],
        "antc_cntg_vrss_sign": out["prdy_vrss_sign"],
        "antc_cntg_vrss": out["prdy_vrss"],
        "antc_cntg_prdy_ctrt": out["prdy_ctrt"],
        "antc_vol": str(q.h[2] % 100_000),
        "stck_shrn_iscd": symbol,
        "vi_cls_code": "N",
    }
    return book, expected


def chart_summary(symbol, market):
    """output1 of inquire-daily-itemchartprice: the inquire-price snapshot, renamed."""
    q = quote_numbers(symbol, market)
    out = quote_output(symbol, market)
    summary = {"hts_kor_isnm": stock_name(symbol), "stck_shrn_iscd": symbol,
               "stck_prdy_clpr": out["stck_sdpr"], "prdy_vol": str(q.prev_vol),
               "prdy_vrss_vol": str(q.vol - q.prev_vol),
               "askp": str(q.price + 10), "bidp": str(q.price)}
    for key in ("stck_prpr", "prdy_vrss", "prdy_vrss_sign", "prdy_ctrt", "acml_vol",
                "acml_tr_pbmn", "stck_oprc", "stck_hgpr", "stck_lwpr", "stck_mxpr",
                "stck_llam", "vol_tnrt", "stck_fcam", "lstn_stcn", "cpfn", "hts_avls",
                "per", "eps", "pbr"):
        summary[key] = out[key]
    return summary


def domestic_bar(symbol, day, original):
    """(close, open, high, low, volume) of a domestic bar (see "Bars")."""
    g0, g1, g2, _ = _words(symbol + ymd(day), 4)
    close = (1000 + g0 % 99000) // 10 * 10
    opn = max(10, close + (g1 % 21 - 10) * 10)
    high = max(opn, close) + (g1 >> 8) % 11 * 10
    low = max(10, min(opn, close) - (g1 >> 16) % 11 * 10)
    k = 2 if original and day < SPLIT_DATE else 1
    return close * k, opn * k, high * k, low * k, g2 % 10_000_000


def domestic_chart_rows(symbol, period, first, last, today, original, data_start):
    # one more for the oldest change
    dates = bar_dates(period, last, today, MAX_BARS + 1, data_start)
    bars = [domestic_bar(symbol, day, original) for day in dates]
    rows = []
    for i, day in enumerate(dates[:MAX_BARS]):
        if day < first:
            break
        close, opn, high, low, vol = bars[i]
        change = close - bars[i + 1][0] if i + 1 < len(bars) else 0
        rows.append({
            "stck_bsop_date": ymd(day), "stck_clpr": str(close), "stck_oprc": str(opn),
            "stck_hgpr": str(high), "stck_lwpr": str(low), "acml_vol": str(vol),
            "acml_tr_pbmn": str(vol * close), "flng_cls_code": "00", "prtt_rate": "0.00",
            "mod_yn": "N", "prdy_vrss_sign": _sign(change), "prdy_vrss": str(change),
            "revl_issu_reas": "",
        })
    return rows


def position(i):
    """(pdno, quantity, Quote) of position i of every account (see inquire-balance)."""
    pdno = "%06d" % (100000 + i * 7)
    return pdno, 1 + (i * 37) % 500, quote_numbers(pdno, "J")


def holding(i):
    """The output1 row of position i."""
    pdno, qty, q = position(i)
    avg = q.price - 100
    cost, value = qty * avg, qty * q.price
    return {
        "pdno": pdno, "prdt_name": stock_name(pdno), "trad_dvsn_name": "현금",
        "bfdy_buy_qty": "0", "bfdy_sll_qty": "0", "thdt_buyqty": "0", "thdt_sll_qty": "0",
        "hldg_qty": str(qty), "ord_psbl_qty": str(qty), "pchs_avg_pric": f"{avg}.0000",
        "pchs_amt": str(cost), "prpr": str(q.price), "evlu_amt": str(value),
        "evlu_pfls_amt": str(value - cost), "evlu_pfls_rt": _pct(value - cost, cost),
        "evlu_erng_rt": "0", "loan_dt": "", "loan_amt": "0", "stln_slng_chgs": "0",
        "expd_dt": "", "fltt_rt": _pct(q.change, q.base), "bfdy_cprs_icdc": str(q.change),
        "item_mgna_rt_name": "", "grta_rt_name": "", "sbst_pric": "0", "stck_loan_unpr": "0",
    }


def balance_summary(account, count):
    """output2[0] of inquire-balance over all `count` positions of the account."""
    cost = value = prev = 0
    for i in range(count):
        _, qty, q = position(i)
        cost += qty * (q.price - 100)
        value += qty * q.price
        prev += qty * q.base
    cash = _words(account, 1)[0] % 100_000 * 1000
    summary = dict.fromkeys((
        "cma_evlu_amt", "bfdy_buy_amt", "thdt_buy_amt", "nxdy_auto_rdpt_amt", "bfdy_sll_amt",
        "thdt_sll_amt", "d2_auto_rdpt_amt", "bfdy_tlex_amt", "thdt_tlex_amt", "tot_loan_amt",
        "tot_stln_slng_chgs", "asst_icdc_erng_rt"), "0")
    summary.update(
        dnca_tot_amt=str(cash), nxdy_excc_amt=str(cash), prvs_rcdl_excc_amt=str(cash),
        scts_evlu_amt=str(value), tot_evlu_amt=str(value + cash), nass_amt=str(value + cash),
        fncg_gld_auto_rdpt_yn="", pchs_amt_smtl_amt=str(cost), evlu_amt_smtl_amt=str(value),
        evlu_pfls_smtl_amt=str(value - cost), bfdy_tot_asst_evlu_amt=str(prev + cash),
        asst_icdc_amt=str(value - prev))
    return summary


# --------------------------------------------------------------------------- overseas data

def listed_on(symbol):
    """The exchange (NAS, NYS, ...) a ticker is listed on."""
    if symbol in LISTING:
        return LISTING[symbol]
    return "NAS" if hashlib.sha256(symbol.encode()).digest()[0] % 2 == 0 else "NYS"


def is_listed(symbol, excd):
    return bool(symbol) and listed_on(symbol) == EXCHANGES[excd]


def overseas_output(symbol, excd):
    h0, h1, h2, h3 = _words(symbol, 4)
    last = 1000 + h0 % 49000
    diff = min((h1 >> 8) % 2001 - 1000, last - 100)
    base = last - diff
    tvol = h3 % 50_000_000
    return {
        "rsym": f"D{excd}{symbol}", "zdiv": "4", "base": _decimal4(base),
        "pvol": str(h2 % 100_000_000), "last": _decimal4(last), "sign": _sign(diff, "0"),
        "diff": _decimal4(abs(diff)), "rate": _overseas_rate(diff, base), "tvol": str(tvol),
        "tamt": str(tvol * last // 100), "ordy": "매수가능",
    }


def overseas_bar(symbol, day, adjusted):
    """Hundredths (close, open, high, low, pbid, pask) and (tvol, tamt, vbid, vask)."""
    g0, g1, g2, g3 = _words(symbol + ymd(day), 4)
    close = 1000 + g0 % 49000
    opn = max(1, close + g1 % 201 - 100)
    high = max(opn, close) + (g1 >> 8) % 101
    low = max(1, min(opn, close) - (g1 >> 16) % 101)
    k = 1 if adjusted or day >= SPLIT_DATE else 2
    tvol = g2 % 50_000_000
    prices = tuple(x * k for x in (close, opn, high, low, max(1, close - 1), close + 1))
    return prices, (tvol, tvol * close // 100, 1 + g3 % 1000, 1 + (g3 >> 12) % 1000)


def overseas_chart_rows(symbol, period, last, today, adjusted, data_start):
    dates = bar_dates(period, last, today, MAX_BARS + 1, data_start)
    bars = [overseas_bar(symbol, day, adjusted) for day in dates]
    rows = []
    for i, day in enumerate(dates[:MAX_BARS]):
        (close, opn, high, low, pbid, pask), (tvol, tamt, vbid, vask) = bars[i]
        prev = bars[i + 1][0][0] if i + 1 < len(bars) else close
        diff = close - prev
        rows.append({
            "xymd": ymd(day), "clos": _decimal4(close), "sign": _sign(diff),
            "diff": _decimal4(abs(diff)), "rate": _overseas_rate(diff, prev),
            "open": _decimal4(opn),
            "high": _decimal4(high), "low": _decimal4(low), "tvol": str(tvol),
            "tamt": str(tamt), "pbid": _decimal4(pbid), "vbid": str(vbid),
            "pask": _decimal4(pask), "vask": str(vask),
        })
    return rows


# --------------------------------------------------------------------------- answers

class Reply(NamedTuple):
    """An answer to send: body is a JSON envelope (dict) or raw bytes."""
    status: int
    body: object
    ctype: str = JSON_TYPE
    headers: tuple = ()


HTML_500 = Reply(500, b"<html>Internal Server Error</html>", "text/html")


def kis(msg_cd, status=200, headers=(), padded=False, **outputs):
    """A KIS envelope; rt_cd "0" for the success codes, "7" for SYDB0050, else "1".
    padded: msg1 blank-padded to 80 bytes of CP949, as account answers have it."""
    msg1 = MESSAGES[msg_cd]
    if padded:
        msg1 += " " * (MSG1_BYTES - len(msg1.encode("cp949")))
    rt_cd = "0" if msg_cd in SUCCESS_CODES else RT_CD.get(msg_cd, "1")
    return Reply(status, {"rt_cd": rt_cd, "msg_cd": msg_cd, "msg1": msg1, **outputs},
                 JSON_TYPE, headers)


def _prefix_reply(symbol):
    """The fixed answer a domestic symbol prefix selects, or None (after 96's pause)."""
    prefix = symbol[:2]
    if prefix == "98" or not symbol:
        return kis("MCA05918")
    if prefix == "97":
        return HTML_500
    if prefix == "95":
        return kis("MCA00000")
    if prefix == "96":
        time.sleep(3)
    return None


class Call(NamedTuple):
    """One API request as the endpoint handlers see it."""
    state: "MockState"
    path: str
    params: dict     # lower-cased names, last value wins
    headers: object  # the request's http.client.HTTPMessage
    symbols: list


def _market(call):
    market = call.params.get("fid_cond_mrkt_div_code", "")
    return market if market in MARKET_OFFSET else None


def inquire_price(call):
    symbol, market = call.symbols[0], _market(call)
    if market is None:
        return kis("OPSQ2001")
    if symbol[:2] == "99":
        return kis("MCA00000", output=unlisted_output(symbol))
    return _prefix_reply(symbol) or kis("MCA00000", output=quote_output(symbol, market))


def quote_sample(call):
    """inquire-price's answer for the faults that vary a normal answer (prefix ignored)."""
    market = call.params.get("fid_cond_mrkt_div_code", "")
    return kis("MCA00000", output=quote_output(call.symbols[0] or "000000",
                                               market if market in MARKET_OFFSET else "J"))


def multprice_items(params):
    """[(market, symbol)] of intstock-multprice's numbered parameters, in n order."""
    numbered = []
    for key, symbol in params.items():
        match = re.fullmatch(r"fid_input_iscd_(\d+)", key)
        if match and symbol:
            n = match.group(1)
            numbered.append((int(n), params.get("fid_cond_mrkt_div_code_" + n, "J"), symbol))
    return [(market, symbol) for _, market, symbol in sorted(numbered)]


def intstock_multprice(call):
    items = multprice_items(call.params)
    if not 0 < len(items) <= MAX_MULTPRICE:
        return kis("OPSQ2002")
    if any(market not in MARKET_OFFSET for market, _ in items):
        return kis("OPSQ2001")
    prefixes = {symbol[:2] for _, symbol in items}
    if "97" in prefixes:
        return HTML_500
    if "95" in prefixes:
        return kis("MCA00000")
    if "96" in prefixes:
        time.sleep(3)
    output = [zeroed(multprice_entry(symbol, "J"), keep=("inter_shrn_iscd",))
              if symbol[:2] in ("98", "99") else multprice_entry(symbol, market)
              for market, symbol in items]
    if call.state.setting("multprice_signs") == "unsigned":
        for entry in output:
            for key in ("inter2_prdy_vrss", "prdy_ctrt"):
                entry[key] = entry[key].lstrip("-")
    if len(output) == 1 and call.state.setting("multprice_shape") == "object":
        output = output[0]
    return kis("MCA00000", output=output)


def asking_price(call):
    symbol, market = call.symbols[0], _market(call)
    if market is None:
        return kis("OPSQ2001")
    if symbol[:2] == "99":
        book, expected = order_book(symbol, "J")
        return kis("MCA00000", output1=dict.fromkeys(book, "0"),
                   output2=zeroed(expected, text=("stck_shrn_iscd",)))
    special = _prefix_reply(symbol)
    if special:
        return special
    book, expected = order_book(symbol, market)
    return kis("MCA00000", output1=book, output2=expected)


def chart_prelude(call):
    """(symbol, market, the answer a bad market or the symbol's prefix selects or None) of
    the domestic chart endpoints (99 is answered later: after the parameter checks)."""
    symbol, market = call.symbols[0], _market(call)
    if market is None:
        return symbol, market, kis("OPSQ2001")
    return symbol, market, _prefix_reply(symbol) if symbol[:2] != "99" else None


def unlisted_chart(symbol):
    """A domestic chart's answer for a 99 symbol: output1 zeroed, output2 []."""
    return kis("MCA00000", output1=zeroed(chart_summary(symbol, "J"),
                                          text=("hts_kor_isnm", "stck_shrn_iscd")), output2=[])


def daily_chart(call):
    (symbol, market, special), p = chart_prelude(call), call.params
    if special:
        return special
    first, last = parse_ymd(p.get("fid_input_date_1")), parse_ymd(p.get("fid_input_date_2"))
    period, adjust = p.get("fid_period_div_code", ""), p.get("fid_org_adj_prc", "")
    if first is None or last is None or first > last or period not in PERIODS \
            or adjust not in ("", "0", "1"):
        return kis("OPSQ2002")
    if symbol[:2] == "99":
        return unlisted_chart(symbol)
    rows = domestic_chart_rows(symbol, period, first, last, call.state.today(), adjust == "1",
                               call.state.data_start())
    return kis("MCA00000", output1=chart_summary(symbol, market), output2=rows)


def overseas_price(call):
    symbol, excd = call.symbols[0], call.params.get("excd", "")
    if excd not in EXCHANGES:
        return kis("OPSQ2001")
    if not is_listed(symbol, excd):
        return kis("MCA00000", output=dict.fromkeys(overseas_output("", excd), ""))
    output = overseas_output(symbol, excd)
    if call.state.setting("overseas_session") == "closed":
        output["last"] = ""
    return kis("MCA00000", output=output)


def overseas_daily(call):
    symbol, p = call.symbols[0], call.params
    excd, bymd = p.get("excd", ""), p.get("bymd", "")
    if excd not in EXCHANGES or excd in DAYTIME_EXCHANGES:
        return kis("OPSQ2001")
    today = call.state.today()
    last = parse_ymd(bymd) if bymd else today
    if last is None or p.get("gubn") not in OVERSEAS_PERIODS \
            or p.get("modp", "") not in ("", "0", "1"):
        return kis("OPSQ2002")
    if not is_listed(symbol, excd):
        return kis("MCA00000", output1={"rsym": "", "zdiv": "", "nrec": "0"}, output2=[])
    rows = overseas_chart_rows(symbol, OVERSEAS_PERIODS[p["gubn"]], last, today,
                               p.get("modp") == "1", call.state.data_start())
    return kis("MCA00000", output1={"rsym": f"D{excd}{symbol}", "zdiv": "4",
                                    "nrec": str(len(rows))}, output2=rows)


def balance_fk(cano, product):
    """ctx_area_fk100 of every page (unpadded), the last one too, as real KIS sends it."""
    return f"{cano}^{product}^N^N^01^01^N^"


def inquire_balance(call):
    p, state = call.params, call.state
    cano, product = p.get("cano", ""), p.get("acnt_prdt_cd", "")
    if not re.fullmatch(r"\d{8}", cano) or not re.fullmatch(r"\d{2}", product) \
            or cano == "99999999":
        return kis("OPSQ2000")
    if any(p.get(flag) not in values for flag, values in BALANCE_FLAGS.items()) \
            or "ctx_area_fk100" not in p or "ctx_area_nk100" not in p:
        return kis("OPSQ2002")
    fk = balance_fk(cano, product)
    tr_cont = (call.headers.get("tr_cont") or "").strip()
    if tr_cont == "N":
        start = state.cursor(fk, p.get("ctx_area_fk100", "").rstrip(),
                             p.get("ctx_area_nk100", "").rstrip())
        if start is None:
            return kis("OPSQ2002")
    elif tr_cont:
        return kis("OPSQ2002")
    else:
        start = 0
    count = 0 if cano == "00000000" else state.setting("holdings")
    tr_id = call.headers.get("tr_id")
    stop = min(count, start + BALANCE_PAGE_SIZE[tr_id])
    nk = state.issue_cursor(fk, stop) if stop < count else ""
    state.count_page(call.path)
    code = "KIOK0560" if count == 0 else "KIOK0510" if tr_id == "TTTC8434R" else "20310000"
    return kis(code, padded=True, headers=(("tr_cont", "M" if nk else "D"),),
               ctx_area_fk100=fk.ljust(CTX_WIDTH), ctx_area_nk100=nk.ljust(CTX_WIDTH),
               output1=[holding(i) for i in range(start, stop)],
               output2=[balance_summary(cano, count)])


def minute_bars(symbol, day, session, until):
    """inquire-time-itemchartprice output2: the minute bars of day from the session's
    first minute up to `until` (seconds of the day), newest first, at most 30."""
    first = int(session[:2]) * 60 + int(session[2:4])
    last = int(session[5:7]) * 60 + int(session[7:9])
    last = min(last, until // 60)
    rows, value = [], 0
    for minute in range(first, last + 1):
        hhmm = f"{minute // 60:02d}{minute % 60:02d}"
        g0, g1, g2, _ = _words(f"{symbol}{ymd(day)}{hhmm}", 4)
        close = (1000 + g0 % 99000) // 10 * 10
        opn = max(10, close + (g1 % 21 - 10) * 10)
        high = max(opn, close) + (g1 >> 8) % 11 * 10
        low = max(10, min(opn, close) - (g1 >> 16) % 11 * 10)
        vol = g2 % 100_000
        value += vol * close
        rows.append({"stck_bsop_date": ymd(day), "stck_cntg_hour": hhmm + "00",
                     "stck_prpr": str(close), "stck_oprc": str(opn), "stck_hgpr": str(high),
                     "stck_lwpr": str(low), "cntg_vol": str(vol), "acml_tr_pbmn": str(value)})
    return rows[::-1][:MAX_MINUTE_BARS]


def minute_chart(call):
    (symbol, market, special), p = chart_prelude(call), call.params
    if special:
        return special
    hour = p.get("fid_input_hour_1", "")
    if not re.fullmatch(r"([01]\d|2[0-3])[0-5]\d[0-5]\d", hour) \
            or p.get("fid_pw_data_incu_yn", "") not in ("Y", "N"):
        return kis("OPSQ2002")
    call.state.note_asked(call.path, [symbol, hour])
    if symbol[:2] == "99":
        return unlisted_chart(symbol)
    until = int(hour[:2]) * 3600 + int(hour[2:4]) * 60 + int(hour[4:])
    rows = minute_bars(symbol, call.state.today(), call.state.setting("minute_session"), until)
    return kis("MCA00000", output1=chart_summary(symbol, market), output2=rows)


def calendar_day(day):
    """One chk-holiday row: weekends and CLOSED_DAYS closed, YEAR_END no trading;
    tr_day_yn "Y" every day, as real KIS sends it (docs/new-tables.md)."""
    mmdd = day.strftime("%m%d")
    weekday = day.isoweekday() % 7 + 1      # 01 Sunday .. 07 Saturday
    business = weekday not in (1, 7) and mmdd not in CLOSED_DAYS
    trading = business and mmdd != YEAR_END
    yn = lambda b: "Y" if b else "N"
    return {"bass_dt": ymd(day), "wday_dvsn_cd": f"{weekday:02d}", "bzdy_yn": yn(business),
            "tr_day_yn": "Y", "opnd_yn": yn(trading), "sttl_day_yn": yn(trading)}


def chk_holiday(call):
    p, state = call.params, call.state
    first = parse_ymd(p.get("bass_dt"))
    if first is None:
        return kis("OPSQ2002")
    tr_cont = (call.headers.get("tr_cont") or "").strip()
    start = first
    if tr_cont == "N":
        # KIS names the page it sent: its first and last day
        fk = parse_ymd(p.get("ctx_area_fk", "").strip())
        nk = parse_ymd(p.get("ctx_area_nk", "").strip())
        if fk is None or nk is None or not first <= fk <= nk:
            return kis("OPSQ2002")
        start = nk + ONE_DAY
    elif tr_cont:
        return kis("OPSQ2002")
    end = datetime.date(state.today().year + 1, 12, 31)   # the calendar's last day
    days = []
    day = start
    while day <= end and len(days) < HOLIDAY_PAGE:
        days.append(calendar_day(day))
        day += ONE_DAY
    more = day <= end
    state.count_page(call.path)
    page = (days[0]["bass_dt"], days[-1]["bass_dt"]) if days else ("", "")
    return kis("KIOK0500" if more else "KIOK0510", padded=more,
               headers=(("tr_cont", "M" if more else "D"),),
               ctx_area_fk=page[0].ljust(HOLIDAY_CTX_WIDTH),
               ctx_area_nk=page[1].ljust(HOLIDAY_CTX_WIDTH), output=days)


# --------------------------------------------------------------------------- master files
# KIS's stock master files (docs/new-tables.md): a zip archive per market holding one
# CP949 line per listing: short code (9), standard code (12), the name, then a fixed
# tail of MASTER_TAIL[market] bytes whose fields kis_fdw reads sit at these offsets.

MASTER_TAIL = {"kospi": 227, "kosdaq": 221, "konex": 184}
MASTER_OFFSETS = {   # field -> (offset in the tail by market, width)
    "scrt_grp_cls_code": ({"kospi": 0, "kosdaq": 0, "konex": 0}, 2),
    "stck_sdpr": ({"kospi": 41, "kosdaq": 36, "konex": 2}, 9),
    "frml_mrkt_deal_qty_unit": ({"kospi": 50, "kosdaq": 45, "konex": 11}, 5),
    "trht_yn": ({"kospi": 60, "kosdaq": 55, "konex": 21}, 1),
    "sltr_yn": ({"kospi": 61, "kosdaq": 56, "konex": 22}, 1),
    "mang_issu_yn": ({"kospi": 62, "kosdaq": 57, "konex": 23}, 1),
    "mrkt_alrm_cls_code": ({"kospi": 63, "kosdaq": 58, "konex": 24}, 2),
    "stck_fcam": ({"kospi": 93, "kosdaq": 88, "konex": 54}, 12),
    "stck_lstn_date": ({"kospi": 105, "kosdaq": 100, "konex": 66}, 8),
    "lstn_stcn": ({"kospi": 113, "kosdaq": 108, "konex": 74}, 15),
    "prst_cls_code": ({"kospi": 158, "kosdaq": 153, "konex": 119}, 1),
    "prdy_avls_scal": ({"kospi": 212, "kosdaq": 206, "konex": 172}, 9),
}
# Listings: (short code, name). Every market also lists MASTER_COUNT generated ones.
MASTER_NAMED = {
    "kospi": [("005930", "삼성전자"), ("005935", "삼성전자우"), ("000660", "SK하이닉스"),
              ("035420", "NAVER"), ("207940", "삼성바이오로직스")],
    "kosdaq": [("247540", "에코프로비엠"), ("091990", "셀트리온헬스케어"), ("035900", "JYP Ent.")],
    "konex": [("217320", "썬테크")],
}
MASTER_COUNT = {"kospi": 800, "kosdaq": 1600, "konex": 120}
MASTER_BLANK_FLAG = frozenset(("217320",))  # lines whose last flag is blank
MASTER_FIRST = {"kospi": 300000, "kosdaq": 400000, "konex": 500000}


def master_listings(market):
    """[(short code, name)] of a market's master file, in file order."""
    first = MASTER_FIRST[market]
    return MASTER_NAMED[market] + [(f"{first + i:06d}", f"{market.upper()}종목{i:04d}")
                                   for i in range(MASTER_COUNT[market])]


def master_fields(market, code):
    """The tail fields of a listing, by KIS field name (values as the file holds them)."""
    h = _words(code + ":master", 3)
    preferred = code.endswith("5")
    shares = 1000000 + h[0] % 1000000000   # lstn_stcn is in thousands, the cap in 억 won
    return {"scrt_grp_cls_code": "ST", "stck_sdpr": str(mock_base(code)),
            "frml_mrkt_deal_qty_unit": "1", "trht_yn": "Y" if h[0] % 50 == 0 else "N",
            "sltr_yn": "N", "mang_issu_yn": "Y" if h[1] % 40 == 0 else "N",
            "mrkt_alrm_cls_code": "00", "stck_fcam": "100" if preferred else "500",
            "stck_lstn_date": _date(h[2]), "lstn_stcn": str(shares // 1000),
            "prst_cls_code": "1" if preferred else "0",
            "prdy_avls_scal": str(mock_base(code) * shares // 100000000)}


def mock_base(code):
    """stck_sdpr of a listing: inquire-price's base price on market J."""
    return quote_numbers(code, "J").base


def master_line(market, code, name):
    """One line of a master file, CP949 bytes without the line end: exactly 61 + the
    tail bytes, the name blank-padded to 40 bytes, as in the real files."""
    # the fields kis_fdw does not read: zeros, and Y/N flags at the end (MASTER_BLANK_FLAG:
    # a blank last flag, which must not be stripped)
    flags = b"NN " if code in MASTER_BLANK_FLAG else b"NYN"
    tail = bytearray(b"0" * (MASTER_TAIL[market] - 3) + flags)
    for field, value in master_fields(market, code).items():
        offsets, width = MASTER_OFFSETS[field]
        # numbers are right-aligned with zeros, text left-aligned with blanks
        text = value.rjust(width, "0") if value.isdigit() else value.ljust(width)
        tail[offsets[market]:offsets[market] + width] = text.encode()
    isin = "KR7" + code + "00" + str(sum(map(ord, code)) % 10)
    return ((code.ljust(9) + isin.ljust(12)).encode() + name.encode("cp949").ljust(40)
            + bytes(tail))


def master_zip(market, layout=False):
    """The zip archive of a market's master file (deflated, LF line ends); layout:
    one byte more at the end of every line, as if KIS had added a field."""
    body = b"".join(master_line(market, code, name) + (b"N" if layout else b"") + b"\n"
                    for code, name in master_listings(market))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{market}_code.mst", body)
    return buf.getvalue()


# --------------------------------------------------------------------------- endpoint table

def _one(name):
    return lambda params: [params.get(name, "")]


class Endpoint(NamedTuple):
    tr_ids: frozenset        # real environment's
    handler: Callable        # Call -> Reply
    symbols: Callable        # params -> the symbols the request carries (by_symbol, faults)
    numbers: tuple = ()      # fields the "numbers" fault sends as JSON numbers
    sample: Optional[Callable] = None  # Call -> the normal answer faults vary (else handler)
    virtual: Optional[frozenset] = None  # virtual environment's tr_ids (None: as real)

    def tr_ids_in(self, environment):
        return self.virtual if environment == "virtual" and self.virtual is not None \
            else self.tr_ids


ENDPOINTS = {
    QUOTE_PATH: Endpoint(
        frozenset({QUOTE_TR_ID}), inquire_price, _one("fid_input_iscd"),
        ("stck_prpr", "prdy_vrss", "stck_oprc", "stck_hgpr", "stck_lwpr", "stck_mxpr",
         "stck_llam", "stck_sdpr", "acml_vol", "acml_tr_pbmn"), quote_sample),
    MULTPRICE_PATH: Endpoint(
        frozenset({"FHKST11300006"}), intstock_multprice,
        lambda params: [symbol for _, symbol in multprice_items(params)],
        ("inter2_prpr", "inter2_prdy_vrss", "acml_vol", "inter2_oprc", "inter2_hgpr",
         "inter2_lwpr", "inter2_mxpr", "inter2_llam", "inter2_askp", "inter2_bidp"),
        virtual=frozenset()),    # 모의투자 미지원: real accounts only
    BOOK_PATH: Endpoint(
        frozenset({"FHKST01010200"}), asking_price, _one("fid_input_iscd"),
        tuple(f"{side}{k}" for side in ("askp", "bidp", "askp_rsqn", "bidp_rsqn")
              for k in range(1, 11)) + ("stck_prpr", "antc_cnpr")),
    DAILY_PATH: Endpoint(
        frozenset({"FHKST03010100"}), daily_chart, _one("fid_input_iscd"),
        ("stck_prpr", "stck_clpr", "stck_oprc", "stck_hgpr", "stck_lwpr", "acml_vol")),
    OVERSEAS_PATH: Endpoint(
        frozenset({"HHDFS00000300"}), overseas_price, _one("symb"),
        ("last", "base", "diff", "pvol", "tvol", "tamt")),
    OVERSEAS_DAILY_PATH: Endpoint(
        frozenset({"HHDFS76240000"}), overseas_daily, _one("symb"),
        ("clos", "open", "high", "low", "diff", "tvol", "tamt")),
    BALANCE_PATH: Endpoint(
        frozenset({"TTTC8434R"}), inquire_balance, lambda params: [],
        ("hldg_qty", "ord_psbl_qty", "pchs_amt", "prpr", "evlu_amt", "evlu_pfls_amt"),
        virtual=frozenset({"VTTC8434R"})),
    MINUTE_PATH: Endpoint(
        frozenset({"FHKST03010200"}), minute_chart, _one("fid_input_iscd"),
        ("stck_prpr", "stck_oprc", "stck_hgpr", "stck_lwpr", "cntg_vol")),
    HOLIDAY_PATH: Endpoint(frozenset({"CTCA0903R"}), chk_holiday, lambda params: [],
                           virtual=frozenset()),
}
# the library of declared tables (test/mock_library.py)
ENDPOINTS.update(mock_library.endpoints(sys.modules[__name__]))


def _number(text):
    return int(text) if re.fullmatch(r"-?\d+", text) else float(text)


def vary(body, kind, fields):
    """The numbers / bad_shape variation of an envelope's outputs (a new dict)."""
    body = dict(body)
    for key in ("output", "output1", "output2"):
        value = body.get(key)
        if value is None:
            continue
        if kind == "bad_shape":
            body[key] = [] if isinstance(value, dict) else {}
            continue
        objs = [value] if isinstance(value, dict) else value
        converted = [{k: _number(v) if k in fields and NUMERIC.fullmatch(v) else v
                      for k, v in obj.items()} for obj in objs]
        body[key] = converted[0] if isinstance(value, dict) else converted
    return body


# --------------------------------------------------------------------------- shared state

class MockState:
    """Configuration, tokens, fault rules and counters, all guarded by one lock."""

    def __init__(self, config, tls):
        self.lock = threading.Lock()
        self.config = dict(config)
        self.tls = tls
        self.tokens = {}    # token -> {"appkey", "appsecret", "expires" (epoch s), "expired"}
        self.in_flight = 0  # survives resets: those requests are still running
        self.arrivals = 0   # API requests ever begun: the overlap fault reads it
        self.released = threading.Event()   # set by a release: the hold fault waits on it
        self._clear()
        self.ws = mock_ws.WsHub(sys.modules[__name__], self)   # the WebSocket side

    def _clear(self):
        """Zero everything a reset forgets (caller holds the lock, or no one shares it yet)."""
        self.t0 = time.monotonic()
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.counters["max_in_flight"] = self.in_flight
        self.by_symbol, self.by_path, self.pages, self.tokens_by_appkey = {}, {}, {}, {}
        self.by_appkey = {}     # appkey header -> {symbol: requests}
        self.faults_injected, self.errors = {}, {}
        self.timeline, self.faults = [], []
        self.rate_windows = {}  # appkey -> [window second, requests in it]
        self.last_issue = {}    # appkey -> time.monotonic() of its last token issuance
        self.last_new = {}      # appkey -> (its last new token, time.monotonic() of it)
        self.cursors = {}       # (ctx_area_fk100, ctx_area_nk100) stripped -> next index
        self.asked = {}         # path -> [symbol, FID_INPUT_HOUR_1] asked, in order
        self.downloads = {}     # master file name -> downloads

    @staticmethod
    def _inc(table, key):
        table[key] = table.get(key, 0) + 1

    def bump(self, counter):
        with self.lock:
            self.counters[counter] += 1

    def count_error(self, code):
        with self.lock:
            self._inc(self.errors, code)

    def count_page(self, path):
        with self.lock:
            self._inc(self.pages, path)

    def count_download(self, name):
        with self.lock:
            self._inc(self.downloads, name)

    def note_asked(self, path, value):
        with self.lock:
            self.asked.setdefault(path, []).append(value)

    def setting(self, key):
        with self.lock:
            return self.config[key]

    def today(self):
        return parse_ymd(self.setting("today"))

    def data_start(self):
        return parse_ymd(self.setting("data_start"))

    def issue_cursor(self, fk, index):
        """The ctx_area_nk100 (unpadded) naming the page that starts at index."""
        nk = f"{fk}^{index:06d}"
        with self.lock:
            self.cursors[(fk, nk)] = index
        return nk

    def cursor(self, account_fk, fk, nk):
        """The start index of an issued page, or None."""
        if fk != account_fk:
            return None
        with self.lock:
            return self.cursors.get((fk, nk))

    def reset(self, forget_tokens):
        self.release()
        with self.lock:
            self._clear()
            if forget_tokens:
                self.tokens.clear()
        self.ws.reset(forget_tokens)

    def configure(self, changes):
        unknown = set(changes) - set(CONFIG_TYPES)
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        parsed = {key: CONFIG_TYPES[key](value) for key, value in changes.items()}
        with self.lock:
            self.config.update(parsed)

    def add_faults(self, faults):
        if not isinstance(faults, list):
            raise ValueError('"faults" must be a list')
        rules = []
        for fault in faults:
            if not isinstance(fault, dict) or fault.get("kind") not in FAULT_KINDS:
                raise ValueError(f"bad fault rule {fault!r}; kinds: {sorted(FAULT_KINDS)}")
            rule = {"kind": fault["kind"], "symbol": str(fault.get("symbol", "*")),
                    "times": int(fault.get("times", 1)), "ms": float(fault.get("ms", 3000))}
            if rule["kind"] == "answer":
                if not isinstance(fault.get("body"), dict):
                    raise ValueError(f'an "answer" rule needs a "body" object: {fault!r}')
                rule["body"] = fault["body"]
                rule["headers"] = {str(k): str(v) for k, v in fault.get("headers", {}).items()}
                rule["ascii"] = bool(fault.get("ascii", False))
            elif rule["kind"] == "file":
                rule["body"] = str(fault.get("body", ""))
                base64.b64decode(rule["body"], validate=True)   # a bad one fails here
            rules.append(rule)
        with self.lock:
            self.faults.extend(rule for rule in rules if rule["times"] != 0)

    def take_fault(self, symbols, token_endpoint=False, next_page=False):
        """Fire the first matching rule (egw00133 rules only match tokenP, sydb0050 rules
        only follow-up pages, tr_cont "N") and return it.

        An API request matches rules for "*" and for any of its symbols.
        """
        with self.lock:
            for rule in self.faults:
                if token_endpoint != (rule["kind"] == "egw00133"):
                    continue
                if rule["kind"] == "sydb0050" and not next_page:
                    continue
                if not token_endpoint and rule["symbol"] != "*" and rule["symbol"] not in symbols:
                    continue
                if rule["times"] > 0:
                    rule["times"] -= 1
                    if rule["times"] == 0:
                        self.faults.remove(rule)
                self._inc(self.faults_injected, rule["kind"])
                return dict(rule)
        return None

    def issue_token(self, appkey, appsecret):
        """Return (token, expiry epoch, ttl), or None when the issuance interval forbids it."""
        now = time.monotonic()
        with self.lock:
            last = self.last_issue.get(appkey)
            if last is not None and now - last < self.config["token_interval"]:
                self.counters["token_rejections"] += 1
                return None
            self.last_issue[appkey] = now
            token, since = self.last_new.get(appkey, (None, None))
            if (token in self.tokens and now - since < self.config["token_reuse"]):
                expires = self.tokens[token]["expires"]  # the same token, as KIS within 6 h
                self.counters["tokens_issued"] += 1
                self._inc(self.tokens_by_appkey, appkey)
                return token, expires, max(0.0, round(expires - time.time()))
            ttl = self.config["token_ttl"]
            token = "eyJ" + secrets.token_urlsafe(222)  # opaque, ~300 chars like a KIS JWT
            expires = time.time() + ttl
            self.tokens[token] = {"appkey": appkey, "appsecret": appsecret, "expires": expires,
                                  "expired": False}
            self.last_new[appkey] = (token, now)
            self.counters["tokens_issued"] += 1
            self._inc(self.tokens_by_appkey, appkey)
            return token, expires, ttl

    def check_token(self, token):
        """Return (msg_cd or None, the token's info: appkey and appsecret)."""
        with self.lock:
            info = self.tokens.get(token)
            if info is None:
                return "EGW00121", None
            if info["expired"] or time.time() >= info["expires"]:
                return "EGW00123", dict(info)
            return None, dict(info)

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

    def begin_request(self, path, symbols, appkey):
        """Account for an API request whose headers were read; return its arrival
        time and its ticket for wait_for_company and hold."""
        with self.lock:
            self.arrivals += 1
            per_key = self.by_appkey.setdefault(appkey or "", {})
            for symbol in symbols:
                if symbol:
                    self._inc(per_key, symbol)
            self.counters["requests"] += 1
            self._inc(self.by_path, path)
            self.in_flight += 1
            self.counters["max_in_flight"] = max(self.counters["max_in_flight"], self.in_flight)
            for symbol in symbols:
                if symbol:
                    self._inc(self.by_symbol, symbol)
            if len(self.timeline) < TIMELINE_CAP:
                self.timeline.append(time.monotonic() - self.t0)
            # (had company when it arrived, requests begun up to and with it, the
            # release that answers it if held: the first after its arrival)
            ticket = (self.in_flight >= 2, self.arrivals, self.released)
        return time.time(), ticket

    def wait_for_company(self, ticket, timeout):
        """Wait, at most timeout s, until another API request has been in flight
        beside the one of ticket: one that was in flight when it arrived, or one
        that arrived since.  Counting arrivals, rather than looking at in_flight
        now and then, also sees a companion that came and went between looks."""
        had_company, seq, _ = ticket
        deadline = time.monotonic() + timeout
        while not had_company and time.monotonic() < deadline:
            with self.lock:
                if self.arrivals > seq:
                    return
            time.sleep(0.001)

    @staticmethod
    def hold(ticket, timeout):
        """Wait, at most timeout s, until the first release after the request of
        ticket arrived (so a release answers every request counted in_flight then)."""
        ticket[2].wait(timeout)

    def release(self):
        """Answer what hold holds; requests arriving later wait for the next release."""
        with self.lock:
            released, self.released = self.released, threading.Event()
        released.set()

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
                        by_appkey={k: dict(v) for k, v in self.by_appkey.items()},
                        by_path=dict(self.by_path),
                        pages=dict(self.pages),
                        asked={k: list(v) for k, v in self.asked.items()},
                        downloads=dict(self.downloads),
                        tokens_issued_by_appkey=dict(self.tokens_by_appkey),
                        faults_injected=dict(self.faults_injected),
                        errors=dict(self.errors),
                        faults_pending=[dict(rule) for rule in self.faults],
                        tls=self.tls, **self.config)
            if with_timeline:
                snap["timeline"] = [round(t, 6) for t in self.timeline]
        snap["ws"] = self.ws.snapshot()
        return snap


# --------------------------------------------------------------------------- HTTP handler

class KisHandler(BaseHTTPRequestHandler):
    """One instance per connection; keep-alive loops over requests in handle()."""

    protocol_version = "HTTP/1.1"
    server_version = "mock-kis/1.0"
    disable_nagle_algorithm = True
    # An answer goes out in one write, so in one TLS record, as a gateway in front of KIS sends
    # a small answer.  Unbuffered, the headers and the body were two records, and the client
    # read (and polled) twice.
    wbufsize = 64 * 1024
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
            self.server.state.bump("token_requests")
            self._token(body)
        elif url.path == "/oauth2/Approval" and self.command == "POST":
            self.server.state.bump("approval_requests")
            self._approval(body)
        elif url.path.startswith(MASTER_DIR):
            self._master(url)
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

    def _send(self, status, body, ctype=JSON_TYPE, length=None, headers=()):
        """Send a whole answer; length overrides Content-Length (for "truncate")."""
        self._answered()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()  # one write (wbufsize), and out before a _hang_up

    def _send_json(self, status, obj):
        self._send(status, json.dumps(obj, ensure_ascii=False).encode())

    def _encode(self, reply):
        """The bytes of a reply's body; counts an envelope with rt_cd != "0" in errors."""
        if not isinstance(reply.body, dict):
            return reply.body
        if reply.body.get("rt_cd") != "0":
            self.server.state.count_error(reply.body.get("msg_cd"))
        return json.dumps(reply.body, ensure_ascii=False).encode()

    def _reply(self, reply):
        self._send(reply.status, self._encode(reply), reply.ctype, headers=reply.headers)

    def _hang_up(self):
        """Close the TCP connection at once, whatever was (not) sent."""
        self._answered()
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
            elif route == ("POST", "/__mock/release"):
                state.release()
            elif route[0] == "POST" and url.path in WS_ROUTES:
                self._send_json(200, WS_ROUTES[url.path](state.ws, payload))
                return
            else:
                self._send_json(404, {"ok": False, "error": f"no route {self.command} {url.path}"})
                return
        except (TypeError, ValueError) as exc:
            self._send_json(400, {"ok": False, "error": str(exc)})
            return
        self._send_json(200, {"ok": True})

    # ---- POST /oauth2/Approval (the WebSocket approval key)

    def _approval(self, body):
        """tokenP's checks, with the secret in "secretkey" (an "appsecret" is not read)."""
        state = self.server.state
        req = self._json_object(body)
        if req is None:
            return self._token_error("EGW00101")
        appkey, secret = req.get("appkey"), req.get("secretkey")
        refused = self._credentials_refused(req, appkey, secret)
        if refused:
            return self._token_error(refused)
        key, new = state.ws.approve(appkey, secret)
        if new:
            state.bump("approvals_issued")
        self._send_json(200, {"approval_key": key})

    # ---- POST /oauth2/tokenP

    @staticmethod
    def _json_object(body):
        """A request body's JSON object, or None."""
        try:
            req = json.loads(body)
        except ValueError:
            return None
        return req if isinstance(req, dict) else None

    @staticmethod
    def _credentials_refused(req, appkey, secret):
        """The error code tokenP and Approval give a request's credentials, or None."""
        if not req.get("grant_type"):
            return "EGW00115"
        if req["grant_type"] != "client_credentials":
            return "EGW00112"
        if not appkey or not isinstance(appkey, str):
            return "EGW00102"
        if appkey.startswith("BAD"):
            return "EGW00103"
        if not secret or not isinstance(secret, str):
            return "EGW00104"
        if secret.startswith("BAD"):
            return "EGW00105"
        return None

    def _token_error(self, code):
        self.server.state.count_error(code)
        self._send_json(403, {"error_code": code, "error_description": MESSAGES[code]})

    def _token(self, body):
        state = self.server.state
        req = self._json_object(body)
        if req is None:
            return self._token_error("EGW00101")
        appkey, appsecret = req.get("appkey"), req.get("appsecret")
        with state.lock:
            delay = state.config["token_latency_ms"] / 1000
        time.sleep(delay)  # KIS working on it: nothing is decided before the answer
        refused = self._credentials_refused(req, appkey, appsecret)
        if refused:
            return self._token_error(refused)
        issued = (None if state.take_fault(None, token_endpoint=True)
                  else state.issue_token(appkey, appsecret))
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

    # ---- master files (/common/master/...): no auth, not rate limited

    def _master(self, url):
        state = self.server.state
        name = url.path[len(MASTER_DIR):]
        state.count_download(name)
        fault = state.take_fault([name])
        market = name[:-len("_code.mst.zip")] if name.endswith("_code.mst.zip") else None
        if fault and fault["kind"] == "slow":
            time.sleep(fault["ms"] / 1000)
        if self.command != "GET" or market not in MASTER_TAIL:
            self._send(404, b"Not Found", "text/plain")
        elif fault and fault["kind"] == "http500":
            self._send(500, b"Internal Server Error", "text/plain")
        elif fault and fault["kind"] == "garbage":
            self._send(200, b"PK\x03\x04 not a zip archive", "application/zip")
        elif fault and fault["kind"] == "file":
            self._send(200, base64.b64decode(fault["body"]), "application/zip")
        else:
            data = master_zip(market, layout=fault is not None and fault["kind"] == "layout")
            if fault and fault["kind"] == "truncate":
                data = data[:len(data) // 2]
            self._send(200, data, "application/zip")

    # ---- API requests (/uapi/...): one pipeline for every endpoint

    def _api(self, url):
        state = self.server.state
        params = {k.lower(): v[-1] for k, v in
                  parse_qs(url.query, keep_blank_values=True).items()}
        endpoint = ENDPOINTS.get(url.path) if self.command == "GET" else None
        call = Call(state, url.path, params, self.headers,
                    endpoint.symbols(params) if endpoint else [])
        arrival, self.ticket = state.begin_request(url.path, call.symbols,
                                                   self.headers.get("appkey"))
        self.in_flight = True
        try:
            time.sleep(state.latency())
            if endpoint is None:
                state.bump("bad_requests")
                self._reply(kis("EGW00101", 404))
            else:
                self._serve(endpoint, call, arrival)
        finally:
            self._answered()

    def _answered(self):
        """The request is no longer in flight: its answer starts to go out (or it is
        hung up on).  Counted before the first byte, so that a client that has its
        answer never sees the request still in flight in the counters."""
        if getattr(self, "in_flight", False):
            self.in_flight = False
            self.server.state.end_request()

    def _check_headers(self, tr_ids):
        """KIS gateway header checks; return (msg_cd or None, token, appkey)."""
        h = self.headers
        scheme, _, token = (h.get("authorization") or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return "EGW00121", None, None
        err, info = self.server.state.check_token(token)
        appkey = info and info["appkey"]
        if err is None:
            if not h.get("appkey"):
                err = "EGW00102"
            elif h.get("appkey") != appkey:
                err = "EGW00103"
            elif not h.get("appsecret"):
                err = "EGW00104"
            elif h.get("appsecret") != info["appsecret"]:
                err = "EGW00105"
            elif h.get("tr_id") not in tr_ids:
                err = "EGW00213"
            elif h.get("custtype") not in ("P", "B"):
                err = "EGW00208"
        return err, token, appkey

    def _serve(self, endpoint, call, arrival):
        state = self.server.state
        err, token, appkey = self._check_headers(
            endpoint.tr_ids_in(state.setting("environment")))
        if err:
            state.bump("bad_requests")
            return self._reply(kis(err, 500))
        if state.over_rate(appkey, arrival):
            return self._reply(kis("EGW00201", 500))
        fault = state.take_fault(call.symbols,
                                 next_page=(self.headers.get("tr_cont") or "").strip() == "N")
        if fault and self._inject(fault, token, endpoint, call):
            return None
        return self._reply(endpoint.handler(call))

    def _inject(self, fault, token, endpoint, call):
        """Apply a fired fault rule; return True if it answered (or hung up)."""
        kind = fault["kind"]
        if kind == "slow":
            time.sleep(fault["ms"] / 1000)
            return False
        if kind == "overlap":
            self.server.state.wait_for_company(self.ticket, fault["ms"] / 1000)
            return False
        if kind == "hold":
            self.server.state.hold(self.ticket, fault["ms"] / 1000)
            return False
        if kind == "close":
            self.close_connection = True  # _send says so in a header
            return False
        if kind == "http500":
            self._send(500, b"Internal Server Error", "text/plain; charset=utf-8")
        elif kind in ("egw00201", "egw00001", "egw00002"):
            self._reply(kis(kind.upper(), 500))
        elif kind == "expire_token":
            self.server.state.expire_token(token)
            self._reply(kis("EGW00123", 500))
        elif kind == "invalid_token":
            self._reply(kis("EGW00121", 500))
        elif kind == "sydb0050":
            self._reply(kis("SYDB0050", padded=True))
        elif kind == "answer":
            body = fault["body"]
            if fault.get("ascii"):  # every non-ASCII character as a \u escape
                body = json.dumps(body, ensure_ascii=True).encode()
            self._reply(Reply(200, body, JSON_TYPE, tuple(fault["headers"].items())))
        elif kind == "stray":
            self._reply(endpoint.handler(call._replace(symbols=[STRAY_SYMBOL])))
        elif kind == "drop":
            self._hang_up()
        elif kind == "garbage":
            self._send(200, b"not json at all {")
        else:  # numbers, huge, truncate, bad_shape: variations of a normal answer
            reply = (endpoint.sample or endpoint.handler)(call)
            if isinstance(reply.body, dict):
                body = reply.body
                if kind in ("numbers", "bad_shape"):
                    body = vary(body, kind, endpoint.numbers)
                elif kind == "huge":
                    body = dict(body, padding="x" * HUGE_BYTES)
                reply = reply._replace(body=body)
            if kind == "truncate":
                data = self._encode(reply)
                self.close_connection = True
                self._send(reply.status, data[:len(data) // 2], reply.ctype,
                           length=len(data), headers=reply.headers)
                self._hang_up()
            else:
                self._reply(reply)
        return True


# --------------------------------------------------------------------------- ws control

def _ws_tick(hub, p):
    count = p.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int):
        raise ValueError('"count" must be an integer')
    return {"sent": hub.tick(str(p.get("tr_id", "")), str(p.get("tr_key", "")), count,
                             p.get("price"))}


def _ws_refuse(hub, p):
    times = p.get("times", 1)
    if isinstance(times, bool) or not isinstance(times, int) or times < 0:
        raise ValueError('"times" must be a non-negative integer')
    hub.refuse(times)
    return {"ok": True}


WS_ROUTES = {   # POST /__mock/ws/...: hub, JSON body -> the JSON answer
    "/__mock/ws/tick": _ws_tick,
    "/__mock/ws/drop": lambda hub, p: {"dropped": hub.drop()},
    "/__mock/ws/pingpong": lambda hub, p: {"sent": hub.pingpong_all()},
    "/__mock/ws/refuse": _ws_refuse,
}


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
    p.add_argument("--environment", choices=("real", "virtual"), default="real",
                   help="which environment's tr_ids the API takes (real or virtual)")
    p.add_argument("--rate-limit", type=int, default=0,
                   help="API requests per appkey per second (0 = unlimited)")
    p.add_argument("--latency-ms", type=float, default=0)
    p.add_argument("--jitter-ms", type=float, default=0)
    p.add_argument("--token-interval", type=float, default=60,
                   help="minimum seconds between token issuances per appkey")
    p.add_argument("--token-ttl", type=float, default=86400, help="token lifetime, seconds")
    p.add_argument("--token-reuse", type=float, default=0,
                   help="seconds after a new token in which issuances hand it back (KIS: 6 h)")
    p.add_argument("--token-latency-ms", type=float, default=0,
                   help="milliseconds every tokenP request takes before it is decided")
    p.add_argument("--today", default="20251230",
                   help="the mock's today for every date-related answer (YYYYMMDD)")
    p.add_argument("--data-start", default=DATA_START,
                   help="the date of every symbol's first bar (YYYYMMDD)")
    p.add_argument("--holdings", type=int, default=120,
                   help="positions in every inquire-balance account")
    p.add_argument("--multprice-shape", choices=("array", "object"), default="array",
                   help="intstock-multprice output for a single symbol")
    p.add_argument("--multprice-signs", choices=("signed", "unsigned"), default="signed",
                   help="intstock-multprice change fields with or without their sign")
    p.add_argument("--overseas-session", choices=("open", "closed"), default="open",
                   help="closed: overseas price answers have an empty last for listed symbols")
    p.add_argument("--minute-session", default="0000-2359",
                   help="HHMM-HHMM: the first and last minute bar of the day (the default: "
                        "bars at any hour of the wall clock the client asks at)")
    p.add_argument("--investor-today", choices=("blank", "filled"), default="blank",
                   help="inquire-investor's row for today: blank flows, as before the close "
                        "(default), or filled")
    p.add_argument("--ws-port", type=int, default=None,
                   help="run the WebSocket listener on this port (0 picks a free one)")
    p.add_argument("--ws-port-file", help="write the WebSocket port here")
    for key, default in mock_ws.CONFIG_DEFAULTS.items():   # like /__mock/config
        p.add_argument("--" + key.replace("_", "-"), type=CONFIG_TYPES[key], default=default,
                       metavar=key.upper().removeprefix("WS_"))
    p.add_argument("--quiet", action="store_true", help="no startup line either")
    args = p.parse_args(argv)
    if bool(args.cert) != bool(args.key):
        p.error("--cert and --key go together")
    if args.ws_port_file and args.ws_port is None:
        p.error("--ws-port-file needs --ws-port")
    for key in ("today", "holdings", "data_start"):  # checked like /__mock/config
        try:
            CONFIG_TYPES[key](getattr(args, key))
        except ValueError as exc:
            p.error(f"--{key.replace('_', '-')}: {exc}")
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
    ws_server = None
    if args.ws_port is not None:
        ws_server = mock_ws.WsServer((args.host, args.ws_port), state.ws)
        threading.Thread(target=ws_server.serve_forever, kwargs={"poll_interval": 0.1},
                         name="ws-listener", daemon=True).start()
    written = [path for path in (args.pid_file, args.ws_port_file, args.port_file) if path]
    if args.pid_file:
        write_atomic(args.pid_file, str(os.getpid()))
    if args.ws_port_file:   # before --port-file: a waiter on that one finds both
        write_atomic(args.ws_port_file, str(ws_server.server_address[1]))
    if args.port_file:
        write_atomic(args.port_file, str(port))
    if not args.quiet:
        scheme = "https" if ssl_context else "http"
        print(f"mock_kis: listening on {scheme}://{args.host}:{port} (pid {os.getpid()})",
              file=sys.stderr, flush=True)
        if ws_server:
            print(f"mock_kis: WebSocket on ws://{args.host}:{ws_server.server_address[1]}",
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
        if ws_server:
            ws_server.shutdown()
            ws_server.server_close()
        state.ws.drop()
        for path in written:
            try:
                os.unlink(path)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
