"""A webhook receiver for the notification tests: a real HTTP server (Python's
http.server) that records every request as one JSON line and answers 500 to the
first FAIL_FIRST requests, then 200.

Usage: receiver.py HOST PORT LOG_FILE SECRET FAIL_FIRST

Each line: path, headers, the body as text, the status answered, and whether the
X-Portwatch-Signature header is the HMAC-SHA256 of the raw body keyed with SECRET
(checked here with Python's hmac, independently of portwatch's code).
"""

import hashlib
import hmac
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

host, port, log_path, secret, fail_first = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
lock = threading.Lock()
seen = 0


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global seen
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with lock:
            seen += 1
            status = 500 if seen <= fail_first else 200
            expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            line = {
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
                "status": status,
                "signature_valid": hmac.compare_digest(expected, self.headers.get("X-Portwatch-Signature", "")),
            }
            with open(log_path, "a") as f:
                f.write(json.dumps(line) + "\n")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ok":true}' if status == 200 else b'{"error":"planned failure"}')

    def log_message(self, *args):
        pass


ThreadingHTTPServer((host, port), Handler).serve_forever()
