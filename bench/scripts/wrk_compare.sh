#!/usr/bin/env bash
# Small keep-alive GET through one proxy core: ringwall vs nginx vs HAProxy, measured the way
# BENCHMARKING.md prescribes: CPU µs per request from /proc/PID/task/*/stat, proxy on one
# core, wrk + origin on another, interleaved rounds, medians, ratios to nginx and HAProxy.
# See bench/scripts/README.md. Only ever talks to 127.0.0.1.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/scripts/wrk_compare.sh [options]
  --rounds N          interleaved rounds (A B C A B C ...)             [3]
  --duration SECS     wrk duration per run                             [10]
  --connections C     wrk connections                                  [64]
  --ringwall PATH     ringwall binary                      [target/release/ringwall]
  --ringwall-args S   extra arguments for ringwall, e.g. "--io-driver uring-coop"
  --only LIST         proxies to run, comma-separated, from nginx,haproxy,ringwall [all three]
  --warmup SECS       unmeasured wrk run per proxy before round 1 (0: none) [2]
  --out FILE          results file              [bench/results/wrk-compare-<date>.md]
  --proxy-core N      core for the proxy under test                    [0]
  --load-core N       core for wrk and the origin                      [1]
  --keep-tmp          keep the temp dir (configs, logs, raw wrk output)
  -h, --help
Exit status: 0 ok, 3 when any run had errors (non-2xx, socket errors, wrk failure), 1 otherwise.
EOF
}

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
HELPER="$SCRIPT_DIR/cpu_sample.py"
CMDLINE="bench/scripts/wrk_compare.sh$(printf ' %q' "$@")"

ROUNDS=3
DURATION=10
CONNS=64
RINGWALL="$REPO/target/release/ringwall"
RINGWALL_ARGS=""
ONLY="nginx,haproxy,ringwall"
WARMUP=2
OUT="$REPO/bench/results/wrk-compare-$(date +%Y%m%d-%H%M%S).md"
PCORE=0
LCORE=1
KEEP_TMP=0

die() { echo "wrk_compare: $*" >&2; exit 1; }
need_arg() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --rounds) need_arg "$@"; ROUNDS=$2; shift 2 ;;
        --duration) need_arg "$@"; DURATION=$2; shift 2 ;;
        --connections) need_arg "$@"; CONNS=$2; shift 2 ;;
        --ringwall) need_arg "$@"; RINGWALL=$2; shift 2 ;;
        --ringwall-args) need_arg "$@"; RINGWALL_ARGS=$2; shift 2 ;;
        --only) need_arg "$@"; ONLY=$2; shift 2 ;;
        --warmup) need_arg "$@"; WARMUP=$2; shift 2 ;;
        --out) need_arg "$@"; OUT=$2; shift 2 ;;
        --proxy-core) need_arg "$@"; PCORE=$2; shift 2 ;;
        --load-core) need_arg "$@"; LCORE=$2; shift 2 ;;
        --keep-tmp) KEEP_TMP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
for v in ROUNDS DURATION CONNS WARMUP PCORE LCORE; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer, got '${!v}'"
done
((ROUNDS >= 1 && DURATION >= 1 && CONNS >= 1)) || die "rounds, duration and connections must be >= 1"
((PCORE != LCORE)) || die "--proxy-core and --load-core must differ"

IFS=',' read -r -a PROXIES <<<"$ONLY"
for p in "${PROXIES[@]}"; do
    case $p in nginx|haproxy|ringwall) ;; *) die "--only: unknown proxy '$p' (nginx, haproxy, ringwall)" ;; esac
done
has_proxy() { local p; for p in "${PROXIES[@]}"; do [[ $p == "$1" ]] && return 0; done; return 1; }

for tool in taskset wrk nginx python3 curl; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
has_proxy haproxy && { command -v haproxy >/dev/null || die "haproxy not found"; }
if has_proxy ringwall; then
    [[ -x $RINGWALL ]] || die "ringwall binary '$RINGWALL' not found or not executable; build it (cargo build --release -p ringwall), pass --ringwall PATH, or leave it out with --only nginx,haproxy"
fi
NCPU=$(nproc)
((PCORE < NCPU && LCORE < NCPU)) || die "cores $PCORE/$LCORE do not exist here (nproc = $NCPU)"

# ------------------------------------------------------------------ process bookkeeping
TMP=$(mktemp -d /tmp/wrk_compare.XXXXXX)
chmod 755 "$TMP"   # nginx workers may run as nobody
STARTED_PIDS=()    # every process this script started, in start order
NGINX_WORKERS=()   # children of the nginx masters we started, recorded once they answer
MEASURE_PID=""
CLEANED=0

alive() { [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; }

cleanup() {
    ((CLEANED)) && return
    CLEANED=1
    trap - INT TERM
    if alive "$MEASURE_PID"; then kill -TERM "$MEASURE_PID" 2>/dev/null || true; wait "$MEASURE_PID" 2>/dev/null || true; fi
    local i pid
    for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${STARTED_PIDS[i]}
        alive "$pid" && kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
        if alive "$pid"; then echo "wrk_compare: pid $pid ignored SIGTERM, killing" >&2; kill -KILL "$pid" 2>/dev/null || true; fi
        wait "$pid" 2>/dev/null || true
    done
    # nginx workers die with their master; make sure (only the PIDs we recorded, only if still nginx).
    for pid in "${NGINX_WORKERS[@]}"; do
        if alive "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == nginx ]]; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    if ((KEEP_TMP)); then echo "wrk_compare: temp dir kept: $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_bg LOGFILE CMD... : start CMD in the background, remember its PID in $LAST_PID.
start_bg() {
    local log=$1; shift
    "$@" >"$log" 2>&1 </dev/null &
    LAST_PID=$!
    STARTED_PIDS+=("$LAST_PID")
}

# wait_ready NAME PID PORT LOG : until GET / answers "hello world", bounded to 10 s.
wait_ready() {
    local name=$1 pid=$2 port=$3 log=$4 body
    for _ in $(seq 100); do
        if ! alive "$pid"; then
            echo "--- $log" >&2; tail -n 20 "$log" >&2 || true
            die "$name (pid $pid) exited during startup"
        fi
        body=$(curl -s -m 1 "http://127.0.0.1:$port/" 2>/dev/null || true)
        [[ $body == "hello world" ]] && return 0
        sleep 0.1
    done
    echo "--- $log" >&2; tail -n 20 "$log" >&2 || true
    die "$name did not answer 'hello world' on 127.0.0.1:$port within 10 s (last body: '${body:0:80}')"
}

children_of() { # direct children of PID, from /proc (no name matching)
    local d
    for d in /proc/[0-9]*; do
        [[ $(awk '{ sub(/^.*\) /, ""); print $2 }' "$d/stat" 2>/dev/null) == "$1" ]] && echo "${d#/proc/}"
    done
    return 0
}

# ------------------------------------------------------------------ configs
mapfile -t PORTS < <(python3 "$HELPER" freeports 4)
ORIGIN_PORT=${PORTS[0]} NGINX_PORT=${PORTS[1]} HAPROXY_PORT=${PORTS[2]} RINGWALL_PORT=${PORTS[3]}

nginx_common() { # $1 = prefix dir
    cat <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
EOF
}
nginx_temp_paths() {
    cat <<EOF
    client_body_temp_path $1/client_body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
EOF
}

mkdir -p "$TMP/origin" "$TMP/nginx" "$TMP/haproxy" "$TMP/ringwall"
{
    nginx_common "$TMP/origin"
    cat <<EOF
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
$(nginx_temp_paths "$TMP/origin")
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        location / { return 200 "hello world\n"; }
    }
}
EOF
} >"$TMP/origin/nginx.conf"

{
    nginx_common "$TMP/nginx"
    cat <<EOF
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
$(nginx_temp_paths "$TMP/nginx")
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
} >"$TMP/nginx/nginx.conf"

cat >"$TMP/haproxy/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
    pidfile $TMP/haproxy/haproxy.pid

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 300s

frontend fe
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend origin

backend origin
    server origin 127.0.0.1:$ORIGIN_PORT
EOF

# ------------------------------------------------------------------ start
declare -A PID PORT LOG
echo "wrk_compare: temp dir $TMP; ports origin $ORIGIN_PORT nginx $NGINX_PORT haproxy $HAPROXY_PORT ringwall $RINGWALL_PORT"

LOG[origin]=$TMP/origin/stdout.log
start_bg "${LOG[origin]}" taskset -c "$LCORE" nginx -p "$TMP/origin" -e "$TMP/origin/error.log" -c "$TMP/origin/nginx.conf"
PID[origin]=$LAST_PID
wait_ready origin "${PID[origin]}" "$ORIGIN_PORT" "$TMP/origin/error.log"
mapfile -t -O "${#NGINX_WORKERS[@]}" NGINX_WORKERS < <(children_of "${PID[origin]}")

RINGWALL_CMD=()
for p in "${PROXIES[@]}"; do
    case $p in
        nginx)
            LOG[nginx]=$TMP/nginx/stdout.log; PORT[nginx]=$NGINX_PORT
            start_bg "${LOG[nginx]}" taskset -c "$PCORE" nginx -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf"
            PID[nginx]=$LAST_PID
            wait_ready nginx "${PID[nginx]}" "$NGINX_PORT" "$TMP/nginx/error.log"
            mapfile -t -O "${#NGINX_WORKERS[@]}" NGINX_WORKERS < <(children_of "${PID[nginx]}")
            ;;
        haproxy)
            LOG[haproxy]=$TMP/haproxy/stdout.log; PORT[haproxy]=$HAPROXY_PORT
            start_bg "${LOG[haproxy]}" taskset -c "$PCORE" haproxy -db -f "$TMP/haproxy/haproxy.cfg"
            PID[haproxy]=$LAST_PID
            wait_ready haproxy "${PID[haproxy]}" "$HAPROXY_PORT" "${LOG[haproxy]}"
            ;;
        ringwall)
            LOG[ringwall]=$TMP/ringwall/stdout.log; PORT[ringwall]=$RINGWALL_PORT
            # shellcheck disable=SC2206 # word splitting of --ringwall-args is intended
            RINGWALL_CMD=("$RINGWALL" --listen "127.0.0.1:$RINGWALL_PORT" --upstream "127.0.0.1:$ORIGIN_PORT" --workers 1 --no-pin $RINGWALL_ARGS)
            start_bg "${LOG[ringwall]}" env -u RINGWALL_LOG taskset -c "$PCORE" "${RINGWALL_CMD[@]}"
            PID[ringwall]=$LAST_PID
            wait_ready ringwall "${PID[ringwall]}" "$RINGWALL_PORT" "${LOG[ringwall]}"
            ;;
    esac
done
for p in origin "${PROXIES[@]}"; do
    echo "  $p: pid ${PID[$p]}, affinity $(taskset -cp "${PID[$p]}" 2>/dev/null | awk '{print $NF}')"
done

# ------------------------------------------------------------------ metadata
version_of() { "$@" 2>&1 | head -n 1 || true; }
GIT_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n $(git -C "$REPO" status --porcelain 2>/dev/null) ]] && GIT_REV="$GIT_REV (+ uncommitted changes)"
{
    echo "# wrk comparison: small keep-alive GET, proxy on one core"
    echo
    echo "- date: $(date -Is)"
    echo "- command: \`$CMDLINE\`"
    echo "- kernel: $(uname -r); CPU: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo) × $NCPU; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- nginx: $(version_of nginx -v)"
    has_proxy haproxy && echo "- haproxy: $(version_of haproxy -v)"
    echo "- wrk: $(version_of wrk -v)"
    if has_proxy ringwall; then
        echo "- ringwall: $(version_of "$RINGWALL" --version), git $GIT_REV, binary $RINGWALL"
        echo "- ringwall command: \`taskset -c $PCORE ${RINGWALL_CMD[*]}\`"
    fi
    echo "- setup: proxy on core $PCORE; origin nginx (\`return 200 \"hello world\\n\"\`, 12-byte body) and \`taskset -c $LCORE wrk -t1 -c$CONNS -d${DURATION}s --latency\` on core $LCORE; keep-alive to client and pooled keep-alive to origin; no access logs; ${WARMUP}s warm-up per proxy; $ROUNDS interleaved round(s), order: ${PROXIES[*]}"
    echo "- CPU µs/request = Δ(utime+stime) over /proc/PID/task/*/stat of every process of the proxy (nginx: master + worker) ÷ CLK_TCK ($(getconf CLK_TCK)) × 10⁶ ÷ requests completed"
    echo
    echo "<details><summary>generated configs</summary>"
    echo
    for f in origin/nginx.conf nginx/nginx.conf haproxy/haproxy.cfg; do
        has_proxy "${f%%/*}" || [[ $f == origin/* ]] || continue
        printf '%s\n\n```\n%s\n```\n\n' "$f" "$(sed "s|$TMP|\$TMP|g" "$TMP/$f")"
    done
    echo "</details>"
} >"$TMP/meta.md"

# ------------------------------------------------------------------ measure
if ((WARMUP > 0)); then
    for p in "${PROXIES[@]}"; do
        echo "warm-up: $p ${WARMUP}s"
        taskset -c "$LCORE" wrk -t1 -c"$CONNS" -d"${WARMUP}s" "http://127.0.0.1:${PORT[$p]}/" >/dev/null 2>&1 &
        MEASURE_PID=$!
        wait "$MEASURE_PID" || echo "wrk_compare: warm-up of $p: wrk exited $?" >&2
        MEASURE_PID=""
    done
fi

FAILED_RUNS=0
for ((r = 1; r <= ROUNDS; r++)); do
    for p in "${PROXIES[@]}"; do
        alive "${PID[$p]}" || die "$p (pid ${PID[$p]}) is no longer running; see $TMP/$p/"
        pids=${PID[$p]}
        python3 "$HELPER" measure --name "$p" --round "$r" --pids "$pids" --origin-pids "${PID[origin]}" \
            --url "http://127.0.0.1:${PORT[$p]}/" --duration "$DURATION" --connections "$CONNS" \
            --wrk-core "$LCORE" --wrk-log "$TMP/wrk.log" --jsonl "$TMP/results.jsonl" &
        MEASURE_PID=$!
        rc=0; wait "$MEASURE_PID" || rc=$?
        MEASURE_PID=""
        ((rc == 0)) || { echo "wrk_compare: measuring $p in round $r failed (exit $rc)" >&2; FAILED_RUNS=$((FAILED_RUNS + 1)); }
        sleep 1
    done
done

[[ -s $TMP/results.jsonl ]] || die "no results"
echo
rc=0
python3 "$HELPER" report --jsonl "$TMP/results.jsonl" --meta "$TMP/meta.md" --out "$OUT" || rc=$?
echo "results written to $OUT"
if ((rc == 3 || FAILED_RUNS > 0)); then
    echo "wrk_compare: WARNING: some runs had errors; those proxies' numbers are flagged, not clean" >&2
    exit 3
fi
exit "$rc"
