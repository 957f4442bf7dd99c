#!/usr/bin/env bash
# Telemetry overhead: the same mock through two `nines serve` processes, one with telemetry off
# (`[telemetry] metrics = false, ledger = false`, no store) and one with everything on (Prometheus
# metrics, the availability ledger flushed to a SQLite store, usage records in that store, a
# session header on every request), measured with oha in interleaved rounds (non-streaming chat).
# Prints requests/s per round and the median ratio on/off. Target: on/off >= 0.95.
# Everything listens on 127.0.0.1; every process started here is stopped on exit.
#
# Knobs: ROUNDS=5 DURATION=5s CONC=16 SKIP_BUILD=1
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
CONC=${CONC:-16}
NINES="${CARGO_TARGET_DIR:-$ROOT/target}/release/nines"
OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
log() { printf '[telemetry-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then (cd "$ROOT" && cargo build --release -p nines); fi
[[ -x "$OHA" ]] || { log "oha not found: cargo install oha --locked"; exit 1; }

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

NINES_LOG=info "$NINES" mock --listen 127.0.0.1:0 --name mock >"$TMP/mock.log" 2>&1 &
PIDS+=($!)
MOCK=$(addr_of "$TMP/mock.log" "mock listening")

base() {
    cat <<EOF
[server]
listen = "127.0.0.1:0"

[[deployments]]
name = "mock"
provider = "openai-compatible"
model = "mock-model"
base_url = "http://$MOCK/v1"
price = { input = 0.15, output = 0.60 }

[[models]]
name = "bench"
deployments = ["mock"]
EOF
}
{ base; printf '\n[telemetry]\nmetrics = false\nledger = false\n'; } >"$TMP/off.toml"
# ON_METRICS=false / ON_LEDGER=false / ON_STORE=0 take one part out of the 'on' side, to see
# what each costs.
{
    base
    printf '\n[telemetry]\nmetrics = %s\nledger = %s\n' "${ON_METRICS:-true}" "${ON_LEDGER:-true}"
    printf '\n[telemetry.sessions]\nheader = "x-nines-session"\n'
    if [[ "${ON_STORE:-1}" == 1 ]]; then printf '\n[store]\ndata_dir = "%s"\n' "$TMP/data"; fi
} >"$TMP/on.toml"

for mode in off on; do
    NINES_LOG="warn,nines=info,nines::request=warn" "$NINES" serve --config "$TMP/$mode.toml" >"$TMP/$mode.log" 2>&1 &
    PIDS+=($!)
done
OFF=$(addr_of "$TMP/off.log" listening)
ON=$(addr_of "$TMP/on.log" listening)
BODY='{"model":"bench","messages":[{"role":"user","content":"Hello there, how are you today?"}],"max_tokens":64}'

run() { # ADDR AUTH-HEADER-ARGS...
    local addr=$1; shift
    "$OHA" --no-tui --output-format json -z "$DURATION" -c "$CONC" -m POST -T application/json \
        -d "$BODY" "$@" "http://$addr/v1/chat/completions" \
        | python3 -c 'import json,sys; s=json.load(sys.stdin); print(round(s["summary"]["requestsPerSec"],1), s["summary"]["successRate"])'
}

log "warm-up"
run "$OFF" >/dev/null
run "$ON" -H "x-nines-session: bench-session" >/dev/null
ratios=()
for r in $(seq "$ROUNDS"); do
    read -r off_rps off_ok < <(run "$OFF")
    read -r on_rps on_ok < <(run "$ON" -H "x-nines-session: bench-session")
    ratio=$(python3 -c "print(round($on_rps / $off_rps, 3))")
    ratios+=("$ratio")
    log "round $r: off ${off_rps} req/s (success ${off_ok}), on ${on_rps} req/s (success ${on_ok}), on/off ${ratio}"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | python3 -c 'import sys; v=[float(x) for x in sys.stdin]; print(v[len(v)//2])')
requests=$(curl -s "http://$ON/metrics" | grep -E '^nines_requests_total' | awk '{s+=$2} END {print s+0}' || true)
log "median on/off ratio: $median (requests counted by /metrics on the 'on' gateway: $requests)"
echo "$median"
