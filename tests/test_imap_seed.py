"""The seed's IMAP examples with imaplib, verbatim (hostnames and ports aside)."""

import imaplib
import re
import smtplib
import socket

from tests.harness import TIMEOUT, client_tls


def _deliver(server, subject, to="alice@example.com", body="Body"):
    s = smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=TIMEOUT)
    s.sendmail("sender@external.com", [to],
               f"From: sender@external.com\r\nTo: {to}\r\nSubject: {subject}\r\n\r\n{body}\r\n")
    s.quit()


def test_imaplib_read_search_fetch_store(server):
    _deliver(server, "Hello")
    _deliver(server, "Second")
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    imap.login("alice@example.com", "alice-pw")
    imap.select("INBOX")
    # Search all messages
    status, data = imap.search(None, "ALL")
    uids = data[0].split()
    assert status == "OK" and uids == [b"1", b"2"]
    # Fetch latest message
    status, data = imap.fetch(uids[-1], "(BODY.PEEK[])")
    text = data[0][1].decode()
    assert text.startswith("Return-Path: <sender@external.com>")
    assert text.endswith("Subject: Second\r\n\r\nBody\r\n")
    # Mark as seen
    status, _ = imap.store(uids[-1], "+FLAGS", "\\Seen")
    assert status == "OK"
    imap.logout()
    (_, flags, _), = [m for m in server.messages("alice@example.com") if m[0] == 2]
    assert flags == {"\\Seen"}


def test_uid_operations(server):
    _deliver(server, "Hello")
    _deliver(server, "Other")
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    imap.login("alice@example.com", "alice-pw")
    imap.select("INBOX")
    # Search by subject
    status, data = imap.uid("SEARCH", "SUBJECT", '"Hello"')
    assert status == "OK" and data == [b"1"]
    # Fetch by UID
    status, data = imap.uid("FETCH", data[0].decode(), "(FLAGS RFC822.SIZE)")
    size = len(server.messages("alice@example.com")[0][2])
    assert status == "OK" and data == [b"1 (UID 1 FLAGS (\\Recent) RFC822.SIZE %d)" % size]
    # Move to Trash
    uid = "1"
    status, data = imap.uid("MOVE", uid, "Trash")
    assert status == "OK"
    imap.logout()
    assert [m[0] for m in server.messages("alice@example.com")] == [2]
    assert [m[0] for m in server.messages("alice@example.com", "Trash")] == [1]


def test_idle_push_of_new_mail(server):
    """The seed's raw IDLE exchange: a message sent over SMTP meanwhile arrives as EXISTS."""
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    imap.login("alice@example.com", "alice-pw")
    imap.select("INBOX")
    imap.send(b"a001 IDLE\r\n")
    assert imap.readline() == b"+ idling\r\n"
    _deliver(server, "While idling")
    imap.sock.settimeout(TIMEOUT)
    assert imap.readline() == b"* 1 EXISTS\r\n"
    assert imap.readline() == b"* 1 RECENT\r\n"  # this session was the first told of it
    imap.send(b"DONE\r\n")
    assert imap.readline() == b"a001 OK IDLE terminated\r\n"
    imap.logout()


def test_imaps_and_starttls(server):
    imap = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=client_tls())
    assert "STARTTLS" not in imap.capabilities
    imap.login("bob@example.com", "bob-pw")
    imap.logout()
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    assert "STARTTLS" in imap.capabilities
    imap.starttls(ssl_context=client_tls())
    imap.login("bob@example.com", "bob-pw")
    imap.logout()


def test_uidvalidity_uids_and_flags_survive_a_restart(server):
    _deliver(server, "One")
    _deliver(server, "Two")
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    imap.login("alice@example.com", "alice-pw")
    imap.select("INBOX")
    imap.store("2", "+FLAGS", "(\\Flagged $Work)")
    before = imap.status("INBOX", "(UIDVALIDITY UIDNEXT MESSAGES RECENT)")
    assert b"RECENT 0" in before[1][0]  # this session has seen them
    imap.logout()
    server.stop()
    server.start()
    _deliver(server, "Three")
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    imap.login("alice@example.com", "alice-pw")
    assert imap.status("INBOX", "(UIDVALIDITY UIDNEXT MESSAGES RECENT)")[1] == [
        b'"INBOX" (UIDVALIDITY %d UIDNEXT 4 MESSAGES 3 RECENT 1)'
        % int(re.search(rb"UIDVALIDITY (\d+)", before[1][0]).group(1))]
    assert imap.select("INBOX") == ("OK", [b"3"])
    assert imap.response("RECENT") == ("RECENT", [b"1"])
    status, data = imap.uid("FETCH", "1:*", "(FLAGS)")
    # \Recent (RFC 3501 2.3.2) is remembered too: only the message no session has seen.
    assert data == [b"1 (UID 1 FLAGS ())", b"2 (UID 2 FLAGS (\\Flagged $Work))",
                    b"3 (UID 3 FLAGS (\\Recent))"]
    imap.logout()


def test_login_refused_with_bad_password_and_unknown_command(server):
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    try:
        imap.login("alice@example.com", "wrong")
    except imaplib.IMAP4.error as e:
        assert "AUTHENTICATIONFAILED" in str(e)
    else:
        raise AssertionError("login with a wrong password succeeded")
    sock = socket.create_connection(("127.0.0.1", server.port("imap")), timeout=TIMEOUT)
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(b"x1 FROBNICATE\r\nx2 NOOP\r\n")
    assert f.readline().startswith(b"x1 BAD")
    assert f.readline() == b"x2 OK NOOP completed\r\n"
    f.close()
    sock.close()
