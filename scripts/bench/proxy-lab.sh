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
# With tls=1 each proxy also gets a TLS listener (h2 and http/1.1 by ALPN) with one self-signed
# certificate for 127.0.0.1 ($work/tls; KEY=rsa, RSA 2048, by default, or KEY=ecdsa, P-256): warden's
# on $proxy_tls_port, nginx's on $nginx_tls_port. $peers (default "nginx") may add haproxy (one thread,
# `http-reuse always`) and caddy, each with a plain and a TLS port ($haproxy_port, $haproxy_tls_port,
# $caddy_port, $caddy_tls_port); start_peer NAME starts one on cpu 0.
pin_upstream=
[ "${pinned:-0}" = 1 ] && { pin_upstream="taskset -c 0"; lab_needs="${lab_needs:-} taskset"; }
peers=${peers:-nginx}
for peer in $peers; do
    case $peer in nginx) ;; haproxy | caddy) lab_needs="${lab_needs:-} $peer" ;; *) echo "unknown peer $peer" >&2; exit 1 ;; esac
done
[ "${tls:-0}" = 1 ] && lab_needs="${lab_needs:-} openssl"
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
taken=" $upstream_port $proxy_port "
# A free port no other listener of the lab has.
new_port() {
    local port
    port=$(free_port)
    while [[ $taken == *" $port "* ]]; do port=$(free_port); done
    taken+="$port "
    echo "$port"
}
if [ "${separate_ports:-0}" = 1 ]; then
    nginx_port=$(new_port)
fi
proxy_tls_port=$(new_port)
nginx_tls_port=$(new_port)
haproxy_port=$(new_port)
haproxy_tls_port=$(new_port)
caddy_port=$(new_port)
caddy_tls_port=$(new_port)
pair_ports=("$nginx_port" "$proxy_port")
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
# shellcheck disable=SC2016 # nginx's variable
nginx_location='location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; }'
nginx_tls=
warden_tls=
if [ "${tls:-0}" = 1 ]; then
    mkdir -p "$work/tls"
    if [ "${KEY:-rsa}" = ecdsa ]; then key_options=(-newkey ec -pkeyopt ec_paramgen_curve:P-256); else key_options=(-newkey rsa:2048); fi
    openssl req -x509 "${key_options[@]}" -nodes -keyout "$work/tls/key.pem" -out "$work/tls/cert.pem" -days 7 \
        -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null
    cat "$work/tls/cert.pem" "$work/tls/key.pem" >"$work/tls/both.pem"
    # TLS 1.3 as the others (nginx 1.22 offers only up to 1.2 by default, and a resumed TLS 1.2
    # handshake skips the key exchange a TLS 1.3 one does); its defaults otherwise: session tickets on.
    nginx_tls="server { listen 127.0.0.1:$nginx_tls_port ssl http2; ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate $work/tls/cert.pem;
        ssl_certificate_key $work/tls/key.pem; $nginx_location }"
    warden_tls="    listen 127.0.0.1 port $proxy_tls_port with ssl { certificate: $work/tls/cert.pem, key: $work/tls/key.pem }"
fi
cat >"$work/proxy.conf" <<CONF
worker_processes 1; daemon off; master_process off; pid $work/proxy.pid; error_log $work/logs/proxy.log warn;
events { worker_connections 4096; }
http { $nginx_http
    upstream app { server 127.0.0.1:$upstream_port; keepalive 64; }
    server { listen 127.0.0.1:$nginx_port; $nginx_location }
    $nginx_tls
}
CONF
cat >"$work/wardenrc" <<RC
set daemon 60
set pidfile $work/warden.pid
set proxy
    listen 127.0.0.1 port $proxy_port
$warden_tls
check site bench default
    pass / to http://127.0.0.1:$upstream_port/
RC
chmod 600 "$work/wardenrc"
# HAProxy: one thread (as nginx's one worker), idle upstream connections shared by every client.
cat >"$work/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 65s
    timeout server 65s
    timeout http-keep-alive 65s
    http-reuse always
frontend plain
    bind 127.0.0.1:$haproxy_port
    default_backend app
$([ "${tls:-0}" = 1 ] && printf 'frontend tls\n    bind 127.0.0.1:%s ssl crt %s alpn h2,http/1.1\n    default_backend app' "$haproxy_tls_port" "$work/tls/both.pem")
backend app
    server upstream 127.0.0.1:$upstream_port
CONF
# Caddy: its defaults (upstream keep-alive, HTTP/2 over TLS), no admin endpoint, no automatic HTTPS;
# on cpu 0, Go gives it one thread for Go code (GOMAXPROCS follows the cpu mask).
cat >"$work/Caddyfile" <<CONF
{
    admin off
    auto_https off
    default_sni 127.0.0.1
    servers {
        protocols h1 h2
    }
}
http://127.0.0.1:$caddy_port {
    bind 127.0.0.1
    reverse_proxy 127.0.0.1:$upstream_port
}
$([ "${tls:-0}" = 1 ] && printf 'https://127.0.0.1:%s {\n    bind 127.0.0.1\n    tls %s %s\n    reverse_proxy 127.0.0.1:%s\n}' "$caddy_tls_port" "$work/tls/cert.pem" "$work/tls/key.pem" "$upstream_port")
CONF

$pin_upstream nginx -p "$work" -e "$work/logs/startup.log" -c "$work/upstream.conf" &
pids+=($!)
wait_port "$upstream_port"

# start_peer NAME: starts nginx, haproxy or caddy as the lab's proxy on cpu 0, and waits for its ports.
start_peer() {
    case $1 in
        nginx) taskset -c 0 nginx -p "$work" -e "$work/logs/startup.log" -c "$work/proxy.conf" & ;;
        haproxy) taskset -c 0 haproxy -db -f "$work/haproxy.cfg" >"$work/logs/haproxy.log" 2>&1 & ;;
        caddy)
            HOME=$work XDG_DATA_HOME=$work/caddy XDG_CONFIG_HOME=$work/caddy \
                taskset -c 0 caddy run --adapter caddyfile --config "$work/Caddyfile" >"$work/logs/caddy.log" 2>&1 &
            ;;
    esac
    pids+=($!)
    wait_port "$(peer_port "$1")"
    [ "${tls:-0}" = 1 ] && wait_port "$(peer_port "$1" tls)"
    return 0
}
# peer_port NAME [tls]: where a peer (or warden) listens.
peer_port() {
    local name=$1
    [ "${2:-}" = tls ] && name+=_tls
    case $name in
        warden) echo "$proxy_port" ;; warden_tls) echo "$proxy_tls_port" ;;
        nginx) echo "$nginx_port" ;; nginx_tls) echo "$nginx_tls_port" ;;
        haproxy) echo "$haproxy_port" ;; haproxy_tls) echo "$haproxy_tls_port" ;;
        caddy) echo "$caddy_port" ;; caddy_tls) echo "$caddy_tls_port" ;;
    esac
}

# pair_round PAIR [ROW]: one round of `measure PORT [ROW]` (the script's own: prints its figures for a
# port) for each of $pair_ports (default: nginx's, then warden's), in that order on odd pairs and the
# reverse on even ones, so the shared host's drift cancels (ABBA, or ABC CBA with more peers). The line
# "PAIR FIGURES…" (in $pair_ports' order) goes to $work/pairs (or $work/pairs-ROW) and to stdout.
pair_round() {
    local pair=$1 row=${2:-} ports=("${pair_ports[@]}") figures=() index order
    order=$(seq 0 $((${#ports[@]} - 1)))
    [ $((pair % 2)) = 0 ] && order=$(seq $((${#ports[@]} - 1)) -1 0)
    for index in $order; do figures[index]=$(measure "${ports[index]}" "$row"); done
    echo "$pair ${figures[*]}" >>"$work/pairs${row:+-$row}"
    echo "$pair ${figures[*]}"
}

# pairs COUNT AWK_PRINTF: COUNT pair rounds, each line also printed through AWK_PRINTF; $results is
# the file of lines.
pairs() {
    results="$work/pairs"
    local pair
    for pair in $(seq "$1"); do
        pair_round "$pair" | awk "{ $2 }"
    done
}
