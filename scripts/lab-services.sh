#!/usr/bin/env bash
# Real services for the service-detection tests and benchmark (issue 5), from
# Debian's packages, started on 127.0.0.1 *inside a network namespace* the caller
# made (`ip netns exec NS scripts/lab-services.sh start DIR`), each on its default
# port and, where the brief asks for it, on an unusual one.
#
#   scripts/lab-services.sh install        # idempotent; apt as root; starts nothing
#   scripts/lab-services.sh start DIR      # start all, wait until each port answers,
#                                          # print "PORT SERVICE" lines of what runs
#   scripts/lab-services.sh ports          # the "PORT SERVICE" table, without starting
#
# Everything started lives in the caller's namespace; deleting the namespace (after
# killing its processes, as the tests do) stops it all. DIR holds data and logs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

PACKAGES=(redis-server postgresql mariadb-server openssh-server vsftpd memcached mosquitto
          nginx rabbitmq-server tomcat10 tomcat10-admin openssl nmap)

# PORT SERVICE: what `start` runs (the service name portwatch should report).
TABLE="22 ssh
2222 ssh
21 ftp
2121 ftp
6379 redis
16379 redis
5432 postgresql
15432 postgresql
3306 mysql
13306 mysql
11211 memcached
21211 memcached
1883 mqtt
11883 mqtt
5672 amqp
35672 amqp
15672 http
80 http
8081 http
18443 https
8080 http
8123 clickhouse
8124 clickhouse
19092 kafka"

log() { printf '==> %s\n' "$*" >&2; }

install() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]} (Debian)"
        # Packages must not start their services on the host: only the tests start
        # them, inside namespaces.
        local guard=/usr/sbin/policy-rc.d created=0
        if [ ! -e "$guard" ]; then
            printf '#!/bin/sh\nexit 101\n' >"$guard"
            chmod +x "$guard"
            created=1
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        if [ "$created" = 1 ]; then rm -f "$guard"; fi
    fi
}

wait_port() { # wait_port PORT SECONDS
    local deadline=$((SECONDS + $2))
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then log "port $1 did not open"; return 1; fi
        sleep 0.2
    done
}

start() {
    local dir="$1"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    chmod 755 "$dir"
    ip link set lo up 2>/dev/null || true

    # Redis: default and unusual port.
    for port in 6379 16379; do
        redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
            --dir "$dir" --logfile "$dir/redis-$port.log" &
    done

    # memcached: both ports on one daemon.
    memcached -u root -l 127.0.0.1:11211,127.0.0.1:21211 -U 0 >"$dir/memcached.log" 2>&1 &

    # OpenSSH: one daemon, two ports.
    mkdir -p /run/sshd
    ssh-keygen -q -t ed25519 -N '' -f "$dir/ssh_host_key" <<<y >/dev/null 2>&1 || true
    cat >"$dir/sshd_config" <<EOF
Port 22
Port 2222
ListenAddress 127.0.0.1
HostKey $dir/ssh_host_key
PidFile none
UsePAM no
EOF
    /usr/sbin/sshd -D -e -f "$dir/sshd_config" 2>"$dir/sshd.log" &

    # vsftpd: one instance per port.
    for port in 21 2121; do
        cat >"$dir/vsftpd-$port.conf" <<EOF
listen=YES
listen_address=127.0.0.1
listen_port=$port
background=NO
anonymous_enable=YES
anon_root=$dir/vsftpd-empty
no_anon_password=YES
write_enable=NO
local_enable=NO
seccomp_sandbox=NO
secure_chroot_dir=$dir/vsftpd-empty
EOF
        mkdir -p "$dir/vsftpd-empty"
        /usr/sbin/vsftpd "$dir/vsftpd-$port.conf" >"$dir/vsftpd-$port.log" 2>&1 &
    done

    # Mosquitto: two listeners, anonymous allowed (its $SYS topics tell the version).
    cat >"$dir/mosquitto.conf" <<EOF
listener 1883 127.0.0.1
listener 11883 127.0.0.1
allow_anonymous true
persistence false
log_dest file $dir/mosquitto.log
EOF
    mosquitto -c "$dir/mosquitto.conf" >/dev/null 2>&1 &

    # nginx: plain on 80 and 8081, TLS (self-signed) on an unusual port.
    mkdir -p "$dir/nginx/www" "$dir/nginx/tmp"
    echo '<html><head><title>lab</title></head><body>lab</body></html>' >"$dir/nginx/www/index.html"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=lab.portwatch.test" \
        -addext "subjectAltName=DNS:lab.portwatch.test,IP:127.0.0.1" \
        -keyout "$dir/nginx/key.pem" -out "$dir/nginx/cert.pem" >/dev/null 2>&1
    cat >"$dir/nginx/nginx.conf" <<EOF
daemon off;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log;
events {}
http {
    access_log off;
    client_body_temp_path $dir/nginx/tmp;
    proxy_temp_path $dir/nginx/tmp;
    fastcgi_temp_path $dir/nginx/tmp;
    server {
        listen 127.0.0.1:80;
        listen 127.0.0.1:8081;
        listen 127.0.0.1:18443 ssl;
        ssl_certificate $dir/nginx/cert.pem;
        ssl_certificate_key $dir/nginx/key.pem;
        root $dir/nginx/www;
    }
}
EOF
    nginx -c "$dir/nginx/nginx.conf" &

    # PostgreSQL: two clusters (a postmaster has one port), run as postgres.
    local pg=/usr/lib/postgresql/15/bin
    for port in 5432 15432; do
        local d="$dir/pg-$port"
        mkdir -p "$d"
        chown postgres: "$d"
        (runuser -u postgres -- "$pg/initdb" -D "$d/data" -A trust -U postgres >"$d/initdb.log" 2>&1 &&
            exec runuser -u postgres -- "$pg/postgres" -D "$d/data" -p "$port" -k "$d" \
                -c listen_addresses=127.0.0.1 -c logging_collector=off >"$d/postgres.log" 2>&1) &
    done

    # MariaDB: one server, its port and an extra port.
    (mariadb-install-db --no-defaults --datadir="$dir/mariadb" --user=root \
        --auth-root-authentication-method=normal --skip-test-db >"$dir/mariadb-install.log" 2>&1 &&
        exec mariadbd --no-defaults --datadir="$dir/mariadb" --user=root --bind-address=127.0.0.1 \
            --port=13306 --extra-port=3306 --socket="$dir/mariadb.sock" --pid-file="$dir/mariadb.pid" \
            --skip-log-bin --log-error="$dir/mariadb.log") &

    # RabbitMQ: AMQP on two ports and the management UI.
    local rmq="$dir/rabbitmq"
    mkdir -p "$rmq"
    cat >"$rmq/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:5672
listeners.tcp.2 = 127.0.0.1:35672
management.tcp.ip = 127.0.0.1
management.tcp.port = 15672
EOF
    echo '[rabbitmq_management].' >"$rmq/enabled_plugins"
    (export HOME="$rmq" RABBITMQ_NODENAME=rabbit@localhost RABBITMQ_CONFIG_FILE="$rmq/rabbitmq.conf" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$rmq/enabled_plugins" RABBITMQ_MNESIA_BASE="$rmq/mnesia" \
        RABBITMQ_LOG_BASE="$rmq/log" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 ERL_EPMD_ADDRESS=127.0.0.1
     exec /usr/lib/rabbitmq/bin/rabbitmq-server >"$rmq/server.log" 2>&1) &

    # Tomcat with its manager application on 8080.
    local tc="$dir/tomcat"
    mkdir -p "$tc"/{conf,logs,temp,webapps,work,conf/Catalina/localhost}
    cp -r /etc/tomcat10/* "$tc/conf/"
    sed -i 's/port="8005"/port="-1"/' "$tc/conf/server.xml"
    sed -i 's/<Connector port="8080"/<Connector address="127.0.0.1" port="8080"/' "$tc/conf/server.xml"
    echo '<Context docBase="/usr/share/tomcat10-admin/manager" antiResourceLocking="false" privileged="true"/>' \
        >"$tc/conf/Catalina/localhost/manager.xml"
    (export CATALINA_HOME=/usr/share/tomcat10 CATALINA_BASE="$tc" CATALINA_TMPDIR="$tc/temp"
     exec /usr/share/tomcat10/bin/catalina.sh run >"$tc/logs/console.log" 2>&1) &

    # ClickHouse (HTTP 8123, native 8124) and a Kafka-protocol broker on 19092.
    "$ROOT/scripts/services.sh" clickhouse "$dir/clickhouse" 8123 >/dev/null
    "$ROOT/scripts/services.sh" broker "$dir/broker" 19092 >/dev/null

    local port service
    while read -r port service; do
        wait_port "$port" 90
    done <<<"$TABLE"
    echo "$TABLE"
}

cmd="${1:-}"
shift || true
case "$cmd" in
install) install ;;
start) start "$@" ;;
ports) echo "$TABLE" ;;
*)
    echo "usage: $0 install | start DIR | ports" >&2
    exit 2
    ;;
esac
