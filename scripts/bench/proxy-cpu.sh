#!/usr/bin/env bash
# CPU time per proxied request, warden against nginx, in alternating rounds of one run.
#
# On a saturated core, req/s is the inverse of what a request costs that core: the proxy's CPU time
# plus the upstream's. On a host with noisy neighbours req/s swings by a third between runs of the
# same binary; the proxy's own user and system time per request (from /proc/PID/stat) swings much
# less, and each round measures the two proxies seconds apart, so the median of the per-round
# ratios is what to compare.
#
# The same lab as scripts/bench/proxy-instructions.sh (scripts/bench/proxy-lab.sh): the upstream
# and the proxy under test pinned to cpu 0, wrk (-t1 -c50) on cpu 1.
#
# Usage: scripts/bench/proxy-cpu.sh [ROUNDS] [PATH]   (default: 6 rounds of /ping; DURATION=6s)
# NIO_FLOOR=1 (with /ping) adds scripts/bench/nio-floor to each round: SwiftNIO's own share.
# Needs nginx and wrk, and two cpus.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-6}
path=${2:-/ping}
duration=${DURATION:-6s}
pinned=1
. scripts/bench/proxy-lab.sh
ticks=$(getconf CLK_TCK)

# User and system ticks used so far by a process, all its threads together (/proc/PID/stat 14, 15).
cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
upstream_worker=$(pgrep -P "${pids[0]}" | head -1)

# measure LABEL COMMAND... -> prints "LABEL req/s p99 user_us sys_us upstream_us" for one round
measure() {
    local label=$1
    shift
    taskset -c 0 "$@" >"$work/$label.log" 2>&1 &
    local pid=$!
    wait_port "$proxy_port"
    check_answer "$proxy_port" "$path" || { kill "$pid"; return 1; }
    taskset -c 1 wrk -t1 -c50 -d1s "http://127.0.0.1:$proxy_port$path" >/dev/null
    local user0 sys0 upstream0 user1 sys1 upstream1 out
    read -r user0 sys0 < <(cpu_ticks "$pid")
    upstream0=$(cpu_ticks "$upstream_worker" | awk '{print $1 + $2}')
    out=$(taskset -c 1 wrk -t1 -c50 -d"$duration" --latency "http://127.0.0.1:$proxy_port$path")
    read -r user1 sys1 < <(cpu_ticks "$pid")
    upstream1=$(cpu_ticks "$upstream_worker" | awk '{print $1 + $2}')
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    wait_port_free "$proxy_port"
    echo "$out" | awk -v label="$label" -v ticks="$ticks" -v u="$((user1 - user0))" -v s="$((sys1 - sys0))" -v up="$((upstream1 - upstream0))" '
        /requests in/ { requests = $1 }
        /Requests\/sec/ { rate = $2 }
        $1 == "99%" { p99 = $2 }
        END {
            us = 1e6 / ticks / requests
            printf "%s %.0f %s %.2f %.2f %.2f\n", label, rate, p99, u * us, s * us, up * us
        }'
}

echo "date: $(date -u +%FT%TZ); $(uname -srm); $(nproc) cpus; $(nginx -v 2>&1); path $path; $rounds rounds of $duration"
printf "%-6s %-7s %8s %9s %9s %9s %9s %12s\n" round proxy req/s p99 user_us sys_us proxy_us upstream_us
results="$work/results"
targets=(nginx warden)
if [ -n "$floor" ]; then
    [ "$path" = /ping ] || { echo "the NIO floor answers /ping only" >&2; exit 1; }
    targets+=(floor)
fi
for round in $(seq "$rounds"); do
    for target in "${targets[@]}"; do
        case $target in
            nginx) line=$(measure nginx nginx -p "$work" -e "$work/logs/startup.log" -c "$work/proxy.conf") ;;
            warden) line=$(measure warden .build/release/warden -c "$work/wardenrc" -I) ;;
            floor) line=$(measure floor "$floor" "$proxy_port" "$upstream_port") ;;
        esac
        echo "$round $line" >>"$results"
        echo "$round $line" | awk '{printf "%-6s %-7s %8s %9s %9.2f %9.2f %9.2f %12.2f\n", $1, $2, $3, $4, $5, $6, $5 + $6, $7}'
    done
done

# Medians over the rounds, and the median of each round's warden/nginx ratio.
awk '
    function median(list, n,    i, j, t) {
        for (i = 2; i <= n; i++) for (j = i; j > 1 && list[j - 1] > list[j]; j--) { t = list[j]; list[j] = list[j - 1]; list[j - 1] = t }
        return n % 2 ? list[(n + 1) / 2] : (list[n / 2] + list[n / 2 + 1]) / 2
    }
    {
        k = $2; n[k]++
        user[k, n[k]] = $5; sys[k, n[k]] = $6; total[k, n[k]] = $5 + $6; up[k, n[k]] = $7; rate[k, n[k]] = $3
        proxy[$1, k] = $5 + $6; upstream[$1, k] = $7; rounds[$1] = 1
    }
    END {
        for (k in n) {
            for (i = 1; i <= n[k]; i++) { a[i] = user[k, i]; b[i] = sys[k, i]; c[i] = total[k, i]; d[i] = up[k, i]; e[i] = rate[k, i] }
            printf "median %-7s req/s %.0f, proxy %.2f us per request (user %.2f, system %.2f), upstream %.2f us\n", k, median(e, n[k]), median(c, n[k]), median(a, n[k]), median(b, n[k]), median(d, n[k])
        }
        m = 0
        for (r in rounds) {
            m++
            cost[m] = proxy[r, "warden"] / proxy[r, "nginx"]
            # What the core spends on a request, proxy and upstream together: req/s goes as its inverse.
            speed[m] = (proxy[r, "nginx"] + upstream[r, "nginx"]) / (proxy[r, "warden"] + upstream[r, "warden"])
        }
        printf "warden uses %.2fx nginx'"'"'s proxy CPU per request (median of %d rounds); on a saturated core that predicts %.2fx nginx'"'"'s req/s\n", median(cost, m), m, median(speed, m)
        if (!n["floor"]) exit
        m = 0
        for (r in rounds) {
            m++
            cost[m] = proxy[r, "floor"] / proxy[r, "nginx"]
            speed[m] = (proxy[r, "nginx"] + upstream[r, "nginx"]) / (proxy[r, "floor"] + upstream[r, "floor"])
        }
        printf "the NIO floor uses %.2fx nginx'"'"'s proxy CPU per request; that predicts %.2fx nginx'"'"'s req/s\n", median(cost, m), median(speed, m)
    }' "$results"
