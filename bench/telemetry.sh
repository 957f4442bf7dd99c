#!/usr/bin/env bash
# Telemetry overhead: the same mock through two `nines serve` processes, one with telemetry off
# (`[telemetry] metrics = false, ledger = false`, no store) and one with everything on (Prometheus
# metrics, the availability ledger flushed to a SQLite store, usage records in that store, a
# session header on every request), measured with oha in interleaved rounds (non-streaming chat).
# Prints requests/s per round and the median ratio on/off, and the gateway's CPU per request off/on
# (see onoff.sh for LAYOUT). Target: on/off >= 0.95.
# Everything listens on 127.0.0.1; every process started here is stopped on exit.
#
# Knobs: ROUNDS=5 DURATION=5s CONC=16 SKIP_BUILD=1
set -euo pipefail

BENCH_NAME=telemetry-bench
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
CONC=${CONC:-16}
source "$(dirname "${BASH_SOURCE[0]}")/onoff.sh"

{ base; printf '\n[telemetry]\nmetrics = false\nledger = false\n'; } >"$TMP/off.toml"
# ON_METRICS=false / ON_LEDGER=false / ON_STORE=0 take one part out of the 'on' side, to see
# what each costs.
{
    base
    printf '\n[telemetry]\nmetrics = %s\nledger = %s\n' "${ON_METRICS:-true}" "${ON_LEDGER:-true}"
    printf '\n[telemetry.sessions]\nheader = "x-nines-session"\n'
    if [[ "${ON_STORE:-1}" == 1 ]]; then printf '\n[store]\ndata_dir = "%s"\n' "$TMP/data"; fi
} >"$TMP/on.toml"

start_gateways
warm_up -H "x-nines-session: bench-session"
compare -H "x-nines-session: bench-session"
requests=$(curl -s "http://$ON/metrics" | grep -E '^nines_requests_total' | awk '{s+=$2} END {print s+0}' || true)
log "median on/off ratio: $median; gateway CPU per request off/on: $cpu_median (requests counted by /metrics on the 'on' gateway: $requests)"
echo "$median"
