#!/usr/bin/env bash
# CPU per request of ringwall builds, interleaved A B A B: each build in turn serves a small
# keep-alive GET on one worker pinned to core 0, in front of an nginx origin on core 1, driven
# by ringwall-load on core 1; CPU µs/request is the proxy's utime+stime over the requests
# (BENCHMARKING.md's figure). Medians per build at the end.
#
#   bench/scripts/ab-cpu.sh [-r ROUNDS] [-d SECONDS] [-c CONNECTIONS] BINARY...
#
# Needs nginx and a release build of ringwall-load (cargo build --release).
set -euo pipefail
rounds=5 secs=5 conns=16
while getopts "r:d:c:" opt; do
  case $opt in r) rounds=$OPTARG ;; d) secs=$OPTARG ;; c) conns=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
[[ $# -ge 1 ]] || { echo "usage: $0 [-r N] [-d S] [-c N] BINARY..." >&2; exit 2; }
command -v nginx >/dev/null || { echo "$0: needs nginx (apt-get install -y nginx)" >&2; exit 1; }
cd "$(dirname "$0")/../.."
load=target/release/ringwall-load
[[ -x $load ]] || { echo "$0: build ringwall-load first: cargo build --release" >&2; exit 1; }
dir=$(mktemp -d)
origin_port=19701 proxy_port=19702
. bench/scripts/nginx-origin.sh
start_nginx_origin "$dir" "$origin_port"
trap 'kill $nginx_pid 2>/dev/null || true' EXIT
for round in $(seq "$rounds"); do
  for binary in "$@"; do
    start_ringwall "$binary" "$proxy_port" "$origin_port" "$dir/proxy.log"
    pid=$ringwall_pid
    taskset -c 1 "$load" -c "$conns" -d 1s "http://127.0.0.1:$proxy_port/" > /dev/null
    cpu=$(taskset -c 1 "$load" -c "$conns" -d "${secs}s" --json --pid "$pid" \
      "http://127.0.0.1:$proxy_port/" | python3 -c '
import json, sys
r = json.load(sys.stdin)
def find(o):
    if isinstance(o, dict):
        for k, v in o.items():
            if "cpu_us_per_request" in k and isinstance(v, (int, float)):
                return v
            f = find(v)
            if f is not None:
                return f
    if isinstance(o, list):
        for v in o:
            f = find(v)
            if f is not None:
                return f
print(find(r))')
    kill -INT "$pid"; wait "$pid" 2>/dev/null || true
    echo "round $round  $binary  $cpu CPU µs/request"
    echo "$binary $cpu" >> "$dir/results"
  done
done
echo "medians:"
python3 - "$dir/results" <<'PY'
import statistics, sys, collections
by = collections.OrderedDict()
for line in open(sys.argv[1]):
    b, v = line.split()
    by.setdefault(b, []).append(float(v))
for b, vs in by.items():
    print(f"  {b}: {statistics.median(vs):.2f} CPU µs/request (runs: {', '.join(f'{v:.2f}' for v in vs)})")
PY
