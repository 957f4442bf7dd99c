#!/usr/bin/env python3
"""A normal client: N chat requests, one at a time, over one keep-alive connection (reopened
when the gateway closes it or answers 503); prints `p50_ms p99_ms success_rate codes`.

  client.py HOST:PORT N BODY

Standard library only, so the bench needs nothing installed; the same client measures both
sides of every comparison, so its own cost cancels in the ratios.
"""
import http.client
import sys
import time
from collections import Counter


def main():
    addr, n, body = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
    host, port = addr.rsplit(":", 1)
    conn = None
    took, codes = [], Counter()
    for _ in range(n):
        started = time.perf_counter()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
            conn.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
            r = conn.getresponse()
            r.read()
            codes[str(r.status)] += 1
            if r.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as e:
            codes[type(e).__name__] += 1
            if conn is not None:
                conn.close()
            conn = None
        took.append((time.perf_counter() - started) * 1000)
    took.sort()
    pct = lambda p: round(took[min(len(took) - 1, int(p * (len(took) - 1) + 0.5))], 3)
    ok = codes.get("200", 0) / n
    print(pct(0.5), pct(0.99), round(ok, 4), " ".join(f"{k}:{v}" for k, v in sorted(codes.items())))


if __name__ == "__main__":
    main()
