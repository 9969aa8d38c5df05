#!/usr/bin/env python3
"""What the message path's tick costs an idle worker: CPU time of ringwall's worker threads
(/proc/PID/task/*/schedstat, nanoseconds) over 20 s with no traffic, with the default
--gossip-interval (20 ms) and with 10 s (the tick nearly off). The difference, divided by the
ticks, is one tick's cost.

    bench/scripts/idle-tick.py [BINARY]

Loopback only; the upstream is never contacted (no request is sent).
"""
import glob
import subprocess
import sys
import time

BINARY = sys.argv[1] if len(sys.argv) > 1 else "target/release/ringwall"
SECONDS = 20
WORKERS = 2


def worker_cpu_ns(pid):
    total = 0
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            if not open(task + "/comm").read().startswith("ringwall-w"):
                continue
            total += int(open(task + "/schedstat").read().split()[0])
        except OSError:
            pass
    return total


used = {}
for interval, seconds in [("20ms", 0.02), ("10s", 10.0)]:
    proc = subprocess.Popen(
        [BINARY, "--upstream", "127.0.0.1:9", "--listen", "127.0.0.1:19888",
         "--workers", str(WORKERS), "--no-pin", "--gossip-interval", interval],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2)
        before = worker_cpu_ns(proc.pid)
        time.sleep(SECONDS)
        used[interval] = (worker_cpu_ns(proc.pid) - before, WORKERS * SECONDS / seconds)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    ns, ticks = used[interval]
    print(f"--gossip-interval {interval}: {WORKERS} idle workers used {ns / 1e6:.2f} ms of CPU "
          f"in {SECONDS} s ({ticks:.0f} ticks)")
extra = used["20ms"][0] - used["10s"][0]
ticks = used["20ms"][1] - used["10s"][1]
print(f"one tick: {extra / ticks / 1e3:.1f} µs of CPU; at 20 ms, "
      f"{extra / WORKERS / SECONDS / 1e6:.2f} ms per second per worker")
