#!/usr/bin/env bash
# A zone's probe nodes sharing a pass, beside the planner's expectation: the
# high-risk pass over 2^20 addresses (127.16.0.0/12) x 41 ports with 1 and with 3
# probe nodes of the scale-out deployment, each node at RATE probes a second. For
# each node count the script asks `portwatch plan --json --clickhouse --nodes N` what
# the pass should take, runs one pass (control + N probe nodes + a projector, fresh
# topics and database), and reads the pass's duration from its row in `jobs`.
#
# Usage (as root): [CIDR=127.16.0.0/12] bench/chunks.sh [RATE] [BROKER] [NODES...]
#   defaults: 100000 probes/s per node, tansu (or `kafka`), node counts 1 and 3;
#   CIDR (inside 127/8) another range, e.g. 127.16.0.0/16 for a quick run
# The loopback of the namespace answers for all of 127/8: every address is a live
# host with its 41 ports closed (a RST each). Everything runs inside a network
# namespace of its own, removed with every process in it at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE="${1:-100000}"
BROKER="${2:-tansu}"
COUNTS=("${@:3}")
[ "${#COUNTS[@]}" -gt 0 ] || COUNTS=(1 3)
CIDR="${CIDR:-127.16.0.0/12}"
PORTS="21-23,25,53,80,110,111,135,139,143,443,445,993,995,1433,1521,2049,2375,2376,3306,3389,5432,5601,5900-5902,5984,6379,7001,8080,8443,9000,9042,9200,9300,11211,27017,27018,50000,50070"

source bench/lib.sh
scaleout_lab chunks "$BROKER"

config() { # config NAME
    cat <<EOF
[[assets]]
cidr = "$CIDR"
[scope]
allow_reserved = true
max_targets = 1048576
[kafka]
brokers = "127.0.0.1:9092"
topic_prefix = "$1."
partitions = 12
[kafka.consumer]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"
[clickhouse]
url = "http://127.0.0.1:8123"
database = "$1"
[scan]
rate = $RATE
max_rate = $RATE
timeout = "300ms"
high_risk_ports = "$PORTS"
[schedule]
liveness = "off"
full_ports = "off"
port_recheck = "off"
offline_high_risk_ports = "off"
all_assets_full_ports = "off"
service_detection = "off"
admin_panels = "off"
high_risk_ports = "24h"
chunk_target = "30s"
[probe]
heartbeat = "2s"
[api]
listen = "127.0.0.1:7678"
[auth]
anonymous_read = true
[store]
path = "$TMP/$1-data"
EOF
}

RESULTS="$TMP/results.jsonl"
for n in "${COUNTS[@]}"; do
    name="n$n"
    config "$name" >"$TMP/$name.toml"
    cfg="$TMP/$name.toml"
    in_ns "$PW" -c "$cfg" migrate --topics >/dev/null 2>&1
    expected="$(in_ns "$PW" -c "$cfg" plan --json --clickhouse --nodes "$n" \
        | python3 -c 'import json,sys; p=json.load(sys.stdin); print(next(t["expected_pass_secs"] for z in p["zones"] for t in z["tasks"] if t["task"]=="high_risk_ports"))')"
    ip netns exec "$NS" "$PW" -c "$cfg" project 2>"$TMP/$name-project.log" &
    for i in $(seq 1 "$n"); do
        ip netns exec "$NS" "$PW" -c "$cfg" --data "$TMP/$name-p$i" probe --zone default --node "p$i" 2>"$TMP/$name-p$i.log" &
    done
    # The nodes report in before the leader's first pass, so that all of them share it.
    sleep 8
    ip netns exec "$NS" "$PW" -c "$cfg" control 2>"$TMP/$name-control.log" &
    echo "nodes $n: expecting $expected s" >&2
    deadline=$((SECONDS + 3600))
    row=""
    while [ "$SECONDS" -lt "$deadline" ]; do
        row="$(in_ns curl -s "http://127.0.0.1:8123/?database=$name" --data-binary \
            "SELECT toUInt32(issued_at), toUInt32(updated_at), state, visitParamExtractUInt(detail, 'chunks') FROM jobs FINAL WHERE visitParamExtractString(detail, 'pass') = '' AND task = 'high_risk_ports' AND state != 'running' FORMAT TSV" | head -1)"
        [ -n "$row" ] && break
        sleep 2
    done
    [ -n "$row" ] || { echo "no pass finished with $n node(s)" >&2; tail -20 "$TMP/$name-control.log" >&2; exit 1; }
    read -r start end state chunks <<<"$row"
    nodes_used="$(in_ns curl -s "http://127.0.0.1:8123/?database=$name" --data-binary \
        "SELECT uniqExact(node) FROM jobs FINAL WHERE visitParamExtractString(detail, 'pass') != '' AND state = 'done' FORMAT TSV")"
    printf '{"nodes": %d, "rate": %d, "expected_secs": %s, "measured_secs": %d, "state": "%s", "chunks": %d, "nodes_used": %d}\n' \
        "$n" "$RATE" "$expected" "$((end - start))" "$state" "$chunks" "$nodes_used" | tee -a "$RESULTS"
    for pid in $(ip netns pids "$NS"); do
        case "$(cat /proc/"$pid"/comm 2>/dev/null)" in portwatch) kill -TERM "$pid" 2>/dev/null || true ;; esac
    done
    sleep 5
done

python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| probe nodes | rate per node | plan: expected pass | measured pass | measured / expected | chunks | nodes that ran chunks |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['nodes']} | {r['rate']:,}/s | {r['expected_secs']:.0f} s | {r['measured_secs']} s | {r['measured_secs'] / r['expected_secs']:.2f} | {r['chunks']} | {r['nodes_used']} |")
if len(rows) >= 2:
    print(f"\nspeed-up from {rows[0]['nodes']} to {rows[-1]['nodes']} nodes: {rows[0]['measured_secs'] / max(rows[-1]['measured_secs'], 1):.2f}x")
PY
