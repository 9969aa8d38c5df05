# Sourced by the A/B scripts. start_nginx_origin starts an nginx origin that answers
# `hello world\n` on 127.0.0.1:$2, pinned to core 1, with its files in $1; sets `nginx_pid`.
# start_ringwall runs the ringwall binary $1 on 127.0.0.1:$2 in front of 127.0.0.1:$3, one
# worker pinned to core 0, logging to $4, and waits (at most 5 s) until it listens; sets
# `ringwall_pid`.
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
