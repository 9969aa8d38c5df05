# Sourced by the A/B scripts: starts an nginx origin that answers `hello world\n` on
# 127.0.0.1:$2, pinned to core 1, with its files in $1; sets `nginx_pid`.
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
