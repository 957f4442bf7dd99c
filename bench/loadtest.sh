#!/usr/bin/env bash
# Does `nines loadtest` measure what oha measures? Both load the same target with the same body,
# the same number of connections and the same duration, alternating round by round in one run,
# and bench/loadtest_compare.py writes the section "Load test: nines loadtest against oha" of
# bench/RESULTS.md: requests/s, p50 and p99 latency (and first byte for streams) of each, with
# the ratio loadtest ÷ oha per round.
#
# Targets, all on 127.0.0.1 and stopped on exit:
#   mock     `nines mock` with a capacity model (64 slots, 20 ms per request), directly
#   through  the same mock through `nines serve` (one openai-compatible deployment)
# A 20 ms service time keeps both load generators far from CPU-bound, so what is compared is
# what they measure, not how much CPU each spends generating load.
#
# Knobs (environment): ROUNDS (3), DURATION (5s), CONCURRENCY (16), MODES ("nonstream stream"),
# SERVICE_MS (20), SKIP_BUILD=1 (use the existing release binary), NINES_BIN (another binary,
# e.g. target/dist/nines; implies nothing is built), RESULTS (bench/RESULTS.md),
# BENCH_OUT (bench/out/loadtest).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${BENCH_OUT:-"$ROOT/bench/out/loadtest"}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONCURRENCY=${CONCURRENCY:-16}
MODES=${MODES:-"nonstream stream"}
SERVICE_MS=${SERVICE_MS:-20}
RESULTS=${RESULTS:-"$ROOT/bench/RESULTS.md"}
TARGET_DIR=${CARGO_TARGET_DIR:-"$ROOT/target"}
NINES=${NINES_BIN:-"$TARGET_DIR/release/nines"}

log() { printf '[loadtest-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v python3 >/dev/null || die "python3 is required"
command -v curl >/dev/null || die "curl is required"
OHA=$(command -v oha || true)
if [[ -z "$OHA" && -x "$HOME/.cargo/bin/oha" ]]; then OHA="$HOME/.cargo/bin/oha"; fi
[[ -n "$OHA" ]] || die "oha is required (cargo install oha --locked)"

if [[ "${SKIP_BUILD:-0}" != 1 && -z "${NINES_BIN:-}" ]]; then
    log "building nines (release)"
    (cd "$ROOT" && cargo build --release -p nines)
fi
[[ -x "$NINES" ]] || die "no release binary at $NINES"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/nines-loadtest-bench.XXXXXX")
PIDS=()
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/meta.txt

wait_for_addr() {
    local file=$1 message=$2 addr=""
    for _ in $(seq 300); do
        addr=$(grep -F "\"message\":\"$message\"" "$file" 2>/dev/null \
            | head -1 | sed -n 's/.*"addr":"\([0-9.]*:[0-9]*\)".*/\1/p' || true)
        if [[ -n "$addr" ]]; then echo "$addr"; return 0; fi
        sleep 0.05
    done
    cat "$file" >&2
    die "no '$message' line in $file"
}

NINES_LOG=info "$NINES" mock --listen 127.0.0.1:0 --name mock \
    --capacity "{\"max_concurrency\": 64, \"service_ms\": $SERVICE_MS}" >"$OUT/mock.log" 2>&1 &
PIDS+=($!)
MOCK=$(wait_for_addr "$OUT/mock.log" "mock listening")
cat >"$TMP/nines.toml" <<CONF
[server]
listen = "127.0.0.1:0"

[[deployments]]
name = "mock"
provider = "openai-compatible"
model = "mock-model"
base_url = "http://$MOCK/v1"

[[models]]
name = "chat"
deployments = ["mock"]
CONF
NINES_LOG="warn,nines=info,nines::request=warn" "$NINES" serve --config "$TMP/nines.toml" >"$OUT/nines.log" 2>&1 &
PIDS+=($!)
GW=$(wait_for_addr "$OUT/nines.log" "listening")
log "mock on $MOCK, nines on $GW"

body() {
    local mode=$1
    if [[ "$mode" == stream ]]; then
        echo '{"model":"chat","messages":[{"role":"user","content":"Hello, load test"}],"max_tokens":16,"stream":true,"stream_options":{"include_usage":true}}'
    else
        echo '{"model":"chat","messages":[{"role":"user","content":"Hello, load test"}],"max_tokens":16}'
    fi
}
base_of() { if [[ "$1" == mock ]]; then echo "http://$MOCK"; else echo "http://$GW"; fi; }

{
    printf 'oha\t%s\n' "$("$OHA" --version)"
    printf 'commit\t%s\n' "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    printf 'rounds\t%s\nduration\t%s\nconcurrency\t%s\nservice_ms\t%s\n' "$ROUNDS" "$DURATION" "$CONCURRENCY" "$SERVICE_MS"
    printf 'nproc\t%s\n' "$(nproc)"
} >"$OUT/meta.txt"

for mode in $MODES; do
    body "$mode" >"$TMP/body-$mode.json"
    for target in mock through; do
        url="$(base_of "$target")/v1/chat/completions"
        # Warm-up: connections, allocator, caches.
        "$OHA" --no-tui -w -m POST -T application/json -D "$TMP/body-$mode.json" -z 1s -c "$CONCURRENCY" "$url" >/dev/null
        for round in $(seq "$ROUNDS"); do
            log "$mode $target round $round: oha"
            "$OHA" --no-tui --output-format json -w -m POST -T application/json -D "$TMP/body-$mode.json" \
                -z "$DURATION" -c "$CONCURRENCY" -o "$OUT/$mode-$target-oha-r$round.json" "$url"
            log "$mode $target round $round: nines loadtest"
            "$NINES" loadtest --url "$(base_of "$target")" --body "@$TMP/body-$mode.json" \
                --concurrency "$CONCURRENCY" --duration "$DURATION" --format json --no-progress \
                --metrics-url "$( [[ "$target" == through ]] && echo "http://$GW/metrics" || echo off )" \
                >"$OUT/$mode-$target-loadtest-r$round.json"
        done
    done
done

python3 "$ROOT/bench/loadtest_compare.py" --out "$OUT" --results "$RESULTS"
log "wrote the section to $RESULTS"
