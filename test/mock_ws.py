"""The KIS real-time WebSocket side of the mock KIS server (test/mock_kis.py).

Python 3 standard library only; the server side of RFC 6455 is written by hand here.
mock_kis.py creates one WsHub (hub(module, state)), passes it /oauth2/Approval and the
/__mock/ws/* control routes, and with --ws-port runs a WsServer on a second port. The
protocol as served (acks, codes, field values) is documented in mock_kis.py's docstring,
the mock's manual; keep the two in step.
"""

import base64
import hashlib
import json
import re
import socket
import socketserver
import sys
import threading
import time
import uuid

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEADER = 16 * 1024          # bytes of handshake request we read at most
MAX_MESSAGE = 1024 * 1024       # a client message over this is closed with 1009
SOCKET_TIMEOUT = 30.0           # a send blocked this long aborts the socket
PINGPONG_GRACE = 2.0            # ws_pingpong_strict: seconds to echo a PINGPONG
TICKER_PERIOD = 0.005           # seconds between passes of the background thread
MAX_RECORDS_PER_FRAME = 1000

# Field names of each supported TR, in the order KIS sends them (docs/live.md).
H0STCNT0_FIELDS = (
    "MKSC_SHRN_ISCD", "STCK_CNTG_HOUR", "STCK_PRPR", "PRDY_VRSS_SIGN", "PRDY_VRSS",
    "PRDY_CTRT", "WGHN_AVRG_STCK_PRC", "STCK_OPRC", "STCK_HGPR", "STCK_LWPR", "ASKP1",
    "BIDP1", "CNTG_VOL", "ACML_VOL", "ACML_TR_PBMN", "SELN_CNTG_CSNU", "SHNU_CNTG_CSNU",
    "NTBY_CNTG_CSNU", "CTTR", "SELN_CNTG_SMTN", "SHNU_CNTG_SMTN", "CCLD_DVSN", "SHNU_RATE",
    "PRDY_VOL_VRSS_ACML_VOL_RATE", "OPRC_HOUR", "OPRC_VRSS_PRPR_SIGN", "OPRC_VRSS_PRPR",
    "HGPR_HOUR", "HGPR_VRSS_PRPR_SIGN", "HGPR_VRSS_PRPR", "LWPR_HOUR",
    "LWPR_VRSS_PRPR_SIGN", "LWPR_VRSS_PRPR", "BSOP_DATE", "NEW_MKOP_CLS_CODE", "TRHT_YN",
    "ASKP_RSQN1", "BIDP_RSQN1", "TOTAL_ASKP_RSQN", "TOTAL_BIDP_RSQN", "VOL_TNRT",
    "PRDY_SMNS_HOUR_ACML_VOL", "PRDY_SMNS_HOUR_ACML_VOL_RATE", "HOUR_CLS_CODE",
    "MRKT_TRTM_CLS_CODE", "VI_STND_PRC")
H0STASP0_FIELDS = (
    ("MKSC_SHRN_ISCD", "BSOP_HOUR", "HOUR_CLS_CODE")
    + tuple(f"ASKP{k}" for k in range(1, 11)) + tuple(f"BIDP{k}" for k in range(1, 11))
    + tuple(f"ASKP_RSQN{k}" for k in range(1, 11))
    + tuple(f"BIDP_RSQN{k}" for k in range(1, 11))
    + ("TOTAL_ASKP_RSQN", "TOTAL_BIDP_RSQN", "OVTM_TOTAL_ASKP_RSQN", "OVTM_TOTAL_BIDP_RSQN",
       "ANTC_CNPR", "ANTC_CNQN", "ANTC_VOL", "ANTC_CNTG_VRSS", "ANTC_CNTG_VRSS_SIGN",
       "ANTC_CNTG_PRDY_CTRT", "ACML_VOL", "TOTAL_ASKP_RSQN_ICDC", "TOTAL_BIDP_RSQN_ICDC",
       "OVTM_TOTAL_ASKP_ICDC", "OVTM_TOTAL_BIDP_ICDC", "STCK_DEAL_CLS_CODE"))
HDFSCNT0_FIELDS = (
    "RSYM", "SYMB", "ZDIV", "TYMD", "XYMD", "XHMS", "KYMD", "KHMS", "OPEN", "HIGH", "LOW",
    "LAST", "SIGN", "DIFF", "RATE", "PBID", "PASK", "VBID", "VASK", "EVOL", "TVOL", "TAMT",
    "BIVL", "ASVL", "STRN", "MTYP")
TR_FIELDS = {"H0STCNT0": H0STCNT0_FIELDS, "H0STASP0": H0STASP0_FIELDS,
             "HDFSCNT0": HDFSCNT0_FIELDS}
assert [len(TR_FIELDS[tr]) for tr in ("H0STCNT0", "H0STASP0", "HDFSCNT0")] == [46, 59, 26]

# Ack codes: (rt_cd, msg1). OPSP* are KIS's (docs/live.md); MOCK* are this mock's own,
# for cases whose real answer is not documented.
ACKS = {
    "OPSP0000": ("0", "SUBSCRIBE SUCCESS"),
    "OPSP0001": ("0", "UNSUBSCRIBE SUCCESS"),
    "OPSP0002": ("1", "ALREADY IN SUBSCRIBE"),
    "OPSP0003": ("1", "UNSUBSCRIBE ERROR(not found!)"),
    "OPSP0008": ("1", "MAX SUBSCRIBE OVER"),
    "OPSP8996": ("1", "ALREADY IN USE appkey"),
    "MOCK0001": ("1", "INVALID approval_key (mock: not issued by /oauth2/Approval)"),
    "MOCK0002": ("1", "INVALID tr_id (mock supports H0STCNT0 H0STASP0 HDFSCNT0)"),
    "MOCK0003": ("1", "INVALID tr_type (mock: \"1\" subscribe, \"2\" unsubscribe)"),
    "MOCK0004": ("1", "INVALID request (mock: not a JSON subscribe message)"),
}


# --------------------------------------------------------------------------- config parsers

def _bool(value):
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _hhmmss(value):
    if not re.fullmatch(r"([01]\d|2[0-3])[0-5]\d[0-5]\d", str(value)):
        raise ValueError(f"not a HHMMSS time: {value!r}")
    return str(value)


def config_types(non_negative):
    """The ws_* config keys -> parser, merged into mock_kis.CONFIG_TYPES."""
    def ranged(kind, low, high):
        def parse(value):
            parsed = kind(value)
            if not low <= parsed <= high:
                raise ValueError(f"config value {parsed} is not in [{low}, {high}]")
            return parsed
        return parse
    return {"ws_first_tick": _bool, "ws_tick_rate": non_negative(float),
            "ws_records_per_frame": ranged(int, 1, MAX_RECORDS_PER_FRAME),
            "ws_max_subscriptions": non_negative(int), "ws_in_use": _bool,
            "ws_pingpong_s": non_negative(float), "ws_pingpong_strict": _bool,
            "ws_time": _hhmmss}


CONFIG_DEFAULTS = {"ws_first_tick": True, "ws_tick_rate": 0.0, "ws_records_per_frame": 1,
                   "ws_max_subscriptions": 41, "ws_in_use": False, "ws_pingpong_s": 0.0,
                   "ws_pingpong_strict": False, "ws_time": "090000"}


# --------------------------------------------------------------------------- framing

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def encode_frame(opcode, payload):
    """One unmasked, final server frame (7-, 16- or 64-bit length)."""
    n = len(payload)
    head = bytes((0x80 | opcode,))
    if n < 126:
        head += bytes((n,))
    elif n < 65536:
        head += bytes((126,)) + n.to_bytes(2, "big")
    else:
        head += bytes((127,)) + n.to_bytes(8, "big")
    return head + payload


def unmask(mask, data):
    n = len(data)
    if n == 0:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


class ProtocolError(Exception):
    """A client broke RFC 6455: close with this code."""

    def __init__(self, code, reason):
        super().__init__(reason)
        self.code = code


class PeerGone(Exception):
    """The TCP connection ended (EOF, reset, or we shut it down)."""


def accept_value(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


# --------------------------------------------------------------------------- records

def _clock(hhmmss, n):
    t = (int(hhmmss[:2]) * 3600 + int(hhmmss[2:4]) * 60 + int(hhmmss[4:]) + n) % 86400
    return f"{t // 3600:02d}{t % 3600 // 60:02d}{t % 60:02d}"


class Records:
    """Builds data records; m is the mock_kis module (its quote formulas)."""

    def __init__(self, m):
        self.m = m

    def start(self, tr_id, tr_key):
        """A fresh per-(tr_id, tr_key) tick state."""
        m = self.m
        if tr_id == "HDFSCNT0":
            symbol = tr_key[4:] if len(tr_key) > 4 else tr_key
            h0, h1, h2, h3 = m._words(symbol, 4)
            last = 1000 + h0 % 49000
            diff = min((h1 >> 8) % 2001 - 1000, last - 100)
            return {"n": 0, "symbol": symbol, "last": last, "base": last - diff, "h3": h3,
                    "tvol": h3 % 50_000_000, "tamt": 0, "bivl": 0, "asvl": 0}
        q = m.quote_numbers(tr_key, "J")
        asks, bids = m.book_sizes(tr_key)
        shares = 1_000_000 + q.h[5] % 1_000_000_000
        return {"n": 0, "q": q, "asks": asks, "bids": bids, "shares": shares,
                "acml": q.vol, "pbmn": q.vol * q.price, "seln_csnu": 0, "shnu_csnu": 0,
                "seln_smtn": 0, "shnu_smtn": 0}

    def record(self, tr_id, tr_key, st, price, clock0, today):
        """The next record (a list of field strings) of a tick state; advances it."""
        n = st["n"]
        st["n"] += 1
        clock = _clock(clock0, n)
        if tr_id == "H0STCNT0":
            return self._trade(tr_key, st, n, price, clock, today)
        if tr_id == "H0STASP0":
            return self._book(tr_key, st, n, price, clock)
        return self._overseas(tr_key, st, n, price, clock, today)

    def _trade(self, symbol, st, n, price, clock, today):
        m, q, s = self.m, st["q"], str
        tick = m._tick(q.price)
        p = price if price is not None else q.price + (n % 5) * tick
        vol = 10 * (1 + n % 10)
        buy = n % 2 == 0
        st["acml"] += vol
        st["pbmn"] += vol * p
        side = "shnu" if buy else "seln"
        st[side + "_csnu"] += 1
        st[side + "_smtn"] += vol
        high, low = max(q.high, p), min(q.low, p)
        acml, asks, bids = st["acml"], st["asks"], st["bids"]
        shnu, seln = st["shnu_smtn"], st["seln_smtn"]
        return [
            symbol, clock, s(p), m._sign(p - q.base), s(p - q.base), m._pct(p - q.base, q.base),
            f"{(q.high + q.low) // 2}.00", s(q.open), s(high), s(low), s(p + tick), s(p),
            s(vol), s(acml), s(st["pbmn"]), s(st["seln_csnu"]), s(st["shnu_csnu"]),
            s(st["shnu_csnu"] - st["seln_csnu"]), m._pct(shnu, max(1, seln)), s(seln),
            s(shnu), "1" if buy else "5", m._pct(shnu, shnu + seln),
            m._pct(acml, q.prev_vol), "090000", m._sign(p - q.open), s(p - q.open),
            "100000", m._sign(p - high), s(p - high), "110000", m._sign(p - low), s(p - low),
            today, "20", "N", s(asks[0]), s(bids[0]), s(sum(asks)), s(sum(bids)),
            m._pct(acml, st["shares"]), s(q.prev_vol), m._pct(acml, q.prev_vol), "0", "N",
            s(q.base)]

    def _book(self, symbol, st, n, price, clock):
        m, q, s = self.m, st["q"], str
        tick = m._tick(q.price)
        p = price if price is not None else q.price + (n % 5) * tick
        asks = [a + n % 10 for a in st["asks"]]
        bids = [b + n % 10 for b in st["bids"]]
        return ([symbol, clock, "0"]
                + [s(p + k * tick) for k in range(1, 11)]
                + [s(max(0, p - (k - 1) * tick)) for k in range(1, 11)]
                + [s(a) for a in asks] + [s(b) for b in bids]
                + [s(sum(asks)), s(sum(bids)), "0", "0", "0", "0", "0", "0", "3", "0.00",
                   s(q.vol + 100 * n), "0", "0", "0", "0", "0"])

    def _overseas(self, tr_key, st, n, price, clock, today):
        m = self.m
        d4 = m._decimal4
        last = price if price is not None else st["last"] + n % 5
        base = st["base"]
        diff = last - base
        evol = 1 + n % 10
        st["tvol"] += evol
        st["tamt"] += evol * last
        st["bivl" if n % 2 == 0 else "asvl"] += evol
        h3 = st["h3"]
        return [
            tr_key, st["symbol"], "4", today, today, clock, today, clock, d4(base),
            d4(max(base, st["last"] + 4, last)), d4(max(1, min(base, st["last"], last))),
            d4(last), m._sign(diff), d4(abs(diff)), m._pct(diff, base), d4(max(1, last - 1)),
            d4(last + 1), str(1 + h3 % 1000), str(1 + (h3 >> 12) % 1000), str(evol),
            str(st["tvol"]), str(st["tamt"] // 100), str(st["bivl"]), str(st["asvl"]),
            m._pct(st["bivl"], max(1, st["asvl"])), "1"]


def parse_price(tr_id, text):
    """A tick request's fixed "price": domestic whole won, overseas a decimal (hundredths)."""
    text = str(text)
    if tr_id == "HDFSCNT0":
        match = re.fullmatch(r"(\d+)(?:\.(\d{1,4}))?", text)
        if not match or (match.group(2) or "").rstrip("0")[2:]:
            raise ValueError(f"not a price with at most 2 decimals: {text!r}")
        return int(match.group(1)) * 100 + int(((match.group(2) or "") + "00")[:2])
    if not re.fullmatch(r"\d+", text):
        raise ValueError(f"not a whole price: {text!r}")
    return int(text)


# --------------------------------------------------------------------------- one socket

class WsConn:
    """One accepted WebSocket. subs: (tr_id, tr_key) -> the app key it was subscribed
    under; sends go under send_lock (lock order: send_lock, then the hub's lock)."""

    def __init__(self, sock, peer):
        self.sock = sock
        self.peer = peer
        self.send_lock = threading.Lock()
        self.subs = {}
        self.closed = False
        self.pingpong_due = None      # monotonic deadline of an unechoed PINGPONG (strict)
        self.last_pingpong = time.monotonic()
        self.rate = {}                # (tr_id, tr_key) -> [rate, start, records sent]

    def send(self, opcode, payload):
        """Send one frame; False (and the socket aborted) if it cannot go out."""
        with self.send_lock:
            return self._send_locked(opcode, payload)

    def _send_locked(self, opcode, payload):
        if self.closed:
            return False
        try:
            self.sock.sendall(encode_frame(opcode, payload))
            return True
        except OSError:
            self.abort()
            return False

    def abort(self):
        """Close the TCP connection now, without a close frame (the reader ends)."""
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


# --------------------------------------------------------------------------- the hub

class WsHub:
    """Approval keys, sockets, subscriptions, tick states and ws counters (one lock)."""

    def __init__(self, m, state):
        self.m = m
        self.state = state
        self.records = Records(m)
        self.lock = threading.Lock()
        self.approvals = {}     # (appkey, secretkey) -> approval key
        self.owners = {}        # approval key -> appkey
        self.conns = set()
        self.holders = {}       # appkey -> the WsConn holding its subscriptions
        self._clear()
        self.running = True
        threading.Thread(target=self._ticker, name="ws-ticker", daemon=True).start()

    def _clear(self):
        self.counters = dict.fromkeys(
            ("connections", "refused", "subscribe_requests", "unsubscribe_requests",
             "ticks_sent", "frames_sent", "pingpong_sent", "pingpong_echoed", "rfc_pings"), 0)
        self.acks = {}
        self.last_error = ""
        self.refusals = 0
        self.ticks = {}         # (tr_id, tr_key) -> tick state (Records.start)

    def cfg(self, key):
        return self.state.setting(key)

    def _error(self, text):
        with self.lock:
            self.last_error = text

    # ---- REST /oauth2/Approval

    def approve(self, appkey, secretkey):
        """The approval key of a credential: issued once, handed back on repeat asks.
        Returns (key, new)."""
        with self.lock:
            key = self.approvals.get((appkey, secretkey))
            if key is not None:
                return key, False
            key = str(uuid.uuid4())
            self.approvals[(appkey, secretkey)] = key
            self.owners[key] = appkey
            return key, True

    # ---- control

    def reset(self, forget_approvals):
        with self.lock:
            conns = list(self.conns)
            self.conns.clear()
            self.holders.clear()
            self._clear()
            if forget_approvals:
                self.approvals.clear()
                self.owners.clear()
        for conn in conns:
            conn.abort()

    def drop(self):
        """Abort every socket (TCP close, no close frame); KIS forgets their subscriptions."""
        with self.lock:
            conns = list(self.conns)
            self.conns.clear()
            self.holders.clear()
            for conn in conns:
                conn.subs.clear()
        for conn in conns:
            conn.abort()
        return len(conns)

    def refuse(self, times):
        with self.lock:
            self.refusals = times

    def pingpong_all(self):
        with self.lock:
            conns = list(self.conns)
        return sum(self._pingpong(conn) for conn in conns)

    def _pingpong(self, conn):
        now = time.time()
        text = json.dumps({"header": {"tr_id": "PINGPONG", "datetime": self._datetime(now)}},
                          separators=(",", ":"))
        conn.last_pingpong = time.monotonic()
        with conn.send_lock:
            if conn.pingpong_due is None:
                conn.pingpong_due = time.monotonic() + PINGPONG_GRACE
            if not conn._send_locked(OP_TEXT, text.encode()):
                return 0
        with self.lock:
            self.counters["pingpong_sent"] += 1
        return 1

    def _datetime(self, now):
        """YYYYMMDDHHMMSS: the mock's today and the wall clock's time of day in Korea."""
        return self.cfg("today") + time.strftime("%H%M%S", time.gmtime(now + 9 * 3600))

    def tick(self, tr_id, tr_key, count, price=None):
        """Send count records of (tr_id, tr_key) to every socket subscribing it now."""
        if tr_id not in TR_FIELDS:
            raise ValueError(f"tr_id must be one of {sorted(TR_FIELDS)}")
        if not isinstance(count, int) or count < 0:
            raise ValueError("count must be a non-negative integer")
        fixed = None if price is None else parse_price(tr_id, price)
        with self.lock:
            conns = [c for c in self.conns if (tr_id, tr_key) in c.subs]
        return sum(self.send_ticks(conn, tr_id, tr_key, count, fixed) for conn in conns)

    def send_ticks(self, conn, tr_id, tr_key, count, price=None):
        """Send count records to one socket, ws_records_per_frame to a frame; returns the
        records sent."""
        per_frame = self.cfg("ws_records_per_frame")
        clock0, today = self.cfg("ws_time"), self.cfg("today")
        sent = 0
        with conn.send_lock:
            while sent < count:
                k = min(per_frame, count - sent)
                with self.lock:
                    st = self.ticks.get((tr_id, tr_key))
                    if st is None:
                        st = self.ticks[(tr_id, tr_key)] = self.records.start(tr_id, tr_key)
                    recs = [self.records.record(tr_id, tr_key, st, price, clock0, today)
                            for _ in range(k)]
                text = f"0|{tr_id}|{k:03d}|" + "^".join("^".join(r) for r in recs)
                if not conn._send_locked(OP_TEXT, text.encode()):
                    break
                sent += k
                with self.lock:
                    self.counters["ticks_sent"] += k
                    self.counters["frames_sent"] += 1
        return sent

    # ---- stats

    def snapshot(self):
        with self.lock:
            per_key = {}
            subs = []
            for conn in self.conns:
                for (tr_id, tr_key), appkey in conn.subs.items():
                    subs.append(f"{tr_id}:{tr_key}")
                    per_key[appkey] = per_key.get(appkey, 0) + 1
            return dict(self.counters, open=len(self.conns), subscriptions=sorted(subs),
                        per_key=per_key, acks=dict(self.acks), last_error=self.last_error,
                        refusals_pending=self.refusals,
                        approval_keys=len(self.owners))

    # ---- a socket's life

    def serve(self, sock, peer):
        """Run one accepted TCP connection: handshake, then frames until it ends."""
        sock.settimeout(SOCKET_TIMEOUT)
        try:
            rest = self._handshake(sock)
        except (OSError, PeerGone):
            return
        if rest is None:
            return
        key, rest = rest
        conn = WsConn(sock, peer)
        try:
            # counted before the client sees the 101, which goes out before any frame
            with conn.send_lock:
                with self.lock:
                    self.counters["connections"] += 1
                    self.conns.add(conn)
                sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\n"
                              f"Sec-WebSocket-Accept: {accept_value(key)}\r\n\r\n").encode())
            self._read_loop(conn, rest)
        except ProtocolError as exc:
            self._error(f"{exc} (closed with {exc.code})")
            conn.send(OP_CLOSE, exc.code.to_bytes(2, "big") + str(exc).encode()[:100])
        except (OSError, PeerGone):
            pass
        finally:
            self._forget(conn)
            conn.abort()

    def _forget(self, conn):
        with self.lock:
            self.conns.discard(conn)
            for appkey, holder in list(self.holders.items()):
                if holder is conn:
                    del self.holders[appkey]
            conn.subs.clear()

    def _handshake(self, sock):
        """Read the HTTP upgrade request; (its Sec-WebSocket-Key, the bytes read past
        it), or None when the handshake was refused (and answered)."""
        data = b""
        while b"\r\n\r\n" not in data:
            if len(data) > MAX_HEADER:
                return self._http_refuse(sock, 400, "request header too large")
            chunk = sock.recv(4096)
            if not chunk:
                raise PeerGone()
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method = lines[0].split(" ")[0]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        key = headers.get("sec-websocket-key", "")
        if (method != "GET" or headers.get("upgrade", "").lower() != "websocket"
                or "upgrade" not in headers.get("connection", "").lower()
                or headers.get("sec-websocket-version") != "13" or not key):
            return self._http_refuse(sock, 400, "not a WebSocket version 13 upgrade request")
        with self.lock:
            refuse = self.refusals > 0
            if refuse:
                self.refusals -= 1
                self.counters["refused"] += 1
        if refuse:
            return self._http_refuse(sock, 503, "refused (mock: /__mock/ws/refuse)",
                                     counted=True)
        return key, rest

    def _http_refuse(self, sock, status, reason, counted=False):
        if not counted:
            self._error(f"handshake: {reason}")
        text = {400: "Bad Request", 503: "Service Unavailable"}[status]
        body = reason.encode()
        sock.sendall(f"HTTP/1.1 {status} {text}\r\nContent-Type: text/plain\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        return None

    def _read_loop(self, conn, buf):
        buf = bytearray(buf)
        message, message_op = None, None
        while True:
            fin, opcode, payload = self._read_frame(conn, buf)
            if opcode >= 8:
                if not fin or len(payload) > 125:
                    raise ProtocolError(1002, "fragmented or long control frame")
                if opcode == OP_CLOSE:
                    code = payload[:2] if len(payload) >= 2 else (1000).to_bytes(2, "big")
                    conn.send(OP_CLOSE, code)
                    return
                if opcode == OP_PING:
                    with self.lock:
                        self.counters["rfc_pings"] += 1
                    conn.send(OP_PONG, payload)
                elif opcode != OP_PONG:
                    raise ProtocolError(1002, f"unknown control opcode {opcode}")
                continue
            if opcode == OP_CONT:
                if message is None:
                    raise ProtocolError(1002, "continuation frame without a message")
                message += payload
            elif opcode in (OP_TEXT, OP_BINARY):
                if message is not None:
                    raise ProtocolError(1002, "new message inside a fragmented one")
                message, message_op = bytearray(payload), opcode
            else:
                raise ProtocolError(1002, f"unknown opcode {opcode}")
            if len(message) > MAX_MESSAGE:
                raise ProtocolError(1009, "message too big")
            if fin:
                data, op = bytes(message), message_op
                message = message_op = None
                if op == OP_BINARY:
                    self._error("binary message ignored")
                    continue
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    raise ProtocolError(1007, "text message not UTF-8") from None
                self._message(conn, text)

    @staticmethod
    def _fill(conn, buf, n):
        while len(buf) < n:
            try:
                chunk = conn.sock.recv(65536)
            except socket.timeout:
                if conn.closed:
                    raise PeerGone() from None
                continue
            if not chunk:
                raise PeerGone()
            buf += chunk

    def _read_frame(self, conn, buf):
        self._fill(conn, buf, 2)
        b0, b1 = buf[0], buf[1]
        if b0 & 0x70:
            raise ProtocolError(1002, "reserved bits set")
        if not b1 & 0x80:
            raise ProtocolError(1002, "unmasked frame from client")
        n, at = b1 & 0x7F, 2
        if n == 126:
            self._fill(conn, buf, 4)
            n, at = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            self._fill(conn, buf, 10)
            n, at = int.from_bytes(buf[2:10], "big"), 10
        if n > MAX_MESSAGE:
            raise ProtocolError(1009, "frame too big")
        self._fill(conn, buf, at + 4 + n)
        mask = bytes(buf[at:at + 4])
        payload = unmask(mask, bytes(buf[at + 4:at + 4 + n]))
        del buf[:at + 4 + n]
        return bool(b0 & 0x80), b0 & 0x0F, payload

    # ---- messages

    def _message(self, conn, text):
        try:
            msg = json.loads(text)
            header = msg["header"]
            if header.get("tr_id") == "PINGPONG" and "body" not in msg:
                with conn.send_lock:
                    conn.pingpong_due = None
                with self.lock:
                    self.counters["pingpong_echoed"] += 1
                return
            body_input = msg["body"]["input"]
            tr_id, tr_key = str(body_input["tr_id"]), str(body_input["tr_key"])
        except (ValueError, KeyError, TypeError, AttributeError):
            self._ack(conn, "", "", "MOCK0004")
            return
        code = self._subscribe(conn, header, tr_id, tr_key)
        self._ack(conn, tr_id, tr_key, code)
        if code == "OPSP0000" and self.cfg("ws_first_tick"):
            self.send_ticks(conn, tr_id, tr_key, 1)

    def _subscribe(self, conn, header, tr_id, tr_key):
        """Apply a subscribe / unsubscribe request; its ack code."""
        tr_type = header.get("tr_type")
        in_use = self.cfg("ws_in_use")
        limit = self.cfg("ws_max_subscriptions")
        with self.lock:
            if tr_type == "1":
                self.counters["subscribe_requests"] += 1
            elif tr_type == "2":
                self.counters["unsubscribe_requests"] += 1
            appkey = self.owners.get(header.get("approval_key"))
            if appkey is None:
                return "MOCK0001"
            if tr_type not in ("1", "2"):
                return "MOCK0003"
            if tr_id not in TR_FIELDS:
                return "MOCK0002"
            holder = self.holders.get(appkey)
            if (tr_type == "1" and in_use) or (holder is not None and holder is not conn):
                return "OPSP8996"
            sub = (tr_id, tr_key)
            if tr_type == "2":
                if conn.subs.get(sub) != appkey:
                    return "OPSP0003"
                del conn.subs[sub]
                conn.rate.pop(sub, None)
                return "OPSP0001"
            if sub in conn.subs:
                return "OPSP0002"
            if sum(1 for k in conn.subs.values() if k == appkey) >= limit:
                return "OPSP0008"
            conn.subs[sub] = appkey
            self.holders[appkey] = conn
            return "OPSP0000"

    def _ack(self, conn, tr_id, tr_key, code):
        rt_cd, msg1 = ACKS[code]
        body = {"rt_cd": rt_cd, "msg_cd": code, "msg1": msg1}
        if rt_cd == "0":
            seed = hashlib.sha256(f"{tr_id}:{tr_key}".encode()).hexdigest()
            body["output"] = {"iv": seed[:16], "key": seed[16:48]}
        with self.lock:
            self.acks[code] = self.acks.get(code, 0) + 1
            if rt_cd != "0":
                self.last_error = f"{code} {msg1} ({tr_id}:{tr_key})"
        conn.send(OP_TEXT, json.dumps(
            {"header": {"tr_id": tr_id, "tr_key": tr_key, "encrypt": "N"}, "body": body},
            separators=(",", ":")).encode())

    # ---- the background thread: ws_tick_rate, ws_pingpong_s, ws_pingpong_strict

    def _ticker(self):
        while self.running:
            time.sleep(TICKER_PERIOD)
            try:
                self._tick_pass()
            except Exception as exc:   # keep ticking; say what went wrong
                self._error(f"ticker: {exc!r}")
                print(f"mock_ws: ticker: {exc!r}", file=sys.stderr, flush=True)

    def _tick_pass(self):
        rate = self.cfg("ws_tick_rate")
        every, strict = self.cfg("ws_pingpong_s"), self.cfg("ws_pingpong_strict")
        now = time.monotonic()
        with self.lock:
            conns = list(self.conns)
            work = [(conn, list(conn.subs)) for conn in conns]
        for conn, subs in work:
            if strict and conn.pingpong_due is not None and now > conn.pingpong_due:
                self._error(f"PINGPONG not echoed within {PINGPONG_GRACE:g} s: "
                            "socket closed (ws_pingpong_strict)")
                with self.lock:
                    self.conns.discard(conn)
                conn.abort()
                continue
            if every > 0 and now - conn.last_pingpong >= every:
                self._pingpong(conn)
            if rate <= 0:
                conn.rate.clear()
                continue
            for sub in subs:
                slot = conn.rate.get(sub)
                if slot is None or slot[0] != rate:
                    slot = conn.rate[sub] = [rate, now, 0]
                owed = int((now - slot[1]) * rate) - slot[2]
                if owed > 0:   # in frames of up to ws_records_per_frame records
                    slot[2] += self.send_ticks(conn, sub[0], sub[1], owed)


# --------------------------------------------------------------------------- the listener

class WsServer(socketserver.ThreadingTCPServer):
    """The WebSocket port: one thread per socket."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, hub):
        self.hub = hub
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, WsHandler)

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class WsHandler(socketserver.BaseRequestHandler):
    def handle(self):
        self.server.hub.serve(self.request, self.client_address)
