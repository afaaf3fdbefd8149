#!/usr/bin/env bash
# An unauthenticated attack on `portwatch up` with an open-file limit of 1,024:
# 3,000 half-sent requests held open from one address and 1,000 wrong secrets for a
# known token id from another, while a bystander times /healthz and a valid request
# and the scanner runs its high-risk task every second. Reports the bystander's
# p50/p99, what the attackers got, and the share of high-risk scans that succeeded
# during the attack. With BEFORE=path/to/an/older/portwatch the same attack runs
# against that binary too, in the same run, for the side-by-side.
#
#   sudo bench/api_attack.sh [SECONDS]
#
# Everything runs in a network namespace of its own (loopback only), removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_ATTACK="${1:-30}"
if [ "$(id -u)" -ne 0 ]; then echo "run as root (network namespace)" >&2; exit 1; fi
cargo build --release --locked -q -p portwatch -p portwatch-bench
PW="$PWD/target/release/portwatch"
BENCH="$PWD/target/release/pwbench"
NS="pwt-attack-$$"
TMP="$(mktemp -d)"
cleanup() {
    for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
in_ns() { ip netns exec "$NS" "$@"; }
in_ns python3 bench/listen.py 6379 >/dev/null 2>&1 &

attack() { # attack LABEL BINARY
    local label="$1" bin="$2" dir="$TMP/$1"
    mkdir -p "$dir"
    cat > "$dir/portwatch.toml" <<TOML
[scope]
allow_reserved = true
[[assets]]
cidr = "127.0.0.8/32"
[scan]
rate = 100000
timeout = "300ms"
[schedule]
liveness = "off"
full_ports = "off"
high_risk_ports = "1s"
port_recheck = "off"
offline_high_risk_ports = "off"
all_assets_full_ports = "off"
service_detection = "off"
admin_panels = "off"
[store]
path = "$dir/data"
[api]
listen = "127.0.0.1:7678"
TOML
    in_ns bash -c "ulimit -n 1024; exec '$bin' --config '$dir/portwatch.toml' up" >"$dir/up.out" 2>"$dir/up.log" &
    local token=""
    for _ in $(seq 100); do
        token="$(grep -o 'pwt_[0-9a-f_]*' "$dir/up.out" | head -1 || true)"
        [ -n "$token" ] && in_ns curl -sf http://127.0.0.1:7678/healthz >/dev/null 2>&1 && break
        sleep 0.2
    done
    [ -n "$token" ] || { echo "$label: up did not start" >&2; tail "$dir/up.log" >&2; return 1; }
    sleep 3 # a few scans before
    local t0; t0="$(date -u +%s)"
    in_ns bash -c "ulimit -n 20000; exec '$BENCH' attack --api 127.0.0.1:7678 --token '$token' --seconds $SECONDS_ATTACK" >"$dir/attack.json"
    local t1; t1="$(date -u +%s)"
    sleep 2
    # The high-risk scans that started during the attack, by state.
    in_ns curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:7678/api/v1/jobs?limit=1000" >"$dir/jobs.json" || true
    python3 - "$label" "$dir/attack.json" "$dir/jobs.json" "$t0" "$t1" <<'PY'
import json, sys, datetime
label, attack, jobs, t0, t1 = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
try:
    rows = json.load(open(jobs))
except Exception:
    rows = []
def ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
during = [j for j in rows if isinstance(j, dict) and j.get("task") == "high_risk_ports"
          and j.get("started_at") and t0 <= ts(j["started_at"]) <= t1]
done = sum(1 for j in during if j.get("state") == "done")
attack.update({"deployment": label, "high_risk_scans_during": len(during), "high_risk_scans_done": done,
               "high_risk_scans_share": (done / len(during)) if during else None})
print(json.dumps(attack))
PY
    grep -c "Too many open files" "$dir/up.log" | sed "s/^/$label: 'Too many open files' lines in the log: /" >&2 || true
    for pid in $(ip netns pids "$NS"); do
        [ "$(cat /proc/$pid/comm 2>/dev/null)" = "portwatch" ] && kill "$pid" 2>/dev/null || true
    done
    sleep 2
}

attack "this-build" "$PW"
if [ -n "${BEFORE:-}" ]; then
    attack "before" "$BEFORE"
fi
