# Shared by the benchmarks that run the scale-out stack (sourced, from the
# repository's root): `scaleout_lab NAME [BROKER]` checks for root, installs the
# services, builds the release binaries, and starts ClickHouse (8123) and a broker
# (9092; BROKER `tansu`, the default, or `kafka` for Apache Kafka) on the private
# loopback of a network namespace of its own, which is removed with every process in
# it when the script exits. It sets PW and BENCH (the binaries), NS (the namespace)
# and TMP (a scratch directory, removed too); `in_ns` runs a command inside the
# namespace (not for `&`: a backgrounded function is a subshell, and $! would be its
# PID; background with `ip netns exec "$NS"`). `scaleout_config` writes a
# portwatch config for the lab.

in_ns() { ip netns exec "$NS" "$@"; }

scaleout_lab_cleanup() {
    for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$TMP"
}

scaleout_lab() {
    if [ "$(id -u)" -ne 0 ]; then echo "run as root (network namespace)" >&2; exit 1; fi
    bash scripts/services.sh install
    cargo build --release --locked -q -p portwatch -p portwatch-bench
    PW="$PWD/target/release/portwatch"
    BENCH="$PWD/target/release/pwbench"
    NS="pwt-$1-$$"
    TMP="$(mktemp -d)"
    trap scaleout_lab_cleanup EXIT
    ip netns add "$NS"
    ip -n "$NS" link set lo up
    in_ns bash scripts/services.sh clickhouse "$TMP/clickhouse" 8123 >/dev/null
    local broker="${2:-tansu}"
    case "$broker" in
        tansu) in_ns bash scripts/services.sh broker "$TMP/broker" 9092 >/dev/null ;;
        kafka) in_ns bash scripts/kafka.sh start "$TMP/kafka" 9092 >/dev/null ;;
        *) echo "unknown broker $broker (tansu or kafka)" >&2; exit 2 ;;
    esac
    echo "ClickHouse $(in_ns curl -s 'http://127.0.0.1:8123/?query=SELECT%20version()'), $broker broker; $(nproc) cores" >&2
}

# scaleout_config PREFIX DATABASE CIDR PARTITIONS SESSION_MS HEARTBEAT_MS
scaleout_config() {
    cat <<EOF
[[assets]]
cidr = "$3"
[scope]
allow_reserved = true
[kafka]
brokers = "127.0.0.1:9092"
topic_prefix = "$1"
partitions = $4
[kafka.consumer]
"session.timeout.ms" = "$5"
"heartbeat.interval.ms" = "$6"
[clickhouse]
url = "http://127.0.0.1:8123"
database = "$2"
EOF
}
