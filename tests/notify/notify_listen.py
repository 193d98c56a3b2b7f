#!/usr/bin/env python3
"""notify_listen.py -- stand in for systemd's notify socket in the tests.

Binds a Unix datagram socket at --socket and appends every message it
receives to --log as one JSON line: {"t": <monotonic seconds>, "fields":
{"READY": "1", ...}, "raw": "..."}. Stops after --seconds or on SIGTERM.
"""
import argparse
import json
import os
import signal
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--seconds", type=float, default=120)
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if os.path.exists(args.socket):
        os.unlink(args.socket)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(args.socket)
    deadline = time.monotonic() + args.seconds
    with open(args.log, "a", buffering=1) as log:
        while time.monotonic() < deadline:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                data = s.recv(65536)
            except socket.timeout:
                continue
            text = data.decode("utf-8", "replace")
            fields = {}
            for line in text.split("\n"):
                if "=" in line:
                    k, v = line.split("=", 1)
                    fields[k] = v
            log.write(json.dumps({"t": time.monotonic(), "fields": fields, "raw": text}) + "\n")


if __name__ == "__main__":
    main()
