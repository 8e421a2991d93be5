#!/usr/bin/env python3
"""bench/seed_pattern.py: the seed's Python client pattern, re-implemented for comparison.

kis_fdw replaces a pattern that quants write by hand (the client the project started
from): a ThreadPoolExecutor fed in batches of 5 symbols, each batch
submitted at once and then collected in submit order (future.result() one after the other),
a 200 ms pause between batches, a separate 12-calls-per-second sliding-window rate limiter
that the batch's threads race on, and no error handling: the first exception aborts the
whole list.  This file does exactly that with the Python 3 standard library, against any
KIS-compatible server (here the mock, test/mock_kis.py):

  * one access token per run from POST /oauth2/tokenP (not timed, as in the seed, whose
    constructor issues it);
  * GET inquire-price with the real headers: authorization "Bearer <token>", appkey,
    appsecret, tr_id FHKST01010100, custtype P;
  * a new HTTPS connection per request, as the seed's bare requests.get() calls do;
  * an answer that is not HTTP 200 with rt_cd "0" raises, and the first exception (in
    collection order) aborts the run.

    python3 bench/seed_pattern.py --url https://127.0.0.1:PORT --ca ca.pem \\
        --app-key PSseed... --app-secret s --symbols 200 [--first 300000]

Prints one JSON object: elapsed_s (from the first submit to the last result, or to the
abort), requests sent, rows received, aborted and the error if any.
"""

import argparse
import collections
import json
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

QUOTE_PATH = "/uapi/domestic-stock/v1/quotations/inquire-price"
QUOTE_TR_ID = "FHKST01010100"


class KisError(Exception):
    """An answer other than HTTP 200 with rt_cd "0"."""


class SlidingWindowLimiter:
    """The seed's limiter: at most max_calls starts in any window of per_seconds.

    Every caller takes the lock, drops call times older than the window and, if the
    window is full, sleeps until its oldest call leaves it, then tries again."""

    def __init__(self, max_calls=12, per_seconds=1.0):
        self.max_calls = max_calls
        self.per_seconds = per_seconds
        self.calls = collections.deque()
        self.lock = threading.Lock()

    def acquire(self):
        while True:
            with self.lock:
                now = time.monotonic()
                while self.calls and self.calls[0] <= now - self.per_seconds:
                    self.calls.popleft()
                if len(self.calls) < self.max_calls:
                    self.calls.append(now)
                    return
                wait = self.calls[0] + self.per_seconds - now
            time.sleep(max(wait, 0.001))


class SeedClient:
    """KoreaInvestment as the seed wrote it: token in the constructor, one fetch per symbol."""

    def __init__(self, base_url, ca_file, app_key, app_secret, limiter,
                 max_workers=20, batch_size=5, batch_pause=0.2):
        self.base_url = base_url.rstrip("/")
        self.ssl = ssl.create_default_context(cafile=ca_file)
        self.app_key, self.app_secret = app_key, app_secret
        self.limiter = limiter
        self.executor = ThreadPoolExecutor(max_workers=max_workers)
        self.batch_size, self.batch_pause = batch_size, batch_pause
        self.requests = 0
        self.access_token = self._issue_token()

    def _issue_token(self):
        body = json.dumps({"grant_type": "client_credentials", "appkey": self.app_key,
                           "appsecret": self.app_secret}).encode()
        req = urllib.request.Request(self.base_url + "/oauth2/tokenP", data=body, method="POST",
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, context=self.ssl, timeout=30) as resp:
            return json.loads(resp.read())["access_token"]

    def fetch_domestic_price(self, symbol, market="J"):
        """One inquire-price call (after the limiter), as the seed's fetch_domestic_price."""
        self.limiter.acquire()
        query = urllib.parse.urlencode({"fid_cond_mrkt_div_code": market,
                                        "fid_input_iscd": symbol})
        req = urllib.request.Request(
            f"{self.base_url}{QUOTE_PATH}?{query}",
            headers={"content-type": "application/json; charset=utf-8",
                     "authorization": f"Bearer {self.access_token}",
                     "appkey": self.app_key, "appsecret": self.app_secret,
                     "tr_id": QUOTE_TR_ID, "custtype": "P"})
        self.requests += 1  # an int increment under the GIL: good enough for a count
        try:
            with urllib.request.urlopen(req, context=self.ssl, timeout=30) as resp:
                answer = json.loads(resp.read())
        except urllib.error.HTTPError as e:
            raise KisError(f"{symbol}: HTTP {e.code} {e.read()[:200]!r}") from None
        if answer.get("rt_cd") != "0":
            raise KisError(f"{symbol}: {answer.get('msg_cd')} {answer.get('msg1')}")
        return answer["output"]

    def fetch_price_list(self, symbols):
        """The seed's __execute_concurrent_requests: batches of 5, collected in order."""
        results = []
        for i in range(0, len(symbols), self.batch_size):
            futures = [self.executor.submit(self.fetch_domestic_price, s)
                       for s in symbols[i:i + self.batch_size]]
            results.extend(f.result() for f in futures)  # the first exception aborts all
            if i + self.batch_size < len(symbols):
                time.sleep(self.batch_pause)
        return results

    def shutdown(self):
        self.executor.shutdown(wait=True, cancel_futures=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--app-key", required=True)
    ap.add_argument("--app-secret", default="seed-secret")
    ap.add_argument("--symbols", type=int, default=200, help="how many symbols to fetch")
    ap.add_argument("--first", type=int, default=300000, help="the first 6-digit code")
    ap.add_argument("--workers", type=int, default=20,
                    help="pool threads (the seed's 20; any >= --batch behaves the same)")
    ap.add_argument("--batch", type=int, default=5)
    ap.add_argument("--pause", type=float, default=0.2, help="seconds between batches")
    ap.add_argument("--limit", type=int, default=12, help="calls per sliding second")
    args = ap.parse_args(argv)

    symbols = [f"{args.first + i:06d}" for i in range(args.symbols)]
    client = SeedClient(args.url, args.ca, args.app_key, args.app_secret,
                        SlidingWindowLimiter(args.limit, 1.0), args.workers,
                        args.batch, args.pause)
    out = {"symbols": len(symbols), "aborted": False, "error": None, "rows": 0}
    t0 = time.monotonic()
    try:
        out["rows"] = len(client.fetch_price_list(symbols))
    except Exception as e:  # the seed has no handling: the list is lost
        out["aborted"], out["error"] = True, f"{type(e).__name__}: {e}"
    out["elapsed_s"] = round(time.monotonic() - t0, 4)
    client.shutdown()
    out["requests"] = client.requests
    json.dump(out, sys.stdout)
    print()
    return 1 if out["aborted"] else 0


if __name__ == "__main__":
    sys.exit(main())
