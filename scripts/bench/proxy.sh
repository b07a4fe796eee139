#!/usr/bin/env bash
# warden's proxy against nginx with wrk, in one run, with the shared harness's method:
# an nginx upstream on 127.0.0.1:18080 (/ping and an 18 KB file), the proxy under test on
# 127.0.0.1:18000, servers pinned to one core and wrk to the other, targets round-robin.
#
# Usage: scripts/bench/proxy.sh [HARNESS]   (default: ../shared/bench/proxy/run.sh beside the checkout)
# Environment: PIN=pinned RUNS=5 DURATION=10s as the harness takes them; NIO_FLOOR=1 adds
# scripts/bench/nio-floor (the least a SwiftNIO proxy can do per request) and measures /ping only.
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
targets=(nginx:ka64:1:off "cmd:warden:$PWD/.build/release/warden -c $work/wardenrc -I")
if [ "${NIO_FLOOR:-0}" = 1 ]; then
    swift build -c release --package-path scripts/bench/nio-floor >/dev/null
    targets+=("cmd:nio-floor:$PWD/scripts/bench/nio-floor/.build/release/nio-floor 18000 18080")
    export PATHS=/ping
fi
export PIN=${PIN:-pinned} RUNS=${RUNS:-5}
exec "$harness" "${targets[@]}"
