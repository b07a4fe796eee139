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
# With PEERS, warden is measured against more proxies in the same pairs: HAProxy (`nbthread 1`,
# `http-reuse always`) and Caddy (its defaults), each pinned to cpu 0 too; the order of a pair is
# reversed every other pair (ABC CBA). With ROWS, each pair measures more than plain HTTP:
#   http         wrk -c50, keep-alive HTTP/1.1 (the default row): req/s and p99
#   https        the same over TLS
#   https-close  wrk -c20 sending `Connection: close`: one TLS handshake per request, so req/s is
#                handshakes/s (wrk resumes its previous connection's session, as a returning browser
#                does: the certificate's signature is skipped); and p99
#   h2           h2load -c20 -m10 over TLS: HTTP/2 req/s, and the mean request time (h2load gives no
#                percentiles)
# The TLS rows use one self-signed certificate for every proxy: RSA 2048, or P-256 with KEY=ecdsa.
#
# Usage: scripts/bench/proxy-pairs.sh [PAIRS] [PATH]   (default: 30 pairs of /ping; DURATION=3s)
#        PEERS="nginx haproxy caddy" ROWS="https https-close h2" scripts/bench/proxy-pairs.sh 20
# Needs nginx, wrk, /usr/bin/python3 and two cpus; haproxy, caddy and h2load (nghttp2-client) for
# those peers and rows.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Every proxy on cpu 0 with the upstream, on ports of their own.
pinned=1
separate_ports=1
pairs=${1:-30}
path=${2:-/ping}
duration=${DURATION:-3s}
peers=${PEERS:-nginx}
rows=${ROWS:-http}
tls=0
for row in $rows; do
    case $row in
        http) ;;
        https | https-close) tls=1 ;;
        h2) tls=1 lab_needs="${lab_needs:-} h2load" ;;
        *) echo "unknown row $row" >&2; exit 1 ;;
    esac
done
. scripts/bench/proxy-lab.sh

for peer in $peers; do start_peer "$peer"; done
taskset -c 0 .build/release/warden -c "$work/wardenrc" -I >"$work/warden.log" 2>&1 &
pids+=($!)
wait_port "$proxy_port"
[ "$tls" = 1 ] && wait_port "$proxy_tls_port"
# Fails unless the proxy on port $1 answers $2 over TLS, in HTTP/1.1 and HTTP/2, with the upstream's bytes.
check_tls_answer() {
    local version
    for version in --http1.1 --http2; do
        if ! curl -sfk "$version" --max-time 5 "https://127.0.0.1:$1$2" | cmp -s - "$work/www$2"; then
            echo "the proxy on $1 does not answer $2 over TLS ($version) with the upstream's bytes" >&2
            return 1
        fi
    done
}
for name in $peers warden; do
    check_answer "$(peer_port "$name")" "$path"
    [ "$tls" = 1 ] && check_tls_answer "$(peer_port "$name" tls)" "$path"
done

# The figures of one round: "req/s latency_ms", 0 req/s when any answer was not a 2xx.
wrk_figures() {
    awk '
        /Requests\/sec/ { rate = $2 }
        /Non-2xx/ { bad = 1 }
        $1 == "99%" { p99 = $2; if (p99 ~ /us$/) p99 = p99 / 1000; else if (p99 ~ /ms$/) p99 = p99 + 0; else p99 = p99 * 1000 }
        END { printf "%.0f %.3f\n", bad ? 0 : rate, p99 }'
}
# measure PORT ROW -> "req/s latency_ms" for one round
measure() {
    case ${2:-http} in
        http) taskset -c 1 wrk -t1 -c50 -d"$duration" --latency "http://127.0.0.1:$1$path" | wrk_figures ;;
        https) taskset -c 1 wrk -t1 -c50 -d"$duration" --latency "https://127.0.0.1:$1$path" | wrk_figures ;;
        https-close) taskset -c 1 wrk -t1 -c20 -d"$duration" --latency -H 'Connection: close' "https://127.0.0.1:$1$path" | wrk_figures ;;
        h2)
            taskset -c 1 h2load -c20 -m10 -D "${duration%s}" "https://127.0.0.1:$1$path" | awk '
                /^finished in/ { rate = $4 }
                /^requests:/ { done = $6 }
                /^status codes:/ { ok = $3 }
                /^time for request:/ { mean = $6; if (mean ~ /us$/) mean = mean / 1000; else if (mean ~ /ms$/) mean = mean + 0; else mean = mean * 1000 }
                END { printf "%.0f %.3f\n", (ok == done && done > 0) ? rate : 0, mean }'
            ;;
    esac
}
# A warm-up round of each.
for row in $rows; do
    for name in $peers warden; do
        if [ "$row" = http ]; then measure "$(peer_port "$name")" "$row" >/dev/null; else measure "$(peer_port "$name" tls)" "$row" >/dev/null; fi
    done
done

echo "date: $(date -u +%FT%TZ); $(uname -srm); $(nproc) cpus; $(nginx -v 2>&1)$(for p in $peers; do case $p in
    haproxy) printf '; %s' "$(haproxy -v | head -1 | cut -d' ' -f1-3)" ;; caddy) printf '; caddy %s' "$(caddy version | cut -d' ' -f1)" ;; esac; done)"
echo "path $path; $pairs pairs of $duration; rows: $rows; peers: $peers; $([ "$tls" = 1 ] && echo "certificate ${KEY:-rsa}")"
header=$(for name in $peers warden; do printf ' %12s %9s' "$name" ms; done)
printf "%-5s %-12s%s   warden/each\n" pair row "$header"
for pair in $(seq "$pairs"); do
    for row in $rows; do
        pair_ports=()
        for name in $peers warden; do
            if [ "$row" = http ]; then pair_ports+=("$(peer_port "$name")"); else pair_ports+=("$(peer_port "$name" tls)"); fi
        done
        # shellcheck disable=SC2016 # awk's fields, not the shell's
        pair_round "$pair" "$row" | awk -v row="$row" '{
            printf "%-5s %-12s", $1, row
            for (i = 2; i <= NF; i += 2) printf " %12s %9s", $i, $(i + 1)
            for (i = 2; i < NF - 1; i += 2) printf " %7.3f", ($i > 0 ? $(NF - 1) / $i : 0)
            printf "\n" }'
    done
done

/usr/bin/python3 - "$work" "$peers" "$rows" <<'PY'
import random, statistics, sys
work, peers, rows = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
def interval(values):
    # 95% bootstrap interval of the median, with a fixed seed so a rerun on the same data agrees.
    rng = random.Random(1)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(4000))
    return medians[100], medians[3899]
for row in rows:
    data = [list(map(float, line.split())) for line in open(f"{work}/pairs-{row}")]
    rates = {name: [r[1 + 2 * i] for r in data] for i, name in enumerate(peers + ["warden"])}
    lats = {name: [r[2 + 2 * i] for r in data] for i, name in enumerate(peers + ["warden"])}
    latency = "mean" if row == "h2" else "p99"
    print(f"{row}: medians " + ", ".join(f"{n} {statistics.median(rates[n]):.0f} req/s ({latency} {statistics.median(lats[n]):.2f} ms)" for n in rates))
    for name in peers:
        for what, ratios, better in (
            ("req/s", [w / p if p else 0 for w, p in zip(rates["warden"], rates[name])], lambda x: x > 1),
            (latency, [w / p if p else 0 for w, p in zip(lats["warden"], lats[name])], lambda x: x < 1),
        ):
            low, high = interval(ratios)
            print(f"  warden/{name} {what}: median {statistics.median(ratios):.3f} (95% interval {low:.3f}-{high:.3f}), "
                  f"warden better in {sum(map(better, ratios))} of {len(ratios)} pairs")
PY
