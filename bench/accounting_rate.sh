#!/usr/bin/env bash
# Usage accounting's write rate against the request rate: one `nines serve` with the default
# store (per-minute rollups of every request; per-request rows for errors only), KEYS static keys,
# loaded by one oha per key at a fixed total rate of RATE requests/s and then 10 × RATE, each for
# DURATION. Around each phase /health/ready's `usage_rollups` counters are read: rollup rows
# written per second (each an additive upsert) against requests per second. With the store written
# by rollups, rows/s stay near KEYS × (1 model × 1 deployment) / flush_interval whatever the rate;
# a row per request would be the request rate. At the end the gateway is stopped with SIGTERM and
# the store read: the rollups' request count must equal the requests oha sent.
#
# STORE=sqlite (default) or STORE=postgres (a fresh database on DATABASE_URL's server, dropped on
# exit). Knobs: RATE=200 DURATION=10s KEYS=3 SKIP_BUILD=1
set -euo pipefail

BENCH_NAME=accounting-rate
RATE=${RATE:-200}
DURATION=${DURATION:-10s}
KEYS=${KEYS:-3}
CONC=${CONC:-16}
source "$(dirname "${BASH_SOURCE[0]}")/onoff.sh"

if [[ "${STORE:-sqlite}" == postgres ]]; then bench_postgres_db "nines_rate_$$"; fi

{
    base
    printf '\n[auth]\nadmin_key = "sk-bench-rate-admin-0001"\n'
    for k in $(seq "$KEYS"); do
        printf '[[auth.keys]]\nkey = "sk-bench-rate-key-%08d"\nname = "k%d"\n' "$k" "$k"
    done
    if [[ "${STORE:-sqlite}" == postgres ]]; then
        printf '\n[store]\ndatabase_url = "%s"\n' "$BENCH_DB_URL"
    else
        printf '\n[store]\ndata_dir = "%s"\n' "$TMP/data"
    fi
} >"$TMP/gw.toml"
NINES_LOG="warn,nines=info,nines::request=warn" "${PIN_GATEWAY[@]}" "$NINES" serve --config "$TMP/gw.toml" >"$TMP/gw.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
GW=$(addr_of "$TMP/gw.log" listening)

counters() { # -> rollup rows written, requests written
    curl -s -H "authorization: Bearer sk-bench-rate-admin-0001" "http://$GW/health/ready" | python3 -c 'import json,sys; u=json.load(sys.stdin)["checks"]["usage_rollups"]; print(u["rows_written"], u["requests_written"])'
}

load() { # TOTAL-RATE -> requests sent (oha, one per key, in parallel)
    local rate=$1 k outs=() pids=()
    for k in $(seq "$KEYS"); do
        "${PIN_LOAD[@]}" "$OHA" --no-tui --output-format json -z "$DURATION" -c "$CONC" -q "$(python3 -c "print($rate / $KEYS)")" \
            -m POST -T application/json -d "$BODY" -H "authorization: Bearer sk-bench-rate-key-$(printf %08d "$k")" \
            "http://$GW/v1/chat/completions" >"$TMP/oha-$rate-$k.json" &
        pids+=($!)
        outs+=("$TMP/oha-$rate-$k.json")
    done
    wait "${pids[@]}"
    # Answered requests. Requests oha cuts at the deadline are not among them, though the gateway
    # may have had (and counted) some: the rollups may exceed this by a few, never fall short.
    python3 -c 'import json,sys; print(sum(sum(json.load(open(f))["statusCodeDistribution"].values()) for f in sys.argv[1:]))' "${outs[@]}"
}

seconds=$(python3 -c "import re; d='$DURATION'; print(float(re.sub('[a-z]+','',d)) * {'ms':0.001,'s':1,'m':60}[re.sub('[0-9.]+','',d)])")
sent_total=0
for rate in "$RATE" $((RATE * 10)); do
    # Let the previous phase's last flush land first.
    sleep 2
    read -r rows0 req0 < <(counters)
    t0=$(date +%s.%N)
    sent=$(load "$rate")
    sleep 2
    read -r rows1 req1 < <(counters)
    t1=$(date +%s.%N)
    sent_total=$((sent_total + sent))
    log "rate $rate/s: sent $sent in ${DURATION} ($(python3 -c "print(round($sent / $seconds))") requests/s); rollup rows written $((rows1 - rows0)) ($(python3 -c "print(round(($rows1 - $rows0) / ($t1 - $t0), 2))") rows/s over $(python3 -c "print(round($t1 - $t0, 1))") s), requests in them $((req1 - req0))"
done
kill -TERM "$GW_PID"
wait "$GW_PID" || true
store_count() {
    if [[ "${STORE:-sqlite}" == postgres ]]; then psql -tA "$BENCH_DB_URL" -c "$1"
    else sqlite3 "$TMP/data/nines.db" "$1"; fi
}
rolled=$(store_count 'select coalesce(sum(requests), 0) from usage_rollups')
combos=$(store_count 'select count(distinct key_id || model || deployment) from usage_rollups')
records=$(store_count 'select count(*) from usage_records')
log "sent $sent_total requests; in the usage rollups: $rolled over $combos (key, model, deployment) combinations; per-request rows: $records"
(( rolled >= sent_total )) || log "MISMATCH: rollups count $rolled requests, fewer than the $sent_total oha had answered"
