#!/usr/bin/env bash
# The open-ports page (and its API) with 100,000 open ports in the store, in both
# deployments side by side: `portwatch up` (SQLite) and `portwatch control` (tansu +
# ClickHouse 18.16, folded by `portwatch project`), seeded with the same full scans
# of 1,000 hosts with 100 open ports each. Then, round by round, the requests the
# console's open-ports page makes: the first page, a deep page (near the end), a
# risk-class filter, an owner filter, one host, alerting only, and walking page
# after page; p50 / p99 / max milliseconds over REQUESTS requests each.
#
# Usage (as root): bench/ports_page.sh [ROUNDS] [HOSTS] [PORTS_PER_HOST] [REQUESTS]
#   defaults: 2 rounds, 1,000 hosts, 100 ports each, 200 requests per kind
# Everything runs inside a network namespace of its own; it is removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-2}"
HOSTS="${2:-1000}"
PORTS="${3:-100}"
REQUESTS="${4:-200}"
OPEN=$((HOSTS * PORTS))

source bench/lib.sh
scaleout_lab pages

cat >"$TMP/pw.toml" <<CFG
[[assets]]
cidr = "10.0.0.0/16"
owner = "bench-team"
[[assets]]
cidr = "10.0.1.0/24"
owner = "db-team"
[scope]
allow_reserved = true
max_targets = 100000
[schedule]
liveness = "off"
full_ports = "off"
high_risk_ports = "off"
port_recheck = "off"
offline_high_risk_ports = "off"
all_assets_full_ports = "off"
service_detection = "off"
admin_panels = "off"
[kafka]
brokers = "127.0.0.1:9092"
partitions = 6
[clickhouse]
url = "http://127.0.0.1:8123"
CFG
CFG="$TMP/pw.toml"
DATA="$TMP/embedded"
in_ns "$PW" -c "$CFG" migrate --topics >/dev/null 2>&1
EMB_TOKEN="$(in_ns "$PW" -c "$CFG" --data "$DATA" token create --user bench --role viewer)"
SO_TOKEN="$(in_ns "$PW" -c "$CFG" token create --kafka --user bench --role viewer)"
in_ns "$BENCH" seed-ports --target embedded --into "$DATA/events.db" --hosts "$HOSTS" --ports "$PORTS" >&2
in_ns "$BENCH" seed-ports --target kafka --into "portwatch." --hosts "$HOSTS" --ports "$PORTS" >&2

# Not through in_ns: $! must be the process, not a subshell.
ip netns exec "$NS" "$PW" -c "$CFG" --data "$DATA" up --listen 127.0.0.1:7678 2>"$TMP/up.log" >/dev/null &
ip netns exec "$NS" "$PW" -c "$CFG" project 2>"$TMP/project.log" &
ip netns exec "$NS" "$PW" -c "$CFG" control --listen 127.0.0.1:7679 2>"$TMP/control.log" >/dev/null &

echo "waiting for both deployments to hold $OPEN open ports" >&2
deadline=$((SECONDS + 600))
until [ "$(in_ns curl -s 'http://127.0.0.1:8123/?database=portwatch' --data-binary "SELECT count() FROM port_state FINAL WHERE state = 'open'" 2>/dev/null)" = "$OPEN" ] &&
    in_ns curl -s http://127.0.0.1:7678/metrics 2>/dev/null | grep -q "^portwatch_ports_open $OPEN\$"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "not loaded in time" >&2; tail -5 "$TMP/up.log" "$TMP/project.log" "$TMP/control.log" >&2; exit 1
    fi
    sleep 2
done
# The tokens have reached both (the API follows the journal every second).
sleep 3

RESULTS="$TMP/results.jsonl"
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    in_ns "$BENCH" pages --api http://127.0.0.1:7678 --token "$EMB_TOKEN" --requests "$REQUESTS" --deployment embedded | tee -a "$RESULTS"
    in_ns "$BENCH" pages --api http://127.0.0.1:7679 --token "$SO_TOKEN" --requests "$REQUESTS" --deployment scale-out | tee -a "$RESULTS"
done

python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
kinds = list(dict.fromkeys(r["kind"] for r in rows))
print()
print(f"open ports in each store: {rows[0]['open_ports']:,}; medians over rounds of each round's p50 / p99 (ms)")
print()
print("| request | embedded p50 | embedded p99 | scale-out p50 | scale-out p99 | rows |")
print("|---|---|---|---|---|---|")
for k in kinds:
    def m(dep, key):
        return statistics.median(r[key] for r in rows if r["kind"] == k and r["deployment"] == dep)
    n = next(r["rows"] for r in rows if r["kind"] == k)
    print(f"| {k} | {m('embedded','p50_ms'):.1f} | {m('embedded','p99_ms'):.1f} | {m('scale-out','p50_ms'):.1f} | {m('scale-out','p99_ms'):.1f} | {n} |")
PY
