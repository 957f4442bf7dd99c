#!/usr/bin/env bash
# Gateway CPU per request of two builds of nines, in the same run: BEFORE (a binary built from an
# earlier commit) and AFTER (default: this tree's release build), each `nines serve` with the
# same config (one openai-compatible deployment on one mock; metrics and the ledger on, as by
# default), measured with oha in interleaved rounds, non-streaming then streaming chat. Prints
# per round and as medians the gateway's CPU µs per request on each side and before/after, so a
# refactor can be held to "CPU per request within ±5 %" on a shared, noisy machine.
#
#   git worktree add /tmp/before <commit> && (cd /tmp/before && cargo build --release -p nines)
#   BEFORE=/tmp/before/target/release/nines bench/before_after.sh
#
# Knobs: BEFORE (required), AFTER, ROUNDS=7 DURATION=5s CONC=16 SKIP_BUILD=1 LAYOUT (onoff.sh).
# Everything listens on 127.0.0.1; every process started here is stopped on exit.
set -euo pipefail

BENCH_NAME=before-after
ROUNDS=${ROUNDS:-7}
DURATION=${DURATION:-5s}
CONC=${CONC:-16}
[[ -x "${BEFORE:-}" ]] || { echo "set BEFORE to the earlier build's nines binary" >&2; exit 2; }
NINES_OFF=$BEFORE
NINES_ON=${AFTER:-}
[[ -n "$NINES_ON" ]] || unset NINES_ON
source "$(dirname "${BASH_SOURCE[0]}")/onoff.sh"

base >"$TMP/off.toml"
base >"$TMP/on.toml"
start_gateways
log "before: $NINES_OFF"
log "after:  $NINES_ON"

PLAIN='{"model":"bench","messages":[{"role":"user","content":"Hello there, how are you today?"}],"max_tokens":64}'
STREAM='{"model":"bench","messages":[{"role":"user","content":"Hello there, how are you today?"}],"max_tokens":64,"stream":true,"stream_options":{"include_usage":true}}'
rows=()
for mode in nonstream stream; do
    if [[ $mode == stream ]]; then BODY=$STREAM; else BODY=$PLAIN; fi
    warm_up
    compare
    log "$mode: gateway CPU per request before ${off_cpu_median} µs, after ${on_cpu_median} µs, before/after ${cpu_median} (median of ${ROUNDS} rounds); requests/s after/before ${median}"
    rows+=("| $mode | $CONC | $ROUNDS | $off_cpu_median | $on_cpu_median | $cpu_median | $median |")
done
echo "| mode | connections | rounds | CPU µs/request before | after | before/after (per round, median) | req/s after/before |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
