#!/usr/bin/env bash
# Restarts and deploys under load, in one run: what a client of the site sees while the app behind it
# is replaced three times. The app is the chapter's myapp told to take 2 s before it listens (as a
# Pharo image loading); wrk holds 8 keep-alive connections through the front server for 36 s (the
# three rounds, 8 s apart, and the last rolling restart's 7 s fit in it).
#
#   monit+nginx        monit restarts the app (its httpd, `monit restart`), nginx with upstream keep-alive
#   warden restart     one instance behind warden's proxy, `warden restart` (stop, start, hold)
#   warden idle        `instances 1 ports A-B` and no action: the host's own tail (2 shared vCPUs with
#                      steal time), the floor the other rows' maximum is read against
#   warden deploy      `instances 1 ports A-B`, `warden deploy` (new instance beside, switch, drain)
#   warden rolling     `instances 3 ports A-B`, `warden restart` (one instance at a time)
#
# Prints, per row: requests, non-2xx, socket errors, p99 and max latency.
# Usage: scripts/bench/deploy.sh   (needs release builds of warden and myapp, monit, nginx, wrk)
set -euo pipefail
cd "$(dirname "$0")/../.."
warden=$PWD/.build/release/warden
myapp=$PWD/.build/release/myapp
for tool in "$warden" "$myapp" monit nginx wrk; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done
work=$(mktemp -d /tmp/warden-deploy-bench-XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    sleep 0.5
    pkill -f "$work/" 2>/dev/null || true
}
trap cleanup EXIT
duration=${DURATION:-36}
# The hypervisor's steal time over the run says how noisy the maximum latencies are.
cpu_ticks() { awk '$1 == "cpu" { total = 0; for (i = 2; i <= 9; i++) total += $i; print $9, total }' /proc/stat; }
read -r steal_start total_start < <(cpu_ticks)
rounds=3

wait_port() { for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
# Measuring starts once the front server answers 200: an open app port is not yet a ready instance
# (warden holds requests until its readiness probe passes), and that first hold is no restart's doing.
wait_served() {
    local status
    for _ in $(seq 600); do
        status=$( (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET /ping HTTP/1.0\r\n\r\n' >&3 && head -1 <&3) 2>/dev/null || true)
        [[ $status == *" 200 "* ]] && return 0
        sleep 0.05
    done
    echo "port $1 never answered 200" >&2; exit 1
}

# A start script that daemonizes myapp on PORT (the chapter's start script), and its stop script.
cat >"$work/start.sh" <<EOF
#!/bin/sh
setsid $myapp --port "\$1" --pidfile $work/myapp.\$1.pid --load-time 2 >/dev/null 2>&1 </dev/null &
exit 0
EOF
cat >"$work/stop.sh" <<EOF
#!/bin/sh
[ -f $work/myapp.\$1.pid ] && kill \$(cat $work/myapp.\$1.pid)
exit 0
EOF
chmod 755 "$work/start.sh" "$work/stop.sh"
echo "<h1>back soon</h1>" >"$work/maintenance.html"

# wrk through PORT while ACTION runs ROUNDS times, 2 s in and then 8 s apart; prints the row.
measure() {
    local name=$1 port=$2 action=$3 file=$work/${1// /-}
    wrk -t2 -c8 -d"${duration}s" --latency "http://127.0.0.1:$port/ping" >"$file.wrk" 2>&1 &
    local load=$!
    sleep 2
    for round in $(seq $rounds); do
        eval "$action" >>"$file.actions" 2>&1 || echo "round $round: action failed" >>"$file.actions"
        sleep 8
    done
    wait $load
    awk -v name="$name" '
        $1 == "Latency" && NF >= 4 { max = $4 }
        $1 == "99%" { p99 = $2 }
        /requests in/ { requests = $1 }
        /Non-2xx/ { non2xx = $NF }
        /Socket errors/ { gsub(",", ""); errors = $4 + $6 + $8 + $10 }
        END { printf "%-16s %9s %8s %14s %9s %9s\n", name, requests, non2xx + 0, errors + 0, p99, max }' "$file.wrk"
}

printf "%-16s %9s %8s %14s %9s %9s\n" row requests non-2xx socket-errors p99 max

# --- monit + nginx
mkdir -p "$work/monit" "$work/nginx/logs"
cat >"$work/monit/monitrc" <<EOF
set daemon 1
set httpd port 28121 and use address 127.0.0.1
    allow 127.0.0.1
set idfile $work/monit/id
set statefile $work/monit/state
check process myapp with pidfile $work/myapp.28200.pid
    start program = "$work/start.sh 28200"
    stop program = "$work/stop.sh 28200"
EOF
chmod 600 "$work/monit/monitrc"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    upstream myapp { server 127.0.0.1:28200; keepalive 16; }
    server {
        listen 127.0.0.1:28100;
        location / { proxy_pass http://myapp; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
EOF
HOME=$work monit -c "$work/monit/monitrc" -I >/dev/null 2>&1 &
pids+=($!)
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/logs/error.log" -g "daemon off;" &
pids+=($!)
wait_port 28200
wait_served 28100
measure "monit+nginx" 28100 "HOME=$work monit -c $work/monit/monitrc restart myapp; sleep 3"
kill "${pids[@]}" 2>/dev/null || true
"$work/stop.sh" 28200
pids=()
sleep 1

# --- warden: one rc per row, each with its proxy, dashboard and app ports
run_warden() {
    local name=$1 proxy=$2 httpd=$3 check=$4 route=$5 action=$6 ready=$7 dir=$work/${1// /-}
    mkdir -p "$dir"
    cat >"$dir/wardenrc" <<EOF
set daemon 1
set pidfile $dir/warden.pid
set httpd port $httpd and use address 127.0.0.1
    allow 127.0.0.1
set proxy
    listen 127.0.0.1 port $proxy
$check
check site myapp default
    $route
    maintenance page $work/maintenance.html hold 30 seconds
EOF
    chmod 600 "$dir/wardenrc"
    "$warden" -c "$dir/wardenrc" -I >"$dir/log" 2>&1 &
    pids+=($!)
    wait_port "$ready"
    wait_served "$proxy"
    measure "$name" "$proxy" "$action"
    "$warden" -c "$dir/wardenrc" quit --stop-services >/dev/null 2>&1 || true
    sleep 1
    pids=()
}

run_warden "warden restart" 28101 28122 "check process myapp with pidfile $work/myapp.28300.pid
    start program = \"$work/start.sh 28300\"
    stop program = \"$work/stop.sh 28300\"
    if failed url http://127.0.0.1:28300/ping then restart" \
    "pass / to http://127.0.0.1:28300/ for service myapp" \
    "$warden -c $work/warden-restart/wardenrc restart myapp; sleep 3" 28300

# myapp as N instances on the port range A-B, each checked on its /ping.
instances() {
    printf '%s\n' "check process myapp with pidfile $work/myapp.\$PORT.pid" \
        "    instances $1 ports $2" \
        "    start program = \"$work/start.sh \$PORT\"" \
        "    stop program = \"$work/stop.sh \$PORT\"" \
        "    if failed url http://127.0.0.1:\$PORT/ping then restart"
}

run_warden "warden idle" 28104 28125 "$(instances 1 28600-28601)" "pass / to service myapp" "true" 28600
run_warden "warden deploy" 28102 28123 "$(instances 1 28400-28401)" "pass / to service myapp" \
    "$warden -c $work/warden-deploy/wardenrc deploy myapp" 28400
run_warden "warden rolling" 28103 28124 "$(instances 3 28500-28505)" "pass / to service myapp" \
    "$warden -c $work/warden-rolling/wardenrc restart myapp" 28502

read -r steal_end total_end < <(cpu_ticks)
steal=$(( 100 * (steal_end - steal_start) / (total_end - total_start) ))
echo "date: $(date -u +%FT%TZ); steal time ${steal} %; $(uname -srm); $(nproc) cpus; $(nginx -v 2>&1); monit $(monit -V | head -1 | awk '{print $NF}'); wrk -c8 ${duration}s, $rounds actions; files in $work"
