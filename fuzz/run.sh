#!/usr/bin/env bash
# fuzz/run.sh [SECONDS [JOBS]]: run fuzz/kis_fuzz (built by `make fuzz-build`) for a
# bounded time over the seeds in fuzz/corpus/, keeping what it learns in
# fuzz/work/corpus/ and what it finds in fuzz/work/artifacts/ (crash-*, leak-*,
# timeout-*, oom-*) and fuzz/work/semantic-* (see fuzz/fuzz_kis.c).
# Exits non-zero when libFuzzer found a crash.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
jobs="${2:-1}"
[ -x ./kis_fuzz ] || { echo "fuzz/run.sh: build first: make fuzz-build" >&2; exit 2; }
mkdir -p work/corpus work/artifacts
cd work
args=(-dict=../kis.dict -max_total_time="$secs" -max_len=131072 -timeout=10
      -rss_limit_mb=2048 -artifact_prefix=artifacts/ -print_final_stats=1)
if [ "$jobs" -gt 1 ]; then
    args+=(-fork="$jobs" -ignore_crashes=1)   # keep going; every crash lands in artifacts/
fi
echo "fuzz/run.sh: ${secs}s, $jobs job(s), seeds $(ls ../corpus | wc -l), corpus $(ls corpus | wc -l)"
status=0
../kis_fuzz "${args[@]}" corpus ../corpus 2>&1 | tee last-run.log | grep -vE '^#[0-9]+.*(NEW|REDUCE|pulse)' || status=${PIPESTATUS[0]}
for f in artifacts/* semantic-*; do
    [ -e "$f" ] && echo "finding: fuzz/work/$f"
done
exit "$status"
