#!/usr/bin/env bash
# Proxy-overhead benchmark: the chaos mock measured directly, and the same mock measured through
# `nines serve`, interleaved round by round, for non-streaming and streaming chat completions.
#
# Writes raw oha JSON and per-run CPU accounting to bench/out/ and the summary section
# "Foundation: proxy overhead" to bench/RESULTS.md. Everything listens on 127.0.0.1 only and every
# process started here is stopped on exit. See bench/README.md.
#
# Knobs (environment):
#   ROUNDS=3            interleaved rounds per (mode, concurrency); medians are over rounds
#   DURATION=5s         length of one measured oha run
#   WARMUP=2s           length of each warm-up run (per mode and target, at concurrency 16)
#   CONCURRENCY="1 16 64"
#   MODES="nonstream stream"
#   BENCH_NINES_LOG=... NINES_LOG filter for the gateway during the run; the default keeps the
#                       startup lines (needed to learn the port) and drops the per-request lines.
#                       Use BENCH_NINES_LOG=info to measure with per-request logging on.
#   OHA_THREADS=        oha --worker-threads (default: oha's own default, one per physical core)
#   QUIET_BUSY_PCT=25   before each run, wait until the machine (idle of our load) is less busy
#   QUIET_BUDGET_S=120  than this, spending at most this many seconds waiting in the whole run
#   LAYOUT=own-core     where the processes run. own-core (the default on 2+ CPUs): nines is pinned
#                       (taskset) to the last CPU and oha + the mock to the others, in both the
#                       direct and the through runs, so the load generator and the upstream get
#                       the same CPUs either way and nines' CPU is not taken from them (a gateway
#                       on a host of its own). shared: no pinning; all three share every CPU and
#                       the ratio measures total CPU per request (two HTTP hops against one).
#   SKIP_BUILD=1        use the existing release binary
#   RESULTS=bench/RESULTS.md   where to write the summary section
#   BENCH_OUT=bench/out        where to keep the raw outputs (emptied of old results first)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
OUT=${BENCH_OUT:-"$BENCH/out"}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-2s}
CONCURRENCY=${CONCURRENCY:-"1 16 64"}
MODES=${MODES:-"nonstream stream"}
BENCH_NINES_LOG=${BENCH_NINES_LOG:-"warn,nines=info,nines::request=warn"}
OHA_THREADS=${OHA_THREADS:-}
RESULTS=${RESULTS:-"$BENCH/RESULTS.md"}
TARGET_DIR=${CARGO_TARGET_DIR:-"$ROOT/target"}
NINES="$TARGET_DIR/release/nines"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- tools
command -v python3 >/dev/null || die "python3 is required (bench/summarize.py)"
command -v curl >/dev/null || die "curl is required (readiness checks)"
OHA=$(command -v oha || true)
if [[ -z "$OHA" && -x "$HOME/.cargo/bin/oha" ]]; then OHA="$HOME/.cargo/bin/oha"; fi
if [[ -z "$OHA" ]]; then
    log "oha not found; installing it (cargo install oha --locked)"
    cargo install oha --locked
    OHA="$HOME/.cargo/bin/oha"
fi
log "load generator: $("$OHA" --version)"
TIME=""
if [[ -x /usr/bin/time ]]; then TIME=/usr/bin/time; fi

# CPU layout: PIN_NINES / PIN_LOAD are command prefixes (empty when shared).
NPROC=$(nproc)
LAYOUT=${LAYOUT:-$( ((NPROC >= 2)) && echo own-core || echo shared)}
PIN_NINES=(); PIN_LOAD=()
case "$LAYOUT" in
    own-core)
        ((NPROC >= 2)) || die "LAYOUT=own-core needs at least 2 CPUs"
        command -v taskset >/dev/null || die "taskset (util-linux) is required for LAYOUT=own-core"
        PIN_NINES=(taskset -c "$((NPROC - 1))")
        PIN_LOAD=(taskset -c "0-$((NPROC - 2))")
        log "layout: nines on CPU $((NPROC - 1)); oha and the mock on CPUs 0-$((NPROC - 2))"
        ;;
    shared) log "layout: shared (no pinning)" ;;
    *) die "LAYOUT is own-core or shared, not '$LAYOUT'" ;;
esac

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "building nines (release)"
    (cd "$ROOT" && cargo build --release -p nines)
fi
[[ -x "$NINES" ]] || die "no release binary at $NINES"

# ---------------------------------------------------------------- processes
TMP=$(mktemp -d "${TMPDIR:-/tmp}/nines-bench.XXXXXX")
MOCK_PID=""
GW_PID=""
cleanup() {
    local rc=$?
    for pid in $GW_PID $MOCK_PID; do
        if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    for pid in $GW_PID $MOCK_PID; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.tsv "$OUT"/*.log "$OUT"/meta.txt

# Waits until a JSON log line with the given message appears in $1 and prints its addr.
wait_for_addr() {
    local file=$1 message=$2 pid=$3 addr=""
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || { cat "$file" >&2; die "process $pid exited during startup"; }
        addr=$(grep -F "\"message\":\"$message\"" "$file" 2>/dev/null \
            | head -1 | sed -n 's/.*"addr":"\([0-9.]*:[0-9]*\)".*/\1/p' || true)
        if [[ -n "$addr" ]]; then echo "$addr"; return 0; fi
        sleep 0.05
    done
    cat "$file" >&2
    die "no '$message' line in $file after 15s"
}

# Polls a URL until it answers 200.
wait_for_200() {
    local url=$1
    for _ in $(seq 300); do
        if curl -sf -o /dev/null --max-time 1 "$url"; then return 0; fi
        sleep 0.05
    done
    die "$url did not answer 200 within 15s"
}

log "starting the mock"
NINES_LOG=info "${PIN_LOAD[@]}" "$NINES" mock --listen 127.0.0.1:0 --name mock >"$OUT/mock.log" 2>&1 &
MOCK_PID=$!
MOCK_ADDR=$(wait_for_addr "$OUT/mock.log" "mock listening" "$MOCK_PID")
wait_for_200 "http://$MOCK_ADDR/v1/models"
log "mock on $MOCK_ADDR (pid $MOCK_PID)"

cat >"$TMP/nines.toml" <<EOF
[server]
listen = "127.0.0.1:0"

[[deployments]]
name = "mock"
provider = "openai-compatible"
model = "mock-model"
base_url = "http://$MOCK_ADDR/v1"

[[models]]
name = "bench"
deployments = ["mock"]
EOF

log "starting nines serve (NINES_LOG=$BENCH_NINES_LOG)"
NINES_LOG="$BENCH_NINES_LOG" "${PIN_NINES[@]}" "$NINES" serve --config "$TMP/nines.toml" >"$OUT/nines.log" 2>&1 &
GW_PID=$!
GW_ADDR=$(wait_for_addr "$OUT/nines.log" "listening" "$GW_PID")
wait_for_200 "http://$GW_ADDR/health"
wait_for_200 "http://$GW_ADDR/v1/models"
log "nines on $GW_ADDR (pid $GW_PID)"

status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
RSS_IDLE_KIB=$(status_kib "$GW_PID" VmRSS)

# ---------------------------------------------------------------- requests
body() { # body MODEL MODE
    local stream=""
    if [[ $2 == stream ]]; then stream=',"stream":true,"stream_options":{"include_usage":true}'; fi
    printf '{"model":"%s","messages":[{"role":"user","content":"Say hello to the benchmark."}],"max_tokens":32%s}' "$1" "$stream"
}
for mode in nonstream stream; do
    body mock-model "$mode" >"$TMP/direct-$mode.json"
    body bench "$mode" >"$TMP/through-$mode.json"
done
url_of() { if [[ $1 == direct ]]; then echo "http://$MOCK_ADDR/v1/chat/completions"; else echo "http://$GW_ADDR/v1/chat/completions"; fi; }

# Sanity: both paths answer the same shape, so the comparison compares like with like.
STREAM_EVENTS=""; NONSTREAM_BYTES=""
for target in direct through; do
    r=$(curl -sf --max-time 5 -H 'content-type: application/json' \
        --data-binary "@$TMP/$target-nonstream.json" "$(url_of "$target")") \
        || die "$target non-streaming request failed"
    grep -q '"chat.completion"' <<<"$r" || die "$target non-streaming answer is not a chat.completion: $r"
    r=$(curl -sfN --max-time 5 -H 'content-type: application/json' \
        --data-binary "@$TMP/$target-stream.json" "$(url_of "$target")") \
        || die "$target streaming request failed"
    grep -q '^data: \[DONE\]' <<<"$r" || die "$target stream has no [DONE]: $r"
    grep -q '"usage":{' <<<"$r" || die "$target stream has no usage chunk: $r"
    if [[ $target == direct ]]; then STREAM_EVENTS=$(grep -c '^data:' <<<"$r"); fi
done
NONSTREAM_BYTES=$(curl -sf --max-time 5 -H 'content-type: application/json' \
    --data-binary "@$TMP/direct-nonstream.json" "$(url_of direct)" | wc -c)
log "sanity checks passed"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# busy and total jiffies of the whole machine
sys_ticks() { awk '$1 == "cpu" {busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6}' /proc/stat; }
CLK_TCK=$(getconf CLK_TCK)

# Waits (within a total budget) until the machine is quiet: other work on a shared machine
# competes for the same cores and would blur the comparison. Best effort, never fails.
QUIET_BUSY_PCT=${QUIET_BUSY_PCT:-25}
QUIET_BUDGET_S=${QUIET_BUDGET_S:-120}
quiet_waited=0
wait_for_quiet() {
    local b0 t0 b1 t1 busy
    while true; do
        read -r b0 t0 < <(sys_ticks); sleep 0.5; read -r b1 t1 < <(sys_ticks)
        busy=$(awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) 'BEGIN {printf "%d", (t > 0 ? 100 * b / t : 0)}')
        if ((busy < QUIET_BUSY_PCT)); then return 0; fi
        if ((quiet_waited >= QUIET_BUDGET_S * 2)); then
            log "machine busy (${busy}% with no load running); quiet-wait budget spent, measuring anyway"
            return 0
        fi
        if ((quiet_waited % 10 == 0)); then log "machine busy (${busy}% with no load running); waiting"; fi
        quiet_waited=$((quiet_waited + 1))
    done
}

OHA_COMMON=(--no-tui --output-format json -w -m POST -T application/json)
if [[ -n "$OHA_THREADS" ]]; then OHA_COMMON+=(--worker-threads "$OHA_THREADS"); fi

# run_oha OUTFILE DURATION CONC TARGET MODE -> oha JSON in OUTFILE; prints "oha_cpu_s" on stdout
run_oha() {
    local out=$1 dur=$2 conc=$3 target=$4 mode=$5
    local cmd=("${PIN_LOAD[@]}" "$OHA" "${OHA_COMMON[@]}" -z "$dur" -c "$conc" -D "$TMP/$target-$mode.json" -o "$out" "$(url_of "$target")")
    if [[ -n "$TIME" ]]; then
        "$TIME" -f '%U %S' -o "$TMP/time" "${cmd[@]}" >/dev/null
        awk '{printf "%.3f\n", $1 + $2}' "$TMP/time"
    else
        "${cmd[@]}" >/dev/null
        echo nan
    fi
}

hits() { curl -sf --max-time 2 "http://$MOCK_ADDR/_mock/hits" | python3 -c \
    'import json,sys; d=json.load(sys.stdin); print(d.get("total", d.get("hits", "nan")) if isinstance(d, dict) else len(d))' \
    2>/dev/null || echo nan; }

log "warm-up ($WARMUP per mode and target, concurrency 16)"
for mode in $MODES; do
    for target in direct through; do
        run_oha "$OUT/warmup-$mode-$target.json" "$WARMUP" 16 "$target" "$mode" >/dev/null
    done
done

printf 'mode\tconc\ttarget\tround\twall_s\toha_cpu_s\tnines_cpu_s\tmock_cpu_s\tsys_busy_pct\tmock_hits\n' >"$OUT/cpu.tsv"
total_runs=0
for _ in $MODES; do for _ in $CONCURRENCY; do total_runs=$((total_runs + 2 * ROUNDS)); done; done
n=0
for mode in $MODES; do
    for conc in $CONCURRENCY; do
        for round in $(seq "$ROUNDS"); do
            for target in direct through; do
                n=$((n + 1))
                wait_for_quiet
                file="$OUT/$mode-c$conc-$target-r$round.json"
                h0=$(hits); g0=$(cpu_ticks "$GW_PID"); m0=$(cpu_ticks "$MOCK_PID"); read -r b0 t0 < <(sys_ticks); w0=$(date +%s.%N)
                oha_cpu=$(run_oha "$file" "$DURATION" "$conc" "$target" "$mode")
                w1=$(date +%s.%N); read -r b1 t1 < <(sys_ticks); g1=$(cpu_ticks "$GW_PID"); m1=$(cpu_ticks "$MOCK_PID"); h1=$(hits)
                busy=$(awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) 'BEGIN {printf "%.1f", (t > 0 ? 100 * b / t : 0)}')
                dh=nan; if [[ $h0 != nan && $h1 != nan ]]; then dh=$((h1 - h0)); fi
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$conc" "$target" "$round" \
                    "$(awk -v a="$w0" -v b="$w1" 'BEGIN {printf "%.3f", b - a}')" "$oha_cpu" \
                    "$(awk -v d=$((g1 - g0)) -v h="$CLK_TCK" 'BEGIN {printf "%.3f", d / h}')" \
                    "$(awk -v d=$((m1 - m0)) -v h="$CLK_TCK" 'BEGIN {printf "%.3f", d / h}')" \
                    "$busy" "$dh" >>"$OUT/cpu.tsv"
                log "[$n/$total_runs] $mode c=$conc $target round $round: $(python3 "$BENCH/summarize.py" --brief "$file")"
            done
        done
    done
done

sleep 1
RSS_HWM_KIB=$(status_kib "$GW_PID" VmHWM)
RSS_AFTER_KIB=$(status_kib "$GW_PID" VmRSS)
log "nines RSS: idle ${RSS_IDLE_KIB} KiB, peak ${RSS_HWM_KIB} KiB, after ${RSS_AFTER_KIB} KiB"

# ---------------------------------------------------------------- machine and summary
mem_total_kib=$(awk '$1 == "MemTotal:" {print $2}' /proc/meminfo)
{
    printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf 'nproc\t%s\n' "$(nproc)"
    printf 'layout\t%s\n' "$LAYOUT"
    printf 'cpu\t%s\n' "$(awk -F': *' '$1 ~ /^model name/ {print $2; exit}' /proc/cpuinfo)"
    printf 'mem\t%s GiB\n' "$(awk -v k="$mem_total_kib" 'BEGIN {printf "%.1f", k / 1048576}')"
    printf 'kernel\t%s\n' "$(uname -sr)"
    printf 'rustc\t%s\n' "$(rustc --version 2>/dev/null || echo unknown)"
    printf 'oha\t%s\n' "$("$OHA" --version)"
    printf 'oha_threads\t%s\n' "${OHA_THREADS:-default}"
    printf 'commit\t%s\n' "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- crates 2>/dev/null || echo ' (+ uncommitted changes)')"
    printf 'nines_log\t%s\n' "$BENCH_NINES_LOG"
    printf 'rounds\t%s\n' "$ROUNDS"
    printf 'duration\t%s\n' "$DURATION"
    printf 'warmup\t%s\n' "$WARMUP"
    printf 'concurrency\t%s\n' "$CONCURRENCY"
    printf 'modes\t%s\n' "$MODES"
    printf 'stream_events\t%s\n' "$STREAM_EVENTS"
    printf 'nonstream_bytes\t%s\n' "$NONSTREAM_BYTES"
    printf 'rss_idle_kib\t%s\n' "$RSS_IDLE_KIB"
    printf 'rss_hwm_kib\t%s\n' "$RSS_HWM_KIB"
    printf 'rss_after_kib\t%s\n' "$RSS_AFTER_KIB"
} >"$OUT/meta.txt"

python3 "$BENCH/summarize.py" --out "$OUT" --results "$RESULTS"
log "wrote $RESULTS"
