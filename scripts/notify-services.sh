#!/usr/bin/env bash
# Real receivers for the notification tests (issue 10), from Debian's packages:
# rsyslog (a syslog server that parses RFC 5424), aiosmtpd (an SMTP server),
# Prometheus Alertmanager, and openssl (the tests' private CA). The tests start
# each one themselves, inside their own network namespace; installing starts
# nothing on the host.
#
#   scripts/notify-services.sh install    # idempotent; apt as root
set -euo pipefail

PACKAGES=(rsyslog python3-aiosmtpd prometheus-alertmanager openssl)

log() { printf '==> %s\n' "$*" >&2; }

install() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return
    fi
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
}

case "${1:-}" in
    install) install ;;
    *) echo "usage: $0 install" >&2; exit 2 ;;
esac
