#!/usr/bin/env bash
# Soak: ringwall at a fixed request rate for a long time, with its RSS and open file count
# sampled every second. Not part of CI (it takes DURATION).
#
#   bench/scripts/soak.sh [--duration 600] [--rate 5000] [--connections 64] [--workers 1]
#                         [--out bench/results/soak-DATE.md]
#
# Needs target/release/ringwall and target/release/ringwall-load (cargo build --release) and
# nginx (the origin). Proxy on core 0, origin and load on core 1, as in BENCHMARKING.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=600 rate=5000 connections=64 workers=1
out="bench/results/soak-$(date +%Y%m%d-%H%M).md"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "soak.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
ringwall=target/release/ringwall load=target/release/ringwall-load
for bin in "$ringwall" "$load"; do
  [ -x "$bin" ] || { echo "soak.sh: $bin missing: cargo build --release" >&2; exit 1; }
done
command -v nginx >/dev/null || { echo "soak.sh: nginx missing: apt-get install -y nginx" >&2; exit 1; }

tmp="$(mktemp -d /tmp/ringwall-soak.XXXXXX)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
origin_port=$(free_port) proxy_port=$(free_port)
mkdir -p "$tmp/origin"
cat > "$tmp/origin/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $tmp/origin/nginx.pid; error_log $tmp/origin/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$origin_port; location / { return 200 "hello world\n"; } } }
CONF
taskset -c 1 nginx -p "$tmp/origin" -c "$tmp/origin/nginx.conf" & pids+=($!)
taskset -c 0 "$ringwall" --listen "127.0.0.1:$proxy_port" --upstream "127.0.0.1:$origin_port" \
  --workers "$workers" --no-pin 2> "$tmp/ringwall.log" & rw=$!; pids+=($rw)
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$proxy_port/" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$proxy_port/" >/dev/null || { echo "soak.sh: ringwall did not answer" >&2; cat "$tmp/ringwall.log" >&2; exit 1; }

echo "soak: ${duration}s at ${rate} req/s, ${connections} connections, ringwall pid $rw" >&2
"$load" -R "$rate" -c "$connections" -d "${duration}s" --cpus 1 --latency --json --pid "$rw" \
  "http://127.0.0.1:$proxy_port/" > "$tmp/load.json" & loadpid=$!; pids+=($loadpid)
echo "second,rss_kib,open_fds" > "$tmp/samples.csv"
second=0
while kill -0 "$loadpid" 2>/dev/null; do
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$rw/status")
  fds=$(ls "/proc/$rw/fd" | wc -l)
  echo "$second,$rss,$fds" >> "$tmp/samples.csv"
  second=$((second + 1))
  [ $((second % 60)) -eq 0 ] && echo "soak: ${second}s, RSS ${rss} KiB, ${fds} fds" >&2
  sleep 1
done
wait "$loadpid"

mkdir -p "$(dirname "$out")"
python3 - "$tmp/samples.csv" "$tmp/load.json" "$out" "$*" "$duration" "$rate" "$connections" "$workers" <<'PY'
import csv, json, sys, platform, subprocess
samples, load_file, out, args, duration, rate, conns, workers = sys.argv[1:]
rows = list(csv.DictReader(open(samples)))
rss = [int(r["rss_kib"]) for r in rows]
fds = [int(r["open_fds"]) for r in rows]
load = json.load(open(load_file))
warm = rss[min(10, len(rss) - 1)]
lines = [
    f"# Soak: {duration} s at {rate} requests/s",
    "",
    f"Command: `bench/scripts/soak.sh --duration {duration} --rate {rate} --connections {conns} --workers {workers}`",
    f"Kernel {platform.release()}; ringwall {subprocess.run(['git','rev-parse','--short','HEAD'],capture_output=True,text=True).stdout.strip()}; sampled every second.",
    "",
    "| figure | value |",
    "|---|---|",
    f"| samples | {len(rows)} |",
    f"| RSS after 10 s / at the end / max (KiB) | {warm} / {rss[-1]} / {max(rss)} |",
    f"| RSS growth from 10 s to the end (KiB) | {rss[-1] - warm} |",
    f"| open fds min / max / end | {min(fds)} / {max(fds)} / {fds[-1]} |",
]
lines += ["", "Load generator report (JSON):", "", "```json", json.dumps(load, indent=1)[:6000], "```", "",
          "Samples (second, RSS KiB, open fds), one line per minute:", "", "```"]
lines += [f"{r['second']},{r['rss_kib']},{r['open_fds']}" for i, r in enumerate(rows) if i % 60 == 0 or i == len(rows) - 1]
lines += ["```", ""]
open(out, "w").write("\n".join(lines))
print("\n".join(lines[:12]))
PY
echo "soak: written to $out" >&2
