"""Accepting TCP listeners for the lab: `python3 listen.py PORT...`, dual-stack
(IPv4 and IPv6 on every address of the namespace).

Each connection is accepted and closed at once, like a service that answers; a
listener that never accepts would fill its backlog and then look filtered.
Stops by itself after an hour (the lab script kills it long before).
"""
import selectors
import socket
import sys
import time

sel = selectors.DefaultSelector()
for port in map(int, sys.argv[1:]):
    try:
        s = socket.socket(socket.AF_INET6)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::", port))
    except OSError:  # no IPv6 here: IPv4 only
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
    s.listen(4096)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
deadline = time.time() + 3600
while time.time() < deadline:
    for key, _ in sel.select(1):
        try:
            conn, _ = key.fileobj.accept()
            conn.close()
        except OSError:
            pass
