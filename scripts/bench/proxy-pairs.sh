#!/usr/bin/env bash
# warden's proxy against nginx in paired rounds: which is faster, and by how much, with a confidence
# interval, on a host whose speed drifts.
#
# On this host the same proxy's req/s swings by a third or more between 10 s rounds a minute apart
# (neighbours on the VM), more than the difference the proxy goal is about. Here both proxies run at
# once, on two ports, pinned with the upstream to cpu 0 (the idle one costs nothing); wrk on cpu 1
# measures one, then the other, seconds apart, in ABBA order, so a drift slower than a pair cancels
# out of each pair's ratio. The medians of the ratios come with 95% bootstrap intervals.
#
# The same lab as scripts/bench/proxy-cpu.sh (scripts/bench/proxy-lab.sh): nginx with one worker
# and a pool of 64 kept-alive upstream connections, warden with `pass / to` the same upstream.
#
# Usage: scripts/bench/proxy-pairs.sh [PAIRS] [PATH]   (default: 30 pairs of /ping; DURATION=3s)
# Needs nginx, wrk, /usr/bin/python3 and two cpus.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Both proxies on cpu 0 with the upstream, on ports of their own.
pinned=1
separate_ports=1
pairs=${1:-30}
path=${2:-/ping}
duration=${DURATION:-3s}
. scripts/bench/proxy-lab.sh

taskset -c 0 nginx -p "$work" -e "$work/logs/startup.log" -c "$work/proxy.conf" &
pids+=($!)
taskset -c 0 .build/release/warden -c "$work/wardenrc" -I >"$work/warden.log" 2>&1 &
pids+=($!)
wait_port "$nginx_port"
wait_port "$proxy_port"
check_answer "$nginx_port" "$path"
check_answer "$proxy_port" "$path"

# measure PORT -> "req/s p99_ms" for one round
measure() {
    taskset -c 1 wrk -t1 -c50 -d"$duration" --latency "http://127.0.0.1:$1$path" | awk '
        /Requests\/sec/ { rate = $2 }
        $1 == "99%" { p99 = $2; if (p99 ~ /us$/) p99 = p99 / 1000; else if (p99 ~ /ms$/) p99 = p99 + 0; else p99 = p99 * 1000 }
        END { printf "%.0f %.3f\n", rate, p99 }'
}
measure "$nginx_port" >/dev/null
measure "$proxy_port" >/dev/null

echo "date: $(date -u +%FT%TZ); $(uname -srm); $(nproc) cpus; $(nginx -v 2>&1); path $path; $pairs pairs of $duration"
printf "%-5s %12s %10s %12s %10s %8s\n" pair nginx_req/s p99_ms warden_req/s p99_ms ratio
# shellcheck disable=SC2016 # awk's fields, not the shell's
pairs "$pairs" 'printf "%-5s %12s %10s %12s %10s %8.3f\n", $1, $2, $3, $4, $5, $4 / $2'

/usr/bin/python3 - "$results" <<'PY'
import random, statistics, sys
rows = [list(map(float, line.split())) for line in open(sys.argv[1])]
def interval(values):
    # 95% bootstrap interval of the median, with a fixed seed so a rerun on the same data agrees.
    rng = random.Random(1)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(4000))
    return medians[100], medians[3899]
for name, ratios, better in (
    ("req/s", [r[3] / r[1] for r in rows], lambda x: x > 1),
    ("p99", [r[4] / r[2] for r in rows], lambda x: x < 1),
):
    low, high = interval(ratios)
    print(f"warden/nginx {name}: median {statistics.median(ratios):.3f} (95% interval {low:.3f}-{high:.3f}), "
          f"warden better in {sum(map(better, ratios))} of {len(ratios)} pairs")
print(f"medians: nginx {statistics.median(r[1] for r in rows):.0f} req/s, p99 {statistics.median(r[2] for r in rows):.2f} ms; "
      f"warden {statistics.median(r[3] for r in rows):.0f} req/s, p99 {statistics.median(r[4] for r in rows):.2f} ms")
PY
