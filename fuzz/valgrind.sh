#!/usr/bin/env bash
# fuzz/valgrind.sh: the pg_regress suite (test/schedule) once against a throwaway cluster
# whose postmaster, and so every backend (forked, not exec'ed), runs under valgrind
# memcheck; then every memcheck error whose stack passes through kis_fdw.so, every block
# definitely lost (at a process's exit) that kis_fdw allocated, directly or through libcurl,
# OpenSSL or jansson, and every descriptor still open at a backend's exit that kis_fdw or
# libcurl opened, is reported.  Those descriptors are the backend's pooled connections, its
# multi handle's socket pair and its wait set, kept for the backend's life by design: they
# are listed, not failed (test/soak.py's descriptor check is the verdict on fd leaks).
#
#   bash fuzz/valgrind.sh            (as root, like test/run-tests.sh; takes minutes)
#
# After pg_regress it also runs test/soak.py (VALGRIND_SOAK_SCANS scans, default 1000;
# 0 skips it) in the same cluster, for the fault, cancel and paging paths.
#
# It exits 1 when a memcheck error or a lost block was found, or when pg_regress or the
# soak's rows failed (the soak's growth checks are skipped: under valgrind they mean
# nothing).  Valgrind's own exit code stays 0 in every backend, or the postmaster would
# take an error for a crash.
#
# Debian's postgres is not built with USE_VALGRIND, so memcheck sees palloc chunks only
# as parts of AllocSet blocks: reads past a small chunk inside its block are invisible,
# uninitialised bytes, bad reads/writes of malloc'd memory (libcurl, OpenSSL, jansson
# outside palloc, large chunks) and descriptor leaks are not.  The logs stay in
# $KIS_WORK/valgrind/ (printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="$PWD"

make -s
make -s install >/dev/null

source test/lib.sh
kis_workdir
VG_DIR="$KIS_WORK/valgrind"
mkdir -p "$VG_DIR"
chown postgres: "$VG_DIR"
cp fuzz/valgrind.supp "$KIS_WORK/valgrind.supp"
chmod 644 "$KIS_WORK/valgrind.supp"

vg_stop() {
    if [ -f "$KIS_WORK/data/postmaster.pid" ]; then
        kis_as_postgres "$KIS_PGBIN/pg_ctl" -D "$KIS_WORK/data" -m fast -w -t 600 stop >/dev/null 2>&1 || true
    fi
}
cleanup() {
    vg_stop
    kis_stop_all
}
trap cleanup EXIT INT TERM

kis_make_certs
kis_start_mock --token-interval 0

# the cluster of kis_start_cluster, started by hand under valgrind
KIS_PGHOST="$KIS_WORK"
KIS_PGPORT="$(kis_free_port)"
kis_as_postgres "$KIS_PGBIN/initdb" -D "$KIS_WORK/data" --auth=trust --no-sync \
    -E UTF8 --locale=C -U postgres >"$KIS_WORK/initdb.log" 2>&1 ||
    { cat "$KIS_WORK/initdb.log" >&2; exit 1; }
kis_as_postgres tee -a "$KIS_WORK/data/postgresql.conf" >/dev/null <<CONF
port = $KIS_PGPORT
listen_addresses = ''
unix_socket_directories = '$KIS_WORK'
fsync = off
max_connections = 40
shared_preload_libraries = 'kis_fdw'
kis_fdw.token_issue_interval = 0
autovacuum = off
jit = off
CONF
export KIS_PGHOST KIS_PGPORT PGHOST="$KIS_PGHOST" PGPORT="$KIS_PGPORT" PGUSER=postgres

echo "== starting postgres under valgrind (logs: $VG_DIR)"
kis_as_postgres valgrind --tool=memcheck --trace-children=yes --leak-check=full \
    --show-leak-kinds=definite --errors-for-leak-kinds=definite --error-exitcode=0 --track-origins=yes --read-var-info=yes --num-callers=40 \
    --track-fds=yes --suppressions="$KIS_WORK/valgrind.supp" \
    --log-file="$VG_DIR/%p.log" \
    "$KIS_PGBIN/postgres" -D "$KIS_WORK/data" >"$KIS_WORK/server.log" 2>&1 &
for _ in $(seq 600); do
    "$KIS_PGBIN/pg_isready" -q -h "$KIS_PGHOST" -p "$KIS_PGPORT" && break
    sleep 0.5
done
"$KIS_PGBIN/pg_isready" -h "$KIS_PGHOST" -p "$KIS_PGPORT"

failed=""
echo "== pg_regress under valgrind"
start=$(date +%s)
kis_pg_regress || failed="$failed pg_regress"
echo "pg_regress took $(( $(date +%s) - start )) s under valgrind"
if [ -s "$KIS_WORK/regress/regression.diffs" ]; then
    echo "(diffs under valgrind: $KIS_WORK/regress/regression.diffs)"
fi

# the soak's mix (faults, drops, truncated bodies, cancels, token expiry, paging) reaches
# paths pg_regress does not; its growth checks mean little under valgrind, its rows do
soak_scans="${VALGRIND_SOAK_SCANS:-1000}"
if [ "$soak_scans" -gt 0 ]; then
    echo "== test/soak.py with SOAK_SCANS=$soak_scans under valgrind"
    start=$(date +%s)
    SOAK_SCANS="$soak_scans" SOAK_GROWTH=0 "$KIS_PYTHON" test/soak.py >"$KIS_WORK/soak.log" 2>&1 ||
        failed="$failed soak"
    tail -12 "$KIS_WORK/soak.log"
    echo "soak took $(( $(date +%s) - start )) s under valgrind"
fi

echo "== stopping the cluster (valgrind writes its reports at each exit)"
vg_stop
sleep 1

echo "== memcheck errors, lost blocks and descriptors that involve kis_fdw"
"$KIS_PYTHON" - "$VG_DIR" <<'PY' || failed="$failed memcheck"
import collections, glob, os, re, sys

vg_dir = sys.argv[1]
# a frame in kis_fdw: its library (no debug info) or one of its functions (kis_*, kis*)
ours = re.compile(r"kis_fdw\.so|kis_fdw\.c|: kis(_\w+|[A-Z]\w*) \(")
errors = collections.OrderedDict()     # key: kind + top frames -> (count, text)
fd_leaks = collections.OrderedDict()
lost = collections.OrderedDict()       # definitely lost blocks kis_fdw allocated
totals = collections.Counter()
for path in sorted(glob.glob(os.path.join(vg_dir, "*.log"))):
    lines = [re.sub(r"^==\d+== ?", "", l.rstrip("\n")) for l in open(path, errors="replace")]
    blocks, cur = [], []
    for l in lines:
        if l.strip() == "":
            if cur:
                blocks.append(cur)
            cur = []
        else:
            cur.append(l)
    if cur:
        blocks.append(cur)
    for l in lines:
        m = re.match(r"ERROR SUMMARY: (\d+) errors", l)
        if m:
            totals["processes"] += 1
            totals["memcheck errors (all, any library)"] += int(m.group(1))
    for b in blocks:
        head = b[0]
        text = "\n".join(b)
        if "are definitely lost in loss record" in head:
            totals["definitely lost records (all)"] += 1
            if ours.search(text):
                frames = [x for x in b[1:] if x.lstrip().startswith(("at ", "by "))][:6]
                key = "\n".join(re.sub(r"0x[0-9A-F]+: ", "", f) for f in frames)
                n, t = lost.get(key, (0, text + "\n  (in " + os.path.basename(path) + ")"))
                lost[key] = (n + 1, t)
            continue
        if head.startswith("Open ") or head.startswith("Open file descriptor"):
            totals["descriptors open at exit (all)"] += 1
            if ours.search(text) or "libcurl" in text:
                key = "\n".join(x for x in b[1:4])
                n, t = fd_leaks.get(key, (0, text))
                fd_leaks[key] = (n + 1, t)
            continue
        if not (head.startswith("Invalid") or head.startswith("Conditional jump")
                or head.startswith("Use of uninitialised") or head.startswith("Syscall param")
                or head.startswith("Source and destination overlap")
                or head.startswith("Mismatched free") or "uninitialised" in head):
            continue
        totals["error reports (all)"] += 1
        if ours.search(text):
            frames = [x for x in b[1:] if x.lstrip().startswith(("at ", "by "))][:6]
            key = head.split(" of size")[0] + "\n" + "\n".join(re.sub(r"0x[0-9A-F]+: ", "", f)
                                                               for f in frames)
            n, t = errors.get(key, (0, text + "\n  (in " + os.path.basename(path) + ")"))
            errors[key] = (n + 1, t)

for k, v in totals.items():
    print(f"{k}: {v}")
print(f"memcheck errors through kis_fdw: {sum(n for n, _ in errors.values())} "
      f"({len(errors)} distinct)")
for n, text in errors.values():
    print(f"--- {n} x\n{text}")
print(f"descriptors opened by kis_fdw/libcurl still open at a process exit: "
      f"{sum(n for n, _ in fd_leaks.values())} ({len(fd_leaks)} distinct)")
for n, text in fd_leaks.values():
    print(f"--- {n} x\n{text}")
print(f"blocks definitely lost that kis_fdw allocated: {sum(n for n, _ in lost.values())} "
      f"({len(lost)} distinct)")
for n, text in lost.values():
    print(f"--- {n} x\n{text}")
sys.exit(1 if errors or lost else 0)
PY
echo "valgrind logs: $VG_DIR (the work directory $KIS_WORK is left in place)"
if [ -n "$failed" ]; then
    echo "FAIL valgrind:$failed"
    exit 1
fi
echo "ok valgrind"
