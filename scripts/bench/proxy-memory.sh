#!/usr/bin/env bash
# Resident memory of nginx and of warden as proxies, before and after a load that needs a new
# upstream connection for every request (the upstream closes each one after its response): what a
# proxy keeps of a connection once it is closed. Both should end where they began.
#
# Same lab as scripts/bench/proxy-cpu.sh (scripts/bench/proxy-lab.sh), with the upstream's
# keepalive_timeout at 0. Each proxy gets 2 s of `wrk -t1 -c20` to warm up, then its RSS is read from
# /proc, then SECONDS of the same load, then its RSS again.
#
# Usage: scripts/bench/proxy-memory.sh [SECONDS]   (default 20)
# Needs nginx and wrk.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-20}
upstream_keepalive=0
. scripts/bench/proxy-lab.sh

rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }

# measure LABEL COMMAND... -> one line of the table
measure() {
    local label=$1
    shift
    "$@" >"$work/$label.log" 2>&1 &
    local pid=$!
    wait_port "$proxy_port"
    check_answer "$proxy_port" /ping || { kill "$pid"; return 1; }
    wrk -t1 -c20 -d2s "http://127.0.0.1:$proxy_port/ping" >/dev/null
    local before requests after
    before=$(rss "$pid")
    requests=$(wrk -t1 -c20 -d"${seconds}s" "http://127.0.0.1:$proxy_port/ping" | awk '/requests in/{print $1}')
    sleep 1
    after=$(rss "$pid")
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    wait_port_free "$proxy_port"
    printf "%-8s %10d %12d %12d %14.0f\n" "$label" "$requests" "$before" "$after" "$(awk -v a="$after" -v b="$before" -v n="$requests" 'BEGIN{print (a - b) * 1024 / n}')"
}

echo "date: $(date -u +%FT%TZ); $(uname -srm); $(nproc) cpus; $(nginx -v 2>&1); upstream closes every connection"
printf "%-8s %10s %12s %12s %14s\n" proxy requests rss_before_kB rss_after_kB bytes_per_request
measure nginx nginx -p "$work" -e "$work/logs/startup.log" -c "$work/proxy.conf"
measure warden .build/release/warden -c "$work/wardenrc" -I
