#!/usr/bin/env bash
# A lab of network namespaces for scanner tests and benchmarks.
#
#   bench/lab.sh up PREFIX [SEED]    build it; prints its description as JSON on stdout
#   bench/lab.sh down PREFIX         kill everything in it and delete it
#
# Topology: the scanner namespace PREFIX-scan (10.77.255.1/29) reaches the hosts
# through a router namespace PREFIX-rt; the hosts share a bridge in PREFIX-sw. No
# namespace has a default route and the router knows only the lab's two networks, so
# no lab traffic can ever leave the machine. (A router also lets masscan, which sends
# every packet to one router MAC, scan the lab like a real network.)
#
#   (IPv6 alongside: fd77:ff::1 scanner, fd77:ff::2 / fd77::254 router, fd77::11-16
#   hosts, fd77::21-25 dead; listeners are dual-stack)
#
#   10.77.255.1, .5  PREFIX-scan   the scanner; only route: 10.77.0.0/24 via the router
#   10.77.255.2 / 10.77.0.254      PREFIX-rt, forwarding between the two
#   10.77.0.11-14    PREFIX-h1..h4 live hosts with accepting listeners on random ports
#                                  (h4 drops ICMP echo but serves TCP)
#   10.77.0.15       PREFIX-hf     firewall drops every packet
#   10.77.0.16       PREFIX-hw     wildcard: every TCP port completes the handshake
#   10.77.0.21-25    (nobody)      dead addresses
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
cmd="${1:-}"; P="${2:-}"
[ -n "$cmd" ] && [ -n "$P" ] || { echo "usage: $0 up|down PREFIX [SEED]" >&2; exit 2; }
[ "${#P}" -le 8 ] || { echo "PREFIX must be at most 8 characters" >&2; exit 2; }
NAMES="scan rt h1 h2 h3 h4 hf hw"
HOSTS="h1 h2 h3 h4 hf hw"

down() {
    for n in sw $NAMES; do
        ns="$P-$n"
        ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$ns" || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    done
    for n in sw $NAMES; do ip netns del "$P-$n" 2>/dev/null || true; done
}

need() { # need COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

up() {
    local seed="${1:-1}"
    need ip iproute2; need nft nftables; need python3 python3
    down
    ip netns add "$P-sw"
    ip -n "$P-sw" link add br0 type bridge
    ip -n "$P-sw" link set br0 up
    ip -n "$P-sw" link set lo up
    for n in $NAMES; do
        ip netns add "$P-$n"
        ip -n "$P-$n" link set lo up
    done
    # scanner <-> router
    ip -n "$P-scan" link add eth0 type veth peer name eth-s netns "$P-rt"
    ip -n "$P-scan" addr add 10.77.255.1/29 dev eth0
    # A second scanner address, for tests of source address selection.
    ip -n "$P-scan" addr add 10.77.255.5/29 dev eth0
    ip -n "$P-scan" link set eth0 up
    ip -n "$P-scan" route add 10.77.0.0/24 via 10.77.255.2
    ip -n "$P-scan" addr add fd77:ff::1/64 dev eth0 nodad
    ip -n "$P-scan" route add fd77::/64 via fd77:ff::2
    ip -n "$P-rt" addr add 10.77.255.2/29 dev eth-s
    ip -n "$P-rt" addr add fd77:ff::2/64 dev eth-s nodad
    ip -n "$P-rt" link set eth-s up
    ip netns exec "$P-rt" sysctl -qw net.ipv4.ip_forward=1
    ip netns exec "$P-rt" sysctl -qw net.ipv6.conf.all.forwarding=1
    # router and hosts <-> bridge
    declare -A addr=([rt]=254 [h1]=11 [h2]=12 [h3]=13 [h4]=14 [hf]=15 [hw]=16)
    for n in rt $HOSTS; do
        ip -n "$P-sw" link add "v$n" type veth peer name eth0 netns "$P-$n"
        ip -n "$P-sw" link set "v$n" master br0 up
        ip -n "$P-$n" addr add "10.77.0.${addr[$n]}/24" dev eth0
        ip -n "$P-$n" addr add "fd77::${addr[$n]}/64" dev eth0 nodad
        ip -n "$P-$n" link set eth0 up
        if [ "$n" != rt ]; then
            ip -n "$P-$n" route add 10.77.255.0/29 via 10.77.0.254
            ip -n "$P-$n" route add fd77:ff::/64 via fd77::254
        fi
    done
    # Ground truth: 25 open ports spread over the four live hosts, drawn from SEED.
    local plan
    plan="$(python3 - "$seed" <<'PY'
import random, sys, json
rng = random.Random(int(sys.argv[1]))
counts = {"h1": 7, "h2": 7, "h3": 6, "h4": 5}
plan = {h: sorted(rng.sample(range(1, 65536), n)) for h, n in counts.items()}
print(json.dumps(plan))
PY
)"
    for h in h1 h2 h3 h4; do
        ports="$(python3 -c "import json,sys; print(' '.join(map(str, json.loads(sys.argv[1])['$h'])))" "$plan")"
        ip netns exec "$P-$h" python3 "$HERE/listen.py" $ports >/dev/null 2>&1 &
        disown
    done
    # h1 counts what arrives from the scanner's second address.
    ip netns exec "$P-h1" nft -f - <<'NFT'
table inet count {
    chain input {
        type filter hook input priority 0;
        ip saddr 10.77.255.5 counter
    }
}
NFT
    # h4 drops ICMP echo requests but serves TCP.
    ip netns exec "$P-h4" nft -f - <<'NFT'
table inet lab {
    chain input {
        type filter hook input priority 0;
        icmp type echo-request drop
    }
}
NFT
    # hf drops everything.
    ip netns exec "$P-hf" nft -f - <<'NFT'
table inet lab {
    chain input {
        type filter hook input priority 0; policy drop;
    }
}
NFT
    # hw answers on every TCP port: all of them are redirected to one listener.
    ip netns exec "$P-hw" python3 "$HERE/listen.py" 9 >/dev/null 2>&1 &
    disown
    ip netns exec "$P-hw" nft -f - <<'NFT'
table ip lab {
    chain pre {
        type nat hook prerouting priority -100;
        tcp dport != 9 redirect to :9
    }
}
table ip6 lab6 {
    chain pre {
        type nat hook prerouting priority -100;
        tcp dport != 9 redirect to :9
    }
}
NFT
    # Wait until every listener is up (bounded).
    for _ in $(seq 1 100); do
        local ready=1
        for h in h1 h2 h3 h4; do
            want="$(python3 -c "import json,sys; print(len(json.loads(sys.argv[1])['$h']))" "$plan")"
            have="$(ip netns exec "$P-$h" ss -ltnH | wc -l)"
            [ "$have" -ge "$want" ] || ready=0
        done
        [ "$(ip netns exec "$P-hw" ss -ltnH | wc -l)" -ge 1 ] || ready=0
        [ "$ready" -eq 1 ] && break
        sleep 0.05
    done
    python3 - "$P" "$plan" <<'PY'
import json, sys
p, plan = sys.argv[1], json.loads(sys.argv[2])
ips = {"h1": "10.77.0.11", "h2": "10.77.0.12", "h3": "10.77.0.13", "h4": "10.77.0.14"}
hosts = [{"ip": ips[h], "ip6": "fd77::" + ips[h].split(".")[-1], "ns": f"{p}-{h}",
          "kind": "icmp_drop" if h == "h4" else "live", "open": plan[h]} for h in ips]
hosts.append({"ip": "10.77.0.15", "ip6": "fd77::15", "ns": f"{p}-hf", "kind": "filtered", "open": []})
hosts.append({"ip": "10.77.0.16", "ip6": "fd77::16", "ns": f"{p}-hw", "kind": "wildcard", "open": []})
print(json.dumps({
    "scanner_ns": f"{p}-scan", "scanner_ip": "10.77.255.1", "cidr": "10.77.0.0/24",
    "router_ns": f"{p}-rt",
    "hosts": hosts, "dead": [f"10.77.0.{i}" for i in range(21, 26)],
    "dead6": [f"fd77::{i}" for i in range(21, 26)],
}))
PY
}

case "$cmd" in
    up) up "${3:-1}" ;;
    down) down ;;
    *) echo "usage: $0 up|down PREFIX [SEED]" >&2; exit 2 ;;
esac
