#!/usr/bin/env python3
"""How fast breaker state reaches other replicas through Redis (issue 15).

Starts its own redis-server on a free port, a `nines mock` whose model fails for half of every
second (its /models always answers), and N `nines serve` replicas sharing that Redis, with
completion probes every 50 ms and 200 ms cooldowns, so breakers open, go half-open and close many
times a second on whichever replica holds the leases. Every replica logs each transition it
applied from another one with `lag_ms`: the transition's wall-clock time on the replica where it
happened to the moment it was applied here (one host, one clock). Prints a JSON summary: the lag
distribution (p50, p99, max, count) and, measured in the same run as the baseline, Redis's own
round trip (`redis-cli --latency`, the floor any pub/sub propagation pays).

Usage: breakers.py --nines target/release/nines [--replicas 3] [--seconds 30]
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(cmd, lines):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def read():
        for line in iter(proc.stdout.readline, ""):
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    return proc


def wait_for(lines, message, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for line in list(lines):
            try:
                v = json.loads(line)
            except ValueError:
                continue
            if v.get("message") == message:
                return v
        time.sleep(0.05)
    raise SystemExit(f"no '{message}' line within {timeout} s")


CONFIG = """
[server]
listen = "127.0.0.1:0"

[resilience.breaker]
consecutive_failures = 1
cooldown = "200ms"
max_cooldown = "200ms"
slow_start = "0s"

[resilience.probes]
kind = "completion"
interval = "50ms"
failed_interval = "50ms"
timeout = "1s"

[[deployments]]
name = "d"
provider = "openai-compatible"
model = "m"
base_url = "{mock}"
api_keys = ["sk-upstream"]

[[models]]
name = "chat"
deployments = ["d"]

[redis]
url = "redis://127.0.0.1:{redis}"
prefix = "bench-{pid}"
probe_lease = "2s"
"""


def percentile(values, p):
    ordered = sorted(values)
    if not ordered:
        return None
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nines", required=True)
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=30)
    args = ap.parse_args()
    if not shutil.which("redis-server"):
        raise SystemExit("redis-server is not installed")

    tmp = tempfile.mkdtemp(prefix="nines-bench-breakers-")
    procs = []
    try:
        redis_port = free_port()
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        fault = json.dumps({"status": 500, "spare_models": True,
                            "cycle_period_ms": 1000, "cycle_down_ms": 500})
        mock_lines = []
        procs.append(spawn([args.nines, "mock", "--listen", "127.0.0.1:0", "--name", "m",
                            "--fault", fault], mock_lines))
        mock = wait_for(mock_lines, "mock listening")["base_url"]
        path = os.path.join(tmp, "nines.toml")
        with open(path, "w") as f:
            f.write(CONFIG.format(mock=mock, redis=redis_port, pid=os.getpid()))
        replica_lines = []
        for _ in range(args.replicas):
            lines = []
            procs.append(spawn([args.nines, "serve", "--config", path], lines))
            wait_for(lines, "listening")
            replica_lines.append(lines)
        # Leases and subscriptions settle, then the measured window.
        time.sleep(2)
        marks = [len(lines) for lines in replica_lines]
        # Sampled for the whole window; prints "min max avg samples" (ms) when stopped.
        latency = subprocess.Popen(
            ["redis-cli", "-p", str(redis_port), "--latency", "--raw"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(args.seconds)
        latency.terminate()
        out, _ = latency.communicate(timeout=5)
        rtt = out.split()
        lags, applied_by, transitions = [], [], {}
        for i, lines in enumerate(replica_lines):
            n = 0
            for line in lines[marks[i]:]:
                try:
                    v = json.loads(line)
                except ValueError:
                    continue
                if v.get("message") == "breaker state from another replica applied":
                    lags.append(int(v["lag_ms"]))
                    transitions[v["transition"]] = transitions.get(v["transition"], 0) + 1
                    n += 1
            applied_by.append(n)
        opened_here = [sum('"breaker opened"' in line for line in lines[marks[i]:])
                       for i, lines in enumerate(replica_lines)]
        shared = [sum('breaker state shared' in line for line in lines)
                  for lines in replica_lines]
        summary = {
            "opened_on_each_replica": opened_here,
            "replicas_sharing": shared,
            "replicas": args.replicas,
            "seconds": args.seconds,
            "applied": len(lags),
            "applied_per_replica": applied_by,
            "by_transition": transitions,
            "lag_ms": {
                "p50": percentile(lags, 50),
                "p99": percentile(lags, 99),
                "max": max(lags) if lags else None,
                "mean": round(statistics.mean(lags), 3) if lags else None,
            },
            "redis_round_trip_ms": dict(zip(["min", "max", "avg", "samples"], rtt)),
        }
        print(json.dumps(summary, indent=2))
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
