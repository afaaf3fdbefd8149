#!/usr/bin/env bash
# Benchmark: full-range (1-65535) TCP connect scan of 127.0.0.1, portwatch against
# `nmap -sT -p- 127.0.0.1`, run in one go and interleaved so the ratio holds on a
# noisy machine.
#
# Safety: everything runs inside a fresh network namespace whose loopback holds only
# this script's listeners; nothing else is probed and nothing leaves the machine.
# The namespace and every process in it are removed on exit, also on failure.
#
# Usage (as root): bench/connect_vs_nmap.sh [ROUNDS]      (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-5}"
NS="pwbench-$$"
OUT="$(mktemp -d)"

[ "$(id -u)" -eq 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
for tool in nmap:nmap /usr/bin/time:time ip:iproute2; do
    cmd="${tool%%:*}"; pkg="${tool##*:}"
    if ! command -v "$cmd" >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
    fi
done

cleanup() {
    for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$OUT"
}
trap cleanup EXIT

cargo build --release --locked -q -p portwatch
PW="$PWD/target/release/portwatch"

ip netns add "$NS"
ip -n "$NS" link set lo up
# Known listeners, edges included; they accept so that no backlog fills up.
PORTS="1 22 80 443 3306 5432 6379 8080 9200 27017 31337 40000 65535"
ip netns exec "$NS" python3 -c '
import selectors, socket, sys, time
sel = selectors.DefaultSelector()
for p in map(int, sys.argv[1:]):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", p)); s.listen(1024); s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
deadline = time.time() + 3600
while time.time() < deadline:
    for key, _ in sel.select(1):
        try: key.fileobj.accept()[0].close()
        except OSError: pass
' $PORTS &
disown   # the cleanup trap kills it; no job-control chatter
sleep 0.5
EXPECTED=$(echo $PORTS | wc -w)

run() { # run NAME COMMAND... ; appends "name wall_s peak_kb found" to $OUT/results
    local name="$1"; shift
    /usr/bin/time -f "%e %M" -o "$OUT/time" ip netns exec "$NS" "$@" >"$OUT/stdout" 2>"$OUT/stderr" || true
    local found
    case "$name" in
        nmap*) found=$(grep -o '[0-9]*/open' "$OUT/stdout" | wc -l) ;;
        *) found=$(grep -c '"state":"open"' "$OUT/stdout" || true) ;;
    esac
    echo "$name $(cat "$OUT/time") $found" >>"$OUT/results"
}

for round in $(seq 1 "$ROUNDS"); do
    run "nmap_-sT_-p-" nmap -sT -p- -n -Pn -oG - 127.0.0.1
    run "nmap_-sT_-p-_-T4" nmap -sT -p- -T4 -n -Pn -oG - 127.0.0.1
    run "portwatch_default_rate" "$PW" scan 127.0.0.1 -p - --json --mode connect
    run "portwatch_--rate_1000000" "$PW" scan 127.0.0.1 -p - --json --mode connect --rate 1000000
done

python3 - "$OUT/results" "$EXPECTED" "$ROUNDS" <<'PY'
import statistics, sys, collections
path, expected, rounds = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = collections.OrderedDict()
for line in open(path):
    name, wall, kb, found = line.split()
    rows.setdefault(name, []).append((float(wall), int(kb), int(found)))
base = statistics.median(w for w, _, _ in rows["nmap_-sT_-p-"])
print(f"full-range connect scan of 127.0.0.1 in a namespace, {rounds} rounds, {expected} open ports")
print()
print("| tool | median wall s | min-max s | peak RSS MB | found (every round) | speed vs nmap -sT -p- |")
print("|---|---|---|---|---|---|")
for name, runs in rows.items():
    walls = [w for w, _, _ in runs]
    med = statistics.median(walls)
    found = sorted(set(f for _, _, f in runs))
    print(f"| `{name.replace('_', ' ')}` | {med:.2f} | {min(walls):.2f}-{max(walls):.2f} | "
          f"{max(k for _, k, _ in runs)/1024:.0f} | {'/'.join(map(str, found))} of {expected} | {base/med:.1f}x |")
PY
