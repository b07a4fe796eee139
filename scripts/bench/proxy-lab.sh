# The proxy lab shared by the scripts/bench/proxy-*.sh scripts (sourced): in a new directory $work,
# an nginx upstream with /ping ("pong") and an 18 KB /image.png on $upstream_port (any .json file
# added to $work/www is served as application/json), and two proxies
# for $proxy_port to choose from: nginx with one worker and a pool of 64 kept-alive upstream
# connections ($work/proxy.conf, one process) and warden ($work/wardenrc). With separate_ports=1,
# nginx listens on $nginx_port instead, so the two can run side by side.
# Starts the upstream (on cpu 0 with pinned=1, where the proxies go too) and ends it on exit.
# $upstream_keepalive (seconds, default 65) is how long the upstream keeps a connection open; 0 closes
# each one after its response. With NIO_FLOOR=1, $floor is also built: scripts/bench/nio-floor, the
# least a SwiftNIO proxy can do per request (right for /ping only), as a third proxy.
# $lab_needs: the tools the script needs beyond the lab's own.
pin_upstream=
[ "${pinned:-0}" = 1 ] && { pin_upstream="taskset -c 0"; lab_needs="${lab_needs:-} taskset"; }
for tool in nginx wrk curl /usr/bin/python3 ${lab_needs:-}; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
swift build -c release --product warden >/dev/null
floor=
if [ "${NIO_FLOOR:-0}" = 1 ]; then
    swift build -c release --package-path scripts/bench/nio-floor >/dev/null
    floor=scripts/bench/nio-floor/.build/release/nio-floor
fi
work=$(mktemp -d /tmp/warden-proxy-lab-XXXXXX)
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
# Fails unless the proxy on port $1 answers $2 with the upstream's bytes (a 403 or 404 page would
# make a fast but meaningless benchmark).
check_answer() {
    # $work/www/ping holds the upstream's "pong" too.
    if ! curl -sf --max-time 5 "http://127.0.0.1:$1$2" | cmp -s - "$work/www$2"; then
        echo "the proxy on $1 does not answer $2 with the upstream's bytes" >&2
        return 1
    fi
}
# Waits until nothing listens on the port any more (a proxy stopped before the next starts).
wait_port_free() {
    for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null || return 0; sleep 0.1; done
}

upstream_port=$(free_port)
proxy_port=$(free_port)
nginx_port=$proxy_port
if [ "${separate_ports:-0}" = 1 ]; then
    while [ "$nginx_port" = "$proxy_port" ]; do nginx_port=$(free_port); done
fi
mkdir -p "$work/www" "$work/logs" "$work/tmp"
# Started by root, nginx serves as nobody, which must reach the files: mktemp made $work 0700, and
# /image.png was answered 403 (a small page, not the file) until this.
chmod 755 "$work"
printf pong >"$work/www/ping"
head -c 18432 /dev/urandom >"$work/www/image.png"  # the shared harness's size
nginx_http="types { image/png png; application/json json; } default_type application/octet-stream; sendfile on; access_log off;
    keepalive_timeout 65; keepalive_requests 1000000; client_body_temp_path $work/tmp;"
cat >"$work/upstream.conf" <<CONF
worker_processes 1; daemon off; pid $work/upstream.pid; error_log $work/logs/upstream.log warn;
events { worker_connections 4096; }
http { $nginx_http
    server { listen 127.0.0.1:$upstream_port; root $work/www; keepalive_timeout ${upstream_keepalive:-65};
        location = /ping { default_type text/plain; return 200 "pong"; } }
}
CONF
cat >"$work/proxy.conf" <<CONF
worker_processes 1; daemon off; master_process off; pid $work/proxy.pid; error_log $work/logs/proxy.log warn;
events { worker_connections 4096; }
http { $nginx_http
    upstream app { server 127.0.0.1:$upstream_port; keepalive 64; }
    server { listen 127.0.0.1:$nginx_port;
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

$pin_upstream nginx -p "$work" -e "$work/logs/startup.log" -c "$work/upstream.conf" &
pids+=($!)
wait_port "$upstream_port"

# pairs COUNT AWK_PRINTF: COUNT pairs of `measure` (the script's own: prints its figures for a port),
# nginx and warden back to back, the first of each pair alternating so the shared host's drift cancels
# (ABBA). Each line "PAIR NGINX... WARDEN..." goes to $results and is printed through AWK_PRINTF.
pairs() {
    results="$work/pairs"
    local pair nginx warden
    for pair in $(seq "$1"); do
        if [ $((pair % 2)) = 1 ]; then
            nginx=$(measure "$nginx_port"); warden=$(measure "$proxy_port")
        else
            warden=$(measure "$proxy_port"); nginx=$(measure "$nginx_port")
        fi
        echo "$pair $nginx $warden" >>"$results"
        echo "$pair $nginx $warden" | awk "{ $2 }"
    done
}
