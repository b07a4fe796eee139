#!/usr/bin/env bash
# Soak: warden's resident memory over a long run of what production does to it. wrk keeps
# CONNECTIONS keep-alive connections busy through the proxy to a supervised app (nginx, one
# process, started and stopped by warden), which is killed -9 every KILL seconds; warden is reloaded
# (SIGHUP, with the site's hold alternating so the proxy's sites are swapped) every RELOAD seconds,
# and the access and error logs are rotated (renamed, SIGUSR1, the old file removed) every ROTATE
# seconds. Every SAMPLE seconds it prints warden's RSS (and its anonymous and file-backed parts:
# the heap, stacks and arenas, and the pages of the binary touched so far) and what wrk saw in that
# period; at the end, the RSS curve's first and last samples and its slope after the first WARMUP
# seconds.
#
# Usage: scripts/bench/soak.sh [SECONDS]   (default 3600; bounded: everything it started is ended by
# its pid when it ends or is interrupted)
# Environment: KILL=10 RELOAD=60 ROTATE=300 SAMPLE=30 WARMUP=120 CONNECTIONS=20
#   WARDEN=.build/release/warden (built if missing); WRAP="heaptrack -o /tmp/soak" runs warden under
#   a tool (its RSS then includes the tool's).
# Needs nginx and wrk.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-3600}
kill_every=${KILL:-10}
reload_every=${RELOAD:-60}
rotate_every=${ROTATE:-300}
sample=${SAMPLE:-30}
warmup=${WARMUP:-120}
connections=${CONNECTIONS:-20}
warden=${WARDEN:-.build/release/warden}
for tool in nginx wrk /usr/bin/python3; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
[ -x "$warden" ] || swift build -c release --product warden >/dev/null
warden=$(realpath "$warden")

work=$(mktemp -d /tmp/warden-soak-XXXXXX)
chmod 755 "$work"
warden_launcher=
wrk_pid=
cleanup() {
    if [ -n "$wrk_pid" ]; then kill "$wrk_pid" 2>/dev/null || true; fi
    local pid
    pid=$(cat "$work/warden.pid" 2>/dev/null || true)
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
    if [ -n "$warden_launcher" ]; then wait "$warden_launcher" 2>/dev/null || true; fi
    pid=$(cat "$work/app.pid" 2>/dev/null || true)
    if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
app_port=$(free_port)
proxy_port=$(free_port)
mkdir -p "$work/www" "$work/logs" "$work/tmp"
printf pong >"$work/www/ping"
cat >"$work/app.conf" <<CONF
master_process off; daemon on; pid $work/app.pid; error_log $work/logs/app.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_timeout 65; keepalive_requests 1000000; client_body_temp_path $work/tmp;
    server { listen 127.0.0.1:$app_port; root $work/www;
        location = /ping { default_type text/plain; return 200 "pong"; } }
}
CONF
echo "<h1>back soon</h1>" >"$work/maintenance.html"
write_rc() {
    cat >"$work/wardenrc" <<RC
set daemon 5
set pidfile $work/warden.pid
set log $work/warden.log
set proxy
    listen 127.0.0.1 port $proxy_port
check process app with pidfile $work/app.pid
    start program = "$(command -v nginx) -p $work -c $work/app.conf"
    stop program = "$(command -v nginx) -p $work -c $work/app.conf -s stop"
    # Killed every KILL seconds, it never runs long enough to end a back-off streak: without this the
    # growing delay (up to 60 s) keeps it down, and the load measures the maintenance page instead.
    restart delay 1 second to 1 second
check site app default
    pass / to http://127.0.0.1:$app_port/ for service app
    maintenance page $work/maintenance.html hold $1 seconds
    access log $work/access.log combined
    error log $work/error.log
RC
    chmod 600 "$work/wardenrc"
}
write_rc 10

# shellcheck disable=SC2086 # WRAP is a command line
${WRAP:-} "$warden" -c "$work/wardenrc" -I >"$work/warden.out" 2>&1 &
warden_launcher=$!
for _ in $(seq 300); do
    curl -sf --max-time 1 "http://127.0.0.1:$proxy_port/ping" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -sf --max-time 5 "http://127.0.0.1:$proxy_port/ping" | grep -q pong || { echo "warden does not answer /ping through the proxy" >&2; exit 1; }
pid=$(cat "$work/warden.pid")
memory() { awk '/^(VmRSS|RssAnon|RssFile):/{printf "%s ", $2} END {print ""}' "/proc/$pid/status"; }

echo "date: $(date -u +%FT%TZ); $(uname -srm); $(nproc) cpus; $(nginx -v 2>&1); $duration s, kill every $kill_every s, reload every $reload_every s, rotate every $rotate_every s, $connections connections${WRAP:+, under $WRAP}"
printf "%8s %10s %10s %10s %10s %14s %10s %8s %8s %8s\n" seconds rss_kB anon_kB file_kB requests socket_errors non_2xx kills reloads rotations
began=$(date +%s)
kills=0 reloads=0 rotations=0 hold=10
samples=()
while :; do
    elapsed=$(($(date +%s) - began))
    ((elapsed < duration)) || break
    period=$((duration - elapsed < sample ? duration - elapsed : sample))
    wrk -t1 -c"$connections" -d"${period}s" --timeout 30s "http://127.0.0.1:$proxy_port/ping" >"$work/wrk.out" 2>&1 &
    wrk_pid=$!
    period_end=$(($(date +%s) + period))
    while (($(date +%s) < period_end)); do
        sleep 1
        now=$(($(date +%s) - began))
        if ((now % kill_every == 0)); then
            app=$(cat "$work/app.pid" 2>/dev/null || true)
            [ -n "$app" ] && kill -9 "$app" 2>/dev/null && kills=$((kills + 1))
        fi
        if ((now % reload_every == 0)); then
            hold=$((hold == 10 ? 11 : 10))
            write_rc "$hold"
            kill -HUP "$pid"
            reloads=$((reloads + 1))
        fi
        if ((now % rotate_every == 0)); then
            mv "$work/access.log" "$work/access.log.1" 2>/dev/null || true
            mv "$work/error.log" "$work/error.log.1" 2>/dev/null || true
            kill -USR1 "$pid"
            sleep 0.2
            rm -f "$work/access.log.1" "$work/error.log.1"
            rotations=$((rotations + 1))
        fi
    done
    wait "$wrk_pid" || true
    wrk_pid=
    requests=$(awk '/requests in/{print $1}' "$work/wrk.out")
    errors=$(awk '/Socket errors/{gsub(/,/,""); print $4 + $6 + $8 + $10}' "$work/wrk.out")
    non2xx=$(awk '/Non-2xx/{print $5}' "$work/wrk.out")
    now=$(($(date +%s) - began))
    read -r current anon file < <(memory)
    samples+=("$now $current")
    printf "%8d %10d %10d %10d %10d %14d %10d %8d %8d %8d\n" "$now" "$current" "$anon" "$file" "${requests:-0}" "${errors:-0}" "${non2xx:-0}" "$kills" "$reloads" "$rotations"
done
printf "%s\n" "${samples[@]}" | awk -v warmup="$warmup" '
    NR == 1 { first = $2 } { last = $2; t = $1 }
    $1 >= warmup { n++; sx += $1; sy += $2; sxx += $1 * $1; sxy += $1 * $2 }
    END {
        printf "RSS: first sample %d kB, last %d kB", first, last
        if (n >= 2 && n * sxx - sx * sx > 0) printf "; after %d s: %.2f kB per minute (least squares over %d samples)", warmup, (n * sxy - sx * sy) / (n * sxx - sx * sx) * 60, n
        printf "\n"
    }'
