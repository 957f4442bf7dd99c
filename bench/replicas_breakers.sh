#!/usr/bin/env bash
# Breaker propagation between replicas through Redis (issue 15): three `nines serve` processes
# and a mock whose model fails half of every second; prints the lag from a transition on one
# replica to its application on the others (p50, p99, max) and Redis's own round trip measured in
# the same run. See bench/replicas/breakers.py.
#
# Needs: redis-server and redis-cli (Debian's redis-server package), python3.
# Knobs: REPLICAS=3 SECONDS_=30 SKIP_BUILD=1
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NINES="${CARGO_TARGET_DIR:-$ROOT/target}/release/nines"
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then (cd "$ROOT" && cargo build --release -p nines); fi
python3 "$ROOT/bench/replicas/breakers.py" --nines "$NINES" \
    --replicas "${REPLICAS:-3}" --seconds "${SECONDS_:-30}"
