#!/usr/bin/env python3
"""webhook_sink.py - a local HTTP webhook receiver for pgeventd's tests.

It verifies every signature itself (Python standard library only, written
independently of the sender) and logs everything it sees.

Usage:
  python3 tests/sink/webhook_sink.py --config CONFIG.json --log LOG.jsonl \
      [--port 0] [--port-file FILE] [--host 127.0.0.1]

With --port 0 an ephemeral port is bound; --port-file receives its number
(written atomically) once the sink is listening. SIGTERM/SIGINT stop it (exit 0).

POST /<key>. CONFIG.json is re-read on every request; an unknown key gets 404:
  {"alpha": {"scheme": "standard",          # | timestamped_hex | body_hex
             "secrets": ["whsec_..."],      # a signature matching ANY secret is ok
             "script": ["500", "500", "200"],  # answer to the n-th request
             "then": "200",                 # for the same message id, after the script
             "id_header": "webhook-id", "timestamp_header": "webhook-timestamp",
             "signature_header": "webhook-signature",
             "tolerance": 300}}             # optional: max |now - timestamp| in s
Answers: "<code>" (3xx adds Location: /elsewhere), "429:2" / "503:3" (adds
Retry-After), "slow:0.5" (200 after 0.5 s), "hang" (never answer; give up after 120 s or when the client
disconnects), "close" (close the socket without answering).

Each request appends one JSON line to LOG.jsonl, written BEFORE the answer:
  t, key, id, timestamp, sig_ok, sig_error, status (int, "hang" or "close"),
  n (per key+message id, 1-based), body_sha256, event_id, event_type, body_ok,
  user_agent, content_type.
"""
import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import select
import signal
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_HEADERS = {  # scheme -> (id, timestamp, signature)
    "standard": ("webhook-id", "webhook-timestamp", "webhook-signature"),
    "timestamped_hex": ("X-Delivery-Id", None, "X-Buddy-Signature"),
    "body_hex": ("X-Webhook-Id", "X-Webhook-Timestamp", "X-Webhook-Signature"),
}
EVENT_KEYS = ("id", "type", "timestamp", "aggregate", "data")
HANG_LIMIT = 120.0

STOP = threading.Event()
LOG_LOCK = threading.Lock()
COUNT_LOCK = threading.Lock()
COUNTS = {}  # (key, message id) -> requests seen


def hmac256(key, msg):
    return hmac.new(key, msg, hashlib.sha256).digest()


def same(a, b):
    return hmac.compare_digest(a.encode("latin-1"), b.encode("latin-1"))


def verify(scheme, secrets, msg_id, ts_header, sig, body):
    """Return (timestamp, error); error is None when the signature is valid."""
    if scheme == "standard":
        if msg_id is None or ts_header is None:
            return ts_header, "missing id or timestamp header"
        sigs = [s[3:] for s in sig.split(" ") if s.startswith("v1,")]
        if not sigs:
            return ts_header, "bad format: no v1,<base64> entry"
        signed = ("%s.%s." % (msg_id, ts_header)).encode("latin-1") + body
        for secret in secrets:
            raw = secret[6:] if secret.startswith("whsec_") else secret
            try:
                key = base64.b64decode(raw, validate=True)
            except binascii.Error:
                return ts_header, "config: secret is not base64"
            want = base64.b64encode(hmac256(key, signed)).decode()
            if any(same(want, s) for s in sigs):
                return ts_header, None
        return ts_header, "mismatch"
    if scheme == "timestamped_hex":
        ts, hexes = None, []
        for part in sig.split(","):
            k, eq, v = part.partition("=")
            if not eq:
                return None, "bad format: %r" % part
            if k == "t":
                ts = v
            elif k == "v1":
                hexes.append(v)
        if ts is None or not hexes:
            return ts, "bad format: need t= and v1="
        signed = ts.encode("latin-1") + b"." + body
        for secret in secrets:
            want = hmac256(secret.encode(), signed).hex()
            if any(same(want, h) for h in hexes):
                return ts, None
        return ts, "mismatch"
    if scheme == "body_hex":
        if not sig.startswith("sha256="):
            return ts_header, "bad format: need sha256=<hex>"
        for secret in secrets:
            if same("sha256=" + hmac256(secret.encode(), body).hex(), sig):
                return ts_header, None
        return ts_header, "mismatch"
    return ts_header, "config: unknown scheme %r" % scheme


def load_config(path):
    for attempt in range(10):  # tolerate a test rewriting the file right now
        try:
            with open(path, encoding="utf-8") as f:
                cfg = json.load(f)
            if isinstance(cfg, dict):
                return cfg, None
            err = "config is not a JSON object"
        except (OSError, ValueError) as e:
            err = "config: %s" % e
        time.sleep(0.02)
    return None, err


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real receiver
    server_version = "webhook-sink/1"

    def log_message(self, fmt, *args):  # quiet: LOG.jsonl is the record
        pass

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self):
        t = time.time()
        key = urllib.parse.urlsplit(self.path).path.lstrip("/")
        body = self.read_body()
        cfg, cfg_err = load_config(self.server.config_path)
        sub = cfg.get(key) if cfg is not None else None
        rec = {"t": t, "key": key, "id": None, "timestamp": None,
               "sig_ok": False, "sig_error": None, "status": None, "n": None,
               "body_sha256": hashlib.sha256(body).hexdigest(),
               "event_id": None, "event_type": None, "body_ok": False,
               "user_agent": self.headers.get("User-Agent"),
               "content_type": self.headers.get("Content-Type")}
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            rec["event_id"], rec["event_type"] = doc.get("id"), doc.get("type")
            rec["body_ok"] = all(k in doc for k in EVENT_KEYS)

        if not isinstance(sub, dict):
            rec["sig_error"] = cfg_err or "unknown key"
            rec["status"] = 500 if cfg_err else 404
            self.log_rec(rec)
            return self.answer(str(rec["status"]))

        scheme = sub.get("scheme", "standard")
        d_id, d_ts, d_sig = DEFAULT_HEADERS.get(scheme, DEFAULT_HEADERS["standard"])
        h_id = sub.get("id_header", d_id)
        h_ts = sub.get("timestamp_header", d_ts)
        h_sig = sub.get("signature_header", d_sig)
        msg_id = self.headers.get(h_id)
        ts_val = self.headers.get(h_ts) if h_ts else None
        sig = self.headers.get(h_sig)
        rec["id"], rec["timestamp"] = msg_id, ts_val
        if sig is None:
            rec["sig_error"] = "missing %s" % h_sig
        else:
            ts, err = verify(scheme, sub.get("secrets", []), msg_id, ts_val, sig, body)
            rec["timestamp"] = ts
            tol = sub.get("tolerance")
            if err is None and tol is not None:
                try:
                    if abs(time.time() - int(ts)) > float(tol):
                        err = "timestamp outside tolerance"
                except (TypeError, ValueError):
                    err = "bad timestamp %r" % ts
            rec["sig_ok"], rec["sig_error"] = err is None, err

        count_id = msg_id if msg_id is not None else rec["event_id"]
        with COUNT_LOCK:
            n = COUNTS.get((key, str(count_id)), 0) + 1
            COUNTS[(key, str(count_id))] = n
        script = sub.get("script", [])
        answer = str(script[n - 1] if n <= len(script) else sub.get("then", "200"))
        rec["n"] = n
        if answer.startswith("slow:"):  # "slow:0.5": answer 200 after 0.5 s
            rec["status"] = 200
        else:
            rec["status"] = answer if answer in ("hang", "close") else int(answer.split(":")[0])
        self.log_rec(rec)
        self.answer(answer)

    def log_rec(self, rec):
        line = json.dumps(rec, sort_keys=True) + "\n"
        with LOG_LOCK:
            self.server.log_file.write(line)
            self.server.log_file.flush()

    def answer(self, answer):
        if answer == "close":
            self.close_connection = True
            return
        if answer == "hang":
            self.close_connection = True
            return self.hang()
        if answer.startswith("slow:"):
            time.sleep(float(answer[5:]))
            answer = "200"
        code, _, retry_after = answer.partition(":")
        code = int(code)
        payload = b"%d\n" % code
        self.send_response(code)
        if retry_after:
            self.send_header("Retry-After", retry_after)
        if 300 <= code < 400:
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def hang(self):
        """Answer nothing until the client disconnects, 120 s pass, or we stop."""
        deadline = time.monotonic() + HANG_LIMIT
        sock = self.connection
        while not STOP.is_set() and time.monotonic() < deadline:
            ready, _, _ = select.select([sock], [], [], 0.2)
            if ready:
                try:
                    if not sock.recv(4096):  # EOF: the client gave up
                        return
                except OSError:
                    return


def main():
    ap = argparse.ArgumentParser(description="pgeventd test webhook sink")
    ap.add_argument("--config", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 1024
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.config_path = args.config
    server.log_file = open(args.log, "a", encoding="utf-8")
    stopped = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stopped.set())

    worker = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    worker.start()
    if args.port_file:
        tmp = "%s.tmp.%d" % (args.port_file, os.getpid())
        with open(tmp, "w") as f:
            f.write("%d\n" % server.server_address[1])
        os.replace(tmp, args.port_file)
    while not stopped.wait(0.5):
        if not worker.is_alive():
            return 1
    STOP.set()
    server.shutdown()
    server.server_close()  # the log stays open: a hanging thread may still write
    return 0


if __name__ == "__main__":
    sys.exit(main())
