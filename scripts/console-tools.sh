#!/usr/bin/env bash
# Tools the API and console tests drive portwatch with, installed beside the build
# (nothing system-wide but Debian packages):
#   - schemathesis (PyPI, pinned) in a virtual environment: schema-driven fuzzing of
#     the served OpenAPI document; chdb-core (PyPI, pinned: ClickHouse 26.x
#     in-process) in the same environment, to run the Grafana panels' SQL on a
#     current ClickHouse beside the Debian 18.16 server; openapi-spec-validator
#     (PyPI, pinned) in the same environment, to validate the OpenAPI document;
#   - Debian's chromium and playwright-core (npm, pinned; it drives the installed
#     browser and downloads none): the console's browser tests.
#
#   scripts/console-tools.sh install     # idempotent
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS="${PORTWATCH_TOOLS:-$PWD/target/tools}"
VENV="$TOOLS/venv"
SCHEMATHESIS="schemathesis==4.32.5"
PLAYWRIGHT="playwright-core@1.65.1"
CHDB="chdb-core==26.9.0"
VALIDATOR="openapi-spec-validator==0.9.0"

log() { printf '==> %s\n' "$*" >&2; }

install() {
    if [ ! -x "$VENV/bin/st" ] || ! "$VENV/bin/st" --version 2>/dev/null | grep -q "${SCHEMATHESIS#*==}"; then
        log "installing $SCHEMATHESIS (PyPI) into $VENV"
        mkdir -p "$TOOLS"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check "$SCHEMATHESIS"
    fi
    if ! "$VENV/bin/pip" show chdb-core 2>/dev/null | grep -q "^Version: ${CHDB#*==}$"; then
        log "installing $CHDB (PyPI) into $VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check "$CHDB"
    fi
    if ! "$VENV/bin/pip" show openapi-spec-validator 2>/dev/null | grep -q "^Version: ${VALIDATOR#*==}$"; then
        log "installing $VALIDATOR (PyPI) into $VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check "$VALIDATOR"
    fi
    if ! command -v chromium >/dev/null 2>&1; then
        log "installing chromium (Debian)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
    fi
    if [ ! -f "$TOOLS/node_modules/playwright-core/package.json" ] ||
        ! grep -q "\"version\": \"${PLAYWRIGHT#*@}\"" "$TOOLS/node_modules/playwright-core/package.json"; then
        log "installing $PLAYWRIGHT (npm) into $TOOLS"
        mkdir -p "$TOOLS"
        npm install --prefix "$TOOLS" --silent --no-audit --no-fund --no-save "$PLAYWRIGHT" >/dev/null
    fi
}

case "${1:-}" in
    install) install ;;
    *) echo "usage: $0 install" >&2; exit 2 ;;
esac
