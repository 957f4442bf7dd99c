#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ one after another, each for a set time, and prints per target
# the executions, exec/s, coverage (libFuzzer's `cov:` edges and `ft:` features) and findings.
#
#   bench/fuzz.sh                          # every target, 600 s each (an hour), nice 10
#   FUZZ_SECONDS=60 bench/fuzz.sh sse config   # a quick look at two
#   MINIMIZE=0 bench/fuzz.sh streams       # keep the run's new inputs out of fuzz/corpus
#
# Knobs (environment): FUZZ_SECONDS (600), NICE (10), MINIMIZE (1: merge the run's new inputs
# into fuzz/corpus/<target> and minimize it with `cargo fuzz cmin`, keeping one input per edge
# or compare operand rather than per hit count), FUZZ_OUT (logs
# and the summary; bench/out/fuzz), CARGO_TARGET_DIR (target/ of the repository by default: the
# fuzz build is for an explicit target triple, so it never mixes with the workspace's).
#
# One target at a time, niced, so the other core stays free. The targets build with nightly,
# `--sanitizer none` (the workspace forbids unsafe code, so AddressSanitizer would find nothing
# and halve the rate) and debug assertions, so an arithmetic overflow is a finding too.
# A crash, a panic, an assertion failure, a timeout (10 s for one input) or running out of
# memory (2 GB) stops its target; the input is kept in fuzz/artifacts/<target>/ and the script
# exits 1 after the other targets ran. Needs: rustup's nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz --locked`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source bench/common.sh

ALL=(sse requests responses streams config headers)
TARGETS=("$@")
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=("${ALL[@]}")
SECONDS_EACH=${FUZZ_SECONDS:-600}
NICE=${NICE:-10}
MINIMIZE=${MINIMIZE:-1}
OUT=${FUZZ_OUT:-$ROOT/bench/out/fuzz}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
FLAGS=(--sanitizer none --debug-assertions)
mkdir -p "$OUT"

for t in "${TARGETS[@]}"; do
    [[ -f fuzz/fuzz_targets/$t.rs ]] || { echo "no such target: $t (have: ${ALL[*]})" >&2; exit 2; }
done
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2; exit 2; }

cd fuzz

corpus_size() { # DIR → "files/bytes"
    local files bytes
    files=$(find "$1" -type f | wc -l)
    bytes=$(find "$1" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
    echo "$files/$bytes"
}

failed=0
rows=()
for t in "${TARGETS[@]}"; do
    log=$OUT/$t.log
    new=$TMP/new-$t
    mkdir -p "$new" "corpus/$t"
    echo "== $t: ${SECONDS_EACH}s (log: $log)" >&2
    # Built (if a source changed) before the clock starts.
    nice -n "$NICE" cargo +nightly fuzz build "${FLAGS[@]}" "$t" >"$OUT/$t.build.log" 2>&1
    started=$(date +%s)
    status=0
    # New inputs go to $new; the committed corpus is read as seeds only.
    nice -n "$NICE" cargo +nightly fuzz run "${FLAGS[@]}" "$t" "$new" "corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        >"$log" 2>&1 || status=$?
    ran=$(( $(date +%s) - started ))
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE[[:space:]]' "$log" | tail -n 1 || true)
    last=${done_line:-$(grep -E '^#[0-9]+[[:space:]]' "$log" | tail -n 1 || true)}
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    crashes=$(find "artifacts/$t" -type f 2>/dev/null -newermt "@$started" | wc -l || echo 0)
    finding=none
    if [[ $status -ne 0 ]]; then
        failed=1
        finding=$(grep -m1 -E "panicked at|ERROR: libFuzzer|SUMMARY" "$log" || echo "exit $status")
        echo "!! $t: $finding" >&2
        grep -E "^artifact_prefix|Test unit written to" "$log" >&2 || true
    fi
    if [[ $MINIMIZE == 1 && $status -eq 0 ]]; then
        cp -n "$new"/* "corpus/$t/" 2>/dev/null || true
        # By edges and compare operands, not hit counts: a corpus small enough to commit.
        nice -n "$NICE" cargo +nightly fuzz cmin "${FLAGS[@]}" "$t" "corpus/$t" -- -use_counters=0 \
            >"$OUT/$t.cmin.log" 2>&1 \
            || echo "!! $t: cmin failed (see $OUT/$t.cmin.log)" >&2
    fi
    rows+=("| $t | $ran | ${execs:-?} | ${rate:-?} | ${cov:-?} | ${ft:-?} | $(corpus_size "corpus/$t") | $crashes | $finding |")
done

summary=$OUT/summary.md
{
    echo "| target | seconds | executions | exec/s | cov | ft | corpus (files/bytes) | crash inputs | finding |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
    printf '%s\n' "${rows[@]}"
} | tee "$summary"
echo "($(date -u +%F) at $(git -C "$ROOT" rev-parse --short HEAD); summary in $summary)"
exit "$failed"
