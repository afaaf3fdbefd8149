#!/usr/bin/env bash
# Tools the API and console tests drive portwatch with, installed beside the build
# (nothing system-wide but Debian packages):
#   - schemathesis (PyPI, pinned) in a virtual environment: schema-driven fuzzing of
#     the served OpenAPI document.
#
#   scripts/console-tools.sh install     # idempotent
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS="${PORTWATCH_TOOLS:-$PWD/target/tools}"
VENV="$TOOLS/venv"
SCHEMATHESIS="schemathesis==4.32.5"

log() { printf '==> %s\n' "$*" >&2; }

install() {
    if [ ! -x "$VENV/bin/st" ] || ! "$VENV/bin/st" --version 2>/dev/null | grep -q "${SCHEMATHESIS#*==}"; then
        log "installing $SCHEMATHESIS (PyPI) into $VENV"
        mkdir -p "$TOOLS"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check "$SCHEMATHESIS"
    fi
}

case "${1:-}" in
    install) install ;;
    *) echo "usage: $0 install" >&2; exit 2 ;;
esac
