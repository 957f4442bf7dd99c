#!/usr/bin/env bash
# Telemetry overhead: the same mock through two `nines serve` processes, one with telemetry off
# (`[telemetry] metrics = false, ledger = false`, no store) and one with everything on (Prometheus
# metrics, the availability ledger flushed to a SQLite store, usage records in that store, a
# session header on every request), measured with oha in interleaved rounds (non-streaming chat).
# Prints requests/s per round and the median ratio on/off, and the gateway's CPU per request off/on
# (see onoff.sh for LAYOUT). Target: on/off >= 0.95.
# Everything listens on 127.0.0.1; every process started here is stopped on exit.
#
# STORE=sqlite (the default: nines.db in a temporary data directory) or STORE=postgres (a fresh
# database made with psql on the server of DATABASE_URL, dropped on exit; usage records go there
# by COPY). At the end the 'on' gateway's /health/ready is read: records written must equal
# requests served, none dropped.
#
# Knobs: ROUNDS=5 DURATION=5s CONC=16 SKIP_BUILD=1 STORE=sqlite
set -euo pipefail

BENCH_NAME=telemetry-bench
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
CONC=${CONC:-16}
source "$(dirname "${BASH_SOURCE[0]}")/onoff.sh"

if [[ "${STORE:-sqlite}" == postgres ]]; then
    server=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
    bench_db="nines_bench_$$"
    psql -q "$server" -c "CREATE DATABASE $bench_db"
    BENCH_DB_URL="${server%/*}/$bench_db"
    drop_bench_db() { cleanup; psql -q "$server" -c "DROP DATABASE IF EXISTS $bench_db" || true; }
    trap drop_bench_db EXIT
fi
log "usage records in: ${STORE:-sqlite}"

{ base; printf '\n[telemetry]\nmetrics = false\nledger = false\n'; } >"$TMP/off.toml"
# ON_METRICS=false / ON_LEDGER=false / ON_STORE=0 take one part out of the 'on' side, to see
# what each costs.
{
    base
    printf '\n[telemetry]\nmetrics = %s\nledger = %s\n' "${ON_METRICS:-true}" "${ON_LEDGER:-true}"
    printf '\n[telemetry.sessions]\nheader = "x-nines-session"\n'
    if [[ "${ON_STORE:-1}" == 1 ]]; then
        if [[ "${STORE:-sqlite}" == postgres ]]; then
            printf '\n[store]\ndatabase_url = "%s"\n' "$BENCH_DB_URL"
        else
            printf '\n[store]\ndata_dir = "%s"\n' "$TMP/data"
        fi
    fi
} >"$TMP/on.toml"

start_gateways
warm_up -H "x-nines-session: bench-session"
compare -H "x-nines-session: bench-session"
requests=$(curl -s "http://$ON/metrics" | grep -E '^nines_requests_total' | awk '{s+=$2} END {print s+0}' || true)
# Every served request's record written, none dropped (the writer may still be flushing the last
# batch: give it a moment).
sleep 1
usage=$(curl -s "http://$ON/health/ready" | python3 -c 'import json,sys; u=json.load(sys.stdin).get("checks",{}).get("usage_writer") or {}; print(u.get("written","-"), u.get("dropped","-"))' || echo "- -")
log "median on/off ratio: $median; gateway CPU per request off/on: $cpu_median (requests counted by /metrics on the 'on' gateway: $requests; usage records written, dropped: $usage)"
echo "$median"
