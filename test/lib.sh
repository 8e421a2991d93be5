# test/lib.sh: shared plumbing for the test suite, the demo and the benchmarks.
# Source it; it defines functions and sets nothing on its own.
#
#   kis_prepare            install what is missing, build, install, make $KIS_WORK and
#                          a trap that stops everything on exit or Ctrl-C
#   kis_workdir            a fresh directory the postgres user can use ($KIS_WORK)
#   kis_make_certs         a CA and a server certificate for 127.0.0.1 (openssl CLI)
#   kis_start_mock [args]  the mock KIS server over TLS ($KIS_MOCK_URL, $KIS_MOCK_CA)
#                          and its WebSocket ($KIS_MOCK_WS_URL)
#   kis_start_cluster      a throwaway PostgreSQL cluster run by the postgres user
#                          ($KIS_PGHOST, $KIS_PGPORT); extra config lines on stdin
#   kis_psql ARGS...       psql against it as the postgres user
#   kis_pg_regress         sql/ + expected/ by test/schedule against it, as the postgres
#                          user ($KIS_WORK/regress, output also in $KIS_WORK/regress.log)
#   kis_log_size [LOG]     the server log's size now: where kis_log_crashes starts reading
#   kis_log_crashes FROM [LOG]  status 1, printing them, if the server log past byte FROM
#                          tells of an assertion failure, a crash or a PANIC
#   kis_stop_all           stop the cluster and the mock, and remove $KIS_WORK unless
#                          the script failed or KIS_KEEP_WORK=1 (idempotent; use in a trap)
#
# PostgreSQL refuses to run as root, so the cluster runs as "postgres" (runuser).

# The PostgreSQL to build against and test with: $PG_CONFIG, else pg_config on PATH.
KIS_PG_CONFIG="${PG_CONFIG:-pg_config}"
KIS_PGBIN="$("$KIS_PG_CONFIG" --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)"
export KIS_PGBIN
KIS_PYTHON="${KIS_PYTHON:-$(command -v python3)}"

kis_as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

kis_prepare() {
    # the packages of $KIS_DEPS_MAJOR (default 15; "-": PostgreSQL built from source)
    bash scripts/install-deps.sh "${KIS_DEPS_MAJOR:-15}"
    KIS_PGBIN="$("$KIS_PG_CONFIG" --bindir)"
    # objects built for another PostgreSQL are rebuilt (make sees no difference)
    local built_for
    built_for="$("$KIS_PG_CONFIG" --version) $("$KIS_PG_CONFIG" --includedir-server)"
    if [ "$(cat .built-for 2>/dev/null)" != "$built_for" ]; then
        make -s PG_CONFIG="$KIS_PG_CONFIG" clean fuzz-clean >/dev/null
        echo "$built_for" >.built-for
    fi
    make -s PG_CONFIG="$KIS_PG_CONFIG" KIS_WERROR="${KIS_WERROR:-0}"
    make -s PG_CONFIG="$KIS_PG_CONFIG" install >/dev/null
    kis_workdir
    trap kis_stop_all EXIT INT TERM
}

kis_workdir() {
    KIS_WORK="$(mktemp -d /tmp/kis_fdw.XXXXXX)"
    chmod 755 "$KIS_WORK"
    chown postgres: "$KIS_WORK" 2>/dev/null || true
    export KIS_WORK
}

kis_make_certs() {
    local d="$KIS_WORK/tls"
    mkdir -p "$d"
    # key usage and key identifiers: Python 3.13 verifies strictly (X.509 profile)
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=kis_fdw test CA" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$d/ca.key" -out "$d/ca.pem" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
        -keyout "$d/server.key" -out "$d/server.csr" >/dev/null 2>&1
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n%s\n' \
        'authorityKeyIdentifier=keyid,issuer' > "$d/ext.cnf"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
        -CAcreateserial -days 2 -extfile "$d/ext.cnf" -out "$d/server.pem" >/dev/null 2>&1
    chmod 755 "$d"
    chmod 644 "$d/ca.pem"
    KIS_MOCK_CA="$d/ca.pem"
    export KIS_MOCK_CA
}

kis_start_mock() {
    local portfile="$KIS_WORK/mock.port" wsportfile="$KIS_WORK/mock.wsport"
    rm -f "$portfile" "$wsportfile"
    "$KIS_PYTHON" "$(dirname "${BASH_SOURCE[0]}")/mock_kis.py" --quiet \
        --cert "$KIS_WORK/tls/server.pem" --key "$KIS_WORK/tls/server.key" \
        --port-file "$portfile" --ws-port 0 --ws-port-file "$wsportfile" "$@" &
    KIS_MOCK_PID=$!
    for _ in $(seq 100); do
        [ -s "$portfile" ] && break
        sleep 0.05
    done
    [ -s "$portfile" ] || { echo "mock KIS server did not start" >&2; return 1; }
    KIS_MOCK_URL="https://127.0.0.1:$(cat "$portfile")"
    KIS_MOCK_WS_URL="ws://127.0.0.1:$(cat "$wsportfile")"
    export KIS_MOCK_URL KIS_MOCK_WS_URL KIS_MOCK_PID
}

kis_free_port() {
    "$KIS_PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

kis_start_cluster() {
    KIS_PGHOST="$KIS_WORK"
    KIS_PGPORT="$(kis_free_port)"
    kis_as_postgres "$KIS_PGBIN/initdb" -D "$KIS_WORK/data" --auth=trust --no-sync \
        -E UTF8 --locale=C -U postgres >"$KIS_WORK/initdb.log" 2>&1 ||
        { cat "$KIS_WORK/initdb.log" >&2; return 1; }
    {
        echo "port = $KIS_PGPORT"
        echo "listen_addresses = ''"
        echo "unix_socket_directories = '$KIS_WORK'"
        echo "fsync = off"
        echo "max_connections = 40"
        cat
    } | kis_as_postgres tee -a "$KIS_WORK/data/postgresql.conf" >/dev/null
    kis_as_postgres "$KIS_PGBIN/pg_ctl" -D "$KIS_WORK/data" -l "$KIS_WORK/server.log" -w start >/dev/null
    export KIS_PGHOST KIS_PGPORT PGHOST="$KIS_PGHOST" PGPORT="$KIS_PGPORT" PGUSER=postgres
}

kis_psql() {
    "$KIS_PGBIN/psql" -X -h "$KIS_PGHOST" -p "$KIS_PGPORT" -U postgres "$@"
}

kis_pg_regress() {
    local dir="$KIS_WORK/regress"
    mkdir -p "$dir"
    cp -r sql expected "$dir/"
    chown -R postgres: "$dir"
    # shellcheck disable=SC2046  # one test name per word
    kis_as_postgres env KIS_MOCK_URL="$KIS_MOCK_URL" KIS_MOCK_CA="$KIS_MOCK_CA" \
        KIS_MOCK_WS_URL="$KIS_MOCK_WS_URL" \
        "$("$KIS_PG_CONFIG" --pkglibdir)/pgxs/src/test/regress/pg_regress" \
        --host="$KIS_PGHOST" --port="$KIS_PGPORT" --user=postgres \
        --inputdir="$dir" --outputdir="$dir" \
        --dbname=kis_regress $(sed -n 's/^test: *//p' test/schedule) | tee "$KIS_WORK/regress.log"
}

# What a server log says when something crashed: an assertion (TRAP:, from a
# --enable-cassert build), a process ended by a signal or an exception, a
# PANIC, or the crash restart that follows any of them.
KIS_CRASH_PATTERN='TRAP:|terminated by signal|terminated by exception|PANIC:|all server processes terminated'

kis_log_size() {
    stat -c %s "${1:-$KIS_WORK/server.log}" 2>/dev/null || echo 0
}

kis_log_crashes() {
    local from="${1:-0}" log="${2:-$KIS_WORK/server.log}" found
    found="$(tail -c +"$((from + 1))" "$log" 2>/dev/null | grep -E -A3 "$KIS_CRASH_PATTERN" | head -40 || true)"
    [ -z "$found" ] && return 0
    echo "server log $log: a crash or an assertion failure:"
    echo "$found" | sed 's/^/    /'
    return 1
}

kis_stop_all() {
    local status=$?
    if [ -n "${KIS_WORK:-}" ] && [ -f "$KIS_WORK/data/postmaster.pid" ]; then
        kis_as_postgres "$KIS_PGBIN/pg_ctl" -D "$KIS_WORK/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    if [ -n "${KIS_MOCK_PID:-}" ]; then
        kill "$KIS_MOCK_PID" 2>/dev/null || true
        wait "$KIS_MOCK_PID" 2>/dev/null || true
        KIS_MOCK_PID=""
    fi
    # the cluster, logs and certificates: kept when something failed (or
    # KIS_KEEP_WORK=1), to be read; otherwise gone, so that runs do not pile
    # up in /tmp
    if [ -n "${KIS_WORK:-}" ] && [ -d "$KIS_WORK" ]; then
        if [ "$status" -eq 0 ] && [ "${KIS_KEEP_WORK:-0}" != 1 ]; then
            rm -rf "$KIS_WORK"
        else
            echo "kept for inspection: $KIS_WORK" >&2
        fi
    fi
}
