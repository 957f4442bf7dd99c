#!/usr/bin/env python3
"""Compares `nines loadtest` with oha from the raw outputs of bench/loadtest.sh and writes the
section "Load test: nines loadtest against oha" of bench/RESULTS.md (other sections are kept).

    python3 bench/loadtest_compare.py --out bench/out/loadtest [--results bench/RESULTS.md]
"""
import argparse
import glob
import json
import os
import re
import statistics

TITLE = "Load test: nines loadtest against oha"


def oha(path):
    with open(path) as f:
        d = json.load(f)
    pct = d.get("latencyPercentiles", {})
    fb = d.get("firstBytePercentiles", {}) or {}
    codes = d.get("statusCodeDistribution", {}) or {}
    errors = sum((d.get("errorDistribution", {}) or {}).values())
    bad = sum(v for k, v in codes.items() if not str(k).startswith("2")) + errors
    return {
        "rps": d["summary"]["requestsPerSec"],
        "p50": pct["p50"] * 1e3,
        "p99": pct["p99"] * 1e3,
        "fb50": None if fb.get("p50") is None else fb["p50"] * 1e3,
        "bad": bad,
    }


def loadtest(path):
    with open(path) as f:
        d = json.load(f)
    s = d["summary"]
    fb = s["ttfb_streams"]
    return {
        "rps": s["requests_per_second"],
        "p50": s["latency"]["p50_ms"],
        "p99": s["latency"]["p99_ms"],
        "fb50": fb["p50_ms"] if fb["count"] else None,
        "bad": s["failed"],
        "overhead": (d.get("overhead") or {}).get("mean_ms"),
    }


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v, unit=""):
    if v is None:
        return "—"
    return f"{v:,.0f}{unit}" if v >= 100 else f"{v:.2f}{unit}"


def section(out):
    meta = {}
    with open(os.path.join(out, "meta.txt")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("\t")
            meta[k] = v
    rows = []
    for mode in ("nonstream", "stream"):
        for target in ("mock", "through"):
            rounds = sorted(glob.glob(os.path.join(out, f"{mode}-{target}-oha-r*.json")))
            if not rounds:
                continue
            pairs = []
            for o in rounds:
                lt = o.replace("-oha-", "-loadtest-")
                if os.path.exists(lt):
                    pairs.append((oha(o), loadtest(lt)))
            rows.append((mode, target, pairs))
    lines = [
        f"## {TITLE}",
        "",
        f"`bench/loadtest.sh` at {meta.get('commit', '?')}: oha ({meta.get('oha', '?')}) and "
        f"`nines loadtest --body …` load the same target with the same body, {meta.get('concurrency')} "
        f"keep-alive connections, {meta.get('duration')} per run, alternating, {meta.get('rounds')} rounds "
        f"each; {meta.get('nproc')} CPUs shared by everything. Target: `nines mock` with a capacity "
        f"model of 64 slots × {meta.get('service_ms')} ms (so neither generator is CPU-bound), "
        "directly (`mock`) and through `nines serve` (`through`). Medians over rounds; the ratio is "
        "loadtest ÷ oha, median of the per-round ratios.",
        "",
        "| mode | target | oha req/s | loadtest req/s | ratio | oha p50 | loadtest p50 | ratio | oha p99 | loadtest p99 | ratio | first byte p50 oha / loadtest | failed (oha / loadtest) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    worst = 0.0
    for mode, target, pairs in rows:
        o = {k: med([p[0][k] for p in pairs]) for k in ("rps", "p50", "p99", "fb50")}
        l = {k: med([p[1][k] for p in pairs]) for k in ("rps", "p50", "p99", "fb50")}
        ratio = {k: med([p[1][k] / p[0][k] for p in pairs if p[0][k] and p[1][k]]) for k in ("rps", "p50", "p99")}
        for k in ("rps", "p50"):
            if ratio[k]:
                worst = max(worst, abs(ratio[k] - 1))
        bad = f"{sum(p[0]['bad'] for p in pairs)} / {sum(p[1]['bad'] for p in pairs)}"
        fb = f"{fmt(o['fb50'], ' ms')} / {fmt(l['fb50'], ' ms')}" if mode == "stream" else "—"
        lines.append(
            f"| {mode} | {target} | {fmt(o['rps'])} | {fmt(l['rps'])} | {fmt(ratio['rps'])} | "
            f"{fmt(o['p50'], ' ms')} | {fmt(l['p50'], ' ms')} | {fmt(ratio['p50'])} | "
            f"{fmt(o['p99'], ' ms')} | {fmt(l['p99'], ' ms')} | {fmt(ratio['p99'])} | {fb} | {bad} |"
        )
    overheads = [p[1].get("overhead") for _, t, pairs in rows if t == "through" for p in pairs]
    lines += [
        "",
        f"Largest difference in median throughput or p50 latency: {worst * 100:.1f}%. "
        f"Gateway overhead nines reported on `/metrics` during the through runs (`nines_overhead_seconds`, "
        f"mean per request): {fmt(med(overheads), ' ms')}.",
        "",
        "Both measure latency from sending the request to the last byte of the answer, on keep-alive "
        "connections, and wait for requests in flight at the deadline (oha `-w`). p99 over a few thousand "
        "requests is decided by a few dozen of them, so it moves more between rounds than p50.",
        "",
    ]
    return "\n".join(lines)


def write_section(path, text, title):
    if os.path.exists(path):
        with open(path) as f:
            doc = f.read()
    else:
        doc = "# Benchmark results\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(doc):
        doc = pattern.sub(lambda _: text.rstrip("\n") + "\n\n", doc, count=1)
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    with open(path, "w") as f:
        f.write(doc.rstrip("\n") + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--results")
    args = ap.parse_args()
    text = section(args.out)
    if args.results:
        write_section(args.results, text, TITLE)
    else:
        print(text)


if __name__ == "__main__":
    main()
