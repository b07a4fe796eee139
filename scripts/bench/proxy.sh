#!/usr/bin/env bash
# warden's proxy against nginx with wrk, in one run, with the shared harness's method:
# an nginx upstream on 127.0.0.1:18080 (/ping and an 18 KB file), the proxy under test on
# 127.0.0.1:18000, servers pinned to one core and wrk to the other, targets round-robin.
#
# Usage: scripts/bench/proxy.sh [HARNESS]   (default: ../shared/bench/proxy/run.sh beside the checkout)
# Environment: PIN=pinned RUNS=5 DURATION=10s as the harness takes them.
set -euo pipefail
cd "$(dirname "$0")/../.."
harness=${1:-../shared/bench/proxy/run.sh}
[ -x "$harness" ] || { echo "no harness at $harness (pass its path)" >&2; exit 1; }
swift build -c release --product warden >/dev/null
work=$(mktemp -d /tmp/warden-proxy-bench-XXXXXX)
cat >"$work/wardenrc" <<RC
set daemon 60
set pidfile $work/warden.pid
set proxy
    listen 127.0.0.1 port 18000
    timeout idle 65 seconds
check site bench default
    pass / to http://127.0.0.1:18080/
RC
chmod 600 "$work/wardenrc"
export PIN=${PIN:-pinned} RUNS=${RUNS:-5}
exec "$harness" nginx:ka64:1:off "cmd:warden:$PWD/.build/release/warden -c $work/wardenrc -I"
