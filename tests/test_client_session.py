"""The terminal client's IMAP session, IDLE watch and submission against a real rmail.

No terminal here (tests/test_client_tmux.py drives the screen): these call the client's
network modules directly, against the in-process server on 127.0.0.1.
"""

import queue
import smtplib
import socket

import pytest

from rmail.client import account as settings
from rmail.client.app import MailClient
from rmail.client.compose import Draft, build
from rmail.client.session import ConnectionLost, LoginRefused, MailSession
from rmail.client.submission import SubmissionRefused, submit
from rmail.client.watch import NewMailWatch
from tests import harness
from tests.conftest import in_reactor
from tests.harness import TIMEOUT, shared_certificate


def deliver(server, subject, to="alice@example.com", sender="bob@example.com", body="Hello"):
    s = smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=TIMEOUT)
    s.sendmail(sender, [to], f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
                             f"Message-ID: <{subject.replace(' ', '.')}@example.com>\r\n\r\n"
                             f"{body}\r\n")
    s.quit()


def account_for(server, user="alice@example.com", tls="starttls", **kw):
    ports = {"starttls": ("imap", "submission"), "tls": ("imaps", "submissions")}[tls]
    kw.setdefault("insecure", True)
    return settings.Account(host="127.0.0.1", user=user, tls=tls,
                            imap_port=server.port(ports[0]), smtp_port=server.port(ports[1]),
                            **kw)


def test_login_starttls_lists_folders_with_special_use_and_counts(server):
    deliver(server, "One")
    deliver(server, "Two")
    session = MailSession(account_for(server), "alice-pw")
    session.connect()
    boxes = {box.name: box for box in session.folders()}
    assert {"INBOX", "Sent", "Trash"} <= set(boxes)
    assert "\\Trash" in boxes["Trash"].attributes and "\\Sent" in boxes["Sent"].attributes
    assert session.status("INBOX") == {"MESSAGES": 2, "UNSEEN": 2, "UIDNEXT": 3}
    session.close()


def test_implicit_tls_and_certificate_checks(server):
    session = MailSession(account_for(server, tls="tls"), "alice-pw")
    session.connect()
    assert session.select("INBOX") == 0
    session.close()
    # Certificate checks are on unless --insecure: the test certificate names
    # mail.example.com, not 127.0.0.1, so even trusting its CA the name does not match.
    strict = account_for(server, tls="tls", insecure=False, cafile=shared_certificate()[0])
    with pytest.raises(ConnectionLost, match="certificate is not trusted"):
        MailSession(strict, "alice-pw").connect()
    with pytest.raises(SubmissionRefused, match="certificate is not trusted"):
        submit(strict, "alice-pw", build(Draft(sender="alice@example.com", to="bob@example.com")))


def test_wrong_password_is_refused_in_one_sentence(server):
    with pytest.raises(LoginRefused, match="login as alice@example.com refused"):
        MailSession(account_for(server), "wrong").connect()


def test_envelopes_bodies_flags_search(server):
    for n in range(1, 6):
        deliver(server, f"Note {n}", body=f"word{n}")
    session = MailSession(account_for(server), "alice-pw")
    assert session.select("INBOX") == 5  # connects on first use
    uids = session.uids()
    assert uids == [1, 2, 3, 4, 5]
    envelopes = session.envelopes([4, 5])
    assert sorted(envelopes) == [4, 5]
    assert envelopes[5].subject == "Note 5" and envelopes[5].unread
    assert envelopes[5].sender[0].address == "bob@example.com"
    assert envelopes[5].message_id == "<Note.5@example.com>" and envelopes[5].size > 0
    raw = session.message(5)
    assert raw.endswith(b"word5\r\n")
    assert session.flags([5]) == {5: frozenset({"\\Recent"})}  # BODY.PEEK left it unread
    session.set_flags([5], ["\\Seen", "\\Flagged"], True)
    assert session.flags([5])[5] >= {"\\Seen", "\\Flagged"}
    assert session.uids("UNSEEN") == [1, 2, 3, 4]
    assert session.search("word3") == [3]
    assert session.search("Grüße") == []  # sent as a UTF-8 literal
    session.close()


def test_move_to_trash_with_move_and_with_the_copy_fallback(server):
    deliver(server, "First")
    deliver(server, "Second")
    session = MailSession(account_for(server), "alice-pw")
    session.select("INBOX")
    session.move([1], "Trash")
    assert [m[0] for m in server.messages("alice@example.com")] == [2]
    # a server without MOVE: COPY, \Deleted, UID EXPUNGE
    session.capabilities = session.capabilities - {"MOVE"}
    session.move([2], "Archive")
    assert server.messages("alice@example.com") == []
    assert [m[2].split(b"Subject: ")[1][:6] for m in server.messages("alice@example.com",
                                                                      "Archive")] == [b"Second"]
    assert len(server.messages("alice@example.com", "Trash")) == 1
    session.close()


def test_append_sent_copy_creates_a_missing_folder(server):
    session = MailSession(account_for(server), "alice-pw")
    session.append("Sent", b"From: alice@example.com\r\nSubject: copy\r\n\r\nx\r\n")
    session.append("Sent mail/2026", b"From: alice@example.com\r\nSubject: copy2\r\n\r\nx\r\n")
    (uid, flags, _), = server.messages("alice@example.com", "Sent")
    assert flags == {"\\Seen"}
    assert [box.name for box in session.folders() if box.name.startswith("Sent mail")]
    session.close()


def test_submission_sends_and_refuses_a_wrong_password(server):
    draft = Draft(sender="alice@example.com", to="Bob <bob@example.com>",
                  cc="sales@example.com", bcc="carol@example.org", subject="Hello Bob",
                  body="Hi\n")
    sent_to = submit(account_for(server), "alice-pw", build(draft))
    assert sent_to == ["bob@example.com", "sales@example.com", "carol@example.org"]
    for user in ("bob@example.com", "sales@example.com", "carol@example.org"):
        got = server.wait_for(lambda u=user: server.messages(u), f"delivery to {user}")
        assert b"Subject: Hello Bob" in got[0][2]
        assert b"Bcc:" not in got[0][2]
    with pytest.raises(SubmissionRefused, match="login to 127.0.0.1"):
        submit(account_for(server), "wrong", build(draft))


def test_watch_reports_new_mail_and_stops(server):
    events = queue.Queue()
    watch = NewMailWatch(account_for(server), "alice-pw", "INBOX", events).start()
    try:
        first = events.get(timeout=TIMEOUT)
        assert (first.kind, first.folder, first.detail) == ("watching", "INBOX", (0, 1))
        deliver(server, "While watching")
        changed = events.get(timeout=TIMEOUT)
        assert changed.kind == "changed"
    finally:
        watch.stop()
    watch.thread.join(TIMEOUT)
    assert not watch.thread.is_alive()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_lost_connection_is_reported_and_the_next_key_reconnects(tmp_path):
    """The client survives its server going away and coming back on the same ports."""
    ports = {name: _free_port() for name in ("imap", "submission")}
    server = harness.Server(tmp_path, in_reactor, listen__imap=ports["imap"],
                            listen__submission=ports["submission"])
    server.start()
    client = MailClient(account_for(server), "alice-pw")
    try:
        deliver(server, "Before")
        client.start()
        assert [e.subject for e in client.session.envelopes(client.messages.uids).values()] \
            == ["Before"]
        server.stop()
        client.handle_key("g")
        assert client.offline and client.status_is_error
        assert "lost" in client.status or "cannot reach" in client.status
        assert "The next key reconnects." in client.status
        server.start()
        deliver(server, "After")
        client.handle_key("j")
        assert not client.offline and client.status == "Reconnected."
        assert len(client.messages) == 2
        client.handle_key("q")
        assert client.quitting
    finally:
        client.close()
        server.stop()


def test_quit_works_while_the_server_is_gone(tmp_path):
    server = harness.Server(tmp_path, in_reactor)
    server.start()
    client = MailClient(account_for(server), "alice-pw")
    try:
        client.start()
        server.stop()
        client.handle_key("g")
        assert client.offline
        client.handle_key("q")  # no reconnecting first: that would fail and keep it running
        assert client.quitting
    finally:
        client.close()
