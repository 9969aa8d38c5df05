#!/usr/bin/env python3
"""RSS per idle keep-alive connection of one ringwall build, quickly, without the comparison suite.

    bench/scripts/idle-rss.py BINARY N [EXTRA RINGWALL FLAGS...]

Needs an origin answering `hello world` on 127.0.0.1:18080 (bench/scripts/nginx-origin.sh's
start_nginx_origin). Starts BINARY on 127.0.0.1:18081 with one worker on core 0, warms it with
50 connections, samples VmRSS, opens N connections one after another with one request each,
holds them idle for SETTLE seconds (environment, default 1, as `compare`'s idle scenario), samples
VmRSS again and prints the growth per connection. Loopback only; every wait is bounded.
"""
import os
import resource
import socket
import subprocess
import sys
import time

binary, n, extra = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
proxy = subprocess.Popen(
    ["taskset", "-c", "0", binary, "--listen", "127.0.0.1:18081", "--upstream", "127.0.0.1:18080",
     "--workers", "1", "--no-pin"] + extra,
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def rss_kib():
    with open(f"/proc/{proxy.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def one_request(sock):
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    seen = b""
    while b"hello world" not in seen:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("connection closed before the response")
        seen += chunk


try:
    deadline = time.time() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", 18081), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)
    warm = [socket.create_connection(("127.0.0.1", 18081), timeout=10) for _ in range(50)]
    for s in warm:
        one_request(s)
    for s in warm:
        s.close()
    time.sleep(1)
    before = rss_kib()
    held = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", 18081), timeout=10)
        one_request(s)
        held.append(s)
    time.sleep(float(os.environ.get("SETTLE", "1")))
    after = rss_kib()
    print(f"{binary} {' '.join(extra)}: {n} connections, RSS {before} -> {after} KiB, "
          f"{(after - before) * 1024 / n:.0f} bytes/connection")
    for s in held:
        s.close()
finally:
    proxy.terminate()
    proxy.wait(timeout=10)
