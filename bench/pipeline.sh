#!/usr/bin/env bash
# The scale-out pipeline against its ceilings, in one go on the same services:
#
#   1. Kafka ceiling: raw rdkafka produce (idempotent, acks=all, 2000 per wait, as
#      the spool drains) and group consume of the same event payloads.
#   2. ClickHouse ceiling: the exact rows the pipeline writes for the same events
#      (folded ahead of time), inserted batch by batch; and observation rows alone.
#   3. Pipeline: probe spool -> Kafka -> `portwatch project` -> ClickHouse rows,
#      events per second until every observation row is queryable.
#   4. Latency: the same path at a steady rate; event created -> row queryable,
#      p50/p90/p99 (rows polled every 50 ms).
#
# Usage (as root): bench/pipeline.sh [ROUNDS] [EVENTS] [LATENCY_RATE] [BROKER]
#   defaults: 2 rounds, 1,000,000 events per measurement, 20,000 events/s, Apache
#   Kafka (BROKER `tansu` for the tansu broker the earlier runs below used)
# Everything runs inside a network namespace of its own (services on its private
# loopback); the namespace and every process in it are removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-2}"
EVENTS="${2:-1000000}"
RATE="${3:-20000}"
BROKER="${4:-kafka}"
LATENCY_SECS=15

source bench/lib.sh
scaleout_lab bench "$BROKER"

config() { # config PREFIX DATABASE
    scaleout_config "$1" "$2" 10.0.0.0/16 6 2000 500
}

with_projector() { # with_projector NAME COMMAND...: run COMMAND while a projector folds NAME's topic
    local name="$1"; shift
    config "$name." "$name" >"$TMP/$name.toml"
    in_ns "$PW" -c "$TMP/$name.toml" migrate --topics >/dev/null 2>&1
    # Not through in_ns: a backgrounded shell function is a subshell, and $! would
    # be its PID instead of the projector's.
    ip netns exec "$NS" "$PW" -c "$TMP/$name.toml" project --group "$name" 2>"$TMP/$name.log" &
    local projector=$!
    sleep 3
    "$@"
    kill -TERM "$projector"
    wait "$projector" || true
}

RESULTS="$TMP/results.jsonl"
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    in_ns "$BENCH" kafka --prefix "r${round}raw." --events "$EVENTS" --chunk 2000 | tee -a "$RESULTS"
    in_ns "$BENCH" clickhouse --database "r${round}ceiling" --events "$EVENTS" | tee -a "$RESULTS"
    with_projector "r${round}pipe" in_ns "$BENCH" pipeline --prefix "r${round}pipe." --database "r${round}pipe" \
        --spool "$TMP/r${round}pipe.spool" --events "$EVENTS" | tee -a "$RESULTS"
    with_projector "r${round}lat" in_ns "$BENCH" latency --prefix "r${round}lat." --database "r${round}lat" \
        --spool "$TMP/r${round}lat.spool" --rate "$RATE" --seconds "$LATENCY_SECS" | tee -a "$RESULTS"
done

python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(measure, key):
    vals = [r[key] for r in rows if r["measure"] == measure]
    return statistics.median(vals), min(vals), max(vals)
produce = med("kafka", "produce_per_sec")
consume = med("kafka", "consume_per_sec")
ch = med("clickhouse", "events_per_sec")
obs = med("clickhouse", "observation_rows_per_sec")
pipe = med("pipeline", "events_per_sec")
slower = min(produce[0], consume[0], ch[0])
print()
print("| measure | median /s | min-max /s |")
print("|---|---|---|")
for name, m in [("Kafka produce, raw rdkafka (idempotent, acks=all)", produce),
                ("Kafka consume, raw rdkafka group", consume),
                ("ClickHouse insert of the pipeline's rows, per event", ch),
                ("ClickHouse insert, observation rows alone", obs),
                ("pipeline: probe spool -> Kafka -> projector -> ClickHouse", pipe)]:
    print(f"| {name} | {m[0]:,.0f} | {m[1]:,.0f}-{m[2]:,.0f} |")
print()
print(f"slower ceiling: {slower:,.0f} events/s; pipeline = {pipe[0] / slower:.0%} of it (goal >= 50%)")
for r in (r for r in rows if r["measure"] == "latency"):
    print(f"latency at {r['rate_per_sec']:,}/s ({r['samples']} samples of {r['events']:,} events): "
          f"p50 {r['p50_ms']} ms, p90 {r['p90_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms")
PY
