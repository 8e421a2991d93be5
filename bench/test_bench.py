#!/usr/bin/env python3
"""bench/test_bench.py: bench.py's own plumbing, without PostgreSQL or the mock.

    python3 bench/test_bench.py        (bench/run.sh runs it before measuring)

Checks that every scenario hands back its figures (scenario_two_keys once returned
nothing and every full run ended in a traceback), that a step that fails or leaves a
figure out becomes that step's row while the other steps keep theirs, and that such a
run exits non-zero after writing its table.  Standard library only.
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402

CANCEL = {"reps": 3, "p50_ms": 4.0, "p95_ms": 6.0, "max_ms": 6.5, "min_ms": 3.0,
          "latencies_ms": [3.0, 4.0, 6.5], "control_rtt_ms_median": 1.0, "requests_sent": 40,
          "rows_before_cancel": [0, 0, 0], "met": True}


class Patched:
    """Replace module attributes of bench for the duration of a with block."""

    def __init__(self, **attrs):
        self.attrs, self.saved = attrs, {}

    def __enter__(self):
        for name, value in self.attrs.items():
            self.saved[name] = getattr(bench, name)
            setattr(bench, name, value)

    def __exit__(self, *exc):
        for name, value in self.saved.items():
            setattr(bench, name, value)


class BenchPlumbing(unittest.TestCase):

    def test_two_keys_returns_its_figures(self):
        """scenario_two_keys, fed a plan and the mock's counters, returns them."""
        per_key = 5
        plan = [{"Execution Time": 500.0,
                 "Plan": {"Actual Rows": 2 * per_key, "Async Capable": True}}]
        timeline = [i * 0.05 for i in range(2 * per_key)]

        def psql(sql, db=bench.DB, check=True):
            return [json.dumps(plan)] if sql.startswith("EXPLAIN") else []

        stats = {"requests": 2 * per_key, "violations": 0, "max_in_flight": 4,
                 "timeline": timeline}
        with Patched(two_keys_tables=lambda: None, mock_setup=lambda **kw: None,
                     warm_token=lambda table, first: None, psql=psql,
                     fdw_key_stats=lambda name: {"requests": per_key},
                     mock_stats=lambda timeline=False: dict(stats)):
            r = bench.scenario_two_keys("union", 500000, per_key)
        self.assertIsInstance(r, dict)
        self.assertEqual((r["symbols"], r["rows"], r["requests"]), (10, 10, 10))
        self.assertIn("met", r)
        row = bench.table_rows({"two-keys-union": r})[0]
        self.assertNotIn("FAILED", row[2])
        self.assertIn("2 × 5 symbols", row[1])

    def test_floor_beside_overhead(self):
        """floor_costs runs BENCH_FLOOR per mode and repetition on symbols of its own and
        keeps the median; the overhead row shows it, and does without it."""
        calls = []
        with tempfile.TemporaryDirectory() as d:
            fake = os.path.join(d, "floor")
            log = os.path.join(d, "log")
            with open(fake, "w") as f:
                f.write(f"#!/bin/sh\necho \"$1 $2 $3\" >> {log}\n"
                        "case $1 in curl) echo 80.0;; *) echo 21.5;; esac\n")
            os.chmod(fake, 0o755)
            saved = os.environ.get("BENCH_FLOOR")
            os.environ["BENCH_FLOOR"] = fake
            try:
                with Patched(mock_setup=lambda **kw: calls.append("setup"),
                             mock_stats=lambda timeline=False: {"requests": 100}):
                    fl = bench.floor_costs(230000, 100, 3)
            finally:
                if saved is None:
                    del os.environ["BENCH_FLOOR"]
                else:
                    os.environ["BENCH_FLOOR"] = saved
            with open(log) as f:
                runs = f.read().split("\n")[:-1]
        self.assertEqual((fl["curl"], fl["tls"]), (80.0, 21.5))
        self.assertEqual(len(calls), 6)
        starts = [int(r.split()[2]) for r in runs]
        self.assertEqual(sorted(starts), [230000 + k * 100 for k in range(6)])
        ov = {"cpu_us_per_request": 160.0, "reps": 3, "cpu_us_per_row_all": [1.0, 2.0, 3.0],
              "rows_per_s": 2000.0, "backend_cpu_share": 0.3, "mock_cpu_share": 0.9,
              "met": False}
        plain = bench.table_rows({"overhead": ov})[0][2]
        self.assertNotIn("libcurl", plain)
        row = bench.table_rows({"overhead": dict(ov, floor=fl)})[0][2]
        self.assertIn("libcurl alone 80 µs, one bare TLS connection 22 µs", row)
        self.assertIn("kis_fdw 2.0× libcurl alone", row)

    def test_failed_step_is_its_row(self):
        """An exception, a missing result and a missing figure each fail only their own
        step; the others keep their figures."""
        def broken():
            raise RuntimeError("psql failed: the server went away")

        steps = [("rate-bound", broken), ("latency-bound", lambda: {"time_s": 1.0}),
                 ("cancel", lambda: dict(CANCEL)), ("two-keys-union", lambda: None)]
        only = os.environ.pop("BENCH_ONLY", None)  # every step of this STEPS runs
        try:
            with Patched(STEPS=steps, setup_database=lambda: None,
                         psql=lambda sql, db=bench.DB, check=True: ["1"]):
                R = bench.measure()
                rows = {row[0]: row for row in bench.table_rows(R)}
        finally:
            if only is not None:
                os.environ["BENCH_ONLY"] = only
        self.assertEqual(R["rate-bound"], {"failed": "RuntimeError: psql failed: the server went away"})
        self.assertIn("not its figures", R["two-keys-union"]["failed"])
        self.assertIn("**FAILED**: RuntimeError", rows["rate-bound"][2])
        self.assertIn("a figure is missing", rows["latency-bound"][2])
        self.assertIn("**FAILED**", rows["two-keys-union"][2])
        self.assertEqual(rows["cancel"][2], "p50 4.0 ms, p95 6.0 ms, max 6.5 ms")

    def test_failed_run_exits_non_zero(self):
        """A run with a failed step writes its table, then exits 1 (a CI failure)."""
        meta = {"date": "2026-12-06T00:00:00+00:00", "machine": "test", "postgres": "15",
                "suite_wall_s": 1.0, "sizes": bench.QUICK_SIZES, "quick": True}
        with tempfile.TemporaryDirectory() as out:
            for scenarios, code in (({"cancel": CANCEL}, 0),
                                    ({"cancel": CANCEL, "latency-bound": {"failed": "boom"}}, 1)):
                with open(os.path.join(out, "results.json"), "w") as f:
                    json.dump({"meta": meta, "scenarios": scenarios}, f)
                p = subprocess.run([sys.executable, os.path.join(HERE, "bench.py"), out, "--replot"],
                                   capture_output=True, text=True, timeout=60)
                self.assertEqual(p.returncode, code, p.stderr)
                with open(os.path.join(out, "results.md")) as f:
                    table = f.read()
                self.assertIn("p50 4.0 ms", table)
                self.assertIn("QUICK mode", table)
                self.assertEqual("**FAILED**: boom" in table, code == 1, table)


if __name__ == "__main__":
    unittest.main()
