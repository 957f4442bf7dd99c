#!/usr/bin/env bash
# Two nines replicas behind HAProxy (Debian's package), sharing Redis and Postgres, driven by the
# official OpenAI Python SDK at its default settings — streaming and not, kept-alive and fresh
# connections — through 20 rolling restarts, 10 config reloads and a `kill -9` of one replica.
# Prints a JSON summary (failed requests and truncated streams per phase, the limited key's
# admitted count against its bound, HAProxy's retries); see bench/replicas/run.py.
#
# Needs: HAProxy (installed with apt-get when missing), python3 (the SDK goes into target/pyenv,
# pinned as the tests pin it), Redis and Postgres (REDIS_URL, DATABASE_URL; a fresh database is
# made on that server and dropped on exit). Everything listens on 127.0.0.1.
#
# Knobs: RESTARTS=20 RELOADS=10 CLIENTS=2 (of each of the 4 kinds) SKIP_BUILD=1
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NINES="${CARGO_TARGET_DIR:-$ROOT/target}/release/nines"
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
log() { printf '[replicas %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then (cd "$ROOT" && cargo build --release -p nines); fi
if ! command -v haproxy >/dev/null; then
    log "installing HAProxy (Debian's package)"
    sudo=""; [[ $(id -u) -ne 0 ]] && sudo=sudo
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
fi
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

VENV="$ROOT/target/pyenv"
REQUIREMENTS="$ROOT/crates/nines/tests/sdk/requirements.txt"
if ! cmp -s "$VENV/requirements.txt" "$REQUIREMENTS"; then
    log "installing the SDKs into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    cp "$REQUIREMENTS" "$VENV/requirements.txt"
fi

DB="nines_replicas_$$"
psql -q "$DATABASE_URL" -c "CREATE DATABASE $DB"
trap 'psql -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
log "HAProxy: $("$HAPROXY" -v | head -1)"
"$VENV/bin/python" "$ROOT/bench/replicas/run.py" \
    --nines "$NINES" --haproxy "$HAPROXY" \
    --redis-url "$REDIS_URL" --db-url "${DATABASE_URL%/*}/$DB" \
    --restarts "${RESTARTS:-20}" --reloads "${RELOADS:-10}" --clients "${CLIENTS:-2}" \
    --logdir "$ROOT/bench/out/replicas"
