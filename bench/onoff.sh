# Shared by the on/off benchmarks (access.sh, telemetry.sh): one mock, two `nines serve`
# processes that differ only in what the caller writes to $TMP/off.toml and $TMP/on.toml, and
# interleaved oha rounds against both. Sourced, not run. The caller sets BENCH_NAME, ROUNDS,
# DURATION and CONC before sourcing.
#
# LOAD_ARGS (an array, set before sourcing) is passed to oha on both sides.
#
# Provides: log, addr_of, $TMP (removed on exit, with every process started here), $MOCK,
# base (the config both sides share), start_gateways (sets $OFF and $ON), warm_up, compare (the
# measured rounds; sets $median, $cpu_median, $off_cpu_median, $on_cpu_median and $on_requests).
# NINES_OFF / NINES_ON run each side from its own binary (default: this tree's release build),
# so two builds can be compared with one config (before_after.sh).
#
# LAYOUT=own-core (the default on 2+ CPUs) pins both gateways to the last CPU and oha and the mock
# to the others, so each gateway is measured on a core of its own and its CPU is not taken from
# the load generator; LAYOUT=shared pins nothing. Either way each round also reads the gateway's
# CPU time per request from /proc, and `compare` reports the off/on ratio of it: the share of
# requests/s a gateway whose core is saturated keeps with the feature on.
#
# LAYOUT=side-by-side pins them the same way but loads both gateways at the same time, each with
# its own oha: the two share the last CPU (the scheduler gives each about half), so whatever else
# the machine does at that moment slows both alike. On this shared machine, where the off side
# alone swings by 20 % between sequential rounds, its rounds agree within about 2 %. It is the
# stricter reading: the two gateways also share that core's caches, so a feature whose cost is
# memory traffic rather than instructions costs more here than on a core of its own.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NINES="${CARGO_TARGET_DIR:-$ROOT/target}/release/nines"
NINES_OFF=${NINES_OFF:-$NINES}
NINES_ON=${NINES_ON:-$NINES}
OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
log() { printf '[%s %s] %s\n' "$BENCH_NAME" "$(date +%H:%M:%S)" "$*" >&2; }

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then (cd "$ROOT" && cargo build --release -p nines); fi
[[ -x "$OHA" ]] || { log "oha not found: cargo install oha --locked"; exit 1; }

NPROC=$(nproc)
LAYOUT=${LAYOUT:-$( ((NPROC >= 2)) && echo own-core || echo shared)}
PIN_GATEWAY=(); PIN_LOAD=()
if [[ $LAYOUT == own-core || $LAYOUT == side-by-side ]]; then
    PIN_GATEWAY=(taskset -c "$((NPROC - 1))")
    PIN_LOAD=(taskset -c "0-$((NPROC - 2))")
fi

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NINES_LOG=info "${PIN_LOAD[@]}" "$NINES" mock --listen 127.0.0.1:0 --name mock >"$TMP/mock.log" 2>&1 &
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
        local binary=$NINES_OFF
        [[ $mode == on ]] && binary=$NINES_ON
        NINES_LOG="warn,nines=info,nines::request=warn" "${PIN_GATEWAY[@]}" "$binary" serve --config "$TMP/$mode.toml" >"$TMP/$mode.log" 2>&1 &
        PIDS+=($!)
        eval "${mode^^}_PID=$!"
    done
    OFF=$(addr_of "$TMP/off.log" listening)
    ON=$(addr_of "$TMP/on.log" listening)
}

BODY=${BODY:-'{"model":"bench","messages":[{"role":"user","content":"Hello there, how are you today?"}],"max_tokens":64}'}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK)

# LOAD_ARGS: oha arguments for both sides (set by the caller before sourcing): what makes the two
# runs the same traffic. A header only the 'on' side reads is still sent to the 'off' side, so
# the off side parses the same bytes and the ratio prices the feature, not a longer request.
LOAD_ARGS=(${LOAD_ARGS[@]+"${LOAD_ARGS[@]}"})

run() { # ADDR OHA-ARGS... -> requests/s, success rate, requests
    local addr=$1; shift
    "${PIN_LOAD[@]}" "$OHA" --no-tui --output-format json -z "$DURATION" -c "$CONC" -m POST -T application/json \
        -d "$BODY" ${LOAD_ARGS[@]+"${LOAD_ARGS[@]}"} "$@" "http://$addr/v1/chat/completions" \
        | python3 -c 'import json,sys; s=json.load(sys.stdin); print(round(s["summary"]["requestsPerSec"],1), s["summary"]["successRate"], sum(s["statusCodeDistribution"].values()))'
}

warm_up() { # OHA-ARGS for the 'on' side...
    log "warm-up"
    run "$OFF" >/dev/null
    run "$ON" "$@" >/dev/null
}

# run_cpu PID ADDR OHA-ARGS... -> requests/s, success rate, requests, gateway CPU µs per request
run_cpu() {
    local pid=$1; shift
    local t0 t1 rps ok n
    t0=$(cpu_ticks "$pid")
    read -r rps ok n < <(run "$@")
    t1=$(cpu_ticks "$pid")
    echo "$rps $ok $n $(python3 -c "print(round(($t1 - $t0) * 1e6 / $CLK_TCK / max($n, 1), 1))")"
}


compare() { # OHA-ARGS for the 'on' side...
    local ratios=() cpu_ratios=() off_cpus=() on_cpus=() r off_rps off_ok off_cpu on_rps on_ok on_n on_cpu ratio cpu_ratio
    on_requests=0
    log "layout: $LAYOUT"
    for r in $(seq "$ROUNDS"); do
        if [[ $LAYOUT == side-by-side ]]; then
            run_cpu "$OFF_PID" "$OFF" >"$TMP/round.off" &
            local off_job=$!
            run_cpu "$ON_PID" "$ON" "$@" >"$TMP/round.on"
            wait "$off_job"
            read -r off_rps off_ok _ off_cpu <"$TMP/round.off"
            read -r on_rps on_ok on_n on_cpu <"$TMP/round.on"
        else
            read -r off_rps off_ok _ off_cpu < <(run_cpu "$OFF_PID" "$OFF")
            read -r on_rps on_ok on_n on_cpu < <(run_cpu "$ON_PID" "$ON" "$@")
        fi
        on_requests=$((on_requests + on_n))
        ratio=$(python3 -c "print(round($on_rps / $off_rps, 3))")
        cpu_ratio=$(python3 -c "print(round($off_cpu / $on_cpu, 3))")
        ratios+=("$ratio")
        cpu_ratios+=("$cpu_ratio")
        off_cpus+=("$off_cpu")
        on_cpus+=("$on_cpu")
        log "round $r: off ${off_rps} req/s (success ${off_ok}, ${off_cpu} µs CPU/request), on ${on_rps} req/s (success ${on_ok}, ${on_cpu} µs CPU/request), on/off ${ratio}, CPU off/on ${cpu_ratio}"
    done
    median=$(median_of "${ratios[@]}")
    cpu_median=$(median_of "${cpu_ratios[@]}")
    off_cpu_median=$(median_of "${off_cpus[@]}")
    on_cpu_median=$(median_of "${on_cpus[@]}")
}
