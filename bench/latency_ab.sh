#!/usr/bin/env bash
# Side-by-side end-to-end latency of `portwatch project`: this checkout against the
# build of another commit, interleaved round by round on the same ClickHouse and
# broker, in one namespace (the pipeline benchmark's latency measure, bench/pwbench).
#
# Usage (as root): bench/latency_ab.sh BASE_COMMIT [ROUNDS=3]
# Prints one JSON line per run, prefixed `base` or `head`.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE="${1:?usage: bench/latency_ab.sh BASE_COMMIT [ROUNDS]}"
ROUNDS="${2:-3}"
if [ "$(id -u)" -ne 0 ]; then echo "run as root (network namespace)" >&2; exit 1; fi
bash scripts/services.sh install
cargo build --release --locked -q -p portwatch -p portwatch-bench
WT="$(mktemp -d)"
git worktree add -q "$WT/src" "$BASE"
(cd "$WT/src" && CARGO_TARGET_DIR="$WT/target" cargo build --release --locked -q -p portwatch)
NEW="$PWD/target/release/portwatch"; OLD="$WT/target/release/portwatch"; BENCH="$PWD/target/release/pwbench"
NS="pwt-ab-$$"; TMP="$(mktemp -d)"
cleanup() {
    for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$TMP"
    git worktree remove --force "$WT/src" 2>/dev/null || true
    rm -rf "$WT"
}
trap cleanup EXIT
ip netns add "$NS"; ip -n "$NS" link set lo up
in_ns() { ip netns exec "$NS" "$@"; }
in_ns bash scripts/services.sh clickhouse "$TMP/clickhouse" 8123 >/dev/null
in_ns bash scripts/services.sh broker "$TMP/broker" 9092 >/dev/null
config() { cat <<T
[[assets]]
cidr = "10.0.0.0/16"
[scope]
allow_reserved = true
[kafka]
brokers = "127.0.0.1:9092"
topic_prefix = "$1"
partitions = 6
[kafka.consumer]
"session.timeout.ms" = "2000"
"heartbeat.interval.ms" = "500"
[clickhouse]
url = "http://127.0.0.1:8123"
database = "$2"
T
}
run() { # run NAME BINARY
    local name="$1" pw="$2"
    config "$name." "$name" >"$TMP/$name.toml"
    in_ns "$pw" -c "$TMP/$name.toml" migrate --topics >/dev/null 2>&1
    ip netns exec "$NS" "$pw" -c "$TMP/$name.toml" project --group "$name" 2>"$TMP/$name.log" &
    local p=$!
    sleep 3
    in_ns "$BENCH" latency --prefix "$name." --database "$name" --spool "$TMP/$name.spool" --rate 20000 --seconds 15 | sed "s/^/$3 /"
    kill -TERM $p; wait $p || true
}
for round in $(seq 1 "$ROUNDS"); do
    run "r${round}base" "$OLD" base
    run "r${round}head" "$NEW" head
done
