#!/usr/bin/env bash
# Access overhead: the same mock through two `nines serve` processes, one with no [auth] (auth and
# limits off) and one with a key that has RPM, TPM and a daily budget at key level plus a SQLite
# store receiving every usage record, measured with oha in interleaved rounds (non-streaming chat,
# one connection pool per run). Prints requests/s per round and the median ratio on/off.
# Everything listens on 127.0.0.1; every process started here is stopped on exit.
#
# Knobs: ROUNDS=3 DURATION=5s CONC=16 SKIP_BUILD=1 STORE=0 (no [store]: auth and limits only)
#        REDIS_URL=redis://127.0.0.1:6379 (limits in Redis; also prints Redis commands per request,
#        read from INFO commandstats, so run it where nothing else uses that Redis)
set -euo pipefail

BENCH_NAME=access-bench
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONC=${CONC:-16}
# The key goes to both sides (the off side, without [auth], ignores it): the same requests.
LOAD_ARGS=(-H "authorization: Bearer sk-bench-access-key-000000000001")
source "$(dirname "${BASH_SOURCE[0]}")/onoff.sh"

base >"$TMP/off.toml"
{ base; cat <<EOF

[auth]
[[auth.keys]]
key = "sk-bench-access-key-000000000001"
name = "bench"
user = "bench-user"
org = "bench-org"
limits = { rpm = 100000000, tpm = 100000000000, daily_budget = 1000000.0 }
EOF
if [[ "${STORE:-1}" == 1 ]]; then printf '\n[store]\ndata_dir = "%s"\n' "$TMP/data"; fi
if [[ -n "${REDIS_URL:-}" ]]; then printf '\n[limits]\nredis_url = "%s"\nredis_prefix = "nines-bench-%s"\n' "$REDIS_URL" "$$"; fi
} >"$TMP/on.toml"

start_gateways

redis_calls() { # round trips Redis has served for scripts (EVALSHA), from INFO commandstats;
    # commands a script runs inside Redis are counted there too, but cost no round trip
    redis-cli -u "$REDIS_URL" info commandstats | sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\).*/\1/p' | awk '{s+=$1} END {print s+0}'
}
warm_up
[[ -n "${REDIS_URL:-}" ]] && redis_before=$(redis_calls)
compare
rows=$(sqlite3 "$TMP/data/nines.db" 'select count(*) from usage_records' 2>/dev/null || echo "?")
log "median on/off ratio: $median; gateway CPU per request off/on: $cpu_median (usage records written: $rows)"
if [[ -n "${REDIS_URL:-}" ]]; then
    calls=$(( $(redis_calls) - redis_before ))
    log "Redis round trips (EVALSHA) during the measured rounds: $calls for $on_requests requests: $(python3 -c "print(round($calls / max($on_requests, 1), 3))") per request (admission + settlement)"
fi
echo "$median"
