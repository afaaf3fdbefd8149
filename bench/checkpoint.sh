#!/usr/bin/env bash
# Projector checkpoints at the brief's estate size, this build against an earlier one
# (the whole-state checkpoints before issue 19), on Apache Kafka and ClickHouse:
#
#   1. Round 1: HOSTS synthetic hosts scanned once each (8 ports; pwbench round) while
#      two projectors fold the 12 partitions.
#   2. Round 2: the same sweep again (one host in twenty changes its open ports); a
#      third projector joins a third of the way in (a rebalance), and the first one
#      is SIGKILLed two thirds of the way in (its partitions move to the others).
#   3. Measured per build: bytes of projector state written to ClickHouse per round
#      (merges of projector_offsets and projector_state are stopped, so every
#      written row is still there to count), and, from the projectors' logs, how
#      many partitions (re)loaded their state after the join and after the kill and
#      how long the loads took (assignment to the first fold after the load).
#   4. Both builds' port rows are compared with the pure fold of the two rounds.
#
# Usage (as root): bench/checkpoint.sh [HOSTS] [BEFORE]
#   defaults: 1,000,000 hosts; BEFORE = 26924ac (the last whole-state build)
# Everything runs inside a network namespace of its own; the namespace, every
# process in it and the scratch directory are removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
HOSTS="${1:-1000000}"
BEFORE="${2:-26924ac}"
PARTITIONS=12

source bench/lib.sh
scaleout_lab ckpt kafka
cleanup() {
    git worktree remove --force "$TMP/before" 2>/dev/null || true
    scaleout_lab_cleanup
}
trap cleanup EXIT

# The earlier build, from a worktree, in a target directory of its own kept under
# target/ (the first run compiles everything once).
git worktree add -q --detach "$TMP/before" "$BEFORE"
(cd "$TMP/before" && CARGO_TARGET_DIR="$OLDPWD/target/bench-before" cargo build --release -q -p portwatch)
cp target/bench-before/release/portwatch "$TMP/portwatch-before"
cp "$PW" "$TMP/portwatch-after"

ch() { in_ns curl -sS --fail-with-body 'http://127.0.0.1:8123/' --data-binary "$1"; }
echo "$HOSTS hosts, $PARTITIONS partitions" >&2

# Wait until the group has checkpointed every record of the topic.
wait_folded() { # wait_folded DATABASE TOTAL
    for _ in $(seq 1 1800); do
        local done
        done=$(ch "SELECT sum(n) FROM (SELECT max(next_offset) AS n FROM $1.projector_offsets GROUP BY kpartition)")
        [ "${done:-0}" -ge "$2" ] && return 0
        sleep 1
    done
    echo "not folded after 30 min" >&2
    return 1
}

state_bytes() { # state_bytes DATABASE: projector state written so far
    local images=0
    if [ "$(ch "EXISTS TABLE $1.projector_state")" = 1 ]; then
        images=$(ch "SELECT sum(length(image)) FROM $1.projector_state")
    fi
    echo $(( $(ch "SELECT sum(length(state)) FROM $1.projector_offsets") + images ))
}

# Loads between two instants: "count max_s" over the projector logs given, where a
# load's time runs from the partition's assignment to the "partition state loaded" line.
loads_between() { # loads_between EPOCH EPOCH LOG...
    local since="$1" until="$2"
    shift 2
    python3 - "$since" "$until" "$@" <<'PY'
import re, sys, datetime
since, until = float(sys.argv[1]), float(sys.argv[2])
def ts(line):
    m = re.match(r'(\S+Z)', line)
    return datetime.datetime.fromisoformat(m.group(1).replace('Z', '+00:00')).timestamp() if m else None
count, longest = 0, 0.0
for path in sys.argv[3:]:
    assigned = {}
    for line in open(path, errors='replace'):
        line = re.sub(r'\x1b\[[0-9;]*m', '', line)
        t = ts(line)
        if t is None:
            continue
        m = re.search(r'partitions assigned partitions=\[([0-9, ]*)\]', line)
        if m:
            for p in filter(None, m.group(1).replace(' ', '').split(',')):
                assigned[int(p)] = t
        m = re.search(r'partition state loaded partition=(\d+)', line)
        if m and since <= t < until:
            p = int(m.group(1))
            count += 1
            longest = max(longest, t - assigned.get(p, t))
print(count, round(longest, 2))
PY
}

run() { # run LABEL BINARY
    local label="$1" pw="$2" db="ck_$1" prefix="ck$1"
    local dir="$TMP/$label"
    mkdir -p "$dir"
    scaleout_config "$prefix" "$db" 10.0.0.0/8 "$PARTITIONS" 6000 1000 >"$dir/pw.toml"
    in_ns "$pw" -c "$dir/pw.toml" migrate --topics >/dev/null
    ch "SYSTEM STOP MERGES $db.projector_offsets" >/dev/null
    if [ "$(ch "EXISTS TABLE $db.projector_state")" = 1 ]; then
        ch "SYSTEM STOP MERGES $db.projector_state" >/dev/null
    fi
    local -a pids=()
    start_projector() { # start_projector N
        PORTWATCH_LOG=info ip netns exec "$NS" "$pw" -c "$dir/pw.toml" project >"$dir/project$1.log" 2>&1 &
        pids[$1]=$!
    }
    start_projector 1
    start_projector 2

    local t0 t1
    t0=$(date +%s.%N)
    in_ns "$BENCH" round --prefix "$prefix" --partitions "$PARTITIONS" --hosts "$HOSTS" --round 1 >"$dir/round1.json"
    wait_folded "$db" "$HOSTS"
    t1=$(date +%s.%N)
    local bytes1
    bytes1=$(state_bytes "$db")

    ip netns exec "$NS" "$BENCH" round --prefix "$prefix" --partitions "$PARTITIONS" --hosts "$HOSTS" --round 2 >"$dir/round2.json" &
    local producer=$!
    local third=$(( HOSTS / 3 ))
    for _ in $(seq 1 600); do
        [ "$(ch "SELECT count() FROM $db.observations WHERE node = 'bench-round-2'")" -ge "$third" ] && break
        sleep 0.5
    done
    local joined
    joined=$(date +%s.%N)
    start_projector 3
    for _ in $(seq 1 600); do
        [ "$(ch "SELECT count() FROM $db.observations WHERE node = 'bench-round-2'")" -ge $(( 2 * third )) ] && break
        sleep 0.5
    done
    local killed
    killed=$(date +%s.%N)
    kill -9 "${pids[1]}"
    wait "$producer"
    wait_folded "$db" $(( 2 * HOSTS ))
    local t2
    t2=$(date +%s.%N)
    local bytes2
    bytes2=$(state_bytes "$db")

    local join_loads kill_loads
    join_loads=$(loads_between "$joined" "$killed" "$dir"/project*.log)
    kill_loads=$(loads_between "$killed" "$t2" "$dir"/project2.log "$dir"/project3.log)
    for pid in "${pids[2]}" "${pids[3]}"; do kill -INT "$pid" 2>/dev/null || true; done
    wait "${pids[2]}" "${pids[3]}" 2>/dev/null || true
    local verify
    verify=$(in_ns "$BENCH" verify --database "$db" --hosts "$HOSTS" --rounds 2)
    python3 - "$label" "$bytes1" "$bytes2" "$t0" "$t1" "$t2" "$join_loads" "$kill_loads" "$verify" <<'PY'
import json, sys
label, b1, b2, t0, t1, t2, join, kill, verify = sys.argv[1:]
b1, b2 = int(b1), int(b2)
jc, jmax = join.split()
kc, kmax = kill.split()
v = json.loads(verify)
print(json.dumps({
    "build": label,
    "round1_state_mb": round(b1 / 1e6, 1),
    "round2_state_mb": round((b2 - b1) / 1e6, 1),
    "round1_s": round(float(t1) - float(t0), 1),
    "round2_s": round(float(t2) - float(t1), 1),
    "join_partitions_loaded": int(jc), "join_longest_load_s": float(jmax),
    "kill_partitions_loaded": int(kc), "kill_longest_load_s": float(kmax),
    "equals_fold": v["equal"], "open_ports": v["open_expected"],
    "open_missing": v["open_missing"], "open_extra": v["open_extra"],
}))
PY
}

run before "$TMP/portwatch-before"
run after "$TMP/portwatch-after"
