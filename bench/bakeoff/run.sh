#!/usr/bin/env bash
# The engine bake-off: the same bare keep-alive byte forwarder on each engine, interleaved
# A B C D per round, one forwarder on core 0, nginx origin + wrk on core 1.
#
#   flock /tmp/rw/bench.lock bash bench/bakeoff/run.sh [-r ROUNDS] [-d SECONDS] [-n IDLE_CONNS] [-o DIR] [-v VARIANTS]
#
# Per round, for 64 and then 256 connections, each variant in turn: start it, 1 s wrk warm-up,
# then `wrk -t1 -cC -dD` while the forwarder's utime+stime (/proc/PID/stat fields 14+15, all its
# threads) is read before and after; CPU µs/request = Δticks × 1e6 / CLK_TCK / requests.
# Then the idle figure: fresh forwarder, 1 s warm-up at 256 connections (so fixed pools are
# touched), then idle.py opens N keep-alive connections with one request each and leaves them
# idle; bytes/connection = ΔVmRSS / N. Medians and ratios to monoio-posted at the end.
set -euo pipefail
rounds=3 secs=5 idle_n=4900 out="" variants="monoio-posted monoio-readable compio-multi compio-managed"
while getopts "r:d:n:o:v:" opt; do
  case $opt in r) rounds=$OPTARG ;; d) secs=$OPTARG ;; n) idle_n=$OPTARG ;; o) out=$OPTARG ;;
    v) variants=$OPTARG ;; *) exit 2 ;; esac
done
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
for tool in nginx wrk taskset python3; do
  command -v $tool >/dev/null || { echo "$0: needs $tool" >&2; exit 1; }
done
# Another engineer's comparison must not overlap: wait (30 s polls, at most 30 min).
for _ in $(seq 60); do
  pgrep -f 'ringwall-load compare' >/dev/null || break
  echo "waiting: a ringwall-load compare is running" >&2
  sleep 30
done
if pgrep -f 'ringwall-load compare' >/dev/null; then echo "$0: compare still running after 30 min" >&2; exit 1; fi

cargo build --release --quiet
ulimit -n 20000
clk=$(getconf CLK_TCK)
out=${out:-$(mktemp -d /tmp/bakeoff.XXXXXX)}
mkdir -p "$out"
origin_port=19811 proxy_port=19812

cmd_of() {
  case $1 in
    monoio-posted) echo "target/release/fwd-monoio --mode posted" ;;
    monoio-readable) echo "target/release/fwd-monoio --mode readable" ;;
    compio-multi) echo "target/release/fwd-compio --mode multi" ;;
    compio-managed) echo "target/release/fwd-compio --mode managed" ;;
    uring-direct) echo "../../target/release/examples/uring_forwarder" ;;
    *) echo "unknown variant $1" >&2; exit 2 ;;
  esac
}

# nginx origin as bench/scripts/nginx-origin.sh, with room for the idle run's connections.
cat > "$out/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid $out/nginx.pid;
error_log $out/nginx-error.log;
events { worker_connections 16384; }
http {
  access_log off;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$origin_port backlog=4096;
    keepalive_requests 1000000;
    location / { return 200 "hello world\n"; }
  }
}
CONF
taskset -c 1 nginx -c "$out/nginx.conf" &
nginx_pid=$!
fwd_pid=""
cleanup() {
  [[ -n $fwd_pid ]] && kill "$fwd_pid" 2>/dev/null || true
  kill "$nginx_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 50); do curl -s -m 1 "http://127.0.0.1:$origin_port/" >/dev/null && break; sleep 0.1; done

ticks() { # utime + stime of the whole process
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

start_fwd() {
  local v=$1
  # shellcheck disable=SC2046
  taskset -c 0 $(cmd_of "$v") --listen "127.0.0.1:$proxy_port" --upstream "127.0.0.1:$origin_port" \
    > "$out/fwd.log" 2>&1 &
  fwd_pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$out/fwd.log" && return 0; sleep 0.05; done
  echo "$v did not start:" >&2; cat "$out/fwd.log" >&2; exit 1
}

stop_fwd() {
  kill "$fwd_pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$fwd_pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$fwd_pid" 2>/dev/null || true
  wait "$fwd_pid" 2>/dev/null || true
  fwd_pid=""
}

wrk_run() { # conns secs -> wrk output on stdout
  timeout $(( $2 + 20 )) taskset -c 1 wrk -t1 -c"$1" -d"$2s" --timeout 5s "http://127.0.0.1:$proxy_port/"
}

echo "# bake-off $(date -u +%FT%TZ) kernel $(uname -r) rounds=$rounds secs=$secs idle_n=$idle_n" | tee "$out/raw.txt"
for round in $(seq "$rounds"); do
  for conns in 64 256; do
    for v in $variants; do
      start_fwd "$v"
      wrk_run "$conns" 1 > /dev/null
      t0=$(ticks "$fwd_pid"); w0=$(date +%s.%N)
      wrk_run "$conns" "$secs" > "$out/wrk.txt"
      t1=$(ticks "$fwd_pid"); w1=$(date +%s.%N)
      stop_fwd
      reqs=$(awk '/requests in/ { print $1 }' "$out/wrk.txt")
      rps=$(awk '/^Requests\/sec/ { print $2 }' "$out/wrk.txt")
      bad=$(awk '/Non-2xx|Socket errors/ { printf "%s ", $0 }' "$out/wrk.txt")
      line=$(python3 -c "
t=($t1-$t0)/$clk; r=$reqs; wall=$w1-$w0
print(f'cpu round=$round conns=$conns variant=$v us_per_req={t*1e6/r:.3f} reqs={r} rps=$rps cpu_s={t:.2f} util={t/wall:.2f}')")
      echo "$line ${bad:+errors: $bad}" | tee -a "$out/raw.txt"
    done
  done
  for v in $variants; do
    start_fwd "$v"
    wrk_run 256 1 > /dev/null
    sleep 0.5
    read -r before after n per < <(timeout 150 python3 idle.py "$proxy_port" "$fwd_pid" "$idle_n")
    stop_fwd
    echo "idle round=$round variant=$v rss_before_kb=$before rss_after_kb=$after conns=$n bytes_per_conn=$per" | tee -a "$out/raw.txt"
    sleep 1 # let nginx see the closes
  done
done

python3 - "$out/raw.txt" <<'PY' | tee "$out/summary.md"
import collections, statistics, sys
cpu = collections.defaultdict(list)
idle = collections.defaultdict(list)
order = []
for line in open(sys.argv[1]):
    kind, *kv = line.split()
    if kind not in ("cpu", "idle"):
        continue
    d = dict(x.split("=", 1) for x in kv if "=" in x)
    v = d["variant"]
    if v not in order:
        order.append(v)
    if kind == "cpu":
        cpu[(v, d["conns"])].append(float(d["us_per_req"]))
    else:
        idle[v].append(float(d["bytes_per_conn"]))
base = order[0]
med = lambda xs: statistics.median(xs) if xs else float("nan")
print(f"| variant | CPU µs/req, 64 conns | ratio | CPU µs/req, 256 conns | ratio | idle RSS B/conn | ratio |")
print("|---|---|---|---|---|---|---|")
for v in order:
    c64, c256, rss = med(cpu[(v, "64")]), med(cpu[(v, "256")]), med(idle[v])
    b64, b256, brss = med(cpu[(base, "64")]), med(cpu[(base, "256")]), med(idle[base])
    print(f"| {v} | {c64:.2f} | {c64/b64:.2f} | {c256:.2f} | {c256/b256:.2f} | {rss:.0f} | {rss/brss:.2f} |")
PY
echo "raw and summary in $out"
