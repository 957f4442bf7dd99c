#!/usr/bin/env bash
# The front door under attack, measured (issue 17): a normal client's latency with and without
# 500 slowloris and 500 idle connections held open against the same gateway, in interleaved
# rounds of the same run; then a gateway under `prlimit --nofile=1024:1024` with 1,100 idle
# attacker sockets, and what a normal client gets from it (status codes, latency) and what the
# gateway counted. Prints a Markdown table for bench/RESULTS.md.
#
#   bench/front_door.sh            # builds the release binary first (SKIP_BUILD=1 to skip)
#
# Knobs: ROUNDS=5 REQUESTS=2000 (per round, one keep-alive connection, one request at a time:
# bench/front_door/client.py).
# Everything listens on 127.0.0.1; every process started here is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NINES="${CARGO_TARGET_DIR:-$ROOT/target}/release/nines"
ATTACK="$ROOT/bench/front_door/attack.py"
ROUNDS=${ROUNDS:-5}
REQUESTS=${REQUESTS:-2000}
log() { printf '[front-door %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then (cd "$ROOT" && cargo build --release -p nines); fi
command -v prlimit >/dev/null || { log "prlimit not found (Debian: util-linux)"; exit 1; }
ulimit -n "$(ulimit -Hn)"

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NINES_LOG=info "$NINES" mock --listen 127.0.0.1:0 --name mock >"$TMP/mock.log" 2>&1 &
PIDS+=($!)
MOCK=$(addr_of "$TMP/mock.log" "mock listening")
cat >"$TMP/nines.toml" <<EOC
[server]
listen = "127.0.0.1:0"

[resilience.probes]
enabled = false

[[deployments]]
name = "mock"
provider = "openai-compatible"
model = "mock-model"
base_url = "http://$MOCK/v1"

[[models]]
name = "bench"
deployments = ["mock"]
EOC

BODY='{"model":"bench","messages":[{"role":"user","content":"Hello there, how are you today?"}],"max_tokens":64}'
# ADDR -> p50_ms p99_ms success_rate "status:count ..."
measure() { python3 "$ROOT/bench/front_door/client.py" "$1" "$REQUESTS" "$BODY"; }

# 1. Slowloris and idle connections against an ordinary gateway.
NINES_LOG="warn,nines=info" "$NINES" serve --config "$TMP/nines.toml" >"$TMP/a.log" 2>&1 &
PIDS+=($!)
A=$(addr_of "$TMP/a.log" listening)
measure "$A" >/dev/null  # warm-up
base50=(); base99=(); att50=(); att99=()
for r in $(seq "$ROUNDS"); do
    read -r p50 p99 ok codes < <(measure "$A")
    base50+=("$p50"); base99+=("$p99")
    python3 "$ATTACK" "$A" --slowloris 500 --idle 500 >"$TMP/attack.log" 2>&1 &
    apid=$!
    for _ in $(seq 100); do grep -q holding "$TMP/attack.log" && break; sleep 0.1; done
    read -r ap50 ap99 aok acodes < <(measure "$A")
    kill "$apid"; wait "$apid" 2>/dev/null || true
    att50+=("$ap50"); att99+=("$ap99")
    log "round $r: without p50 ${p50} ms p99 ${p99} ms ($codes); with 500 slowloris + 500 idle p50 ${ap50} ms p99 ${ap99} ms ($acodes, success $aok)"
done
B50=$(median_of "${base50[@]}"); B99=$(median_of "${base99[@]}")
T50=$(median_of "${att50[@]}"); T99=$(median_of "${att99[@]}")

# 2. The same gateway at a 1,024-descriptor limit with 1,100 idle attacker sockets.
NINES_LOG="warn,nines=info" prlimit --nofile=1024:1024 -- "$NINES" serve --config "$TMP/nines.toml" >"$TMP/b.log" 2>&1 &
PIDS+=($!)
B=$(addr_of "$TMP/b.log" listening)
python3 "$ATTACK" "$B" --idle 1100 --trickle 1 >"$TMP/attack-b.log" 2>&1 &
bpid=$!
for _ in $(seq 100); do grep -q holding "$TMP/attack-b.log" && break; sleep 0.1; done
read -r lp50 lp99 lok lcodes < <(measure "$B")
kill "$bpid"; wait "$bpid" 2>/dev/null || true
METRICS=$(curl -s "http://$B/metrics" | grep -E '^nines_connections_(closed_total|limit)' | tr '\n' ' ')
CAP_LINE=$(grep -c "file-descriptor limit cannot hold" "$TMP/b.log" || true)
LIMIT_LINES=$(grep -c "connection limit reached" "$TMP/b.log" || true)
log "1,024 descriptors, 1,100 idle attackers: p50 ${lp50} ms p99 ${lp99} ms, $lcodes, success $lok; $METRICS; start warning lines $CAP_LINE, limit log lines $LIMIT_LINES"

echo "| scenario | normal client p50 ms | p99 ms | answers |"
echo "|---|---|---|---|"
echo "| no attack (median of $ROUNDS rounds × $REQUESTS requests) | $B50 | $B99 | all 200 |"
echo "| 500 slowloris + 500 idle open (same rounds, interleaved) | $T50 | $T99 | see log |"
echo "| ratio attack / no attack | $(python3 -c "print(round($T50/$B50, 3))") | $(python3 -c "print(round($T99/$B99, 3))") | |"
echo "| 1,024-descriptor limit, 1,100 idle sockets ($REQUESTS requests) | $lp50 | $lp99 | $lcodes |"
echo
echo "Gateway at 1,024 descriptors: $METRICS"
