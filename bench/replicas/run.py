#!/usr/bin/env python3
"""Two nines replicas behind HAProxy, sharing Redis and Postgres, under load from the official
OpenAI Python SDK at its default settings (streaming and not, keep-alive and fresh connections),
through rolling restarts, config reloads and a `kill -9`. Prints a JSON summary and a Markdown
section for bench/RESULTS.md.

Started by bench/replicas.sh (which builds nines, finds HAProxy and the SDK); everything listens on
127.0.0.1 and every process started here is stopped on exit.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from openai import OpenAI

MAIN_KEY = "sk-replicas-main-key-000000000001"
LIMITED_KEY = "sk-replicas-limited-key-0000000002"
LIMITED_RPM = 120


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=2.0):
    """(status, body) of a GET, (None, error text) when it cannot connect."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except Exception as e:  # noqa: BLE001 - any failure to connect is "not up"
        return None, str(e)


def wait_until(what, cond, within=30.0, every=0.05):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(every)
    raise SystemExit(f"timed out waiting for {what}")


class Proc:
    """A child process with its output in a log file."""

    def __init__(self, name, args, logdir, env=None):
        self.name = name
        self.log = open(os.path.join(logdir, f"{name}.log"), "ab")
        self.p = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def signal(self, sig):
        if self.p.poll() is None:
            self.p.send_signal(sig)

    def wait(self, within):
        try:
            return self.p.wait(timeout=within)
        except subprocess.TimeoutExpired:
            raise SystemExit(f"{self.name} did not exit within {within} s")

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def config_text(mock_url, redis_url, prefix, db_url, variant):
    # `variant` changes the text (a model added) so each reload has something to apply.
    extra = f'\n[[models]]\nname = "variant-{variant}"\ndeployments = ["mock"]\n' if variant else ""
    return f"""
[server]
listen = "127.0.0.1:0"
drain_delay = "2s"
shutdown_grace = "30s"

[resilience.probes]
enabled = false

[[deployments]]
name = "mock"
provider = "openai-compatible"
model = "mock-model"
base_url = "{mock_url}"

[[models]]
name = "chat"
deployments = ["mock"]
{extra}
[auth]
[[auth.keys]]
key = "{MAIN_KEY}"
name = "main"

[[auth.keys]]
key = "{LIMITED_KEY}"
name = "limited"
limits = {{ rpm = {LIMITED_RPM} }}

[limits]
redis_url = "{redis_url}"
redis_prefix = "{prefix}"

[store]
database_url = "{db_url}"
"""


HAPROXY = """
global
    maxconn 2000

defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    # A replica that refuses or drops a connection before answering: try again, elsewhere.
    retries 3
    option redispatch
    retry-on conn-failure empty-response
    option http-buffer-request

frontend gateway
    bind 127.0.0.1:{front}
    default_backend nines

backend nines
    balance roundrobin
    # Out of rotation as soon as readiness says so (nines answers 503 from the first moment of
    # a shutdown, and keeps accepting for its drain_delay of 2 s).
    option httpchk GET /health/ready
    http-check expect status 200
    default-server inter 500ms fastinter 250ms downinter 500ms fall 1 rise 2
    http-response set-header x-replica %s
    server r0 127.0.0.1:{p0} check
    server r1 127.0.0.1:{p1} check

listen stats
    bind 127.0.0.1:{stats}
    stats enable
    stats uri /stats
"""


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.phase = "warmup"
        self.counts = {}

    def add(self, what, detail=None):
        with self.lock:
            phase = self.counts.setdefault(self.phase, {"ok": 0, "failed": 0, "truncated": 0, "errors": {}})
            phase[what] += 1
            if detail:
                phase["errors"][detail] = phase["errors"].get(detail, 0) + 1


def worker(base, kind, tally, stop):
    """One client: `stream` or not, a kept-alive client or a fresh one per request."""
    stream = kind.startswith("stream")
    client = OpenAI(base_url=base + "/v1", api_key=MAIN_KEY)
    while not stop.is_set():
        if kind.endswith("fresh"):
            client = OpenAI(base_url=base + "/v1", api_key=MAIN_KEY)
        try:
            if stream:
                finish = None
                for chunk in client.chat.completions.create(
                    model="chat",
                    messages=[{"role": "user", "content": "Hello there"}],
                    stream=True,
                ):
                    if chunk.choices and chunk.choices[0].finish_reason:
                        finish = chunk.choices[0].finish_reason
                # A stream that ended without a finish reason and without an error is a truncated
                # answer presented as whole: the one thing that must never happen.
                tally.add("ok" if finish else "truncated")
            else:
                r = client.chat.completions.create(
                    model="chat", messages=[{"role": "user", "content": "Hello there"}]
                )
                tally.add("ok" if r.choices[0].message.content else "truncated")
        except Exception as e:  # noqa: BLE001 - every failure the application would see
            tally.add("failed", type(e).__name__ + ": " + str(e)[:120])
        if kind.endswith("fresh"):
            client.close()


def limited_worker(base, stop, results):
    """Hammers the rate-limited key at ~5 requests/s (300 a minute against a 120 a minute limit)."""
    client = OpenAI(base_url=base + "/v1", api_key=LIMITED_KEY, max_retries=0)
    while not stop.is_set():
        started = time.monotonic()
        try:
            client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
            results.append((started, "ok"))
        except Exception as e:  # noqa: BLE001
            results.append((started, getattr(e, "status_code", None) or type(e).__name__))
        time.sleep(max(0.0, 0.2 - (time.monotonic() - started)))


def haproxy_servers(stats_port):
    """{server: row} from HAProxy's CSV stats."""
    status, text = get(f"http://127.0.0.1:{stats_port}/stats;csv")
    if status != 200:
        return {}
    lines = text.splitlines()
    header = lines[0].lstrip("# ").split(",")
    rows = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(",")))
        if row.get("pxname") == "nines" and row.get("svname") in ("r0", "r1", "BACKEND"):
            rows[row["svname"]] = row
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nines", required=True)
    ap.add_argument("--haproxy", default="haproxy")
    ap.add_argument("--redis-url", required=True)
    ap.add_argument("--db-url", required=True)
    ap.add_argument("--restarts", type=int, default=20)
    ap.add_argument("--reloads", type=int, default=10)
    ap.add_argument("--clients", type=int, default=2, help="clients of each kind (4 kinds)")
    ap.add_argument("--logdir", default=None)
    args = ap.parse_args()

    logdir = args.logdir or tempfile.mkdtemp(prefix="nines-replicas-")
    os.makedirs(logdir, exist_ok=True)
    procs = []

    def cleanup(*_):
        for p in procs:
            p.stop()

    signal.signal(signal.SIGTERM, lambda *_: (cleanup(), sys.exit(1)))
    try:
        mock_port = free_port()
        fault = json.dumps({"latency_ms": 20, "chunk_delay_ms": 25})
        mock = Proc("mock", [args.nines, "mock", "--listen", f"127.0.0.1:{mock_port}", "--fault", fault], logdir)
        procs.append(mock)
        wait_until("the mock", lambda: get(f"http://127.0.0.1:{mock_port}/v1/models")[0] == 200)

        prefix = f"nines-replicas-{os.getpid()}"
        path = os.path.join(logdir, "nines.toml")
        variant = [0]

        def write_config():
            with open(path, "w") as f:
                f.write(config_text(f"http://127.0.0.1:{mock_port}/v1", args.redis_url, prefix, args.db_url, variant[0]))

        write_config()
        ports = [free_port(), free_port()]
        generation = [0]
        env = dict(os.environ, NINES_LOG="info,nines::request=warn")

        def start_replica(i):
            generation[0] += 1
            p = Proc(f"r{i}-{generation[0]}", [args.nines, "serve", "--config", path, "--listen", f"127.0.0.1:{ports[i]}"], logdir, env)
            procs.append(p)
            wait_until(f"replica {i} ready", lambda: get(f"http://127.0.0.1:{ports[i]}/health/ready")[0] == 200)
            return p

        replicas = [start_replica(0), start_replica(1)]
        front, stats = free_port(), free_port()
        cfg = os.path.join(logdir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(HAPROXY.format(front=front, stats=stats, p0=ports[0], p1=ports[1]))
        procs.append(Proc("haproxy", [args.haproxy, "-f", cfg, "-db"], logdir))
        up = lambda name: haproxy_servers(stats).get(name, {}).get("status") == "UP"  # noqa: E731
        wait_until("HAProxy sees both replicas", lambda: up("r0") and up("r1"))
        base = f"http://127.0.0.1:{front}"

        tally, stop = Tally(), threading.Event()
        kinds = ["stream-keepalive", "stream-fresh", "plain-keepalive", "plain-fresh"]
        threads = [threading.Thread(target=worker, args=(base, k, tally, stop), daemon=True) for k in kinds for _ in range(args.clients)]
        for t in threads:
            t.start()
        time.sleep(5)

        # Rolling restarts: each replica in turn, as an orchestrator does it.
        tally.phase = "rolling restarts"
        started = time.monotonic()
        for n in range(args.restarts):
            i = n % 2
            old = replicas[i]
            old.signal(signal.SIGTERM)
            # The old process closes its listener after its drain delay; the new one binds then.
            wait_until(f"replica {i} to close its listener", lambda: get(f"http://127.0.0.1:{ports[i]}/health")[0] is None, within=10)
            replicas[i] = start_replica(i)
            wait_until(f"HAProxy to take r{i} back", lambda: up(f"r{i}"), within=10)
            if old.wait(within=40) != 0:
                raise SystemExit(f"replica {i} exited with an error")
        restarts_took = time.monotonic() - started

        # Config reloads under the same load: the file changes, both replicas get SIGHUP.
        tally.phase = "config reloads"
        for n in range(args.reloads):
            variant[0] = n + 1
            write_config()
            hashes = [json.loads(get(f"http://127.0.0.1:{p}/health")[1])["config_hash"] for p in ports]
            for r in replicas:
                r.signal(signal.SIGHUP)
            wait_until("both replicas to reload", lambda: all(
                json.loads(get(f"http://127.0.0.1:{p}/health")[1])["config_hash"] != h for p, h in zip(ports, hashes)
            ), within=10)
            time.sleep(1)

        # kill -9 of one replica mid-load, with the rate-limited key hammered across both.
        tally.phase = "kill -9"
        limited, limited_stop = [], threading.Event()
        hammer = threading.Thread(target=limited_worker, args=(base, limited_stop, limited), daemon=True)
        hammer.start()
        time.sleep(10)
        in_flight = int(haproxy_servers(stats).get("r0", {}).get("scur", "0") or 0)
        replicas[0].signal(signal.SIGKILL)
        killed_at = time.monotonic()
        time.sleep(15)
        replicas[0] = start_replica(0)
        wait_until("HAProxy to take r0 back", lambda: up("r0"), within=10)
        time.sleep(35)
        limited_stop.set()
        hammer.join()

        tally.phase = "after"
        stop.set()
        for t in threads:
            t.join(timeout=60)

        servers = haproxy_servers(stats)
        first = limited[0][0] if limited else killed_at
        span = (limited[-1][0] - first) if limited else 0.0
        admitted = sum(1 for _, r in limited if r == "ok")
        # A bucket of 120 refilling 120 a minute admits at most 120 + 2/s × span: exact if the
        # replicas share it, about twice that if each kept its own.
        bound = LIMITED_RPM + LIMITED_RPM / 60.0 * span
        summary = {
            "phases": tally.counts,
            "restarts": args.restarts,
            "restarts_took_s": round(restarts_took, 1),
            "reloads": args.reloads,
            "kill": {"in_flight_on_killed_replica": in_flight},
            "limited_key": {
                "rpm": LIMITED_RPM,
                "sent": len(limited),
                "admitted": admitted,
                "refused_429": sum(1 for _, r in limited if r == 429),
                "other": sum(1 for _, r in limited if r not in ("ok", 429)),
                "span_s": round(span, 1),
                "bound": round(bound, 1),
            },
            "haproxy": {k: {"retries": v.get("wretr"), "redispatches": v.get("wredis")} for k, v in servers.items()},
            "logs": logdir,
        }
        print(json.dumps(summary, indent=2))
        return summary
    finally:
        cleanup()


if __name__ == "__main__":
    main()
