#!/usr/bin/env bash
# warden's `compress` against nginx's `gzip on`, proxying the same 100 KB JSON body from the same
# upstream, at the same zlib level, in the same run: req/s of each, their ratio, and the bytes on the
# wire per response.
#
# The lab of scripts/bench/proxy-pairs.sh (scripts/bench/proxy-lab.sh): both proxies and the nginx
# upstream pinned to cpu 0, wrk on cpu 1 sending `Accept-Encoding: gzip`, measuring one proxy then
# the other in ABBA order so the host's drift cancels out of each pair's ratio. nginx: one worker,
# `gzip_comp_level LEVEL`, `gzip_proxied any`, `gzip_vary on`, proxy buffering on (its default);
# warden: `compress gzip level LEVEL`.
#
# Usage: scripts/bench/compression.sh [PAIRS]   (default 10 pairs; LEVEL=5, DURATION=3s, CONNECTIONS=20)
# Needs nginx, wrk, curl, /usr/bin/python3 and two cpus.
set -euo pipefail
cd "$(dirname "$0")/../.."
pinned=1
separate_ports=1
pairs=${1:-10}
level=${LEVEL:-5}
duration=${DURATION:-3s}
connections=${CONNECTIONS:-20}
path=/data.json
. scripts/bench/proxy-lab.sh

# About 100 KB of JSON: an API's list of records, repetitive as such lists are.
/usr/bin/python3 - "$work/www/data.json" <<'PY'
import json, random, sys
rng = random.Random(1)
records, text = [], "[]"
while len(text) < 100_000:
    records.append({"id": len(records), "name": "user%d" % rng.randrange(100_000), "email": "u%d@example.com" % rng.randrange(10**6),
                    "score": round(rng.random() * 100, 3), "active": rng.random() < 0.5, "tags": rng.sample(["a", "b", "c", "d", "e"], 2)})
    text = json.dumps(records)
open(sys.argv[1], "w").write(text)
PY
sed -i "s|    upstream app|    gzip on; gzip_comp_level $level; gzip_types application/json; gzip_proxied any; gzip_vary on; gzip_min_length 512;\n    upstream app|" "$work/proxy.conf"
echo "    compress gzip level $level min-size 512 B" >>"$work/wardenrc"

taskset -c 0 nginx -p "$work" -e "$work/logs/startup.log" -c "$work/proxy.conf" &
pids+=($!)
taskset -c 0 .build/release/warden -c "$work/wardenrc" -I >"$work/warden.log" 2>&1 &
pids+=($!)
wait_port "$nginx_port"
wait_port "$proxy_port"
check_answer "$nginx_port" "$path"
check_answer "$proxy_port" "$path"

# wire PORT -> "body_bytes head_bytes" of one gzip response, after checking it decodes to the file.
wire() {
    local body="$work/wire-$1.gz"
    local sizes
    sizes=$(curl -sf --max-time 5 -H 'Accept-Encoding: gzip' -o "$body" -w '%{size_download} %{size_header}' "http://127.0.0.1:$1$path")
    if ! /usr/bin/python3 -c 'import gzip, sys; sys.exit(gzip.decompress(open(sys.argv[1], "rb").read()) != open(sys.argv[2], "rb").read())' \
        "$body" "$work/www$path"; then
        echo "the proxy on $1 does not send $path gzipped" >&2
        exit 1
    fi
    echo "$sizes"
}
nginx_wire=$(wire "$nginx_port")
warden_wire=$(wire "$proxy_port")

measure() {
    taskset -c 1 wrk -t1 -c"$connections" -d"$duration" -H 'Accept-Encoding: gzip' "http://127.0.0.1:$1$path" |
        awk '/Requests\/sec/ { printf "%.0f\n", $2 }'
}
measure "$nginx_port" >/dev/null
measure "$proxy_port" >/dev/null

echo "date: $(date -u +%FT%TZ); $(uname -srm); $(nproc) cpus; $(nginx -v 2>&1); $(wc -c <"$work/www$path") bytes of JSON; gzip level $level; $pairs pairs of $duration, wrk -c$connections"
printf "%-5s %12s %12s %8s\n" pair nginx_req/s warden_req/s ratio
# shellcheck disable=SC2016 # awk's fields, not the shell's
pairs "$pairs" 'printf "%-5s %12s %12s %8.3f\n", $1, $2, $3, $3 / $2'
/usr/bin/python3 - "$results" "$nginx_wire" "$warden_wire" <<'PY'
import statistics, sys
rows = [list(map(float, line.split())) for line in open(sys.argv[1])]
nginx_body, nginx_head = map(int, sys.argv[2].split())
warden_body, warden_head = map(int, sys.argv[3].split())
print(f"medians: nginx {statistics.median(r[1] for r in rows):.0f} req/s, warden {statistics.median(r[2] for r in rows):.0f} req/s; "
      f"warden/nginx median {statistics.median(r[2] / r[1] for r in rows):.3f}")
print(f"on the wire per response: nginx {nginx_body} body + {nginx_head} head bytes, warden {warden_body} body + {warden_head} head bytes")
PY
