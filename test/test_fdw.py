#!/usr/bin/env python3
"""Behaviour tests for kis_fdw, observed through the mock KIS server's counters: the runner.

test/run-tests.sh starts the mock (test/mock_kis.py, over TLS) and a throwaway
PostgreSQL cluster, then runs this file with KIS_WORK, KIS_MOCK_URL,
KIS_MOCK_CA, PGHOST/PGPORT/PGUSER in the environment.  Python 3 standard
library only.

The tests are the functions named test_* in test/behaviour/*.py, one file per
area (harness.py and fixtures.py hold the helpers and no tests); they run file
by file in sorted order, each file's in the order they are defined.  The order
matters in two ways, and the files' names keep it: a key KIS issued a token to
keeps one of the cluster's kis_fdw.max_app_keys (16) slots for
kis_fdw.token_issue_interval, so tests that need a slot for a new key must not
run within a minute after those that use up slots (auth.py runs before gate.py
and security.py); and a test that counts a key's requests must not be the first
to use that key after a test made the mock forget its tokens (append.py).  With
arguments (run-tests.sh passes KIS_BEHAVIOUR), only the tests of those names run,
a name being the function's without "test_"; a name that is no test is an error.
A test marked @known_gap reproduces a known, still open gap: it fails today, so
it runs only when named, and is not counted otherwise.

Prints "ok NAME", "FAIL NAME: reason" or "skipped NAME: why" per test, then "N passed, M failed"
(", K skipped" after it when a test could not run here);
exits 1 if any test failed, 2 if an argument names no test.  Run as root (reads
/proc/<backend>/fd and the server log).
"""

import importlib
import os
import sys
import traceback

from behaviour.harness import Skipped, run_one, setup_database

AREAS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "behaviour")


def discover():
    """Every test_* function of test/behaviour/*.py: files in sorted order, each
    file's tests in the order they are defined."""
    tests = []
    for file in sorted(os.listdir(AREAS)):
        if not file.endswith(".py") or file.startswith("_"):
            continue
        module = importlib.import_module("behaviour." + file[:-3])
        found = [f for name, f in vars(module).items()
                 if name.startswith("test_") and callable(f) and f.__module__ == module.__name__]
        tests += sorted(found, key=lambda f: f.__code__.co_firstlineno)
    return tests


def main():
    only = sys.argv[1:]
    tests = discover()
    names = [test.__name__[len("test_"):] for test in tests]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        print(f"behaviour tests defined twice: {' '.join(twice)}", file=sys.stderr)
        return 2
    unknown = [n for n in only if n not in names]
    if unknown:
        print(f"no behaviour test named: {' '.join(unknown)} (a name is a test_* function's "
              f"in test/behaviour/*.py, without test_)", file=sys.stderr)
        return 2
    setup_database()
    passed = failed = skipped = 0
    for test, name in zip(tests, names):
        if (name not in only) if only else getattr(test, "known_gap", False):
            continue
        try:
            run_one(test)
        except Skipped as why:
            skipped += 1
            print(f"skipped {name}: {why}", flush=True)
        except Exception as exc:  # AssertionError and anything unexpected alike
            failed += 1
            reason = str(exc) if isinstance(exc, AssertionError) else traceback.format_exc()
            print(f"FAIL {name}: {reason}", flush=True)
        else:
            passed += 1
            print(f"ok {name}", flush=True)
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
