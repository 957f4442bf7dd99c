#!/usr/bin/env bash
# Resilience figures: failover overhead, time to breaker open, attempts per request under a total
# outage. Runs crates/nines/examples/resilience_bench.rs (release) against in-process chaos mocks
# on 127.0.0.1 and replaces the "Resilience" section of bench/RESULTS.md with its output.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out
cargo build --release -p nines --example resilience_bench
{
  echo "<!-- resilience:begin -->"
  echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') at commit $(git rev-parse --short HEAD) with \`bench/resilience.sh\`"
  echo "on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), shared with other work."
  echo
  ./target/release/examples/resilience_bench
  echo "<!-- resilience:end -->"
} > bench/out/resilience.md
bench/results_section.py resilience bench/out/resilience.md
cat bench/out/resilience.md
