"""The IMAP avatar and mailbox adapters (rmail.imap.mailbox): Twisted's interfaces over the
store, as a login through the real portal hands them out, checked against what the
server says on the wire for the same messages; and \\Recent between sessions."""

import imaplib
import re
import smtplib

from twisted.cred.credentials import UsernamePassword
from twisted.mail import imap4
from zope.interface.verify import verifyObject

from rmail.imap import seqset
from tests.conftest import in_reactor
from tests.harness import TIMEOUT

NESTED = (
    b"From: Ann <ann@example.net>\r\nTo: alice@example.com\r\nSubject: Parts\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=outer\r\n\r\n"
    b"preamble\r\n--outer\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nFirst part\r\n"
    b"--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n"
    b"--inner\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
    b"--inner\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--inner--\r\n"
    b"--outer--\r\n")


def _send(server, data, to="alice@example.com"):
    s = smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=TIMEOUT)
    s.sendmail("ann@example.net", [to], data)
    s.quit()


def _account(server, address="alice@example.com", password="alice-pw"):
    creds = UsernamePassword(address.encode(), password.encode())
    return in_reactor(server.service.authenticator.login, creds, "127.0.0.1", "test",
                      imap4.IAccount)


def _wire(server, command, *args):
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    imap.login("alice@example.com", "alice-pw")
    imap.select("INBOX", readonly=True)
    status, data = imap.uid(command, *args)
    imap.logout()
    assert status == "OK"
    return data


def test_login_through_the_portal_gives_twisted_interfaces(server):
    account = _account(server)
    assert verifyObject(imap4.IAccount, account)
    assert verifyObject(imap4.INamespacePresenter, account)
    mailbox = in_reactor(account.select, "INBOX")
    for iface in (imap4.IMailbox, imap4.ISearchableMailbox, imap4.IMessageCopier,
                  imap4.ICloseableMailbox):
        assert verifyObject(iface, mailbox)
    listed = dict(in_reactor(account.listMailboxes, b"", b"*"))
    assert set(listed) == {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"}
    assert listed["Sent"].getFlags() == ["\\HasNoChildren", "\\Sent"]
    assert verifyObject(imap4.IMailboxInfo, listed["Sent"])


def test_messages_and_parts_agree_with_the_wire(server):
    _send(server, NESTED)
    account = _account(server)
    mailbox = in_reactor(account.select, "INBOX", False)
    [message], complete = in_reactor(mailbox.fetch, seqset.parse(b"1"), False)
    assert complete
    assert verifyObject(imap4.IMessage, message)
    in_reactor(message.load)
    wire = _wire(server, "FETCH", "1", "(RFC822.SIZE BODY.PEEK[1] BODY.PEEK[2.2] BODY.PEEK[TEXT])")
    fetched = {}
    for item in wire:
        if isinstance(item, tuple):
            fetched[item[0].split()[-2]] = item[1]
    size = int(re.search(rb"RFC822.SIZE (\d+)", wire[0][0]).group(1))
    assert message.getUID() == 1 and message.getSize() == size == len(message.raw)
    assert message.raw.endswith(NESTED)  # after Return-Path and Received
    assert message.isMultipart()
    assert message.getHeaders(False, "subject", "from") == {
        b"subject": b"Parts", b"from": b"Ann <ann@example.net>"}
    assert b"subject" not in message.getHeaders(True, "subject")
    assert message.getBodyFile().read() == fetched[b"BODY[TEXT]"]
    first, second = message.getSubPart(0), message.getSubPart(1)
    assert verifyObject(imap4.IMessagePart, first)
    assert not first.isMultipart() and second.isMultipart()
    assert first.getBodyFile().read() == fetched[b"BODY[1]"]
    assert first.getHeaders(False, "content-type") == {b"content-type": b"text/plain; charset=utf-8"}
    assert second.getSubPart(1).getBodyFile().read() == fetched[b"BODY[2.2]"]
    # Searching and copying through the interfaces change what IMAP clients see.
    from rmail.imap import search
    assert in_reactor(mailbox.search, search.compile([b"SUBJECT", b"parts"]), True) == [1]
    archive = in_reactor(account.select, "Archive")
    assert in_reactor(archive.copy, message) == 1
    assert in_reactor(archive.addMessage, b"Subject: added\r\n\r\nhi\r\n", [b"\\Seen"],
                      1700000000.0) == 2
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    imap.login("alice@example.com", "alice-pw")
    imap.select("Archive")
    assert imap.uid("FETCH", "1", "(BODY.PEEK[])")[1][0][1] == message.raw
    assert imap.uid("FETCH", "2", "(FLAGS INTERNALDATE)")[1] == [
        b'2 (UID 2 FLAGS (\\Seen \\Recent) INTERNALDATE "14-Nov-2023 22:13:20 +0000")']
    imap.logout()


def test_recent_belongs_to_the_first_read_write_session(server):
    _send(server, b"Subject: new\r\n\r\nhello\r\n")
    first = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    first.login("alice@example.com", "alice-pw")
    first.select("INBOX", readonly=True)  # EXAMINE does not claim \Recent
    assert first.response("RECENT") == ("RECENT", [b"1"])
    first.select("INBOX")
    assert first.response("RECENT") == ("RECENT", [b"1"])
    assert first.fetch("1", "(FLAGS)")[1] == [b"1 (FLAGS (\\Recent))"]
    second = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    second.login("alice@example.com", "alice-pw")
    second.select("INBOX")
    assert second.response("RECENT") == ("RECENT", [b"0"])
    assert second.fetch("1", "(FLAGS)")[1] == [b"1 (FLAGS ())"]
    assert second.search(None, "RECENT")[1] == [b""]
    assert first.search(None, "RECENT")[1] == [b"1"]
    for imap in (first, second):
        imap.logout()
