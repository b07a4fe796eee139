#!/usr/bin/env bash
# Parses a generated 10,000-line control file with warden -t and with monit -t, in the same run.
# Usage: scripts/bench/config-parse.sh [RUNS]   (needs monit and hyperfine-free bash timing)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-10}
swift build -c release --product warden >/dev/null
work=$(mktemp -d /tmp/warden-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
rc="$work/big.rc"
{
    echo "set daemon 10"
    for i in $(seq 1 1000); do
        cat <<RC
check process app$i with pidfile /run/app$i.pid
  start program = "/bin/true"
  stop program = "/bin/true"
  if failed url http://127.0.0.1:$((8000 + i % 1000))/ping and content == "pong" timeout 5 seconds then restart
  if cpu > 80% for 3 cycles then alert
  if totalmem > 200 MB for 5 cycles then restart
  if 5 restarts within 5 cycles then timeout
  group apps
  depends on base
RC
        echo ""
    done
    echo 'check file base with path /bin/true'
} >"$rc"
chmod 600 "$rc"
lines=$(wc -l <"$rc")

best() { # best wall time in ms of N runs of a command
    local best=999999
    for _ in $(seq 1 "$runs"); do
        local start end
        start=$(date +%s%N)
        "$@" >/dev/null 2>&1 || true
        end=$(date +%s%N)
        local ms=$(((end - start) / 1000000))
        ((ms < best)) && best=$ms
    done
    echo "$best"
}
w=$(best .build/release/warden -t -c "$rc")
echo "warden -t: ${lines} lines in ${w} ms (best of $runs)"
if command -v monit >/dev/null; then
    m=$(HOME=$work best monit -t -c "$rc")
    echo "monit  -t: ${lines} lines in ${m} ms (best of $runs)"
    awk -v w="$w" -v m="$m" 'BEGIN { if (w == 0) w = 1; printf "ratio monit/warden: %.2f\n", m / w }'
fi
