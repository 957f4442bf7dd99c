#!/usr/bin/env bash
# Telemetry overhead: the same mock through two `nines serve` processes, one with telemetry off
# (`[telemetry] metrics = false, ledger = false`, no store) and one with everything on (Prometheus
# metrics, the availability ledger flushed to a SQLite store, usage accounting in that store at its
# defaults: per-minute rollups of every request, per-request rows for errors only; a session header
# on every request), measured with oha in interleaved rounds (non-streaming chat).
# Prints requests/s per round and, per concurrency, the median ratio on/off and the gateway's CPU
# per request off/on; its stdout is one line per concurrency, "connections median"
# (see onoff.sh for LAYOUT, and LAYOUT=side-by-side for the steadier, stricter reading).
# Target: on/off >= 0.95.
# Everything listens on 127.0.0.1; every process started here is stopped on exit.
#
# STORE=sqlite (the default: nines.db in a temporary data directory) or STORE=postgres (a fresh
# database made with psql on the server of DATABASE_URL, dropped on exit; usage records go there
# by COPY). At the end the 'on' gateway is stopped with SIGTERM (its last rollups are written) and
# the store is read: the rollups' request count must equal the requests /metrics counted, none
# dropped. REQUEST_RECORDS=all|errors|sample:0.01|off sets `store.request_records` (default: the
# store's default, errors).
#
# Concurrency: the rounds run at each of CONCS (default "16 64 256" connections per gateway) and
# each gets its own median, since what the features cost depends on it: at 16 connections against
# a mock that answers at once, each request is its own wake-up of the gateway and of its peers
# (the kernel's share of a request is largest there); LLM traffic in production holds far more
# requests open (Little's law: 1 000 requests/s of 2 s answers is 2 000 in flight); at 256 per
# side the load generators' core is saturated as well. Both sides are sent the same requests (the
# session header included): only their configuration differs.
#
# SAME=1 gives the 'on' side the 'off' configuration too: an A/A run, whose ratio is the harness's
# own bias (which side is loaded from the foreground, which started second); it should read 1.00.
#
# Knobs: ROUNDS=5 DURATION=5s CONCS="16 64 256" (or CONC=n for one) SKIP_BUILD=1 STORE=sqlite
set -euo pipefail

BENCH_NAME=telemetry-bench
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
CONCS=${CONCS:-${CONC:-16 64 256}}
CONC=${CONCS%% *}
# The session header goes to both sides: the same requests, only the configuration differs.
LOAD_ARGS=(-H "x-nines-session: bench-session")
source "$(dirname "${BASH_SOURCE[0]}")/onoff.sh"

if [[ "${STORE:-sqlite}" == postgres ]]; then bench_postgres_db "nines_bench_$$"; fi
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
        if [[ -n "${REQUEST_RECORDS:-}" ]]; then printf 'request_records = "%s"\n' "$REQUEST_RECORDS"; fi
    fi
} >"$TMP/on.toml"

if [[ "${SAME:-0}" == 1 ]]; then cp "$TMP/off.toml" "$TMP/on.toml"; log "A/A: both sides off"; fi
start_gateways
summary=()
medians=()
for CONC in $CONCS; do
    log "$CONC connections per gateway"
    warm_up
    compare
    medians+=("$CONC $median")
    summary+=("$CONC connections: on/off req/s $median, CPU off/on $cpu_median (CPU µs/request off $off_cpu_median, on $on_cpu_median)")
done
requests=$(curl -s "http://$ON/metrics" | grep -E '^nines_requests_total' | awk '{s+=$2} END {print s+0}' || true)
# SIGTERM: the 'on' gateway writes its last rollups and queued records, then exits.
kill -TERM "$ON_PID"
wait "$ON_PID" || true
store_count() { # SQL -> one number from the 'on' side's store
    if [[ "${STORE:-sqlite}" == postgres ]]; then psql -tA "$BENCH_DB_URL" -c "$1"
    else sqlite3 "$TMP/data/nines.db" "$1"; fi
}
if [[ "${ON_STORE:-1}" == 1 && "${SAME:-0}" != 1 ]]; then
    rolled=$(store_count 'select coalesce(sum(requests), 0) from usage_rollups')
    rollup_rows=$(store_count 'select count(*) from usage_rollups')
    records=$(store_count 'select count(*) from usage_records')
    stopped=$(grep -F '"message":"stopped"' "$TMP/on.log" | sed -n 's/.*"usage_rollup_requests_unwritten":\([0-9]*\).*/\1/p')
    log "requests counted by /metrics on the 'on' gateway: $requests; in the usage rollups: $rolled (in $rollup_rows rows; unwritten at exit: ${stopped:-?}); per-request rows: $records"
    [[ "$rolled" == "$requests" ]] || log "MISMATCH: rollups count $rolled requests, /metrics $requests"
fi
for line in "${summary[@]}"; do log "median of $ROUNDS rounds at $line"; done
printf '%s\n' "${medians[@]}"
