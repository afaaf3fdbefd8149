#!/usr/bin/env bash
# Apache Kafka for tests, benchmarks and local trials: the broker's jars from Maven
# Central (Debian's OpenJDK 17 runs them), one KRaft node per call, listening on
# 127.0.0.1 only. See ../shared/INFRA.md for the facts this rests on.
#
#   scripts/kafka.sh install                 # idempotent; fetches the jars (needs mvn, java)
#   scripts/kafka.sh start DIR PORT          # format DIR, start, wait ready, print PID
#
# scripts/services.sh installs and starts it as its `kafka` service (and stops it).
#
# `start` serves PLAINTEXT on PORT and the controller on PORT+1. Tests start brokers
# inside network namespaces of their own (`ip netns exec NS scripts/kafka.sh ...`).
#
# With KAFKA_TLS_DIR set, the broker is what production runs instead: SASL_SSL only
# (SCRAM-SHA-256/512, client certificates required: mTLS), the controller on SASL_SSL
# with PLAIN, and ACLs enforced (StandardAuthorizer; super users broker, controller and
# admin, nobody else may do anything no ACL allows). KAFKA_TLS_DIR holds ca.pem (the
# private CA), server.p12 (the broker's key and certificate, password in store.pass),
# broker.pass and controller.pass; users are made with KAFKA_SCRAM at format time
# ('SCRAM-SHA-512=[name=U,password=P]' ..., broker among them). `acl DIR PORT ARGS...`
# then runs Kafka's AclCommand as admin (password in KAFKA_TLS_DIR/admin.pass).
# Extra broker settings may be appended from KAFKA_EXTRA_PROPERTIES (a file).
set -euo pipefail
cd "$(dirname "$0")/.."

# The version docker-compose.yml runs too (image apache/kafka:$KAFKA_VERSION).
KAFKA_VERSION="4.1.1"
LOG4J_VERSION="2.24.3"
SLF4J_VERSION="2.0.17"
TOOLS="${PORTWATCH_TOOLS:-$PWD/target/tools}"
HOME_DIR="$TOOLS/kafka-$KAFKA_VERSION-slf4j$SLF4J_VERSION"
LIB="$HOME_DIR/lib"

log() { printf '==> %s\n' "$*" >&2; }

install() {
    if [ -f "$LIB/.complete" ]; then
        return 0
    fi
    if ! command -v mvn >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1; then
        log "installing Maven and OpenJDK 17 (Debian)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq maven openjdk-17-jre-headless >/dev/null
    fi
    log "fetching Apache Kafka $KAFKA_VERSION (Maven Central)"
    local tmp
    tmp="$(mktemp -d)"
    cat >"$tmp/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>portwatch.tests</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-server</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-storage</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>$SLF4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
POM
    rm -rf "$LIB.part"
    # --strict-checksums: every artifact is checked against the repository's checksum.
    mvn -q -B --strict-checksums -f "$tmp/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$LIB.part" -DincludeScope=runtime
    rm -rf "$tmp"
    rm -rf "$LIB"
    mv "$LIB.part" "$LIB"
    touch "$LIB/.complete"
    log "Apache Kafka $KAFKA_VERSION: $(ls "$LIB" | wc -l) jars in $LIB"
}

secure_listeners() { # the SASL_SSL listeners' security (TLS material in KAFKA_TLS_DIR)
    local tls="$KAFKA_TLS_DIR"
    local broker_pw controller_pw store_pw
    broker_pw="$(cat "$tls/broker.pass")"
    controller_pw="$(cat "$tls/controller.pass")"
    store_pw="$(cat "$tls/store.pass")"
    cat <<PROPS
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="$broker_pw";
listener.name.sasl_ssl.ssl.client.auth=required
listener.name.controller.sasl.enabled.mechanisms=PLAIN
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="controller" password="$controller_pw" user_controller="$controller_pw";
ssl.keystore.type=PKCS12
ssl.keystore.location=$tls/server.p12
ssl.keystore.password=$store_pw
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.pem
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:broker;User:controller;User:admin
allow.everyone.if.no.acl.found=false
PROPS
}

acl() { # acl DIR PORT ARGS... (AclCommand as admin over SASL_SSL)
    local dir="$1" port="$2"
    shift 2
    local tls="$KAFKA_TLS_DIR"
    cat >"$dir/admin.properties" <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(cat "$tls/admin.pass")";
ssl.keystore.type=PKCS12
ssl.keystore.location=$tls/server.p12
ssl.keystore.password=$(cat "$tls/store.pass")
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.pem
PROPS
    java -Xms64m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 "-Dlog4j2.configurationFile=$dir/log4j2.properties" \
        "-Dkafka.logs.dir=$dir" -cp "$LIB/*" org.apache.kafka.tools.AclCommand \
        --bootstrap-server "127.0.0.1:$port" --command-config "$dir/admin.properties" "$@" >"$dir/acl.log" 2>&1 || {
        cat "$dir/acl.log" >&2
        return 1
    }
}

start() { # start DIR PORT
    local dir="$1" port="$2"
    local controller=$((port + 1))
    install
    mkdir -p "$dir/data"
    local listener=PLAINTEXT
    if [ -n "${KAFKA_TLS_DIR:-}" ]; then
        listener=SASL_SSL
    fi
    cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=$listener://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=$listener://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=$listener
listener.security.protocol.map=$listener:$listener,CONTROLLER:$listener
log.dirs=$dir/data
num.partitions=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# The tests' consumers use 2 s sessions to see a dead node quickly (the default
# floor is 6 s).
group.min.session.timeout.ms=1000
# As in docker-compose.yml: topics exist only once portwatch migrate --topics made them.
auto.create.topics.enable=false
PROPS
    cat >"$dir/log4j2.properties" <<'LOG'
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRefs = file
rootLogger.appenderRef.file.ref = file
LOG
    if [ "$listener" = SASL_SSL ]; then
        secure_listeners >>"$dir/server.properties"
    fi
    if [ -n "${KAFKA_EXTRA_PROPERTIES:-}" ]; then
        cat "$KAFKA_EXTRA_PROPERTIES" >>"$dir/server.properties"
    fi
    local java=(java -Xms128m -Xmx512m -XX:+UseSerialGC -Djava.awt.headless=true
        "-Dkafka.logs.dir=$dir" "-Dlog4j2.configurationFile=$dir/log4j2.properties"
        -cp "$LIB/*")
    local format=("${java[@]}" kafka.tools.StorageTool format -t "$(cat /proc/sys/kernel/random/uuid)" -c "$dir/server.properties" --ignore-formatted)
    if [ -n "${KAFKA_SCRAM:-}" ]; then # 'SCRAM-SHA-512=[name=U,password=P]' ...
        for s in $KAFKA_SCRAM; do format+=(--add-scram "$s"); done
    fi
    "${format[@]}" >"$dir/format.log" 2>&1 || {
        cat "$dir/format.log" >&2
        return 1
    }
    setsid "${java[@]}" kafka.Kafka "$dir/server.properties" >"$dir/stdout.log" 2>&1 </dev/null &
    local pid=$!
    local deadline=$((SECONDS + 90))
    until grep -q "Kafka Server started" "$dir/server.log" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
            log "Apache Kafka did not start; its log:"
            tail -n 40 "$dir/server.log" "$dir/stdout.log" >&2 2>/dev/null || true
            kill -9 "$pid" 2>/dev/null || true
            return 1
        fi
        sleep 0.2
    done
    echo "$pid"
}

case "${1:-}" in
install) install ;;
start) start "$2" "$3" ;;
acl) shift && acl "$@" ;;
*)
    echo "usage: scripts/kafka.sh install | start DIR PORT | acl DIR PORT ARGS... (stop: scripts/services.sh stop PID)" >&2
    exit 2
    ;;
esac
