#!/usr/bin/env python3
"""HTTP API benchmark: requests/s and latency for login, folder list and message pages.

By default it starts a throwaway rmail (``run.py`` in a temporary directory, loopback,
free ports), fills alice's INBOX with N messages through the API, and measures, at each
concurrency (keep-alive connections, each sending its next request when the previous
answer is in):

- ``POST /auth/login``
- ``GET /folders``
- ``GET /folders/INBOX/messages?offset=0&limit=25``      (the first page)
- ``GET /folders/INBOX/messages?offset=9000&limit=25``   (a page deep in the folder)

and, as the yardstick, the same load against a bare Twisted Web resource answering a
fixed JSON body in another process.  Every response status is checked; a failed request
counts as failed, never as ok.  Only loopback targets are used.

Examples:
  .venv/bin/python bench/http_api.py
  .venv/bin/python bench/http_api.py --messages 2000 --duration 2 --connections 10
  .venv/bin/python bench/http_api.py --port 9002 --user alice@example.com --password pw \
      --folder Archive --messages 10000     # a running server: page a folder of 10,000
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

BARE_SERVER = """
import sys
from twisted.internet import reactor
from twisted.web import resource, server

class Bare(resource.Resource):
    isLeaf = True
    def render_GET(self, request):
        request.setHeader(b"Content-Type", b"application/json")
        return b'{"folders": []}'

port = reactor.listenTCP(0, server.Site(Bare()), interface="127.0.0.1")
print(port.getHost().port, flush=True)
reactor.run()
"""


class Stats:
    def __init__(self):
        self.ok = 0
        self.failed = 0
        self.latencies = []
        self.errors = {}

    def percentile_ms(self, p):
        s = sorted(self.latencies)
        return s[max(0, math.ceil(p / 100 * len(s)) - 1)] * 1e3 if s else float("nan")


async def _read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    length = int(match.group(1)) if match else 0
    body = await reader.readexactly(length) if length else b""
    return status, body


def _request(method, path, host, token=None, body=b""):
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if body:
        lines.append("Content-Type: application/json")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _connection(host, port, request, expect, deadline, stats):
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.monotonic() < deadline:
            start = time.monotonic()
            writer.write(request)
            status, _ = await _read_response(reader)
            if status == expect:
                stats.ok += 1
                stats.latencies.append(time.monotonic() - start)
            else:
                stats.failed += 1
                stats.errors[status] = stats.errors.get(status, 0) + 1
    finally:
        writer.close()


async def measure(host, port, request, expect, connections, duration):
    stats = Stats()
    start = time.monotonic()
    deadline = start + duration
    await asyncio.gather(*(_connection(host, port, request, expect, deadline, stats)
                           for _ in range(connections)))
    return stats, time.monotonic() - start


async def _call(host, port, method, path, token=None, body=b""):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(_request(method, path, f"{host}:{port}", token, body))
    status, data = await _read_response(reader)
    writer.close()
    return status, data


async def login(host, port, user, password):
    body = json.dumps({"username": user, "password": password}).encode()
    status, data = await _call(host, port, "POST", "/auth/login", body=body)
    if status != 200:
        raise SystemExit(f"login failed: {status} {data!r}")
    return json.loads(data)["token"], body


async def fill(host, port, token, count, connections=50):
    """Append *count* small messages to INBOX over the API (group commits make it quick)."""
    numbers = iter(range(1, count + 1))

    async def worker():
        reader, writer = await asyncio.open_connection(host, port)
        for n in numbers:
            raw = (f"From: Sender {n} <s{n}@example.net>\r\nTo: alice@example.com\r\n"
                   f"Subject: bench message {n}\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
                   f"\r\nbody {n}\r\n").encode()
            head = (f"POST /folders/INBOX/messages HTTP/1.1\r\nHost: {host}\r\n"
                    f"Authorization: Bearer {token}\r\nContent-Length: {len(raw)}\r\n\r\n")
            writer.write(head.encode() + raw)
            status, data = await _read_response(reader)
            if status != 201:
                raise SystemExit(f"append failed: {status} {data!r}")
        writer.close()
    await asyncio.gather(*(worker() for _ in range(connections)))


def start_rmail(directory):
    from rmail import config as rconfig
    from rmail.directory import Directory
    listen = rconfig.Listen(address="127.0.0.1", smtp=0, submission=0, submissions=0,
                            imap=0, imaps=0, http=0)
    config = rconfig.Config(hostname="mail.example.com", domains=["example.com"],
                            listen=listen, http=rconfig.HTTP(jwt_secret="bench-" + "k" * 40))
    path = os.path.join(directory, "config.json")
    with open(path, "w") as f:
        json.dump(config.to_dict(), f)
    cert_dir = os.path.join(directory, "data", "tls")
    os.makedirs(cert_dir, exist_ok=True)
    from rmail.tls import generate_self_signed
    generate_self_signed("mail.example.com", os.path.join(cert_dir, "cert.pem"),
                         os.path.join(cert_dir, "key.pem"))
    Directory(os.path.join(directory, "data"), ["example.com"]).add_user(
        "alice@example.com", "bench-pw")
    log_path = os.path.join(directory, "rmail.log")
    with open(log_path, "wb") as log:  # a file, not a pipe: one log line per login
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "run.py"), path],
                                stdout=log, stderr=subprocess.STDOUT, cwd=directory,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        with open(log_path, "rb") as f:
            match = re.search(rb"HTTP 127\.0\.0\.1:(\d+)", f.read())
        if match:
            return proc, int(match.group(1))
        time.sleep(0.1)
    stop(proc)
    with open(log_path, "rb") as f:
        raise SystemExit("rmail did not start:\n" + f.read().decode())


def start_bare():
    proc = subprocess.Popen([sys.executable, "-c", BARE_SERVER], stdout=subprocess.PIPE)
    return proc, int(proc.stdout.readline())


def stop(proc):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


async def run(args):
    host = "127.0.0.1"
    procs = []
    tmp = None
    try:
        if args.port:
            port, user, password = args.port, args.user, args.password
        else:
            tmp = tempfile.mkdtemp(prefix="rmail-bench-")
            proc, port = start_rmail(tmp)
            procs.append(proc)
            user, password = "alice@example.com", "bench-pw"
        token, login_body = await login(host, port, user, password)
        if not args.port:
            started = time.monotonic()
            await fill(host, port, token, args.messages)
            print(f"filled INBOX with {args.messages} messages in "
                  f"{time.monotonic() - started:.1f}s over the API", flush=True)
        bare_proc, bare_port = start_bare()
        procs.append(bare_proc)
        deep = max(0, args.messages - 1000)
        pages = f"/folders/{urllib.parse.quote(args.folder, safe='')}/messages"
        first = _request("GET", f"{pages}?offset=0&limit=25", host, token)
        deep_page = _request("GET", f"{pages}?offset={deep}&limit=25", host, token)
        cases = [
            ("bare Twisted GET", bare_port, _request("GET", "/", host), 200),
            ("POST /auth/login", port, _request("POST", "/auth/login", host, body=login_body), 200),
            ("GET /folders", port, _request("GET", "/folders", host, token), 200),
            ("page offset=0", port, first, 200),
            (f"page offset={deep}", port, deep_page, 200),
        ]
        print(f"{'case':<28} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'failed':>6}")
        await _run_cases(host, cases, args)
        if not args.port:
            # With a gap in the UIDs the page is found from the folder's full UID list.
            status, _ = await _call(host, port, "DELETE", "/folders/INBOX/messages/1", token)
            assert status == 204, status
            await _run_cases(host, [("page offset=0 (UID gap)", port, first, 200),
                                    (f"page offset={deep} (UID gap)", port, deep_page, 200)],
                             args)
    finally:
        for proc in procs:
            stop(proc)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


async def _run_cases(host, cases, args):
    for connections in args.connections:
        for name, target_port, request, expect in cases:
            stats, elapsed = await measure(host, target_port, request, expect, connections,
                                           args.duration)
            print(f"{name:<28} {connections:>5} {stats.ok / elapsed:>9.0f} "
                  f"{stats.percentile_ms(50):>8.1f} {stats.percentile_ms(99):>8.1f} "
                  f"{stats.failed:>6}" + (f"  {stats.errors}" if stats.errors else ""),
                  flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10000,
                        help="messages put in INBOX first (default 10000)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per case")
    parser.add_argument("--connections", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--port", type=int, help="use a running rmail on 127.0.0.1:PORT")
    parser.add_argument("--folder", default="INBOX",
                        help="with --port: the folder to page (it should hold --messages)")
    parser.add_argument("--user", default="alice@example.com")
    parser.add_argument("--password")
    args = parser.parse_args()
    if args.port and not args.password:
        parser.error("--port needs --password")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
