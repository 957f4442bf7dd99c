# Shared by the benchmark scripts (sourced, not run): a temporary directory removed on exit with
# every process started here ($TMP, $PIDS: append each background process's pid), the address a
# process logged (addr_of FILE MESSAGE), and the median of numbers (median_of N...).

TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

addr_of() { # FILE MESSAGE
    for _ in $(seq 300); do
        local a
        a=$(grep -F "\"message\":\"$2\"" "$1" 2>/dev/null | head -1 | sed -n 's/.*"addr":"\([0-9.]*:[0-9]*\)".*/\1/p' || true)
        if [[ -n "$a" ]]; then echo "$a"; return 0; fi
        sleep 0.05
    done
    cat "$1" >&2; exit 1
}

median_of() { printf '%s\n' "$@" | sort -n | python3 -c 'import sys; v=[float(x) for x in sys.stdin]; print(v[len(v)//2])'; }

bench_postgres_db() { # NAME: a fresh database on DATABASE_URL's server, dropped on exit; sets BENCH_DB_URL
    local server=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
    BENCH_DB_SERVER=$server BENCH_DB_NAME=$1
    psql -q "$server" -c "CREATE DATABASE $1"
    BENCH_DB_URL="${server%/*}/$1"
    drop_bench_db() { cleanup; psql -q "$BENCH_DB_SERVER" -c "DROP DATABASE IF EXISTS $BENCH_DB_NAME" || true; }
    trap drop_bench_db EXIT
}
