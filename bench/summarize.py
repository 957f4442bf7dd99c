#!/usr/bin/env python3
"""Turn the raw outputs of bench/run.sh into the "Foundation: proxy overhead" section of
bench/RESULTS.md.

    summarize.py --out bench/out --results bench/RESULTS.md   write the section
    summarize.py --out bench/out                              print the section to stdout
    summarize.py --brief FILE.json                            one line about one oha run

Inputs in --out: oha JSON files named {mode}-c{conc}-{target}-r{round}.json (target is direct or
through), cpu.tsv (per-run CPU seconds of oha, nines and the mock) and meta.txt (key<TAB>value:
machine, settings, nines RSS). Python 3 standard library only.
"""

import argparse
import csv
import json
import os
import re
import statistics
import sys
from collections import defaultdict

SECTION = "Foundation: proxy overhead"
# One section per CPU layout (meta `layout`); `own-core` is the one the targets are judged on.
LAYOUT_TITLE = {
    "own-core": "Foundation: proxy overhead",
    "shared": "Foundation: proxy overhead, all processes on shared CPUs",
}
LAYOUT_TEXT = {
    "own-core": "nines is pinned (`taskset`) to the last CPU, and oha and the mock to the others, in "
    "both the direct and the through runs: the load generator and the upstream get the same CPUs "
    "either way, and nines' CPU is not taken from them, as for a gateway on a host of its own. The "
    "machine is shared with other work all the same.",
    "shared": "No pinning: the load generator, the gateway and the mock all share every CPU, so "
    "whatever CPU nines uses is taken from oha and the mock, and through/direct throughput "
    "measures total CPU per request (two HTTP hops against one). Shared and noisy.",
}


def section_title(meta):
    return LAYOUT_TITLE.get(meta.get("layout", "shared"), SECTION)

# Targets of the foundation issue.
TARGET_CONC_LATENCY = 16
TARGET_ADDED_P50_US = 150.0
TARGET_ADDED_P99_US = 1000.0
TARGET_CONC_THROUGHPUT = 64
TARGET_RATIO = 0.70
TARGET_RSS_MIB = 40.0

MODE_LABEL = {"nonstream": "non-streaming", "stream": "streaming"}
RUN_RE = re.compile(r"^(?P<mode>[a-z]+)-c(?P<conc>\d+)-(?P<target>direct|through)-r(?P<round>\d+)\.json$")


def load_run(path):
    """The numbers of one oha run: rps, p50/p99 in µs, request and error counts."""
    with open(path) as f:
        d = json.load(f)
    summary = d.get("summary", {})
    pct = d.get("latencyPercentiles", {})
    fb = d.get("firstBytePercentiles", {}) or {}
    codes = d.get("statusCodeDistribution", {}) or {}
    errors = d.get("errorDistribution", {}) or {}
    ok = sum(v for k, v in codes.items() if str(k).startswith("2"))
    not_ok = sum(v for k, v in codes.items() if not str(k).startswith("2"))
    n_errors = sum(errors.values())

    def us(key):
        v = pct.get(key)
        return None if v is None else v * 1e6

    return {
        "rps": summary.get("requestsPerSec") or 0.0,
        "p50": us("p50"),
        "p99": us("p99"),
        "ttfb_p50": None if fb.get("p50") is None else fb["p50"] * 1e6,
        "ttfb_p99": None if fb.get("p99") is None else fb["p99"] * 1e6,
        "ok": ok,
        "bad": not_ok + n_errors,
        "codes": codes,
        "errors": errors,
    }


def fmt_us(v, signed=False):
    if v is None:
        return "n/a"
    sign = "+" if signed and v >= 0 else ("−" if v < 0 else "")
    a = abs(v)
    if a >= 10000:
        s = f"{a / 1000:.1f} ms"
    elif a >= 1000:
        s = f"{a / 1000:.2f} ms"
    else:
        s = f"{a:.0f} µs"
    return sign + s


def fmt_rps(v):
    return f"{v:,.0f}"


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def read_meta(out):
    meta = {}
    path = os.path.join(out, "meta.txt")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if "\t" in line:
                    k, v = line.rstrip("\n").split("\t", 1)
                    meta[k] = v
    return meta


def read_cpu(out):
    path = os.path.join(out, "cpu.tsv")
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    return rows


def collect(out):
    """runs[(mode, conc)][round][target] = numbers"""
    runs = defaultdict(lambda: defaultdict(dict))
    for name in sorted(os.listdir(out)):
        m = RUN_RE.match(name)
        if not m:
            continue
        key = (m["mode"], int(m["conc"]))
        runs[key][int(m["round"])][m["target"]] = load_run(os.path.join(out, name))
    return runs


def aggregate(runs):
    """Per (mode, conc): medians over rounds, and paired (same-round) differences and ratios."""
    rows = {}
    for key, rounds in runs.items():
        paired = [r for r in rounds.values() if "direct" in r and "through" in r]
        if not paired:
            continue
        col = lambda t, f: [r[t][f] for r in paired]  # noqa: E731
        added = lambda f: [  # noqa: E731
            r["through"][f] - r["direct"][f]
            for r in paired
            if r["through"][f] is not None and r["direct"][f] is not None
        ]
        ratios = [r["through"]["rps"] / r["direct"]["rps"] for r in paired if r["direct"]["rps"]]
        rows[key] = {
            "rounds": len(paired),
            "direct_rps": median(col("direct", "rps")),
            "through_rps": median(col("through", "rps")),
            "direct_p50": median(col("direct", "p50")),
            "through_p50": median(col("through", "p50")),
            "direct_p99": median(col("direct", "p99")),
            "through_p99": median(col("through", "p99")),
            "direct_ttfb_p50": median(col("direct", "ttfb_p50")),
            "through_ttfb_p50": median(col("through", "ttfb_p50")),
            "added_ttfb_p50": median(added("ttfb_p50")),
            "direct_ttfb_p99": median(col("direct", "ttfb_p99")),
            "through_ttfb_p99": median(col("through", "ttfb_p99")),
            "added_ttfb_p99": median(added("ttfb_p99")),
            "added_p50": median(added("p50")),
            "added_p99": median(added("p99")),
            "ratio": median(ratios),
            "added_p50_rounds": added("p50"),
            "added_p99_rounds": added("p99"),
            "ratio_rounds": ratios,
            "requests": sum(r[t]["ok"] for r in paired for t in ("direct", "through")),
            "bad": sum(r[t]["bad"] for r in paired for t in ("direct", "through")),
        }
    return rows


def mode_order(key):
    mode, conc = key
    return (0 if mode == "nonstream" else 1, conc)


def results_table(rows):
    out = [
        "| mode | conc. | direct req/s | through req/s | through/direct | direct p50 | through p50 "
        "| **added p50** | direct p99 | through p99 | **added p99** |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for key in sorted(rows, key=mode_order):
        r = rows[key]
        out.append(
            f"| {MODE_LABEL.get(key[0], key[0])} | {key[1]} | {fmt_rps(r['direct_rps'])} "
            f"| {fmt_rps(r['through_rps'])} | {r['ratio'] * 100:.0f} % "
            f"| {fmt_us(r['direct_p50'])} | {fmt_us(r['through_p50'])} | **{fmt_us(r['added_p50'], True)}** "
            f"| {fmt_us(r['direct_p99'])} | {fmt_us(r['through_p99'])} | **{fmt_us(r['added_p99'], True)}** |"
        )
    return out


def ttfb_table(rows):
    keys = [k for k in sorted(rows, key=mode_order) if k[0] == "stream" and rows[k]["direct_ttfb_p50"] is not None]
    if not keys:
        return []
    out = [
        "| conc. | direct TTFB p50 | through TTFB p50 | added | direct TTFB p99 | through TTFB p99 | added |",
        "|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for key in keys:
        r = rows[key]
        out.append(
            f"| {key[1]} | {fmt_us(r['direct_ttfb_p50'])} | {fmt_us(r['through_ttfb_p50'])} "
            f"| {fmt_us(r['added_ttfb_p50'], True)} | {fmt_us(r['direct_ttfb_p99'])} "
            f"| {fmt_us(r['through_ttfb_p99'])} | {fmt_us(r['added_ttfb_p99'], True)} |"
        )
    return out


def per_round(values, fmt):
    return " / ".join(fmt(v) for v in values)


def targets(rows, meta):
    out = ["| target | mode | measured (median; per round) | met |", "|---|---|---|---|"]
    verdicts = []

    def line(what, mode, value, rounds, ok):
        verdicts.append(ok)
        out.append(f"| {what} | {mode} | {value}{'; ' + rounds if rounds else ''} | {'yes' if ok else '**no**'} |")

    for mode in ("nonstream", "stream"):
        r = rows.get((mode, TARGET_CONC_LATENCY))
        if r:
            line(
                f"added p50 ≤ {TARGET_ADDED_P50_US:.0f} µs at concurrency {TARGET_CONC_LATENCY}",
                MODE_LABEL[mode],
                fmt_us(r["added_p50"], True),
                per_round(r["added_p50_rounds"], lambda v: fmt_us(v, True)),
                r["added_p50"] is not None and r["added_p50"] <= TARGET_ADDED_P50_US,
            )
    for mode in ("nonstream", "stream"):
        r = rows.get((mode, TARGET_CONC_LATENCY))
        if r:
            line(
                f"added p99 ≤ 1 ms at concurrency {TARGET_CONC_LATENCY}",
                MODE_LABEL[mode],
                fmt_us(r["added_p99"], True),
                per_round(r["added_p99_rounds"], lambda v: fmt_us(v, True)),
                r["added_p99"] is not None and r["added_p99"] <= TARGET_ADDED_P99_US,
            )
    for mode in ("nonstream", "stream"):
        r = rows.get((mode, TARGET_CONC_THROUGHPUT))
        if r:
            line(
                f"throughput ≥ {TARGET_RATIO * 100:.0f} % of direct at concurrency {TARGET_CONC_THROUGHPUT}",
                MODE_LABEL[mode],
                f"{r['ratio'] * 100:.0f} %",
                per_round(r["ratio_rounds"], lambda v: f"{v * 100:.0f} %"),
                r["ratio"] is not None and r["ratio"] >= TARGET_RATIO,
            )
    if meta.get("rss_after_kib"):
        after = int(meta["rss_after_kib"]) / 1024
        line(
            f"RSS ≤ {TARGET_RSS_MIB:.0f} MiB after the run",
            "both",
            f"{after:.1f} MiB (peak {int(meta.get('rss_hwm_kib', 0)) / 1024:.1f} MiB)",
            "",
            after <= TARGET_RSS_MIB,
        )
    return out, verdicts


def cpu_table(cpu_rows, runs, nproc):
    """CPU seconds per 1000 requests of each process, how busy the machine was, and how much of
    that was other processes (anything but oha, nines and the mock)."""
    acc = defaultdict(lambda: defaultdict(list))
    for row in cpu_rows:
        key = (row["mode"], int(row["conc"]), row["target"])
        run = runs.get((row["mode"], int(row["conc"])), {}).get(int(row["round"]), {}).get(row["target"])
        if not run or not run["ok"]:
            continue
        k = run["ok"] / 1000.0
        for f in ("oha_cpu_s", "nines_cpu_s", "mock_cpu_s"):
            try:
                acc[key][f].append(float(row[f]) * 1000 / k)  # ms per 1000 requests
            except ValueError:
                pass
        try:
            acc[key]["busy"].append(float(row["sys_busy_pct"]))
            ours = sum(float(row[f]) for f in ("oha_cpu_s", "nines_cpu_s", "mock_cpu_s"))
            wall = float(row.get("wall_s") or "nan")
            if nproc and wall > 0:
                others = float(row["sys_busy_pct"]) - 100 * ours / (wall * nproc)
                acc[key]["others"].append(max(others, 0.0))
        except ValueError:
            pass
    if not acc:
        return []
    out = [
        "| mode | conc. | path | oha | nines | mock | total | machine busy | of which other processes |",
        "|---|--:|---|--:|--:|--:|--:|--:|--:|",
    ]
    for key in sorted(acc, key=lambda k: (mode_order(k[:2]), k[2])):
        a = acc[key]
        vals = [median(a[f]) for f in ("oha_cpu_s", "nines_cpu_s", "mock_cpu_s")]
        total = sum(v for v in vals if v is not None)
        cells = " | ".join("n/a" if v is None else f"{v:.0f}" for v in vals)
        busy = median(a["busy"])
        others = a["others"]
        others_cell = "n/a" if not others else " / ".join(f"{v:.0f} %" for v in others)
        out.append(
            f"| {MODE_LABEL.get(key[0], key[0])} | {key[1]} | {key[2]} | {cells} | {total:.0f} "
            f"| {'n/a' if busy is None else f'{busy:.0f} %'} | {others_cell} |"
        )
    return out


def section(out_dir):
    meta = read_meta(out_dir)
    runs = collect(out_dir)
    rows = aggregate(runs)
    if not rows:
        raise SystemExit(f"summarize.py: no paired oha results in {out_dir}")
    target_lines, verdicts = targets(rows, meta)
    bad = sum(r["bad"] for r in rows.values())
    total = sum(r["requests"] for r in rows.values())
    g = meta.get
    layout = meta.get("layout", "shared")
    lines = [
        f"## {section_title(meta)}",
        "",
        f"Measured {g('date', '?')} at commit {g('commit', '?')} with `bench/run.sh`.",
        "",
        f"**Machine.** {g('nproc', '?')} CPUs ({g('cpu', '?')}), {g('mem', '?')} RAM, {g('kernel', '?')}, "
        f"{g('rustc', '?')}. **Layout: {layout}.** {LAYOUT_TEXT.get(layout, '')}",
        "",
        "**Method.** One `nines mock` (no faults, so it answers as fast as it can) and one "
        "`nines serve` (release build, one `openai-compatible` deployment pointing at the mock) on "
        f"127.0.0.1. Load by {g('oha', 'oha')} (worker threads: {g('oha_threads', 'default')}), "
        "keep-alive connections, one fixed short chat request (`max_tokens` 32): non-streaming, the "
        f"mock answers a {g('nonstream_bytes', '?')}-byte `chat.completion`; streaming "
        "(`\"stream\":true,\"stream_options\":{\"include_usage\":true}`), "
        f"{g('stream_events', '?')} SSE events including the usage chunk and `[DONE]`. For each mode and "
        f"concurrency, {g('rounds', '?')} rounds of {g('duration', '?')} each, alternating *direct* "
        "(oha → mock) and *through* (oha → nines → mock), after a warm-up of "
        f"{g('warmup', '?')} per mode and path. Latency is the time to the last byte of the response "
        "as oha sees it. Table values are medians over rounds; *added* latency and the throughput "
        "ratio are medians of the per-round (same-round) differences and ratios, which cancels most "
        f"of the drift of a shared machine. Gateway log filter: `NINES_LOG={g('nines_log', '?')}`.",
        "",
        *results_table(rows),
        "",
        f"{total:,} successful requests in the measured runs"
        + (f"; **{bad:,} failed or non-2xx** (see bench/out/)." if bad else "; none failed."),
        "",
        *(
            [
                "Streaming, time to first byte (nines commits to a stream only after its first "
                "complete SSE event, so this is where that shows):",
                "",
                *ttfb_table(rows),
                "",
            ]
            if ttfb_table(rows)
            else []
        ),
        f"**nines memory.** RSS {int(g('rss_idle_kib', 0)) / 1024:.1f} MiB idle before the load, "
        f"peak (VmHWM) {int(g('rss_hwm_kib', 0)) / 1024:.1f} MiB, "
        f"{int(g('rss_after_kib', 0)) / 1024:.1f} MiB after the run (VmRSS).",
        "",
        "### Targets",
        "",
        *target_lines,
        "",
        f"{sum(verdicts)} of {len(verdicts)} met.",
        "",
    ]
    try:
        nproc = int(meta.get("nproc", "0"))
    except ValueError:
        nproc = 0
    cpu = cpu_table(read_cpu(out_dir), runs, nproc)
    if cpu:
        lines += [
            "### Where the CPU goes",
            "",
            "CPU time (user + system) in milliseconds per 1,000 requests, median over rounds, and the "
            "share of the whole machine that was busy during the run; the last column (per round) is "
            "the part of it used by processes other than the three measured ones, i.e. noise from other "
            "work on the shared machine. "
            + (
                "With nines on a CPU of its own, through/direct throughput at concurrency 16 and 64 "
                "is set by the busier side: nines' CPU per request against that of oha and the mock "
                "together on the other CPU."
                if layout == "own-core"
                else "With a mock that does no work, the machine is the bottleneck at concurrency 16 "
                "and 64: whatever CPU nines uses is taken from oha and the mock, so through/direct "
                "throughput there is close to (direct total) / (through total)."
            ),
            "",
            *cpu,
            "",
        ]
    lines += [
        "Raw oha JSON per run, `cpu.tsv` and the process logs are in `bench/out/` (not committed).",
        "",
    ]
    return "\n".join(lines)


def write_section(path, text, title):
    """Replace the section `title` in `path` (or append it), keeping every other section."""
    if os.path.exists(path):
        with open(path) as f:
            doc = f.read()
    else:
        doc = "# Benchmark results\n\nWritten by the scripts in `bench/`; see bench/README.md.\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(doc):
        doc = pattern.sub(lambda _: text.rstrip("\n") + "\n\n", doc, count=1)
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    with open(path, "w") as f:
        f.write(doc.rstrip("\n") + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="directory with the raw outputs of bench/run.sh")
    ap.add_argument("--results", help="markdown file to write the section into (default: stdout)")
    ap.add_argument("--brief", metavar="FILE", help="print one line about one oha JSON file")
    args = ap.parse_args()
    if args.brief:
        r = load_run(args.brief)
        bad = f", {r['bad']} failed" if r["bad"] else ""
        print(f"{r['rps']:,.0f} req/s, p50 {fmt_us(r['p50'])}, p99 {fmt_us(r['p99'])}, {r['ok']} ok{bad}")
        return
    if not args.out:
        ap.error("--out or --brief is required")
    text = section(args.out)
    if args.results:
        write_section(args.results, text, section_title(read_meta(args.out)))
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
