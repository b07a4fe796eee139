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
# NIO_FLOOR=1 counts scripts/bench/nio-floor on /ping too: SwiftNIO's own share of a request.
# KEEP=DIR keeps each proxy's callgrind dump there (DIR/warden-ping.out), for `callgrind_annotate`.
# BASE=BINARY counts another release build of warden (a copy of .build/release/warden from before a
# change) in the same run, right after this one: the host's load moves both alike.
# Needs valgrind, nginx and wrk.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -gt 0 ]; then paths=("$@"); else paths=(/ping /image.png); fi
lab_needs="valgrind callgrind_control callgrind_annotate"
. scripts/bench/proxy-lab.sh
# valgrind 3.19 cannot read the DWARF 5 that swift emits: count a copy without debug sections.
strip --strip-debug -o "$work/warden" .build/release/warden
[ -z "$floor" ] || strip --strip-debug -o "$work/nio-floor" "$floor"
[ -z "${BASE:-}" ] || strip --strip-debug -o "$work/warden-base" "$BASE"

# count LABEL PATH COMMAND... -> prints "requests instructions"
count() {
    local label=$1 path=$2
    shift 2
    valgrind --tool=callgrind --callgrind-out-file="$work/$label.out" "$@" >"$work/$label.log" 2>&1 &
    local pid=$!
    wait_port "$proxy_port"
    check_answer "$proxy_port" "$path" || { kill "$pid"; return 1; }
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
    [ -z "${KEEP:-}" ] || { mkdir -p "$KEEP" && cp "$dump" "$KEEP/$label-$(basename "$path" | tr -c 'a-zA-Z0-9.\n' _).out"; }
    rm -f "$work/$label.out"*
    wait_port_free "$proxy_port"
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
    if [ -n "${BASE:-}" ]; then
        read -r base_requests base_total < <(count warden-base "$path" "$work/warden-base" -c "$work/wardenrc" -I)
        base_each=$((base_total / base_requests))
        printf "%-12s %-8s %10d %14d %10d\n" "$path" base "$base_requests" "$base_total" "$base_each"
        echo "$path: warden runs $(awk -v w="$warden_each" -v b="$base_each" 'BEGIN{printf "%+.1f", (w/b-1)*100}') % against the base's instructions per request"
    fi
    # The floor answers with the upstream's first read: only a response that fits one read, /ping's.
    if [ -n "$floor" ] && [ "$path" = /ping ]; then
        read -r floor_requests floor_total < <(count floor "$path" "$work/nio-floor" "$proxy_port" "$upstream_port")
        floor_each=$((floor_total / floor_requests))
        printf "%-12s %-8s %10d %14d %10d\n" "$path" nio-floor "$floor_requests" "$floor_total" "$floor_each"
        echo "$path: SwiftNIO's floor runs $(awk -v f="$floor_each" -v n="$nginx_each" 'BEGIN{printf "%.2f", f/n}')x nginx's; warden's own work is $((warden_each - floor_each)) instructions per request above it"
    fi
done
