#!/usr/bin/env bash
# Cross-check ringwall-load against wrk on the same nginx origin (see docs/loadtest.md).
#
# nginx (return 200 "hello world\n", one worker) runs on core 0; each generator runs on core 1
# with one thread and 64 keep-alive connections, rounds interleaved wrk, ringwall-load, wrk, ...
# Generator CPU is taken from /usr/bin/time (user + system) for both, the same way.
# Two targets: "/" (a 12-byte body: the generators, not nginx, saturate their core) and "/gz"
# (a 2.9 KiB text file gzipped at level 1 on every request: nginx saturates core 0 first, so
# both generators should report the same throughput).
# Usage: loadtest/scripts/cross-check-wrk.sh [ROUNDS] [DURATION_SECONDS]
set -euo pipefail
ROUNDS=${1:-3}
DUR=${2:-10}
BIN=${BIN:-target/release/ringwall-load}
DIR=$(mktemp -d /tmp/ringwall-load-xcheck.XXXXXX)
chmod 755 "$DIR" # nginx's workers run as www-data and must read the text file
PORT=${PORT:-18181}
cat > "$DIR/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $DIR/nginx.pid;
error_log $DIR/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$PORT;
        location = / { return 200 "hello world\n"; }
        location = /gz {
            default_type text/plain;
            gzip on; gzip_comp_level 1; gzip_min_length 0; gzip_types text/plain;
            alias $DIR/text;
        }
    }
}
CONF
python3 -c 'import sys; sys.stdout.write(("lorem ipsum dolor sit amet %d\n" * 100) % tuple(range(100)))' > "$DIR/text"
taskset -c 0 nginx -c "$DIR/nginx.conf" -p "$DIR" -e "$DIR/error.log" &
NGINX=$!
trap 'kill $NGINX 2>/dev/null; wait $NGINX 2>/dev/null; rm -rf "$DIR"' EXIT
sleep 0.5
printf '%-5s %-14s %5s %12s %10s %14s %8s\n' path generator round requests/s cpu_s cpu_us/request non-2xx
for PATH_ in / /gz; do
URL="http://127.0.0.1:$PORT$PATH_"
for round in $(seq 1 "$ROUNDS"); do
    # wrk
    /usr/bin/time -f '%U %S' -o "$DIR/time" taskset -c 1 wrk -t1 -c64 -d"${DUR}s" -H "Accept-Encoding: gzip" "$URL" > "$DIR/out"
    reqs=$(awk '/requests in/ {print $1}' "$DIR/out")
    rps=$(awk '/Requests\/sec/ {print $2}' "$DIR/out")
    bad=$(awk '/Non-2xx/ {print $NF}' "$DIR/out"); bad=${bad:-0}
    read -r u s < "$DIR/time"
    awk -v g=wrk -v r="$round" -v n="$reqs" -v rps="$rps" -v u="$u" -v s="$s" \
        -v path="$PATH_" -v bad="$bad" 'BEGIN { printf "%-5s %-14s %5d %12.0f %10.2f %14.2f %8d\n", path, g, r, rps, u+s, (u+s)*1e6/n, bad }'
    # ringwall-load
    /usr/bin/time -f '%U %S' -o "$DIR/time" "$BIN" --cpus 1 -t1 -c64 -d"${DUR}s" -H "Accept-Encoding: gzip" --json "$URL" > "$DIR/out"
    reqs=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["requests"])' "$DIR/out")
    rps=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["requests_per_second"])' "$DIR/out")
    bad=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["requests"]-r["status"]["s2xx"])' "$DIR/out")
    read -r u s < "$DIR/time"
    awk -v g=ringwall-load -v r="$round" -v n="$reqs" -v rps="$rps" -v u="$u" -v s="$s" \
        -v path="$PATH_" -v bad="$bad" 'BEGIN { printf "%-5s %-14s %5d %12.0f %10.2f %14.2f %8d\n", path, g, r, rps, u+s, (u+s)*1e6/n, bad }'
done
done
