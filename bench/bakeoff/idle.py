#!/usr/bin/env python3
"""Idle keep-alive memory of a forwarder: RSS growth per idle client connection.

    idle.py PORT PID N

Reads the forwarder's VmRSS, opens N keep-alive connections to 127.0.0.1:PORT one after the
other, sends one `GET /` on each and reads the whole response, then leaves them all open and
idle for 1 s and reads VmRSS again. Prints one line: `rss_before_kb rss_after_kb n_open
bytes_per_conn`. Every socket operation has a 5 s timeout; the whole run is bounded to 120 s.
"""
import socket
import sys
import time

REQ = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
BODY = b"hello world\n"


def vmrss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main():
    port, pid, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    deadline = time.monotonic() + 120
    before = vmrss_kb(pid)
    socks = []
    try:
        for _ in range(n):
            if time.monotonic() > deadline:
                raise TimeoutError("idle run took over 120 s")
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(REQ)
            got = b""
            while not got.endswith(BODY):
                chunk = s.recv(4096)
                if not chunk:
                    raise ConnectionError(f"closed after {len(socks)} connections")
                got += chunk
            socks.append(s)
        time.sleep(1.0)
        after = vmrss_kb(pid)
        print(before, after, len(socks), round((after - before) * 1024 / len(socks)))
    finally:
        for s in socks:
            s.close()


if __name__ == "__main__":
    main()
