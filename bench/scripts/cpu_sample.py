#!/usr/bin/env python3
"""Helper for wrk_compare.sh: CPU sampling around one wrk run, and the markdown report.

  cpu_sample.py freeports N
      print N free TCP ports on 127.0.0.1, one per line.
  cpu_sample.py ticks PID...
      print utime+stime ticks summed over every thread of PID and of its descendants.
  cpu_sample.py measure --name N --round R --pids "P..." --origin-pids "P..." \
                        --url URL --duration S --connections C --wrk-core K \
                        --wrk-log FILE --jsonl FILE
      sample the proxy's CPU ticks (all threads of every PID given and of their descendants,
      from /proc/PID/task/*/stat), run `taskset -c K wrk -t1 -cC -dSs --latency URL`, sample
      again, parse wrk's output, append one JSON line to FILE. Exit 0 even when wrk reports
      errors (they are recorded and flagged by `report`); exit 2 if wrk itself failed.
  cpu_sample.py report --jsonl FILE --meta FILE --out FILE
      print the markdown summary (medians, ratios) and per-round table; write it, after the
      metadata in --meta, to --out.

Only the standard library; Linux /proc only.
"""

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- /proc sampling

def _ppid_map():
    """pid -> ppid for every live process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rfind(b")") + 2:].split()
        out[int(entry)] = int(rest[1])
    return out


def expand_pids(roots):
    """The root PIDs plus all their live descendants (nginx master -> workers)."""
    children = {}
    for pid, ppid in _ppid_map().items():
        children.setdefault(ppid, []).append(pid)
    seen, stack = [], list(roots)
    while stack:
        pid = stack.pop()
        if pid in seen or not os.path.exists(f"/proc/{pid}"):
            continue
        seen.append(pid)
        stack.extend(children.get(pid, []))
    return sorted(seen)


def thread_ticks(pid):
    """utime+stime (clock ticks) summed over /proc/PID/task/*/stat."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue  # thread exited between listdir and open
        # Fields after "(comm)": state is field 3, utime field 14, stime field 15.
        rest = data[data.rfind(b")") + 2:].split()
        total += int(rest[11]) + int(rest[12])
    return total


def ticks(pids):
    return sum(thread_ticks(p) for p in pids)


# ---------------------------------------------------------------- wrk parsing

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text)
    if not m:
        return None
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out):
    r = {"requests": None, "rps": None, "p50_ms": None, "p90_ms": None, "p99_ms": None,
         "max_ms": None, "non2xx": 0, "sock_connect": 0, "sock_read": 0, "sock_write": 0,
         "sock_timeout": 0}
    m = re.search(r"^\s*(\d+) requests in ([0-9.]+\w+),", out, re.M)
    if m:
        r["requests"] = int(m.group(1))
    m = re.search(r"^Requests/sec:\s+([0-9.]+)", out, re.M)
    if m:
        r["rps"] = float(m.group(1))
    for pct, key in (("50", "p50_ms"), ("90", "p90_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        if m:
            r[key] = _ms(m.group(1))
    m = re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", out, re.M)
    if m:
        r["max_ms"] = _ms(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        r["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        r["sock_connect"], r["sock_read"], r["sock_write"], r["sock_timeout"] = map(int, m.groups())
    r["sock_errors"] = r["sock_connect"] + r["sock_read"] + r["sock_write"] + r["sock_timeout"]
    return r


# ---------------------------------------------------------------- commands

def cmd_freeports(args):
    socks = []
    for _ in range(args.n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    for s in socks:
        print(s.getsockname()[1])
        s.close()


def cmd_ticks(args):
    print(ticks(expand_pids(args.pids)))


def cmd_measure(args):
    roots = [int(p) for p in args.pids.split()]
    origin_roots = [int(p) for p in args.origin_pids.split()] if args.origin_pids else []
    pids = expand_pids(roots)
    opids = expand_pids(origin_roots)
    if not pids:
        print(f"{args.name}: none of the PIDs {roots} is alive", file=sys.stderr)
        return 2
    cmd = ["taskset", "-c", str(args.wrk_core), "wrk", "-t1", f"-c{args.connections}",
           f"-d{args.duration}s", "--latency", args.url]

    child = {"pid": None}

    def on_signal(signum, _frame):
        if child["pid"]:
            try:
                os.kill(child["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # as the shell left it for `&` jobs
        signal.signal(signal.SIGINT, on_signal)

    t0 = ticks(pids)
    o0 = ticks(opids)
    w0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    child["pid"] = proc.pid
    out = proc.stdout.read().decode(errors="replace")
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    child["pid"] = None
    elapsed = time.monotonic() - w0
    t1 = ticks(pids)
    o1 = ticks(opids)
    pids_after = expand_pids(roots)

    with open(args.wrk_log, "a") as f:
        f.write(f"=== round {args.round} {args.name}: {' '.join(cmd)}\n{out}\n")

    r = parse_wrk(out)
    rec = {"name": args.name, "round": args.round, "cmd": " ".join(cmd), "elapsed_s": elapsed,
           "pids": pids, "pids_changed": pids_after != pids, "wrk_rc": proc.returncode,
           "proxy_ticks": t1 - t0, "origin_ticks": o1 - o0, "clk_tck": CLK_TCK,
           "wrk_cpu_s": ru.ru_utime + ru.ru_stime, **r}
    ok = proc.returncode == 0 and r["requests"]
    if ok:
        rec["cpu_us_per_req"] = (t1 - t0) / CLK_TCK * 1e6 / r["requests"]
    else:
        rec["cpu_us_per_req"] = None
    rec["proxy_core_pct"] = 100.0 * (t1 - t0) / CLK_TCK / elapsed
    rec["load_core_pct"] = 100.0 * ((o1 - o0) / CLK_TCK + rec["wrk_cpu_s"]) / elapsed
    rec["wrk_cpu_pct"] = 100.0 * rec["wrk_cpu_s"] / elapsed
    with open(args.jsonl, "a") as f:
        f.write(json.dumps(rec) + "\n")

    errs = r["non2xx"] + r["sock_errors"]
    flag = f"  ERRORS: {r['non2xx']} non-2xx/3xx, {r['sock_errors']} socket" if errs else ""
    if rec["pids_changed"]:
        flag += "  (proxy PID set changed during the run)"
    cpu = f"{rec['cpu_us_per_req']:.2f}" if rec["cpu_us_per_req"] is not None else "n/a"
    print(f"  round {args.round} {args.name:9s} {r['requests'] or 0:>9} req  "
          f"{r['rps'] or 0:>9.0f} req/s  p99 {fmt_ms(r['p99_ms'])}  "
          f"cpu {cpu} us/req  proxy core {rec['proxy_core_pct']:.0f}%  "
          f"load core {rec['load_core_pct']:.0f}% (wrk {rec['wrk_cpu_pct']:.0f}%){flag}",
          flush=True)
    if not ok:
        print(f"wrk failed (exit {proc.returncode}):\n{out}", file=sys.stderr)
        return 2
    return 0


def fmt_ms(v):
    if v is None:
        return "n/a"
    return f"{v * 1000:.0f} µs" if v < 1 else f"{v:.2f} ms"


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def cmd_report(args):
    recs = []
    with open(args.jsonl) as f:
        for line in f:
            if line.strip():
                recs.append(json.loads(line))
    names = []
    for r in recs:
        if r["name"] not in names:
            names.append(r["name"])

    def med(name, key):
        vals = [r[key] for r in recs if r["name"] == name and r.get(key) is not None]
        return statistics.median(vals) if vals else None

    def errors(name):
        bad = [r for r in recs if r["name"] == name
               and (r["non2xx"] or r["sock_errors"] or r["wrk_rc"] != 0 or not r["requests"])]
        return bad

    cpu = {n: med(n, "cpu_us_per_req") for n in names}

    def ratio(n, ref):
        if ref not in cpu or cpu.get(ref) is None or cpu.get(n) is None:
            return "—"
        s = f"{cpu[n] / cpu[ref]:.2f}"
        if errors(ref):
            s += " (ref has errors)"
        return s

    nrounds = len({r["round"] for r in recs})
    lines = [f"## Summary: medians of {nrounds} round(s)", "",
             "| proxy | CPU µs/req | ÷ nginx | ÷ HAProxy | req/s | p50 | p99 | proxy core busy "
             "| load core busy (wrk) | status |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    any_err = False
    for n in names:
        bad = errors(n)
        if bad:
            any_err = True
            parts = [f"r{r['round']}: {r['non2xx']} non-2xx, {r['sock_errors']} socket"
                     + (f", wrk exit {r['wrk_rc']}" if r["wrk_rc"] else "") for r in bad]
            status = "**ERRORS — not clean** (" + "; ".join(parts) + ")"
        else:
            status = "ok"
        lines.append(
            f"| {n} | {fmt(cpu[n], '.2f')} | {ratio(n, 'nginx')} | {ratio(n, 'haproxy')} "
            f"| {fmt(med(n, 'rps'), ',.0f')} | {fmt_ms(med(n, 'p50_ms'))} "
            f"| {fmt_ms(med(n, 'p99_ms'))} | {fmt(med(n, 'proxy_core_pct'), '.0f')} % "
            f"| {fmt(med(n, 'load_core_pct'), '.0f')} % ({fmt(med(n, 'wrk_cpu_pct'), '.0f')} %) "
            f"| {status} |")
    lines += ["",
              "Ratios are of the median CPU µs/request. \"proxy core busy\" is the proxy's CPU "
              "time ÷ wall time (≈100 % means the proxy saturates its core); \"load core busy\" "
              "is wrk + origin CPU ÷ wall time on core 1 (≈100 % means the load side, not the "
              "proxy, is the bottleneck, so req/s and latency compare the load side, while "
              "CPU µs/request still compares the proxies).",
              "", "## Per round (raw)", "",
              "| round | proxy | requests | req/s | p50 | p99 | max | proxy Δticks | CPU µs/req "
              "| ÷ nginx (same round) | proxy core | wrk CPU | origin CPU | non-2xx | socket errors |",
              "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in recs:
        ref = [x for x in recs if x["round"] == r["round"] and x["name"] == "nginx"]
        same = "—"
        if ref and ref[0]["cpu_us_per_req"] and r["cpu_us_per_req"] is not None:
            same = f"{r['cpu_us_per_req'] / ref[0]['cpu_us_per_req']:.2f}"
        sock = (f"{r['sock_errors']} (c{r['sock_connect']} r{r['sock_read']} "
                f"w{r['sock_write']} t{r['sock_timeout']})") if r["sock_errors"] else "0"
        lines.append(
            f"| {r['round']} | {r['name']} | {fmt(r['requests'], ',')} | {fmt(r['rps'], ',.0f')} "
            f"| {fmt_ms(r['p50_ms'])} | {fmt_ms(r['p99_ms'])} | {fmt_ms(r['max_ms'])} "
            f"| {r['proxy_ticks']} | {fmt(r['cpu_us_per_req'], '.2f')} | {same} "
            f"| {r['proxy_core_pct']:.0f} % | {r['wrk_cpu_pct']:.0f} % "
            f"| {100.0 * r['origin_ticks'] / r['clk_tck'] / r['elapsed_s']:.0f} % "
            f"| {r['non2xx']} | {sock} |")
    if any(r["pids_changed"] for r in recs):
        lines += ["", "Warning: a proxy's set of PIDs changed during a run (a worker restarted?)."]
    body = "\n".join(lines) + "\n"
    print(body)
    with open(args.meta) as f:
        meta = f.read()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(meta.rstrip("\n") + "\n\n" + body)
    return 3 if any_err else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("freeports")
    p.add_argument("n", type=int)
    p.set_defaults(func=cmd_freeports)
    p = sub.add_parser("ticks")
    p.add_argument("pids", type=int, nargs="+")
    p.set_defaults(func=cmd_ticks)
    p = sub.add_parser("measure")
    for a in ("--name", "--pids", "--url", "--wrk-log", "--jsonl"):
        p.add_argument(a, required=True)
    p.add_argument("--origin-pids", default="")
    p.add_argument("--round", type=int, required=True)
    p.add_argument("--duration", type=int, required=True)
    p.add_argument("--connections", type=int, required=True)
    p.add_argument("--wrk-core", default="1")
    p.set_defaults(func=cmd_measure)
    p = sub.add_parser("report")
    for a in ("--jsonl", "--meta", "--out"):
        p.add_argument(a, required=True)
    p.set_defaults(func=cmd_report)
    args = ap.parse_args()
    sys.exit(args.func(args) or 0)


if __name__ == "__main__":
    main()
