#!/usr/bin/env bash
# Benchmark: service detection on the same open ports, `portwatch scan --service`
# against `nmap -sV`, in one run. The ports are the real Debian services of
# scripts/lab-services.sh (default and unusual ports), started inside a fresh network
# namespace; both tools run inside it, so nothing else is probed and nothing leaves
# the machine. The namespace and every process in it are removed on exit.
#
# A service counts as named correctly when the tool's service name is the expected
# one, or when its product string names the expected service (nmap often reports
# e.g. `http` with product "ClickHouse ..."). Generous to nmap: its `ssl/http` counts
# as `https`, any `http-*` name (http-proxy, http-alt) as `http`, and a name or
# product naming the broker (`mosquitto ...`) as `mqtt`.
#
# Usage (as root): bench/service_vs_nmap.sh [ROUNDS]   (default 1; nmap takes minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-1}"
NS="pwbench-svc-$$"
OUT="$(mktemp -d)"
chmod 755 "$OUT"

[ "$(id -u)" -eq 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
bash scripts/services.sh install
bash scripts/lab-services.sh install

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
ip netns exec "$NS" scripts/lab-services.sh start "$OUT/lab" >"$OUT/table" 2>"$OUT/lab.log"
PORTS="$(awk '{print $1}' "$OUT/table" | paste -sd,)"
printf '[[assets]]\ncidr = "127.0.0.1/32"\n[scope]\nallow_reserved = true\n' >"$OUT/pw.toml"

now() { date +%s.%N; }
for round in $(seq 1 "$ROUNDS"); do
    t0=$(now)
    ip netns exec "$NS" "$PW" -c "$OUT/pw.toml" scan 127.0.0.1 -p "$PORTS" --mode connect --service --json \
        >"$OUT/pw-$round.jsonl" 2>/dev/null
    t1=$(now)
    ip netns exec "$NS" nmap -sV -Pn -n -p "$PORTS" 127.0.0.1 -oX "$OUT/nmap-$round.xml" >/dev/null 2>&1
    t2=$(now)
    echo "$round $t0 $t1 $t2" >>"$OUT/times"
done

python3 - "$OUT" "$ROUNDS" <<'PY'
import json, sys, xml.etree.ElementTree as ET
out, rounds = sys.argv[1], int(sys.argv[2])
expected = dict((int(p), s) for p, s in (l.split() for l in open(f"{out}/table")))
times = [l.split() for l in open(f"{out}/times")]

ALIASES = {"mqtt": ["mosquitto"], "amqp": ["rabbitmq"]}

def correct(exp, name, product):
    text = f"{name} {product}".lower()
    if name == exp or (exp == "http" and name.startswith("http-")):
        return True
    if exp in ("http", "https"):
        return False
    return exp in (product or "").lower() or any(a in text for a in ALIASES.get(exp, []))

def pw(r):
    res = {}
    for line in open(f"{out}/pw-{r}.jsonl"):
        v = json.loads(line)
        if "port" not in v:  # an unverified host's line
            continue
        res[v["port"]] = (v["service"], " ".join(x for x in (v.get("product"), v.get("version")) if x))
    return res

def nmap(r):
    res = {}
    for port in ET.parse(f"{out}/nmap-{r}.xml").getroot().iter("port"):
        s = port.find("service")
        name, prod = "unknown", ""
        if s is not None:
            name = s.get("name", "unknown")
            if s.get("tunnel") == "ssl" and name == "http":
                name = "https"
            prod = " ".join(x for x in (s.get("product"), s.get("version")) if x)
        res[int(port.get("portid"))] = (name, prod)
    return res

for r in range(1, rounds + 1):
    p, n = pw(r), nmap(r)
    pw_ok = sum(correct(e, *p.get(port, ("-", ""))) for port, e in expected.items())
    nm_ok = sum(correct(e, *n.get(port, ("-", ""))) for port, e in expected.items())
    _, t0, t1, t2 = times[r - 1]
    tp, tn = float(t1) - float(t0), float(t2) - float(t1)
    print(f"round {r}: portwatch {pw_ok}/{len(expected)} correct in {tp:.2f} s; "
          f"nmap -sV {nm_ok}/{len(expected)} correct in {tn:.2f} s; nmap/portwatch time {tn/tp:.1f}x")
    print()
    print("| port | expected | portwatch | ok | nmap -sV | ok |")
    print("|---:|---|---|:-:|---|:-:|")
    for port, e in sorted(expected.items()):
        pn, pp = p.get(port, ("-", "")); nn, np_ = n.get(port, ("-", ""))
        print(f"| {port} | {e} | {pn} {pp} | {'✓' if correct(e, pn, pp) else '✗'} "
              f"| {nn} {np_} | {'✓' if correct(e, nn, np_) else '✗'} |")
    print()
PY
