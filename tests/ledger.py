"""A ledger of test messages: what was sent, what rmail acknowledged, and the check that,
after any crash and restart, no acknowledged message is lost or stored twice.

Every message carries ``X-Ledger: N`` (N unique within the ledger).  It is sent over SMTP
(smtplib), IMAP APPEND (imaplib) or the HTTP API (POST /folders/F/messages), and counts
as acknowledged only when the client read the success reply (250 / OK / 201): a reply
lost with the connection leaves it unacknowledged, and then it may be stored or not, but
never twice.

Restarts split a run into epochs; each message is tagged with the epoch it was sent in.
``epoch_start`` (right after a (re)start, before new traffic) checks the spool is empty
and notes each folder's UIDVALIDITY and UIDNEXT; ``check`` then reads every folder back
over IMAP (``UID FETCH`` of the ledger header, which also makes the server open and
repair each shard) and reports every problem:

- an acknowledged message missing, or present more than once;
- an unacknowledged one present more than once, or an unknown ledger number;
- UIDs that did not only grow across restarts: a UID other than the one APPENDUID / the
  201 gave; epochs going back in UID order; a UID below the UIDNEXT seen when its epoch
  started, or not below the UIDNEXT seen after the restart that ended it;
- a UIDVALIDITY that changed.

Only the standard library and real clients (``config_with_users`` aside, which sets up
a test server's directory).  bench/crashloop.py has its own small copy of the counting:
bench programs do not import tests/.
"""

import http.client
import imaplib
import json
import os
import re
import smtplib
import ssl
import threading
from collections import Counter

HEADER = "X-Ledger"
LOCAL_DOMAINS = ("example.com", "example.org")
TIMEOUT = 10

_UID = re.compile(rb"UID (\d+)")
_NUMBER = re.compile(rb"X-Ledger:\s*(\d+)", re.IGNORECASE)
_APPENDUID = re.compile(rb"APPENDUID (\d+) (\d+)")


def ledger_number(data: bytes):
    """The X-Ledger number in a message's header block (or any bytes), or None."""
    m = _NUMBER.search(data.split(b"\r\n\r\n", 1)[0])
    return int(m.group(1)) if m else None


def unverified_tls() -> ssl.SSLContext:
    """The test servers' certificates are self-signed; traffic stays on 127.0.0.1."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Ledger:
    def __init__(self, passwords: dict):
        self.passwords = passwords  # address -> password, for APPEND, uploads and checks
        self._lock = threading.Lock()
        self._next = 0
        self.epoch = 0
        self.sent = {}  # n -> (holders, folder, epoch): where it belongs if acknowledged
        self.acked = {}  # n -> UID the server gave (APPEND, HTTP) or None (SMTP)
        self.starts = {}  # epoch -> {(address, folder): (uidvalidity, uidnext)}
        self.uidvalidity = {}  # (address, folder) -> the first UIDVALIDITY seen

    # -- messages ---------------------------------------------------------------------

    def new(self, holders, folder="INBOX", size=0) -> tuple[int, bytes]:
        """A fresh ledger number and its message, to be stored in *holders*' *folder*."""
        with self._lock:
            self._next += 1
            n = self._next
            self.sent[n] = (tuple(a.lower() for a in holders), folder, self.epoch)
        body = ("ledger body line\r\n" * (1 + size // 18)).encode()
        return n, (f"From: ledger@ext.example\r\nTo: {', '.join(holders) or 'x@ext.test'}\r\n"
                   f"Subject: ledger {n}\r\nMessage-ID: <ledger-{n}@test>\r\n"
                   f"{HEADER}: {n}\r\n\r\n").encode() + body

    def _ack(self, n, uid=None):
        with self._lock:
            self.acked[n] = uid

    def smtp(self, conn: smtplib.SMTP, recipients, sender="ledger@ext.example", size=0) -> int:
        """One message over an open smtplib connection; acknowledged on 250 after DATA
        (for the local recipients not refused).  Errors propagate, leaving it unacked."""
        local = [r for r in recipients if r.rpartition("@")[2].lower() in LOCAL_DOMAINS]
        n, data = self.new(local, size=size)
        refused = conn.sendmail(sender, list(recipients), data)
        if refused:  # the rest were accepted: only they hold it
            with self._lock:
                holders, folder, epoch = self.sent[n]
                self.sent[n] = (tuple(a for a in holders if a not in
                                      {r.lower() for r in refused}), folder, epoch)
        self._ack(n)
        return n

    def imap_append(self, conn: imaplib.IMAP4, address, folder="INBOX", size=0) -> int:
        """APPEND over a logged-in imaplib connection; acknowledged on OK, with its UID."""
        n, data = self.new([address], folder, size)
        status, answer = conn.append(folder, None, None, data)
        if status == "OK":
            m = _APPENDUID.search(answer[0] or b"")
            uid = None
            if m:
                uid = int(m.group(2))
                self._note_uidvalidity((address.lower(), folder), int(m.group(1)))
            self._ack(n, uid)
        return n

    def http_upload(self, port, address, folder="INBOX", token=None, size=0) -> int:
        """POST /folders/{folder}/messages (logging in first without *token*); acked on 201."""
        token = token or http_login(port, address, self.passwords[address])
        n, data = self.new([address], folder, size)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        try:
            conn.request("POST", f"/folders/{folder}/messages", body=data, headers={
                "Authorization": f"Bearer {token}", "Content-Type": "message/rfc822"})
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        if response.status == 201:
            self._ack(n, json.loads(body)["uid"])
        return n

    # -- epochs and the check ------------------------------------------------------------

    def folders(self):
        with self._lock:  # sender threads may be adding messages
            sent = list(self.sent.values())
        return sorted({(a, folder) for holders, folder, _ in sent for a in holders}
                      | {key for start in self.starts.values() for key in start})

    def epoch_start(self, imap_port, mail_root, folders=(("alice@example.com", "INBOX"),),
                    status=True):
        """Right after a (re)start, before new traffic: the spool must be empty; with
        *status*, note each folder's UIDVALIDITY and UIDNEXT (an IMAP login per user:
        argon2 makes that 0.3 s).  Returns the problems found (a list of lines)."""
        problems = []
        spool = os.listdir(os.path.join(mail_root, "spool"))
        if spool:
            problems.append(f"spool not empty after the start: {spool}")
        keys = sorted(set(self.folders()) | set(folders)) if status else []
        with self._lock:
            self.epoch += 1
            epoch = self.epoch
        start = {}
        for key, info in _statuses(imap_port, self.passwords, keys).items():
            start[key] = info
            problems += self._note_uidvalidity(key, info[0])
        self.starts[epoch] = start
        return problems

    def _note_uidvalidity(self, key, value) -> list:
        with self._lock:
            first = self.uidvalidity.setdefault(key, value)
        return [] if first == value else [f"{key}: UIDVALIDITY changed from {first} to {value}"]

    def check(self, imap_port) -> dict:
        """Read every folder back; {"problems": [...], "acked", "lost", "duplicated",
        "unacked_stored"} (counts of messages, per holder), and "holding": a Counter of
        how many of its holders hold each ledger number."""
        problems, lost, duplicated, unacked_stored = [], 0, 0, 0
        holding = Counter()  # n -> how many of its holders have it
        with self._lock:
            sent, acked = dict(self.sent), set(self.acked)
        contents = _contents(imap_port, self.passwords, self.folders())
        for (address, folder), (uidvalidity, messages) in contents.items():
            problems += self._note_uidvalidity((address, folder), uidvalidity)
            counts = Counter(n for _, n in messages if n is not None)
            holding.update(counts.keys())
            latest = (0, 0)  # the highest epoch so far in UID order, and its ledger number
            for uid, n in messages:
                if n is None:
                    continue
                if n not in sent or (address, folder) not in {
                        (a, sent[n][1]) for a in sent[n][0]}:
                    problems.append(f"{address} {folder}: UID {uid} holds ledger {n}, "
                                    "which was not sent there")
                    continue
                problems += self._check_uid(address, folder, uid, n)
                # A message is stored only by the server of the epoch it was sent in, so
                # in UID order epochs never go back: else a restart reused a UID.
                epoch = sent[n][2]
                if epoch < latest[0]:
                    problems.append(f"{address} {folder}: ledger {n} (epoch {epoch}) has UID "
                                    f"{uid}, above ledger {latest[1]} of the later epoch "
                                    f"{latest[0]}: UIDs went back after a restart")
                latest = max(latest, (epoch, n))
            for n, (holders, f, _) in sent.items():
                if address not in holders or f != folder:
                    continue
                if n in acked:
                    if counts[n] == 0:
                        lost += 1
                        problems.append(f"{address} {folder}: acknowledged ledger {n} is lost")
                    elif counts[n] > 1:
                        duplicated += 1
                        problems.append(f"{address} {folder}: acknowledged ledger {n} is "
                                        f"stored {counts[n]} times")
                elif counts[n] > 1:
                    duplicated += 1
                    problems.append(f"{address} {folder}: unacknowledged ledger {n} is stored "
                                    f"{counts[n]} times")
                elif counts[n] == 1:
                    unacked_stored += 1
        acked_copies = sum(len(sent[n][0]) for n in acked)
        return {"problems": problems, "acked": acked_copies, "lost": lost, "duplicated": duplicated,
                "unacked_stored": unacked_stored, "holding": holding}

    def _check_uid(self, address, folder, uid, n) -> list:
        _, _, epoch = self.sent[n]
        given = self.acked.get(n)
        if given is not None and given != uid:
            return [f"{address} {folder}: ledger {n} has UID {uid}, the server said {given}"]
        floor = self.starts.get(epoch, {}).get((address, folder))
        if floor is not None and uid < floor[1]:
            return [f"{address} {folder}: ledger {n} (epoch {epoch}) has UID {uid}, below "
                    f"UIDNEXT {floor[1]} at the start of its epoch: a UID was reused"]
        after = self.starts.get(epoch + 1, {}).get((address, folder))
        if after is not None and uid >= after[1]:  # only its epoch's server could store it
            return [f"{address} {folder}: ledger {n} (epoch {epoch}) has UID {uid}, not below "
                    f"UIDNEXT {after[1]} seen after the restart that ended its epoch"]
        return []


# -- setting up a server's directory ---------------------------------------------------------

def config_with_users(tmp_path, template, users, **overrides) -> str:
    """``harness.write_config`` in *tmp_path*, with *users* copied from *template* (a
    directory made once per module): argon2 makes adding users cost 0.3 s each."""
    import shutil

    from tests import harness
    source = os.path.join(str(template), "data", "domains")
    if not os.path.isdir(source):
        harness.add_users(harness.write_config(template), users)
    config = harness.write_config(tmp_path, **overrides)
    shutil.copytree(source, os.path.join(str(tmp_path), "data", "domains"))
    return config


def kill(proc) -> None:
    """SIGKILL a harness.Process and reap it (the end of a test that has checked all)."""
    if proc.proc.poll() is None:
        proc.proc.kill()
    proc.wait()


# -- IMAP and HTTP plumbing ----------------------------------------------------------------

def imap_login(port, address, password) -> imaplib.IMAP4:
    conn = imaplib.IMAP4("127.0.0.1", port, timeout=TIMEOUT)
    conn.login(address, password)
    return conn


def http_login(port, address, password) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("POST", "/auth/login", body=json.dumps(
            {"username": address, "password": password}),
            headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise ConnectionError(f"HTTP login of {address}: {response.status} {body[:200]!r}")
    return json.loads(body)["token"]


def _by_address(keys):
    out = {}
    for address, folder in keys:
        out.setdefault(address, []).append(folder)
    return out


def _statuses(port, passwords, keys) -> dict:
    """{(address, folder): (UIDVALIDITY, UIDNEXT)} over IMAP STATUS."""
    out = {}
    for address, folders in _by_address(keys).items():
        conn = imap_login(port, address, passwords[address])
        try:
            for folder in folders:
                status, data = conn.status(folder, "(UIDVALIDITY UIDNEXT)")
                if status != "OK":
                    raise AssertionError(f"STATUS {folder} of {address}: {status} {data}")
                text = data[0].decode()
                out[(address, folder)] = (int(re.search(r"UIDVALIDITY (\d+)", text).group(1)),
                                          int(re.search(r"UIDNEXT (\d+)", text).group(1)))
        finally:
            conn.logout()
    return out


def _contents(port, passwords, keys) -> dict:
    """{(address, folder): (UIDVALIDITY, [(uid, ledger number or None)])} over IMAP."""
    out = {}
    for address, folders in _by_address(keys).items():
        conn = imap_login(port, address, passwords[address])
        try:
            for folder in folders:
                status, data = conn.select(folder, readonly=True)
                if status != "OK":
                    raise AssertionError(f"EXAMINE {folder} of {address}: {status} {data}")
                uidvalidity = int(conn.response("UIDVALIDITY")[1][0])
                messages = []
                if int(data[0]):
                    status, data = conn.uid("FETCH", "1:*",
                                            f"(UID BODY.PEEK[HEADER.FIELDS ({HEADER})])")
                    if status != "OK":
                        raise AssertionError(f"FETCH in {folder} of {address}: {status}")
                    for item in data:
                        if isinstance(item, tuple):
                            messages.append((int(_UID.search(item[0]).group(1)),
                                             ledger_number(item[1])))
                uids = [uid for uid, _ in messages]
                if uids != sorted(set(uids)):
                    raise AssertionError(f"{address} {folder}: UIDs not strictly increasing")
                out[(address, folder)] = (uidvalidity, messages)
        finally:
            conn.logout()
    return out
