#!/usr/bin/env bash
# Access overhead: the same mock through two `nines serve` processes, one with no [auth] (auth and
# limits off) and one with a key that has RPM, TPM and a daily budget at key level plus a SQLite
# store receiving every usage record, measured with oha in interleaved rounds (non-streaming chat,
# one connection pool per run). Prints requests/s per round and the median ratio on/off.
# Everything listens on 127.0.0.1; every process started here is stopped on exit.
#
# Knobs: ROUNDS=3 DURATION=5s CONC=16 SKIP_BUILD=1 STORE=0 (no [store]: auth and limits only)
#        REDIS_URL=redis://127.0.0.1:6379 (limits in Redis; also prints Redis commands per request,
#        read from INFO commandstats, so run it where nothing else uses that Redis)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONC=${CONC:-16}
NINES="${CARGO_TARGET_DIR:-$ROOT/target}/release/nines"
OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
log() { printf '[access-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

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
base >"$TMP/off.toml"
{ base; cat <<EOF

[auth]
[[auth.keys]]
key = "sk-bench-access-key-000000000001"
name = "bench"
user = "bench-user"
org = "bench-org"
limits = { rpm = 100000000, tpm = 100000000000, daily_budget = 1000000.0 }
EOF
if [[ "${STORE:-1}" == 1 ]]; then printf '\n[store]\ndata_dir = "%s"\n' "$TMP/data"; fi
if [[ -n "${REDIS_URL:-}" ]]; then printf '\n[limits]\nredis_url = "%s"\nredis_prefix = "nines-bench-%s"\n' "$REDIS_URL" "$$"; fi
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
        | python3 -c 'import json,sys; s=json.load(sys.stdin); print(round(s["summary"]["requestsPerSec"],1), s["summary"]["successRate"], sum(s["statusCodeDistribution"].values()))'
}

log "warm-up"
run "$OFF" >/dev/null
run "$ON" -H "authorization: Bearer sk-bench-access-key-000000000001" >/dev/null
redis_calls() { # round trips Redis has served for scripts (EVALSHA), from INFO commandstats;
    # commands a script runs inside Redis are counted there too, but cost no round trip
    redis-cli -u "$REDIS_URL" info commandstats | sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\).*/\1/p' | awk '{s+=$1} END {print s+0}'
}
ratios=()
on_requests=0
[[ -n "${REDIS_URL:-}" ]] && redis_before=$(redis_calls)
for r in $(seq "$ROUNDS"); do
    read -r off_rps off_ok _ < <(run "$OFF")
    read -r on_rps on_ok on_n < <(run "$ON" -H "authorization: Bearer sk-bench-access-key-000000000001")
    on_requests=$((on_requests + on_n))
    ratio=$(python3 -c "print(round($on_rps / $off_rps, 3))")
    ratios+=("$ratio")
    log "round $r: off ${off_rps} req/s (success ${off_ok}), on ${on_rps} req/s (success ${on_ok}), on/off ${ratio}"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | python3 -c 'import sys; v=[float(x) for x in sys.stdin]; print(v[len(v)//2])')
rows=$(sqlite3 "$TMP/data/nines.db" 'select count(*) from usage_records' 2>/dev/null || echo "?")
log "median on/off ratio: $median (usage records written: $rows)"
if [[ -n "${REDIS_URL:-}" ]]; then
    calls=$(( $(redis_calls) - redis_before ))
    log "Redis round trips (EVALSHA) during the measured rounds: $calls for $on_requests requests: $(python3 -c "print(round($calls / max($on_requests, 1), 3))") per request (admission + settlement)"
fi
echo "$median"
