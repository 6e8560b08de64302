#!/usr/bin/env python3
"""Loopback peers for scripts/soak: an HTTP service that accepts every POST (counting the
events in each body) and a statsd listener that keeps the latest counter and gauge values.
Every second it writes a JSON snapshot to the given file. Loopback only."""
import json, socket, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

snapshot_path = sys.argv[1]
state = {"http_requests": 0, "http_events": 0, "statsd": {}}
lock = threading.Lock()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        events = body.count(b'"sequence":')
        with lock:
            state["http_requests"] += 1
            state["http_events"] += events
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass

http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", 0))

def statsd():
    while True:
        data, _ = udp.recvfrom(65536)
        for line in data.decode(errors="replace").splitlines():
            try:
                name, rest = line.split(":", 1)
                value, kind = rest.split("|")[:2]
                value = float(value)
                if name.startswith("pauditd."):
                    name = name.split(".", 2)[2]  # pauditd.<host>.<metric>
            except ValueError:
                continue
            with lock:
                s = state["statsd"]
                if kind == "c":
                    s[name] = s.get(name, 0) + value
                elif kind == "g":
                    s[name] = value

def dump():
    while True:
        with lock:
            text = json.dumps(state)
        with open(snapshot_path + ".tmp", "w") as f:
            f.write(text)
        import os
        os.replace(snapshot_path + ".tmp", snapshot_path)
        time.sleep(1)

threading.Thread(target=statsd, daemon=True).start()
threading.Thread(target=dump, daemon=True).start()
print(f"http=127.0.0.1:{http.server_address[1]} statsd=127.0.0.1:{udp.getsockname()[1]}", flush=True)
http.serve_forever()
