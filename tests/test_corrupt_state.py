"""Starting on damaged state: rmail starts, repairs or quarantines each thing with one log
line, `run.py diagnose` reports what was quarantined, and every other user's mail flows.

One mail root is damaged in every way at once (each in a different place), from a real
server killed with SIGKILL after some traffic (so the SQLite WAL files are still there):

- the outbound queue: one entry truncated, one of garbage bytes;
- bob: an index row whose message file is gone, and a message file with no index row;
- a leftover spool file;
- carol: index.sqlite overwritten with garbage (as root, as in CI, chmod would not stop
  reads, so the shard is made unreadable with bytes);
- dave: index.sqlite-wal truncated in its last frame (a torn write on a bad disk), so
  the last commit is gone and its message file has no row any more.

The server is started once for the whole module; each test asserts one consequence.
"""

import os
import select
import signal
import smtplib
import subprocess
import sys
import time

import pytest

from rmail import config as rconfig
from tests import harness
from tests.harness import Process
from tests.ledger import (
    Ledger, config_with_users, http_login, imap_login, kill, unverified_tls,
)

USERS = {f"{name}@example.com": f"{name}-pw" for name in ("alice", "bob", "carol", "dave")}
GARBAGE_ID = "0123456789abcdef"


def _boxes(mail_root, local):
    return os.path.join(mail_root, "domains", "example.com", "mailboxes", local)


def _send(port, recipients):
    with smtplib.SMTP("127.0.0.1", port, timeout=harness.TIMEOUT) as s:
        s.sendmail("x@ext.example", recipients, b"Subject: before\r\n\r\nbefore the damage\r\n")


def _damage(mail_root):
    """What a crash or a bad disk can leave, one kind per place."""
    with open(os.path.join(mail_root, "spool", "1700000000.1.leftover"), "wb") as f:
        f.write(b"Subject: half received\r\n\r\nno end")
    queue = os.path.join(mail_root, "queue")
    (entry,) = [n for n in os.listdir(os.path.join(queue, "entries")) if n.endswith(".json")]
    path = os.path.join(queue, "entries", entry)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])
    with open(os.path.join(queue, "entries", GARBAGE_ID + ".json"), "wb") as f:
        f.write(os.urandom(300))
    bob = os.path.join(_boxes(mail_root, "bob"), "messages")
    os.unlink(os.path.join(bob, sorted(os.listdir(bob))[0]))
    with open(os.path.join(bob, "1700000000.2.stray"), "wb") as f:
        f.write(b"Subject: stray\r\n\r\nnever indexed\r\n")
    carol = _boxes(mail_root, "carol")
    for suffix in ("-wal", "-shm"):
        if os.path.exists(os.path.join(carol, "index.sqlite" + suffix)):
            os.unlink(os.path.join(carol, "index.sqlite" + suffix))
    with open(os.path.join(carol, "index.sqlite"), "wb") as f:
        f.write(b"this is not an SQLite database\n" * 200)
    wal = os.path.join(_boxes(mail_root, "dave"), "index.sqlite-wal")
    os.truncate(wal, os.path.getsize(wal) - 100)
    return entry[:-5]


class Damaged:
    """The running server on the damaged mail root, and ways to look at it."""

    def __init__(self, config, proc, mail_root, damaged_id):
        self.config, self.proc, self.mail_root = config, proc, mail_root
        self.damaged_id = damaged_id

    def lines(self, needle, timeout=harness.TIMEOUT):
        """The server's output lines holding *needle*, once there is at least one."""
        deadline = time.monotonic() + timeout
        while True:
            while select.select([self.proc.proc.stdout], [], [], 0.05)[0]:
                chunk = os.read(self.proc.proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                self.proc.output += chunk
            found = [line for line in self.proc.output.decode("utf-8", "replace").splitlines()
                     if needle in line]
            if found or time.monotonic() > deadline:
                return found

    def open_shard(self, address):
        """Make the server open (and repair) a user's shard: EXAMINE INBOX over IMAP."""
        conn = imap_login(self.proc.ports["imap"], address, USERS[address])
        try:
            return conn.select("INBOX", readonly=True)
        finally:
            conn.logout()


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("damaged")
    config = config_with_users(tmp, tmp_path_factory.mktemp("users"), USERS)
    mail_root = rconfig.load(config).mail_root_path
    proc = Process(config)
    try:
        for recipients in (["alice@example.com"], ["bob@example.com"], ["bob@example.com"],
                           ["carol@example.com"], ["dave@example.com"], ["dave@example.com"],
                           ["dave@example.com"]):
            _send(proc.ports["smtp"], recipients)
        with smtplib.SMTP("127.0.0.1", proc.ports["submission"], timeout=harness.TIMEOUT) as s:
            s.starttls(context=unverified_tls())
            s.login("alice@example.com", USERS["alice@example.com"])
            s.sendmail("alice@example.com", ["x@nowhere.test"], b"Subject: out\r\n\r\nqueued\r\n")
    finally:
        proc.proc.send_signal(signal.SIGKILL)
        proc.wait()
    damaged_id = _damage(mail_root)
    proc = Process(config)
    yield Damaged(config, proc, mail_root, damaged_id)
    kill(proc)


def test_a_leftover_spool_file_is_removed_with_one_log_line(damaged):
    assert len(damaged.lines("removed unacknowledged spool file 1700000000.1.leftover")) == 1
    assert os.listdir(os.path.join(damaged.mail_root, "spool")) == []


def test_damaged_queue_entries_are_quarantined_with_one_log_line_each(damaged):
    for queue_id in (damaged.damaged_id, GARBAGE_ID):
        (line,) = damaged.lines(f"queue entry {queue_id} is damaged")
        assert "moved it and its message to" in line
    quarantine = os.path.join(damaged.mail_root, "queue", "quarantine")
    assert os.path.exists(os.path.join(quarantine, damaged.damaged_id + ".reason"))
    assert os.listdir(os.path.join(damaged.mail_root, "queue", "entries")) == []
    assert os.listdir(os.path.join(damaged.mail_root, "queue", "messages")) == []


def test_a_row_without_its_file_is_dropped_and_a_file_without_a_row_quarantined(damaged):
    status, data = damaged.open_shard("bob@example.com")
    assert status == "OK" and data == [b"1"]  # two delivered, one file lost
    (dropped,) = damaged.lines("is missing; dropped")
    assert "bob@example.com: message file" in dropped
    assert "is missing; dropped INBOX UID 1 from the index" in dropped
    (moved,) = damaged.lines("bob@example.com: message file 1700000000.2.stray")
    assert "had no index entry; moved to" in moved
    assert os.listdir(os.path.join(_boxes(damaged.mail_root, "bob"), "quarantine")) == [
        "1700000000.2.stray"]


def test_a_torn_wal_loses_the_last_commit_and_its_file_is_quarantined(damaged):
    status, data = damaged.open_shard("dave@example.com")
    assert status == "OK" and data == [b"2"]  # the third commit was in the torn frame
    quarantine = os.path.join(_boxes(damaged.mail_root, "dave"), "quarantine")
    (name,) = os.listdir(quarantine)
    assert len(damaged.lines(f"dave@example.com: message file {name} had no index entry")) == 1


def test_an_unreadable_shard_gives_its_user_alone_temporary_errors(damaged):
    ports = damaged.proc.ports
    with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=harness.TIMEOUT) as s:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            s.sendmail("x@ext.example", ["carol@example.com"], b"Subject: c\r\n\r\nc\r\n")
        assert 400 <= refused.value.smtp_code < 500
        # With another user in the same message: refused as a whole, and nobody keeps a
        # copy, so the sender's retries do not pile copies up in alice's INBOX.
        with pytest.raises(smtplib.SMTPDataError) as refused:
            s.sendmail("x@ext.example", ["alice@example.com", "carol@example.com"],
                       b"Subject: both\r\n\r\nalice and carol\r\n")
        assert 400 <= refused.value.smtp_code < 500
    status, data = damaged.open_shard("carol@example.com")
    assert status == "NO", data
    token = http_login(ports["http"], "carol@example.com", USERS["carol@example.com"])
    api = harness.APIClient(ports["http"])
    response = api.request("GET", "/folders", token=token)
    assert response.status >= 503 and "try again later" in response.json()["error"], response
    # One line from the store, however many commands failed (the protocols' own error
    # reports name the exception too).
    (line,) = damaged.lines("store: carol@example.com: cannot open")
    assert "temporary errors until it is repaired" in line
    conn = imap_login(ports["imap"], "alice@example.com", USERS["alice@example.com"])
    try:
        conn.select("INBOX", readonly=True)
        status, data = conn.search(None, "SUBJECT", "both")
        assert status == "OK" and data == [b""]
    finally:
        conn.logout()


def test_mail_for_every_other_user_flows(damaged):
    ledger = Ledger(USERS)
    others = ["alice@example.com", "bob@example.com", "dave@example.com"]
    with smtplib.SMTP("127.0.0.1", damaged.proc.ports["smtp"], timeout=harness.TIMEOUT) as s:
        for address in others:
            ledger.smtp(s, [address])
        ledger.smtp(s, others)
    conn = imap_login(damaged.proc.ports["imap"], "alice@example.com", USERS["alice@example.com"])
    try:
        ledger.imap_append(conn, "alice@example.com")
    finally:
        conn.logout()
    result = ledger.check(damaged.proc.ports["imap"])
    assert result["problems"] == [] and result["acked"] == 7


def test_diagnose_reports_what_was_quarantined(damaged):
    for address in ("bob@example.com", "dave@example.com"):
        damaged.open_shard(address)  # the repairs are done before diagnose looks
    result = subprocess.run([sys.executable, os.path.join(harness.ROOT, "run.py"), "diagnose",
                             "--config", damaged.config], capture_output=True, text=True,
                            timeout=harness.TIMEOUT * 2)
    (storage,) = [line for line in result.stdout.splitlines() if " storage: " in line]
    assert storage.startswith("FAIL storage: ")  # carol's index is damaged
    assert "carol@example.com: cannot read" in storage
    for address in ("bob@example.com", "dave@example.com"):
        quarantine = os.path.join(_boxes(damaged.mail_root, address.partition("@")[0]),
                                  "quarantine")
        assert f"{address}: 1 file(s) in {quarantine}" in storage
    queue = os.path.join(damaged.mail_root, "queue", "quarantine")
    assert f"outbound queue: 2 damaged entries in {queue}" in storage
    assert result.returncode == 1


def test_diagnose_warns_about_the_queue_quarantine_alone(tmp_path):
    """With nothing else wrong, a damaged queue entry is a WARN naming the quarantine."""
    from rmail import diagnose
    config = harness.write_config(tmp_path)
    mail_root = rconfig.load(config).mail_root_path
    quarantine = os.path.join(mail_root, "queue", "quarantine")
    os.makedirs(quarantine)
    with open(os.path.join(quarantine, GARBAGE_ID + ".reason"), "w") as f:
        f.write("not complete JSON\n")
    finding = diagnose._storage(rconfig.load(config))
    assert finding.level == "WARN"
    assert f"outbound queue: 1 damaged entry in {quarantine}" in finding.found


def test_a_second_server_on_a_live_mail_root_leaves_its_spool_alone(tmp_path):
    """Start-up sweeps the spool of what a crash left; a second rmail started by mistake
    on a live mail_root (refused: the queue is locked) must not sweep the files the live
    one is receiving into: the message in the middle of DATA is still accepted."""
    config = harness.write_config(tmp_path)
    harness.add_users(config, {"alice@example.com": "alice-pw"})
    spool = os.path.join(rconfig.load(config).mail_root_path, "spool")
    live = Process(config)
    try:
        client = harness.SMTPClient(live.ports["smtp"])
        for line in ("EHLO x", "MAIL FROM:<x@ext.example>", "RCPT TO:<alice@example.com>"):
            client.cmd(line)
        assert client.first("DATA").startswith("354")
        client.send(b"Subject: in flight\r\n\r\n" + (b"x" * 76 + b"\r\n") * 5000)  # > CHUNK
        deadline = time.monotonic() + harness.TIMEOUT
        while not os.listdir(spool) and time.monotonic() < deadline:
            time.sleep(0.02)
        receiving = os.listdir(spool)
        assert receiving
        second = subprocess.run([sys.executable, os.path.join(harness.ROOT, "run.py"), config],
                                capture_output=True, text=True, timeout=harness.TIMEOUT * 2)
        assert second.returncode == 1 and "in use by another process" in second.stderr
        assert os.listdir(spool) == receiving
        client.send(b".\r\n")
        assert client.reply()[0].startswith("250 ")
        client.close()
    finally:
        kill(live)
