"""Shared helpers of kis_fdw's Python test and benchmark programs.

The behaviour tests (test/behaviour/), test/soak.py and bench/bench.py all
drive long-lived psql processes (one backend each) and the mock KIS server's
control API; this module holds the one implementation of both.  Python 3
standard library only.

    mock(path, body=None)      GET or POST (JSON) the mock's control API
    mock_price(symbol, market) stck_prpr by the mock's formula (test/mock_kis.py)
    PsqlPipe(db, ...)          one psql fed through a pipe: send(sql) -> marker,
                               collect(stream, marker) -> ([(time, line)], eof)

The mock's URL and CA and the cluster's socket come from the environment that
test/run-tests.sh and bench/run.sh export: KIS_MOCK_URL, KIS_MOCK_CA,
PGHOST/KIS_PGHOST, PGPORT/KIS_PGPORT.
"""

import hashlib
import json
import os
import queue
import shutil
import ssl
import subprocess
import threading
import time
import urllib.request

PSQL = (os.path.join(os.environ["KIS_PGBIN"], "psql") if os.environ.get("KIS_PGBIN")
        else shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql")


def pg_host():
    return os.environ.get("PGHOST") or os.environ["KIS_PGHOST"]


def pg_port():
    return os.environ.get("PGPORT") or os.environ["KIS_PGPORT"]


_ssl = None


def mock(path, body=None, timeout=10):
    """GET (body None) or POST a JSON body to the mock's control API; the JSON answer."""
    global _ssl
    if _ssl is None:
        _ssl = ssl.create_default_context(cafile=os.environ["KIS_MOCK_CA"])
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(os.environ["KIS_MOCK_URL"] + path, data=data,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=_ssl, timeout=timeout) as resp:
        return json.loads(resp.read())


def mock_price(symbol, market="J"):
    """stck_prpr (and inter2_prpr) from the mock's formula (test/mock_kis.py docstring)."""
    h0 = int(hashlib.sha256(symbol.encode()).hexdigest()[0:8], 16)
    return (1000 + h0 % 99000) // 10 * 10 + {"J": 0, "NX": 10, "UN": 5}[market]


class PsqlPipe:
    """One long-lived psql (one backend) fed statements through a pipe.

    send() writes the statements followed by a marker echoed to stdout and to
    stderr; collect() reads one stream up to that marker.  Lines carry the
    time.perf_counter() at which they were read."""

    _markers = 0

    def __init__(self, db, extra_args=(), wait=120):
        self.wait = wait
        self.proc = subprocess.Popen(
            [PSQL, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=0", *extra_args,
             "-h", pg_host(), "-p", pg_port(), "-U", "postgres", "-d", db],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, bufsize=1)
        self.out, self.err = queue.Queue(), queue.Queue()
        for stream, q in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._reader, args=(stream, q), daemon=True).start()

    @staticmethod
    def _reader(stream, q):
        for line in stream:
            q.put((time.perf_counter(), line.rstrip("\n")))
        q.put((time.perf_counter(), None))  # EOF: psql exited

    def send(self, sql):
        """Write sql (statements, ';' added where missing); the marker ending its output."""
        PsqlPipe._markers += 1
        marker = f"@@kis-marker-{PsqlPipe._markers}@@"
        sql = sql.strip()
        if not sql.startswith("\\") and not sql.endswith(";"):
            sql += ";"
        try:
            self.proc.stdin.write(f"{sql}\n\\echo {marker}\n\\warn {marker}\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # psql is gone: collect() reports EOF
        return marker

    def collect(self, q, marker):
        """([(time, line)] of one stream up to marker, eof); TimeoutError if psql hangs."""
        lines = []
        deadline = time.monotonic() + self.wait
        while True:
            try:
                t, line = q.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"psql gave no answer within {self.wait}s; "
                                   f"last lines {[l for _, l in lines[-5:]]}")
            if line is None:
                q.put((t, None))  # stay at EOF for later callers
                return lines, True
            if line == marker:
                return lines, False
            lines.append((t, line))

    @property
    def alive(self):
        return self.proc.poll() is None

    def close(self):
        if self.alive:
            try:
                self.proc.stdin.write("\\q\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
