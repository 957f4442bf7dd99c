#!/usr/bin/env bash
# Availability against the independence bound (issue 16): three chaos mocks with independent
# outages (94 % and 99 % available each), a fixed request rate through one nines model, and the
# client's success rate against 1 − Π(1 − aᵢ) of the providers' measured availability, with
# detection times, extra attempts per request, and the status page's and SLA report's counts of
# the same run. Runs crates/nines/examples/chaos_bench.rs (release) on 127.0.0.1 and replaces the
# "Chaos" section of bench/RESULTS.md with its output.
#
# Knobs: CHAOS_SECONDS (300 per scenario; three scenarios), CHAOS_RATE (50 requests/s), SKIP_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out
[[ -n "${SKIP_BUILD:-}" ]] || cargo build --release -p nines --example chaos_bench
{
  echo "<!-- chaos:begin -->"
  echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') at commit $(git rev-parse --short HEAD) with \`bench/chaos.sh\`"
  echo "on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), shared with other work."
  echo
  "${CARGO_TARGET_DIR:-target}/release/examples/chaos_bench"
  echo "<!-- chaos:end -->"
} > bench/out/chaos.md
bench/results_section.py chaos bench/out/chaos.md
cat bench/out/chaos.md
