#!/usr/bin/env python3
"""Outbound relay benchmark: how fast rmail empties a full queue, and at what memory.

1. Starts a DNS server (twisted.names, in this process) for D domains ``dN.bench.test``,
   each with its MX on its own loopback address (127.0.0.2, 127.0.0.3 ...), and a sink
   SMTP server on each: Postfix's ``smtp-sink`` when installed (C, 250 to everything, no
   TLS), else a small Twisted sink in a child process (``--sink python``, which can offer
   STARTTLS with ``--tls``).
2. Starts rmail (``run.py``, a real process) whose relay asks that DNS server and whose
   ``relay.port`` is the sinks' port, with the sinks not yet listening: every message
   submitted is queued and deferred.  Submits N messages (``--clients`` concurrent
   logged-in smtplib sessions, one recipient each, domains in turn): the accept rate.
3. Stops rmail, starts the sinks, starts rmail again, and times from
   ``run.py queue retry --all`` (every message was deferred for an hour) until the
   queue directory is empty: the drain rate (messages/s), and rmail's peak resident
   memory (VmHWM) from its start to the end of the drain.

Everything is on 127.0.0.0/8.  Example:

    .venv/bin/python bench/relay.py --messages 1000 --domains 10
"""

import argparse
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from twisted.internet import reactor  # noqa: E402
from twisted.names import authority, dns, server  # noqa: E402

from rmail import config as rconfig  # noqa: E402
from rmail.directory import Directory  # noqa: E402
from rmail.tls import generate_self_signed  # noqa: E402

SMTP_SINK = shutil.which("smtp-sink") or ("/usr/sbin/smtp-sink"
                                          if os.path.exists("/usr/sbin/smtp-sink") else None)


# -- DNS ------------------------------------------------------------------------------------

class Zone(authority.FileAuthority):
    def __init__(self, domains):
        self.domains = domains
        super().__init__(None)

    def loadFile(self, filename):
        self.soa = (b"bench.test", dns.Record_SOA(mname=b"ns.bench.test", rname=b"r.bench.test",
                                                  serial=1, minimum=300, expire=300, ttl=300))
        self.records = {b"bench.test": [self.soa[1]]}
        for i in range(self.domains):
            self.records[f"d{i}.bench.test".encode()] = [
                dns.Record_MX(10, f"mx{i}.bench.test".encode(), ttl=300)]
            self.records[f"mx{i}.bench.test".encode()] = [dns.Record_A(f"127.0.0.{i + 2}", ttl=300)]


def start_dns(domains) -> str:
    threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False},
                     daemon=True).start()
    ready = threading.Event()
    box = {}

    def listen():
        factory = server.DNSServerFactory(authorities=[Zone(domains)])
        factory.noisy = False
        box["port"] = reactor.listenUDP(0, dns.DNSDatagramProtocol(factory),
                                        interface="127.0.0.1").getHost().port
        ready.set()
    reactor.callFromThread(listen)
    ready.wait(10)
    return f"127.0.0.1:{box['port']}"


# -- sinks ----------------------------------------------------------------------------------

def common_port(addresses) -> int:
    for _ in range(100):
        probe = socket.socket()
        probe.bind((addresses[0], 0))
        port = probe.getsockname()[1]
        held = []
        try:
            for a in addresses[1:]:
                s = socket.socket()
                held.append(s)
                s.bind((a, port))
            return port
        except OSError:
            continue
        finally:
            probe.close()
            for s in held:
                s.close()
    raise SystemExit("no port free on all sink addresses")


def start_sinks(kind, addresses, port, tls, cert, key):
    procs = []
    for address in addresses:
        if kind == "smtp-sink":
            argv = [SMTP_SINK, "-u", "nobody", "-8", "-p", f"{address}:{port}", "256"]
        else:
            argv = [sys.executable, os.path.abspath(__file__), "--sink-worker",
                    f"{address}:{port}", "--cert", cert, "--key", key] + (["--tls"] if tls else [])
        procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    deadline = time.monotonic() + 20
    for address in addresses:
        while True:
            try:
                socket.create_connection((address, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"sink on {address}:{port} did not start")
                time.sleep(0.05)
    return procs


def sink_worker(where, tls, cert, key):
    """A minimal Twisted SMTP sink: 250 to everything, STARTTLS when asked."""
    from twisted.protocols.basic import LineReceiver
    from twisted.internet import protocol
    from rmail.tls import ServerTLS
    context = ServerTLS(cert, key) if tls else None

    class Sink(LineReceiver):
        def connectionMade(self):
            self.data = False
            self.sendLine(b"220 sink ESMTP")

        def lineReceived(self, line):
            if self.data:
                if line == b".":
                    self.data = False
                    self.sendLine(b"250 2.0.0 Ok")
                return
            verb = line[:4].upper()
            if verb == b"EHLO":
                ext = [b"sink", b"PIPELINING", b"8BITMIME", b"SIZE 100000000"]
                if context is not None and not self.transport.TLS:
                    ext.append(b"STARTTLS")
                for i, e in enumerate(ext):
                    self.sendLine(b"250" + (b"-" if i < len(ext) - 1 else b" ") + e)
            elif verb == b"STAR":
                self.sendLine(b"220 2.0.0 Go")
                self.transport.startTLS(context)
            elif verb == b"DATA":
                self.data = True
                self.sendLine(b"354 Go")
            elif verb == b"QUIT":
                self.sendLine(b"221 Bye")
                self.transport.loseConnection()
            else:
                self.sendLine(b"250 2.0.0 Ok")

    host, port = where.rsplit(":", 1)
    reactor.listenTCP(int(port), protocol.ServerFactory.forProtocol(Sink), backlog=256,
                      interface=host)
    reactor.run()


# -- rmail --------------------------------------------------------------------------------------

class Rmail:
    def __init__(self, config, log_path=None):
        self.log = open(log_path, "ab") if log_path else None
        self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "run.py"), config],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.output = b""
        line = self.wait_for(rb"rmail: serving .*")
        self.submission = int(re.search(rb"submission \(STARTTLS\) [\d.]+:(\d+)", line).group(1))
        self.started = time.monotonic()
        threading.Thread(target=self._drain, daemon=True).start()

    def wait_for(self, pattern, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.output)
            if m:
                return m.group(0)
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                break
            self.output += chunk
        raise SystemExit("rmail did not start:\n" + self.output.decode(errors="replace"))

    def _drain(self):
        if self.log:
            self.log.write(self.output)
        while True:
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                break
            if self.log:
                self.log.write(chunk)
                self.log.flush()

    def peak_rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def write_config(directory, dns_address, port):
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    generate_self_signed("mail.example.com", cert, key)
    config = rconfig.Config(
        hostname="mail.example.com", domains=["example.com"],
        listen=rconfig.Listen(address="127.0.0.1", smtp=0, submission=0, submissions=None,
                              imap=None, imaps=None, http=None),
        tls=rconfig.TLS(cert=cert, key=key), http=rconfig.HTTP(jwt_secret="x" * 40),
        relay=rconfig.Relay(dns_servers=[dns_address], port=port, retry_intervals=[3600]))
    path = os.path.join(directory, "config.json")
    with open(path, "w") as f:
        json.dump(config.to_dict(), f)
    Directory(rconfig.load(path).mail_root_path, ["example.com"]).add_user(
        "alice@example.com", "alice-pw")
    return path, cert, key


def submit_all(port, messages, domains, clients, size):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    body = "x" * 76 + "\r\n"
    filler = body * max(0, (size - 200) // len(body))
    errors = []

    def worker(k):
        try:
            s = smtplib.SMTP("127.0.0.1", port, timeout=60)
            s.starttls(context=ctx)
            s.login("alice@example.com", "alice-pw")
            for n in range(k, messages, clients):
                rcpt = f"user{n}@d{n % domains}.bench.test"
                s.sendmail("alice@example.com", [rcpt],
                           f"From: alice@example.com\r\nTo: {rcpt}\r\nSubject: bench {n}\r\n"
                           f"\r\n{filler}")
            s.quit()
        except Exception as e:  # reported below
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"submission failed: {errors[0]!r}")
    return time.monotonic() - start


def queued(config) -> int:
    entries = os.path.join(rconfig.load(config).mail_root_path, "queue", "entries")
    return sum(1 for n in os.listdir(entries) if n.endswith(".json"))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=1000)
    p.add_argument("--domains", type=int, default=10)
    p.add_argument("--size", type=int, default=2000, help="bytes per message (about)")
    p.add_argument("--clients", type=int, default=10, help="concurrent submission sessions")
    p.add_argument("--sink", choices=["auto", "smtp-sink", "python"], default="auto")
    p.add_argument("--tls", action="store_true", help="the python sink offers STARTTLS")
    p.add_argument("--keep", action="store_true", help="keep the work directory and rmail's log")
    p.add_argument("--sink-worker", help=argparse.SUPPRESS)
    p.add_argument("--cert", help=argparse.SUPPRESS)
    p.add_argument("--key", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.sink_worker:
        return sink_worker(args.sink_worker, args.tls, args.cert, args.key)
    kind = args.sink if args.sink != "auto" else ("smtp-sink" if SMTP_SINK and not args.tls
                                                   else "python")
    if kind == "smtp-sink" and (not SMTP_SINK or args.tls):
        raise SystemExit("smtp-sink is not installed (or cannot do --tls); use --sink python")
    addresses = [f"127.0.0.{i + 2}" for i in range(args.domains)]
    work = tempfile.mkdtemp(prefix="rmail-relay-bench-")
    sinks = []
    try:
        dns_address = start_dns(args.domains)
        port = common_port(addresses)
        config, cert, key = write_config(work, dns_address, port)
        log_path = os.path.join(work, "rmail.log") if args.keep else None
        rmail = Rmail(config, log_path)
        accept = submit_all(rmail.submission, args.messages, args.domains, args.clients,
                            args.size)
        deadline = time.monotonic() + 120
        while queued(config) < args.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        rmail.stop()
        print(f"queued {args.messages} messages ({args.size} bytes, {args.domains} domains, "
              f"{args.clients} sessions) in {accept:.2f} s: {args.messages / accept:.0f} msg/s "
              f"accepted into the queue")
        sinks = start_sinks(kind, addresses, port, args.tls, cert, key)
        rmail = Rmail(config, log_path)
        start = time.monotonic()
        subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), "queue", "retry", "--all",
                        "--config", config], check=True)
        while queued(config) and time.monotonic() - start < 600:
            time.sleep(0.02)
        drain = time.monotonic() - start
        left = queued(config)
        peak = rmail.peak_rss_mb()
        rmail.stop()
        print(f"drained {args.messages - left} messages to {args.domains} {kind} sinks"
              f"{' over STARTTLS' if args.tls else ''} in {drain:.2f} s: "
              f"{(args.messages - left) / drain:.0f} msg/s; rmail peak RSS {peak:.0f} MB"
              + (f"; {left} LEFT IN THE QUEUE" if left else ""))
        return 1 if left else 0
    finally:
        for s in sinks:
            s.terminate()
            s.wait(10)
        if args.keep:
            print(f"kept {work} (rmail's log: {work}/rmail.log)")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
