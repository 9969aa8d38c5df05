#!/usr/bin/env bash
# What an access log line costs ringwall and nginx, in user-space instructions per request
# counted by callgrind (a count, not a time: repeatable on a noisy machine). Each proxy serves
# a small keep-alive GET on one worker (nginx: `master_process off`, one process) in front of
# an nginx origin (`return 200 "hello world\n"`), with its access log off, then on (nginx
# `combined buffer=16k flush=100ms`, ringwall `--access-log FILE`: both batch 16 KiB / 100 ms),
# driven by ringwall-load for a few seconds; instructions are counted only while the load runs,
# in every thread (ringwall's log writer thread too). The log files' writes are kernel time and
# are not counted: both proxies write the same bytes in the same batches.
#
#   bench/scripts/callgrind-log.sh [-r ROUNDS] [-d SECONDS] [-c CONNECTIONS] [RINGWALL]
#
# Needs valgrind, nginx and curl (apt-get install -y valgrind nginx curl) and a release build
# (cargo build --release --workspace).
set -euo pipefail
rounds=2 secs=4 conns=16
while [[ $# -gt 0 ]]; do
  case "$1" in
    -r) rounds=$2; shift 2 ;;
    -d) secs=$2; shift 2 ;;
    -c) conns=$2; shift 2 ;;
    *) break ;;
  esac
done
ringwall=${1:-target/release/ringwall}
for tool in valgrind callgrind_control nginx curl; do
  command -v "$tool" >/dev/null || { echo "$0: needs $tool (apt-get install -y valgrind nginx curl)" >&2; exit 1; }
done
cd "$(dirname "$0")/../.."
load=target/release/ringwall-load
[[ -x $load && -x $ringwall ]] || { echo "$0: build first: cargo build --release --workspace" >&2; exit 1; }
dir=$(mktemp -d)
origin_port=19611 proxy_port=19612
. bench/scripts/nginx-origin.sh
start_nginx_origin "$dir" "$origin_port"
cleanup() { kill "$nginx_pid" 2>/dev/null || true; pkill -9 -f "callgrind-out-file=$dir" 2>/dev/null || true; }
trap cleanup EXIT

nginx_conf() {
  local log=$1
  local access="access_log off;"
  [[ $log == on ]] && access="access_log $dir/nginx-access.log combined buffer=16k flush=100ms;"
  cat > "$dir/proxy-$log.conf" <<CONF
master_process off;
daemon off;
worker_processes 1;
pid $dir/proxy-$log.pid;
error_log $dir/proxy-error.log;
events {}
http {
  $access
  upstream origin { server 127.0.0.1:$origin_port; keepalive 16; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$proxy_port;
    keepalive_requests 1000000;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
  echo "$dir/proxy-$log.conf"
}

# measure NAME LOG ROUND COMMAND...: one run under callgrind; prints instructions/request.
measure() {
  local name=$1 log=$2 round=$3; shift 3
  callgrind_run "$dir/cg.$round.$name.$log" "$proxy_port" "$@"
  awk -v p="$name" -v l="$log" -v r="$round" -v t="$cg_total" -v n="$cg_requests" \
    'BEGIN { printf "round %s  %-8s log %-3s %9d requests  %6.0f instructions/request\n", r, p, l, n, t / n }'
}

for round in $(seq "$rounds"); do
  for log in off on; do
    measure nginx "$log" "$round" nginx -c "$(nginx_conf "$log")"
    args=(--upstream "127.0.0.1:$origin_port" --listen "127.0.0.1:$proxy_port" --workers 1 --no-pin)
    [[ $log == on ]] && args+=(--access-log "$dir/ringwall-access.log")
    measure ringwall "$log" "$round" "$ringwall" "${args[@]}"
  done
done
echo "log lines written: nginx $(wc -l < "$dir/nginx-access.log"), ringwall $(wc -l < "$dir/ringwall-access.log")"
