#!/usr/bin/env bash
# User-space instructions per request of ringwall builds, counted by callgrind (a count, not a
# time: repeatable on a noisy machine, whatever else runs). Each build serves a small
# keep-alive GET on one worker in front of an nginx origin (`return 200 "hello world\n"`),
# driven by ringwall-load for a few seconds; instructions are counted only while the load
# runs. Kernel time is not counted: this shows what a change of the request path costs in
# ringwall's own code. Builds are measured in turns, `rounds` times.
#
#   bench/scripts/callgrind-ab.sh [-r ROUNDS] [-d SECONDS] [-c CONNECTIONS] [-- EXTRA FLAGS] BINARY...
#
# CALLGRIND_KEEP=DIR keeps the callgrind files there (for callgrind_annotate).
#
# Needs valgrind, nginx and curl (apt-get install -y valgrind nginx curl) and a release build of
# ringwall-load (cargo build --release).
set -euo pipefail
rounds=2 secs=5 conns=16 extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -r) rounds=$2; shift 2 ;;
    -d) secs=$2; shift 2 ;;
    -c) conns=$2; shift 2 ;;
    --) shift; while [[ $# -gt 0 && "$1" != "::" ]]; do extra+=("$1"); shift; done; [[ "${1:-}" == "::" ]] && shift ;;
    *) break ;;
  esac
done
[[ $# -ge 1 ]] || { echo "usage: $0 [-r N] [-d S] [-c N] [-- FLAGS ::] BINARY..." >&2; exit 2; }
for tool in valgrind callgrind_control nginx curl; do
  command -v "$tool" >/dev/null || { echo "$0: needs $tool (apt-get install -y valgrind nginx curl)" >&2; exit 1; }
done
cd "$(dirname "$0")/../.."
load=target/release/ringwall-load
[[ -x $load ]] || { echo "$0: build ringwall-load first: cargo build --release" >&2; exit 1; }
dir=$(mktemp -d)
origin_port=19601 proxy_port=19602
. bench/scripts/nginx-origin.sh
start_nginx_origin "$dir" "$origin_port"
cleanup() { kill "$nginx_pid" 2>/dev/null || true; pkill -9 -f "callgrind-out-file=$dir" 2>/dev/null || true; }
trap cleanup EXIT
for round in $(seq "$rounds"); do
  for binary in "$@"; do
    out="$dir/cg.$round.$(basename "$binary")"
    callgrind_run "$out" "$proxy_port" "$binary" --upstream "127.0.0.1:$origin_port" \
      --listen "127.0.0.1:$proxy_port" --workers 1 --no-pin "${extra[@]}"
    if [[ -n ${CALLGRIND_KEEP:-} ]]; then mkdir -p "$CALLGRIND_KEEP" && cp "$out".* "$CALLGRIND_KEEP"/; fi
    awk -v b="$binary" -v r="$round" -v t="$cg_total" -v n="$cg_requests" \
      'BEGIN { printf "round %s  %-40s %9d requests  %6.0f instructions/request\n", r, b, n, t / n }'
  done
done
