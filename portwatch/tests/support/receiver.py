"""A webhook receiver for the notification tests: a real HTTP server (Python's
http.server) that records every request as one JSON line and answers 500 to the
first FAIL_FIRST requests, then 200.

Usage: receiver.py HOST PORT LOG_FILE SECRET FAIL_FIRST [CERT KEY]

With CERT and KEY it speaks HTTPS.

Each line: path, headers, the body as text, the status answered, and whether each
signature present is valid for SECRET, checked here with Python's hmac, as the
services' own documentation does it, independently of portwatch's code:
- signature_valid: X-Portwatch-Signature = "sha256=" + hex HMAC-SHA256(SECRET,
  X-Portwatch-Timestamp + "." + raw body), and that timestamp within 5 minutes of now
  (older is a replay);
- dingtalk_valid: query timestamp (ms) and sign = base64 HMAC-SHA256(SECRET, "ts\nSECRET");
- feishu_valid: body timestamp (s) and sign = base64 HMAC-SHA256("ts\nSECRET", "").
"""

import base64
import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def b64_hmac(key, message):
    return base64.b64encode(hmac.new(key.encode(), message.encode(), hashlib.sha256).digest()).decode()


def robot_signatures(path, body):
    out = {}
    query = parse_qs(urlsplit(path).query)
    if "sign" in query and "timestamp" in query:
        ts = query["timestamp"][0]
        out["dingtalk_valid"] = hmac.compare_digest(query["sign"][0], b64_hmac(secret, f"{ts}\n{secret}"))
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and "sign" in doc and "timestamp" in doc:
        out["feishu_valid"] = hmac.compare_digest(doc["sign"], b64_hmac(f"{doc['timestamp']}\n{secret}", ""))
    return out

host, port, log_path, secret, fail_first = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
tls = sys.argv[6:8]
lock = threading.Lock()
seen = 0


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global seen
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with lock:
            seen += 1
            status = 500 if seen <= fail_first else 200
            # Signed over "{timestamp}." and the body; a stale timestamp (a replay) fails.
            timestamp = self.headers.get("X-Portwatch-Timestamp", "")
            fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= 300
            signed = timestamp.encode() + b"." + body
            expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
            line = {
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
                "status": status,
                "signature_valid": fresh and hmac.compare_digest(expected, self.headers.get("X-Portwatch-Signature", "")),
            }
            line.update(robot_signatures(self.path, body.decode("utf-8", "replace")))
            with open(log_path, "a") as f:
                f.write(json.dumps(line) + "\n")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ok":true}' if status == 200 else b'{"error":"planned failure"}')

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer((host, port), Handler)
if tls:
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls[0], tls[1])
    server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
