#!/usr/bin/env bash
# Benchmark: full 65535-port scan of the namespace lab (bench/lab.sh: 4 live hosts
# with 25 open ports in all, one host whose firewall drops everything, one wildcard
# host that answers on every port) by portwatch, nmap and masscan, interleaved round
# by round in one run. Prints wall time, CPU time, peak memory and found / missed /
# false ports per tool (every "open" port reported on the wildcard host is false).
#
# Safety: every scanner runs inside the lab's scanner namespace, whose only route
# leads to the lab router; the lab is deleted on exit, also on failure.
#
# Usage (as root): bench/lab_vs_nmap_masscan.sh [ROUNDS]     (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-3}"
P="pwb$$"; P="${P:0:8}"
OUT="$(mktemp -d)"
[ "$(id -u)" -eq 0 ] || { echo "run as root (network namespaces, raw sockets)" >&2; exit 1; }
for tool in nmap:nmap masscan:masscan /usr/bin/time:time; do
    cmd="${tool%%:*}"; pkg="${tool##*:}"
    command -v "$cmd" >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null; }
done
cleanup() { bench/lab.sh down "$P" >/dev/null 2>&1 || true; rm -rf "$OUT"; }
trap cleanup EXIT

cargo build --release --locked -q -p portwatch
PW="$PWD/target/release/portwatch"
bench/lab.sh up "$P" 7 >"$OUT/lab.json"
NS="$P-scan"
TARGETS="10.77.0.11 10.77.0.12 10.77.0.13 10.77.0.14 10.77.0.15 10.77.0.16"
printf '[scope]\nallow_reserved = true\n[[assets]]\ncidr = "10.77.0.0/24"\n' >"$OUT/pw.toml"
ROUTER_MAC=$(ip -n "$P-rt" -j link show eth-s | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['address'])")
PROBES=$((6 * 65535))
# masscan 1.3.2 can hang after finishing unless packets keep arriving (INFRA.md): the
# router sends the scanner one small UDP datagram every 100 ms during the whole run.
ip netns exec "$P-rt" python3 -c '
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.time() + 3600
while time.time() < end:
    s.sendto(b"k", ("10.77.255.1", 9)); time.sleep(0.1)
' >/dev/null 2>&1 &
disown

run() { # run NAME FORMAT TIMEOUT COMMAND...   (FORMAT: nmap | masscan | portwatch)
    local name="$1" format="$2" limit="$3"; shift 3
    # In $OUT: masscan writes its resume file (paused.conf) into the working directory.
    (cd "$OUT" && /usr/bin/time -f "%e %U %S %M" -o "$OUT/time" \
        timeout -s INT -k 5 "$limit" ip netns exec "$NS" "$@" >"$OUT/stdout" 2>"$OUT/stderr") || true
    if grep -q '^error:' "$OUT/stderr"; then # a broken run must not pass as a slow one
        echo "$name failed:" >&2; cat "$OUT/stderr" >&2; exit 1
    fi
    python3 - "$OUT/lab.json" "$OUT/stdout" "$format" "$name" "$(cat "$OUT/time" | tail -1)" "$limit" >>"$OUT/results" <<'PY'
import json, re, sys
lab, out, fmt, name, timing, limit = sys.argv[1:7]
lab = json.load(open(lab))
want = {(h["ip"], p) for h in lab["hosts"] for p in h["open"]}
got = set()
for line in open(out, errors="replace"):
    if fmt == "portwatch" and line.startswith("{"):
        j = json.loads(line)
        if "port" in j:  # lines about unverified (wildcard) hosts carry no port
            got.add((j["ip"], j["port"]))
    elif fmt == "nmap" and "Ports:" in line:
        ip = line.split()[1]
        got |= {(ip, int(m)) for m in re.findall(r"(\d+)/open/", line)}
    elif fmt == "masscan" and line.startswith("open"):
        f = line.split(); got.add((f[3], int(f[2])))
wall, user, sys_, kb = timing.split()
print(json.dumps({"name": name, "wall": min(float(wall), float(limit)), "cpu": float(user) + float(sys_),
                  "mb": int(kb) / 1024, "found": len(want & got), "missed": len(want - got),
                  "false": len(got - want), "want": len(want)}))
PY
}

for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    run "portwatch --mode syn --rate 100000" portwatch 120 \
        "$PW" -c "$OUT/pw.toml" scan $TARGETS -p - --json --mode syn --rate 100000 --timeout 1s
    run "nmap -sS -T4 -p-" nmap 600 nmap -sS -T4 -p- -n -Pn -oG - $TARGETS
    # Should masscan still hang, it is stopped with SIGINT at its own expected end
    # (probes / rate + --wait + 3 s; time is capped there), which only favours it.
    run "masscan --rate 100000" masscan $((PROBES / 100000 + 2 + 3)) \
        masscan $TARGETS -p1-65535 --rate 100000 --wait 2 --adapter eth0 --adapter-ip 10.77.255.1 \
        --adapter-port 61999 --router-mac "$ROUTER_MAC" -oL /dev/stdout
    run "masscan --rate 100000 --retries 1" masscan $((2 * PROBES / 100000 + 2 + 3)) \
        masscan $TARGETS -p1-65535 --rate 100000 --retries 1 --wait 2 --adapter eth0 --adapter-ip 10.77.255.1 \
        --adapter-port 61999 --router-mac "$ROUTER_MAC" -oL /dev/stdout
done

python3 - "$OUT/results" "$ROUNDS" <<'PY'
import json, statistics, sys, collections
rows = collections.OrderedDict()
for line in open(sys.argv[1]):
    r = json.loads(line); rows.setdefault(r["name"], []).append(r)
nmap = statistics.median(r["wall"] for r in rows["nmap -sS -T4 -p-"])
print(f"lab: 6 hosts x 65535 ports (4 live with 25 open ports, 1 dropping everything, 1 wildcard), {sys.argv[2]} rounds")
print()
print("| tool | median wall s | min-max s | median CPU s | peak RSS MB | found per round | missed | false | wall vs nmap |")
print("|---|---|---|---|---|---|---|---|---|")
for name, rs in rows.items():
    walls = [r["wall"] for r in rs]
    med = statistics.median(walls)
    print(f"| `{name}` | {med:.1f} | {min(walls):.1f}-{max(walls):.1f} | {statistics.median(r['cpu'] for r in rs):.1f} | "
          f"{max(r['mb'] for r in rs):.0f} | {', '.join(str(r['found']) for r in rs)} of {rs[0]['want']} | "
          f"{sum(r['missed'] for r in rs)} | {sum(r['false'] for r in rs)} | {med / nmap:.2f} |")
PY
