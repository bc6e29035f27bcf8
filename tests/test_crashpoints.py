"""Every named crash point (rmail.crashpoint.POINTS), on a real process: SIGKILL at that
step of a write, restart, and prove with the ledger that no acknowledged message was lost
or stored twice, that UIDs only grew and UIDVALIDITY held, and that the spool is empty.

Each point is armed so that it kills during the third message (relay and queue points:
the second), so the messages before it were acknowledged in full and must survive too.
"""

import imaplib
import os
import signal
import smtplib
import subprocess
import sys
from collections import Counter

import pytest

from rmail import config as rconfig
from rmail.crashpoint import POINTS
from tests import harness
from tests.harness import Process
from tests.ledger import (
    Ledger, config_with_users, http_login, imap_login, kill, ledger_number, unverified_tls,
)
from tests.relay_peers import queued, relay_overrides, wait_queue_empty, wait_until

USERS = {"alice@example.com": "alice-pw", "bob@example.com": "bob-pw"}
WAIT = 10  # seconds for the armed process to die once traffic reaches the point

# How each point is reached: the protocol that drives it, and the message that dies.
DRIVERS = {
    "spool.written": ("smtp", 3), "spool.fsynced": ("smtp", 3),
    "store.placed": ("smtp", 3), "store.committed": ("smtp", 3),
    "smtp.before-250": ("smtp", 3), "smtp.after-250": ("smtp", 3),
    "imap.before-ok": ("imap", 3), "imap.after-ok": ("imap", 3),
    "http.before-201": ("http", 3), "http.after-201": ("http", 3),
    "queue.linked": ("submission", 2), "queue.written": ("submission", 2),
    "relay.accepted": ("relay", 2),
}
# The store's points are shared by every protocol: cross them over IMAP and HTTP too.  An
# IMAP APPEND's spool file is written in the store's commit turn, not by its writer.
EXTRA = [("store.placed", "imap", 3), ("store.committed", "http", 3),
         ("spool.written", "imap", 3), ("spool.fsynced", "imap", 3)]


# What becomes of the message that dies at the point: how many of its holders (h: two
# users over SMTP, else one) may hold it (f) after the restart.  Before the index commit
# it is nowhere; the store's points are crossed once per user's shard, so at
# store.placed the other user may already have it, and at store.committed the dying
# shard does; from then on every holder has it, acknowledged or not.
FATE = {
    "spool.written": lambda f, h: f == 0, "spool.fsynced": lambda f, h: f == 0,
    "store.placed": lambda f, h: f < h, "store.committed": lambda f, h: f >= 1,
    "smtp.before-250": lambda f, h: f == h, "smtp.after-250": lambda f, h: f == h,
    "imap.before-ok": lambda f, h: f == h, "imap.after-ok": lambda f, h: f == h,
    "http.before-201": lambda f, h: f == h, "http.after-201": lambda f, h: f == h,
}


def _armed(point, kind, message) -> str:
    """RMAIL_CRASHPOINT for dying in the *message*-th message: SMTP goes to two users, and
    the store's points are crossed once per user (one commit per shard)."""
    per_message = 2 if point.startswith("store.") and kind == "smtp" else 1
    return f"{point}:{(message - 1) * per_message + 1}"


CLIENT_ERRORS = (OSError, EOFError, smtplib.SMTPException, imaplib.IMAP4.error,
                 ConnectionError)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return tmp_path_factory.mktemp("users")


def test_every_point_has_a_driver():
    assert set(DRIVERS) == set(POINTS)


def _mail_root(config):
    return rconfig.load(config).mail_root_path


def _send_until_dead(proc, step, count=5):
    """Call *step* up to *count* times; stop at the first error (the process died)."""
    for _ in range(count):
        if proc.proc.poll() is not None:
            return
        try:
            step()
        except CLIENT_ERRORS:
            return


def _drive(kind, proc, ledger):
    ports = proc.ports
    if kind == "smtp":
        def step():
            with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=WAIT) as s:
                ledger.smtp(s, ["alice@example.com", "bob@example.com"])
        _send_until_dead(proc, step)
    elif kind == "imap":
        conn = imap_login(ports["imap"], "alice@example.com", USERS["alice@example.com"])
        _send_until_dead(proc, lambda: ledger.imap_append(conn, "alice@example.com"))
    elif kind == "http":
        token = http_login(ports["http"], "alice@example.com", USERS["alice@example.com"])
        _send_until_dead(proc, lambda: ledger.http_upload(ports["http"], "alice@example.com",
                                                          token=token))
    else:  # submission with AUTH, to a local and an external recipient
        recipients = ["bob@example.com", "x@ext.test"] if kind == "submission" else ["x@ext.test"]

        def step():
            with smtplib.SMTP("127.0.0.1", ports["submission"], timeout=WAIT) as s:
                s.starttls(context=unverified_tls())
                s.login("alice@example.com", USERS["alice@example.com"])
                ledger.smtp(s, recipients, sender="alice@example.com")
        _send_until_dead(proc, step, count=3)


def _crash_and_restart(config, point, kind, ledger):
    """Run with the point armed until it kills the process; restart; return the new one."""
    proc = Process(config, extra_env={"RMAIL_CRASHPOINT": point})
    try:
        assert ledger.epoch_start(proc.ports["imap"], _mail_root(config)) == []
        _drive(kind, proc, ledger)
        returncode = proc.wait(timeout=WAIT)
    finally:
        if proc.proc.poll() is None:
            proc.proc.kill()
            proc.wait()
    name = point.partition(":")[0]
    assert returncode == -signal.SIGKILL, proc.output.decode()
    assert f"crash point {name} reached".encode() in proc.output
    proc = Process(config)
    assert ledger.epoch_start(proc.ports["imap"], _mail_root(config)) == []
    return proc


@pytest.mark.parametrize("point,kind,message", [(p, k, n) for p, (k, n) in DRIVERS.items()
                                              if k in ("smtp", "imap", "http")] + EXTRA)
def test_local_delivery_survives_the_crash_point(tmp_path, template, point, kind, message):
    """SMTP to two users, IMAP APPEND or an HTTP upload: killed at *point*, restarted."""
    config = config_with_users(tmp_path, template, USERS)
    ledger = Ledger(USERS)
    proc = _crash_and_restart(config, _armed(point, kind, message), kind, ledger)
    try:
        result = ledger.check(proc.ports["imap"])
    finally:
        kill(proc)
    assert result["problems"] == []
    # The crossings before the armed one were acknowledged (twice over SMTP: two users).
    assert result["acked"] >= (message - 1) * (2 if kind == "smtp" else 1), result
    holders = len(ledger.sent[message][0])
    assert FATE[point](result["holding"][message], holders), (result["holding"], holders)
    if point.endswith(("after-250", "after-ok", "after-201")):
        assert len(ledger.acked) == message  # the reply left before the kill
    else:
        assert len(ledger.acked) == message - 1


def _external(receiver) -> Counter:
    return Counter(ledger_number(m.data) for m in receiver.messages)


@pytest.mark.parametrize("point", ["queue.linked", "queue.written", "relay.accepted"])
def test_relayed_mail_survives_the_crash_point(tmp_path, template, net, point):
    """Submission with AUTH to x@ext.test (a loopback peer) and, for the queue points, to
    bob: killed at *point*, restarted.  The local copies and what the peer received agree
    with what was acknowledged; a resend after a crash between the peer's 250 and the
    queue's update (relay.accepted) is accepted, but at most one."""
    kind, message = DRIVERS[point]
    config = config_with_users(tmp_path, template, USERS, **relay_overrides(net))
    ledger = Ledger(USERS)
    proc = _crash_and_restart(config, _armed(point, kind, message), kind, ledger)
    try:
        acked = [n for n in ledger.acked]
        if acked:
            wait_until(lambda: all(_external(net.tls)[n] for n in acked),
                       "every acknowledged message at the peer")
        wait_queue_empty(config)
        result = ledger.check(proc.ports["imap"])
    finally:
        kill(proc)
    assert result["problems"] == []
    assert len(acked) >= message - 1
    received = _external(net.tls)
    assert set(received) <= set(ledger.sent)
    if point == "queue.linked":  # no entry yet: the dying message goes nowhere
        assert received[message] == 0 and result["holding"][message] == 0
    if point == "queue.written":
        # The entry is durable but bob's copy was never made and no 250 was given; the
        # queue still sends it (once): the same window as a crash just before a 250.
        assert result["holding"][message] == 0
    for n in ledger.sent:
        if point == "relay.accepted":  # at least once when acknowledged, never thrice
            assert (1 if n in ledger.acked else 0) <= received[n] <= 2, (n, received)
        elif n in ledger.acked:
            assert received[n] == 1, (n, received)
        else:
            assert received[n] <= 1, (n, received)
    assert queued(config) == []
    assert os.listdir(os.path.join(_mail_root(config), "queue", "messages")) == []


def test_an_unknown_crash_point_stops_the_start_with_one_line(tmp_path):
    config = harness.write_config(tmp_path)
    result = subprocess.run([sys.executable, os.path.join(harness.ROOT, "run.py"), config],
                            env=dict(os.environ, RMAIL_CRASHPOINT="nope"),
                            capture_output=True, timeout=harness.TIMEOUT)
    harness.assert_one_line_error(result, "RMAIL_CRASHPOINT", "'nope'")
