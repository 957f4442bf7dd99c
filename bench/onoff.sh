# Shared by the on/off benchmarks (access.sh, telemetry.sh): one mock, two `nines serve`
# processes that differ only in what the caller writes to $TMP/off.toml and $TMP/on.toml, and
# interleaved oha rounds against both. Sourced, not run. The caller sets BENCH_NAME, ROUNDS,
# DURATION and CONC before sourcing.
#
# Provides: log, addr_of, $TMP (removed on exit, with every process started here), $MOCK,
# base (the config both sides share), start_gateways (sets $OFF and $ON), warm_up, compare (the
# measured rounds; sets $median and $on_requests).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NINES="${CARGO_TARGET_DIR:-$ROOT/target}/release/nines"
OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
log() { printf '[%s %s] %s\n' "$BENCH_NAME" "$(date +%H:%M:%S)" "$*" >&2; }

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
    cat <<EOC
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
EOC
}

start_gateways() { # after $TMP/off.toml and $TMP/on.toml are written
    for mode in off on; do
        NINES_LOG="warn,nines=info,nines::request=warn" "$NINES" serve --config "$TMP/$mode.toml" >"$TMP/$mode.log" 2>&1 &
        PIDS+=($!)
    done
    OFF=$(addr_of "$TMP/off.log" listening)
    ON=$(addr_of "$TMP/on.log" listening)
}

BODY='{"model":"bench","messages":[{"role":"user","content":"Hello there, how are you today?"}],"max_tokens":64}'

run() { # ADDR OHA-ARGS... -> requests/s, success rate, requests
    local addr=$1; shift
    "$OHA" --no-tui --output-format json -z "$DURATION" -c "$CONC" -m POST -T application/json \
        -d "$BODY" "$@" "http://$addr/v1/chat/completions" \
        | python3 -c 'import json,sys; s=json.load(sys.stdin); print(round(s["summary"]["requestsPerSec"],1), s["summary"]["successRate"], sum(s["statusCodeDistribution"].values()))'
}

warm_up() { # OHA-ARGS for the 'on' side...
    log "warm-up"
    run "$OFF" >/dev/null
    run "$ON" "$@" >/dev/null
}

compare() { # OHA-ARGS for the 'on' side...
    local ratios=() r off_rps off_ok on_rps on_ok on_n ratio
    on_requests=0
    for r in $(seq "$ROUNDS"); do
        read -r off_rps off_ok _ < <(run "$OFF")
        read -r on_rps on_ok on_n < <(run "$ON" "$@")
        on_requests=$((on_requests + on_n))
        ratio=$(python3 -c "print(round($on_rps / $off_rps, 3))")
        ratios+=("$ratio")
        log "round $r: off ${off_rps} req/s (success ${off_ok}), on ${on_rps} req/s (success ${on_ok}), on/off ${ratio}"
    done
    median=$(printf '%s\n' "${ratios[@]}" | sort -n | python3 -c 'import sys; v=[float(x) for x in sys.stdin]; print(v[len(v)//2])')
}
