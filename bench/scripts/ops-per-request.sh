#!/usr/bin/env bash
# System calls and io_uring operations per request of ringwall builds: a count, not a time,
# so it tells builds apart on a noisy machine where CPU time cannot. Each build serves a small
# GET on one worker pinned to core 0 in front of an nginx origin on core 1, driven by
# ringwall-load on core 1, while `perf stat` counts the proxy's system calls (all, and the
# data-path ones), io_uring submissions, polls the ring had to arm, and context switches.
#
#   bench/scripts/ops-per-request.sh [-d SECONDS] [-c CONNECTIONS] [-n] BINARY...
#
# -n: a new connection per request (Connection: close), as compare's new-conn.
# Needs nginx, perf (linux-perf) with tracepoints, and a release build of ringwall-load.
set -euo pipefail
secs=5 conns=16 close=()
while getopts "d:c:n" opt; do
  case $opt in d) secs=$OPTARG ;; c) conns=$OPTARG ;; n) close=(--no-keepalive) ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
[[ $# -ge 1 ]] || { echo "usage: $0 [-d S] [-c N] [-n] BINARY..." >&2; exit 2; }
for tool in nginx perf taskset; do
  command -v "$tool" >/dev/null || { echo "$0: needs $tool" >&2; exit 1; }
done
cd "$(dirname "$0")/../.."
load=target/release/ringwall-load
[[ -x $load ]] || { echo "$0: build ringwall-load first: cargo build --release" >&2; exit 1; }
dir=$(mktemp -d)
origin_port=19801 proxy_port=19802
. bench/scripts/nginx-origin.sh
start_nginx_origin "$dir" "$origin_port"
trap 'kill $nginx_pid 2>/dev/null || true' EXIT
events=raw_syscalls:sys_enter,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_recvfrom,syscalls:sys_enter_setsockopt,syscalls:sys_enter_close,io_uring:io_uring_submit_req,io_uring:io_uring_poll_arm,context-switches
for binary in "$@"; do
  start_ringwall "$binary" "$proxy_port" "$origin_port" "$dir/proxy.log"
  pid=$ringwall_pid
  taskset -c 1 "$load" -c "$conns" -d 1s "${close[@]}" "http://127.0.0.1:$proxy_port/" > /dev/null
  perf stat -x, -e "$events" -p "$pid" -o "$dir/stat.csv" &
  perf_pid=$!
  sleep 0.5
  requests=$(taskset -c 1 "$load" -c "$conns" -d "${secs}s" "${close[@]}" "http://127.0.0.1:$proxy_port/" \
    | awk '/requests in/ {print $1}')
  kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$binary: $requests requests; per request:"
  awk -F, -v n="$requests" '!/^#/ && NF > 2 && $1 ~ /^[0-9]/ { printf "  %-40s %8.2f\n", $3, $1 / n }' "$dir/stat.csv"
done
