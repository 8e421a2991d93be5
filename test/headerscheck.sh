#!/bin/bash
#
# test/headerscheck.sh: the rules of src/'s headers, checked (make headerscheck;
# test/run-tests.sh runs it first).
#
#   - every src/*.h compiles alone after postgres.h, warning-free: it includes
#     what it needs, and nothing relies on what a .c file included before it
#     (the idea of PostgreSQL's src/tools/pginclude/headerscheck)
#   - no header includes postgres.h (the .c file includes it first)
#   - shmem_internal.h, the shared-memory layout of an app-key slot, and
#     live_internal.h, the live tables', are included only by the files that
#     own what they hold
#   - fetch.h, with everything it includes, knows nothing of tuples, plans
#     or the executor
#
# make headerscheck passes PGXS's CC, CPPFLAGS and CFLAGS (the build's own);
# run alone, it asks PG_CONFIG (default: pg_config).
set -euo pipefail

cd "$(dirname "$0")/.."
if [ -z "${CC:-}" ]; then
	PG_CONFIG=${PG_CONFIG:-pg_config}
	CC=$("$PG_CONFIG" --cc)
	CPPFLAGS="-Isrc -I$("$PG_CONFIG" --includedir-server) $("$PG_CONFIG" --cppflags)"
	CFLAGS="$("$PG_CONFIG" --cflags) -Wall -Wextra -Wno-unused-parameter"
fi
CHECK="$CC $CPPFLAGS -Isrc $CFLAGS -Werror -fsyntax-only"

# whoever owns an app-key slot's fields; fuzz/fuzz_kis.c checks auth.c's
# invariants on a slot of its own
PRIVATE_OWNERS="src/shmem.c src/limiter.c src/auth.c fuzz/fuzz_kis.c"

tmp=$(mktemp -d /tmp/kis_headerscheck.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0

for h in src/*.h; do
	name=$(basename "$h")
	printf '#include "postgres.h"\n#include "%s"\n' "$name" > "$tmp/check.c"
	if ! $CHECK "$tmp/check.c" -o /dev/null 2> "$tmp/err"; then
		echo "headerscheck: $h does not compile alone after postgres.h:" >&2
		cat "$tmp/err" >&2
		fail=1
	fi
	if grep -q '^#include "postgres.h"' "$h"; then
		echo "headerscheck: $h includes postgres.h (the .c file does, first)" >&2
		fail=1
	fi
done

# each private layout, with the files that may include it
check_private() {
	local header="$1" owners="$2" f
	for f in $(grep -l "#include \"$header\"" kis_fdw.c src/*.c src/*.h fuzz/*.c fuzz/*.h test/*.c 2>/dev/null); do
		case " $owners " in
			*" $f "*) ;;
			*)
				echo "headerscheck: $f includes $header; only $owners may" >&2
				fail=1
				;;
		esac
	done
}
check_private shmem_internal.h "$PRIVATE_OWNERS"
check_private live_internal.h "src/live.c src/worker.c src/live_sql.c"

# the include guards of PostgreSQL's tuple, plan, path and executor headers
# must stay undefined after postgres.h and fetch.h
{
	printf '#include "postgres.h"\n#include "fetch.h"\n'
	for guard in TUPTABLE_H TUPDESC_H HTUP_H PLANNODES_H PATHNODES_H EXECNODES_H \
		PRIMNODES_H EXECUTOR_H EXPLAIN_H EXPLAIN_STATE_H REL_H; do
		printf '#ifdef %s\n#error "fetch.h brings in %s"\n#endif\n' "$guard" "$guard"
	done
} > "$tmp/fetch.c"
if ! $CHECK "$tmp/fetch.c" -o /dev/null 2> "$tmp/err"; then
	echo "headerscheck: fetch.h must know nothing of tuples, plans or the executor:" >&2
	cat "$tmp/err" >&2
	fail=1
fi

if [ "$fail" = 0 ]; then
	echo "headerscheck: $(ls src/*.h | wc -l) headers ok"
fi
exit $fail
