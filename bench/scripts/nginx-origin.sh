# Sourced by the A/B scripts. start_nginx_origin starts an nginx origin that answers
# `hello world\n` on 127.0.0.1:$2, pinned to core 1, with its files in $1; sets `nginx_pid`.
# start_ringwall runs the ringwall binary $1 on 127.0.0.1:$2 in front of 127.0.0.1:$3, one
# worker pinned to core 0, logging to $4, and waits (at most 5 s) until it listens; sets
# `ringwall_pid`. callgrind_run runs a proxy under callgrind and counts its instructions while
# a load runs through it (the callgrind scripts).
start_nginx_origin() {
  local dir=$1 port=$2
  cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log;
events {}
http {
  access_log off;
  server {
    listen 127.0.0.1:$port;
    keepalive_requests 1000000;
    location / { return 200 "hello world\n"; }
  }
}
CONF
  taskset -c 1 nginx -c "$dir/nginx.conf" &
  nginx_pid=$!
  sleep 0.5
}

start_ringwall() {
  local binary=$1 port=$2 origin_port=$3 log=$4
  taskset -c 0 "$binary" --upstream "127.0.0.1:$origin_port" --listen "127.0.0.1:$port" \
    --workers 1 --no-pin > "$log" 2>&1 &
  ringwall_pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.05; done
}

# callgrind_run OUT PORT COMMAND...: runs COMMAND (a proxy listening on 127.0.0.1:PORT) under
# callgrind on core 0, its output files named OUT*, waits (at most 2 min) until it answers,
# counts instructions only while ringwall-load ($load, with $conns connections for $secs
# seconds, on core 1) runs through it, then stops it. Sets `cg_requests` and `cg_total`
# (instructions in every thread).
callgrind_run() {
  local out=$1 port=$2; shift 2
  taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out" --instr-atstart=no \
    "$@" > "$out.log" 2>&1 &
  local vg=$! up=
  for _ in $(seq 1200); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/"; then up=1; break; fi
    sleep 0.1
  done
  [[ -n $up ]] || { cat "$out.log"; exit 1; }
  sleep 1
  callgrind_control -i on "$vg" > /dev/null
  # CALLGRIND_LOAD_HEADER="Name: value" adds a request header (an API key, a bearer token).
  local header=()
  [[ -n ${CALLGRIND_LOAD_HEADER:-} ]] && header=(-H "$CALLGRIND_LOAD_HEADER")
  cg_requests=$(taskset -c 1 "$load" -c "$conns" -d "${secs}s" "${header[@]}" "http://127.0.0.1:$port/" \
    | awk '/requests in/ {print $1}')
  callgrind_control -i off "$vg" > /dev/null
  callgrind_control -d "$vg" > /dev/null
  sleep 1
  kill -9 "$vg" 2>/dev/null || true
  wait "$vg" 2>/dev/null || true
  cg_total=$(grep -h '^totals:' "$out".* | awk '{s += $2} END {print s}')
}
