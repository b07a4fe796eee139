#!/usr/bin/env bash
# User-space instructions per proxied request, warden against nginx in one run, counted by
# valgrind's callgrind. Unlike req/s this does not move with a noisy neighbour, so it shows what a
# change to the proxy's code did; it says nothing about the kernel's share (about 60 % of the
# proxy's CPU time on loopback, and the same for both).
#
# Same setup as scripts/bench/proxy.sh: an nginx upstream (/ping and an 18 KB file) on 127.0.0.1,
# nginx in front with a pool of 64 kept-alive upstream connections, and warden in front. Each proxy
# runs under callgrind, gets 3 s of wrk to warm up, then the count is reset and 10 s of
# `wrk -t1 -c50` are counted.
#
# Usage: scripts/bench/proxy-instructions.sh [PATH...]   (default: /ping /image.png)
# Needs valgrind, nginx and wrk.
set -euo pipefail
cd "$(dirname "$0")/../.."
for tool in valgrind callgrind_control callgrind_annotate nginx wrk; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
if [ $# -gt 0 ]; then paths=("$@"); else paths=(/ping /image.png); fi
swift build -c release --product warden >/dev/null
work=$(mktemp -d /tmp/warden-instructions-XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
    echo "nothing listening on $1" >&2
    return 1
}

upstream_port=$(free_port)
proxy_port=$(free_port)
mkdir -p "$work/www" "$work/logs" "$work/tmp"
printf pong >"$work/www/ping"
head -c 18000 /dev/urandom >"$work/www/image.png"
nginx_http="types { image/png png; } default_type application/octet-stream; sendfile on; access_log off;
    keepalive_timeout 65; keepalive_requests 1000000; client_body_temp_path $work/tmp;"
cat >"$work/upstream.conf" <<CONF
worker_processes 1; daemon off; pid $work/upstream.pid; error_log $work/logs/upstream.log warn;
events { worker_connections 4096; }
http { $nginx_http
    server { listen 127.0.0.1:$upstream_port; root $work/www;
        location = /ping { default_type text/plain; return 200 "pong"; } }
}
CONF
cat >"$work/proxy.conf" <<CONF
worker_processes 1; daemon off; master_process off; pid $work/proxy.pid; error_log $work/logs/proxy.log warn;
events { worker_connections 4096; }
http { $nginx_http
    upstream app { server 127.0.0.1:$upstream_port; keepalive 64; }
    server { listen 127.0.0.1:$proxy_port;
        location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host \$host; } }
}
CONF
cat >"$work/wardenrc" <<RC
set daemon 60
set pidfile $work/warden.pid
set proxy
    listen 127.0.0.1 port $proxy_port
check site bench default
    pass / to http://127.0.0.1:$upstream_port/
RC
chmod 600 "$work/wardenrc"
# valgrind 3.19 cannot read the DWARF 5 that swift emits: count a copy without debug sections.
strip --strip-debug -o "$work/warden" .build/release/warden

nginx -p "$work" -e "$work/logs/startup.log" -c "$work/upstream.conf" &
pids+=($!)
wait_port "$upstream_port"

# count LABEL PATH COMMAND... -> prints "requests instructions"
count() {
    local label=$1 path=$2
    shift 2
    valgrind --tool=callgrind --callgrind-out-file="$work/$label.out" "$@" >"$work/$label.log" 2>&1 &
    local pid=$!
    wait_port "$proxy_port"
    wrk -t1 -c50 -d3s "http://127.0.0.1:$proxy_port$path" >/dev/null
    callgrind_control -z "$pid" >/dev/null 2>&1
    local requests
    requests=$(wrk -t1 -c50 -d10s "http://127.0.0.1:$proxy_port$path" | awk '/requests in/{print $1}')
    callgrind_control -d "$pid" >/dev/null 2>&1
    sleep 1
    kill -INT "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local dump
    dump=$(ls -t "$work/$label.out".* | head -1)
    echo "$requests $(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(/,/,"",$1); print $1}')"
    rm -f "$work/$label.out"*
    for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$proxy_port") 2>/dev/null || break; sleep 0.1; done
}

echo "date: $(date -u +%FT%TZ); $(uname -srm); $(nproc) cpus; $(nginx -v 2>&1); valgrind $(valgrind --version)"
printf "%-12s %-8s %10s %14s %10s\n" path proxy requests instructions per_request
for path in "${paths[@]}"; do
    read -r nginx_requests nginx_total < <(count nginx "$path" nginx -p "$work" -e "$work/logs/startup.log" -c "$work/proxy.conf")
    read -r warden_requests warden_total < <(count warden "$path" "$work/warden" -c "$work/wardenrc" -I)
    nginx_each=$((nginx_total / nginx_requests))
    warden_each=$((warden_total / warden_requests))
    printf "%-12s %-8s %10d %14d %10d\n" "$path" nginx "$nginx_requests" "$nginx_total" "$nginx_each"
    printf "%-12s %-8s %10d %14d %10d\n" "$path" warden "$warden_requests" "$warden_total" "$warden_each"
    echo "$path: warden runs $(awk -v w="$warden_each" -v n="$nginx_each" 'BEGIN{printf "%.2f", w/n}')x nginx's user-space instructions per request"
done
