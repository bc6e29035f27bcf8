#!/usr/bin/env python3
"""Crash loop: kill -9 rmail at random moments under load, N times, and count what was lost.

Runs rmail (``run.py``, a real process) on a temporary directory with loopback ports,
10 SMTP senders (one or two local recipients a message) and 2 IMAP APPEND clients,
all sending without pause.  A random 0.05-0.5 s after each start the server gets
SIGKILL, wherever it is (in DATA, a fsync, a commit, a reply), and is started again.
Every message carries ``X-Ledger: N``; it counts as acknowledged when its client read
250 (SMTP) or OK (APPEND).  At the end the mailboxes are read back over IMAP:

- lost: acknowledged, and not stored;
- duplicated: stored more than once (acknowledged or not);
- problems: also a spool not empty after a start, a UIDVALIDITY that changed, or UIDs
  that went back after a restart (messages carry the number of the start they were
  sent to, and in UID order those numbers never decrease).

It stops after --kills kills or --max-seconds, whichever comes first, and always stops
the server it started.  Prints one line; exit status 1 when anything was lost,
duplicated or wrong.  Everything stays on 127.0.0.1.

    .venv/bin/python bench/crashloop.py --kills 50
"""

import argparse
import imaplib
import json
import os
import random
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from rmail import config as rconfig  # noqa: E402
from rmail.directory import Directory  # noqa: E402
from rmail.tls import generate_self_signed  # noqa: E402

USERS = {"alice@example.com": "alice-pw", "bob@example.com": "bob-pw"}
RECIPIENTS = [["alice@example.com"], ["bob@example.com"], ["alice@example.com", "bob@example.com"]]
CLIENT_ERRORS = (OSError, EOFError, smtplib.SMTPException, imaplib.IMAP4.error)
START_TIMEOUT = 60


class Ledger:
    """What was sent where, in which start (epoch), and what was acknowledged."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sent = {}  # n -> (holders, epoch)
        self.acked = set()
        self.epoch = 0

    def new(self, holders) -> tuple[int, bytes]:
        with self.lock:
            n = len(self.sent) + 1
            self.sent[n] = (tuple(holders), self.epoch)
        return n, (f"From: bench@ext.example\r\nTo: {', '.join(holders)}\r\nSubject: crash "
                   f"loop {n}\r\nX-Ledger: {n}\r\n\r\n" + "body line\r\n" * (n % 40)).encode()

    def ack(self, n):
        with self.lock:
            self.acked.add(n)


class Server:
    """rmail as a process, its output going to a log file (so a full pipe never stalls it);
    the log of the run before is kept beside it."""

    def __init__(self, config, log_path):
        self.log_path = log_path
        self.offset = 0
        if os.path.exists(log_path):  # the run before this one stays, for a post-mortem
            os.replace(log_path, log_path + ".previous")
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "run.py"), config],
                                         stdout=log, stderr=subprocess.STDOUT,
                                         env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.ports = self._wait_serving()

    def _wait_serving(self) -> dict:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(self.offset)
                text = f.read().decode("utf-8", "replace")
            m = re.search(r"rmail: serving \S+: (.*)", text)
            if m:
                return {"smtp": int(re.search(r"SMTP [\d.]+:(\d+)", m.group(1)).group(1)),
                        "imap": int(re.search(r"IMAP \(STARTTLS\) [\d.]+:(\d+)",
                                              m.group(1)).group(1))}
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.kill()
        raise SystemExit(f"rmail did not start; see {self.log_path}:\n{text[-2000:]}")

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)


class Target:
    """The server clients should use now: (ports, generation), or None between starts."""

    def __init__(self):
        self.cond = threading.Condition()
        self.ports = None
        self.generation = 0
        self.done = False

    def publish(self, ports):
        with self.cond:
            self.ports = ports
            self.generation += 1
            self.cond.notify_all()

    def wait(self, after):
        with self.cond:
            self.cond.wait_for(lambda: self.done or (self.ports and self.generation > after), 5)
            if self.done or not self.ports or self.generation <= after:
                return None
            return self.ports, self.generation


def follow_restarts(target, session):
    """Run ``session(ports, current)`` against each server the loop starts, until it
    ends; ``current()`` is false once that server has been killed.  A client error
    waits for the next start."""
    failed = 0
    while not target.done:
        started = target.wait(failed)
        if started is None:
            continue
        ports, generation = started
        try:
            session(ports, lambda: not target.done and target.generation == generation)
        except CLIENT_ERRORS:
            failed = generation


def smtp_client(k, target, ledger):
    def session(ports, current):
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as s:
            i = 0
            while current():
                recipients = RECIPIENTS[(k + i) % len(RECIPIENTS)]
                n, data = ledger.new(recipients)
                s.sendmail("bench@ext.example", recipients, data)
                ledger.ack(n)
                i += 1
    follow_restarts(target, session)


def imap_client(address, target, ledger):
    def session(ports, current):
        conn = imaplib.IMAP4("127.0.0.1", ports["imap"], timeout=10)
        try:
            conn.login(address, USERS[address])
            while current():
                n, data = ledger.new([address])
                if conn.append("INBOX", None, None, data)[0] == "OK":
                    ledger.ack(n)
        finally:
            try:
                conn.shutdown()
            except OSError:
                pass
    follow_restarts(target, session)


def read_mailboxes(port) -> dict:
    """{address: (UIDVALIDITY, [(uid, ledger number or None)])} over IMAP."""
    out = {}
    for address, password in USERS.items():
        conn = imaplib.IMAP4("127.0.0.1", port, timeout=60)
        try:
            conn.login(address, password)
            status, data = conn.select("INBOX", readonly=True)
            uidvalidity = int(conn.response("UIDVALIDITY")[1][0])
            found = []
            if status == "OK" and int(data[0]):
                _, data = conn.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (X-Ledger)])")
                for item in data:
                    if isinstance(item, tuple):
                        number = re.search(rb"X-Ledger:\s*(\d+)", item[1], re.IGNORECASE)
                        found.append((int(re.search(rb"UID (\d+)", item[0]).group(1)),
                                      int(number.group(1)) if number else None))
            out[address] = (uidvalidity, found)
        finally:
            conn.logout()
    return out


def tally(ledger, mailboxes, uidvalidities) -> dict:
    lost = duplicated = stored_unacked = 0
    problems = []
    for address, (uidvalidity, found) in mailboxes.items():
        if uidvalidities.get(address, uidvalidity) != uidvalidity:
            problems.append(f"{address}: UIDVALIDITY changed")
        counts = Counter(n for _, n in found if n is not None)
        latest = 0
        for uid, n in sorted(found):
            if n is None:
                continue
            epoch = ledger.sent[n][1] if n in ledger.sent else None
            if epoch is None or address not in ledger.sent[n][0]:
                problems.append(f"{address}: UID {uid} holds ledger {n}, never sent there")
            elif epoch < latest:
                problems.append(f"{address}: ledger {n} (start {epoch}) has UID {uid}, above "
                                f"a message of start {latest}: a UID went back")
            else:
                latest = epoch
        for n, (holders, _) in ledger.sent.items():
            if address not in holders:
                continue
            if counts[n] > 1:
                duplicated += 1
            elif counts[n] == 0 and n in ledger.acked:
                lost += 1
            elif counts[n] == 1 and n not in ledger.acked:
                stored_unacked += 1
    acked = sum(len(ledger.sent[n][0]) for n in ledger.acked)
    return {"acked": acked, "lost": lost, "duplicated": duplicated,
            "stored_unacked": stored_unacked, "problems": problems}


def write_config(directory) -> str:
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    generate_self_signed("mail.example.com", cert, key)
    config = rconfig.Config(
        hostname="mail.example.com", domains=["example.com"],
        listen=rconfig.Listen(address="127.0.0.1", smtp=0, submission=None, submissions=None,
                              imap=0, imaps=None, http=None),
        tls=rconfig.TLS(cert=cert, key=key), http=rconfig.HTTP(jwt_secret="x" * 40),
        relay=rconfig.Relay(dns_servers=["127.0.0.1:9"]))
    path = os.path.join(directory, "config.json")
    with open(path, "w") as f:
        json.dump(config.to_dict(), f)
    directory_ = Directory(rconfig.load(path).mail_root_path, ["example.com"])
    for address, password in USERS.items():
        directory_.add_user(address, password)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=1000, help="SIGKILLs (default 1000)")
    parser.add_argument("--max-seconds", type=float, default=3600,
                        help="stop killing after this long (default 3600)")
    parser.add_argument("--senders", type=int, default=10, help="SMTP clients (default 10)")
    parser.add_argument("--appenders", type=int, default=2, help="IMAP APPEND clients (2)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (printed)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    work = tempfile.mkdtemp(prefix="rmail-crashloop-")
    config = write_config(work)
    mail_root = rconfig.load(config).mail_root_path
    log_path = os.path.join(work, "rmail.log")
    ledger, target = Ledger(), Target()
    clients = [threading.Thread(target=smtp_client, args=(k, target, ledger), daemon=True)
               for k in range(args.senders)]
    clients += [threading.Thread(target=imap_client, args=(list(USERS)[k % len(USERS)],
                                                          target, ledger), daemon=True)
                for k in range(args.appenders)]
    for c in clients:
        c.start()
    print(f"crashloop: seed {seed}, {args.kills} kills at most, work dir {work}", flush=True)
    start = time.monotonic()
    server = None
    kills = 0
    spool_problems = []
    uidvalidities = {}
    try:
        while True:
            server = Server(config, log_path)
            spool = os.listdir(os.path.join(mail_root, "spool"))
            if spool:
                spool_problems.append(f"start {ledger.epoch + 1}: spool holds {spool}")
            with ledger.lock:
                ledger.epoch += 1
            if kills == 0:
                uidvalidities = {a: v for a, (v, _) in read_mailboxes(server.ports["imap"]).items()}
            if kills >= args.kills or time.monotonic() - start > args.max_seconds:
                break
            target.publish(server.ports)
            time.sleep(rng.uniform(0.05, 0.5))
            target.publish(None)
            server.kill()
            kills += 1
            if kills % 50 == 0:
                print(f"crashloop: {kills} kills, {len(ledger.acked)} messages acknowledged, "
                      f"{time.monotonic() - start:.0f} s", flush=True)
        target.done = True
        target.publish(None)
        for c in clients:
            c.join(15)
        result = tally(ledger, read_mailboxes(server.ports["imap"]), uidvalidities)
    finally:
        target.done = True
        if server is not None:
            server.kill()
    elapsed = time.monotonic() - start
    problems = spool_problems + result["problems"]
    for line in problems[:10]:
        print("problem: " + line)
    print(f"kills={kills} acknowledged={result['acked']} lost={result['lost']} "
          f"duplicated={result['duplicated']} stored_unacknowledged={result['stored_unacked']} "
          f"problems={len(problems)} elapsed={elapsed:.1f}s seed={seed}")
    if args.keep or problems or result["lost"] or result["duplicated"]:
        print(f"crashloop: kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if problems or result["lost"] or result["duplicated"] else 0


if __name__ == "__main__":
    sys.exit(main())
