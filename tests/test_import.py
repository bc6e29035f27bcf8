"""`python run.py import maildir|mbox PATH ADDRESS` as a real process, then read over IMAP."""

import io
import os
import smtplib

import pytest

from rmail.mailimport import mbox
from tests import harness
from tests.conftest import in_reactor
from tests.imapview import Client, imap_date, ok, run_cli

ALICE = "alice@example.com"
PASSWORD = harness.USERS[ALICE]


def message(subject, text="Hello.") -> bytes:
    """A message with bare LF line ends, as Maildir files and mbox files have them."""
    return (f"From: Someone <someone@example.net>\nTo: {ALICE}\nSubject: {subject}\n"
            f"Date: Tue, 2 Jan 2024 10:00:00 +0000\n\n{text}\n").encode()


def crlf(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n")


# (directory below the Maildir, file name, modification time, flags over IMAP, IMAP folder)
MAILDIR = [
    ("cur", "1700000003.M3P1.host,S=120:2,S", 1700000003, {"\\Seen"}, "INBOX"),
    ("cur", "1700000001.M1P1.host:2,FRS", 1700000001, {"\\Flagged", "\\Answered", "\\Seen"},
     "INBOX"),
    ("cur", "1700000002.M2P1.host:2,Sab", 1700000002, {"\\Seen", "$Junk", "NonJunk"}, "INBOX"),
    ("cur", "1700000004.M4P1.host:2,PT", 1700000004, {"$Forwarded", "\\Deleted"}, "INBOX"),
    ("new", "1700000005.M5P1.host", 1700000005, set(), "INBOX"),
    ("tmp", "1700000006.M6P1.host", 1700000006, None, None),  # still being delivered
    (".Archive.2024/cur", "1600000000.A1.host:2,D", 1600000000, {"\\Draft"}, "Archive/2024"),
    (".Archive.2024/cur", "1600000001.A2.host:2,", 1600000001, set(), "Archive/2024"),
    (".Sent/cur", "1650000000.S1.host:2,S", 1650000000, {"\\Seen"}, "Sent"),
    (".Entw&APw-rfe/new", "1.E1.host", 1500000000, set(), "Entw&APw-rfe"),
]


def make_maildir(root):
    """Write the Maildir; return {IMAP folder: [(flags, mtime, bytes over IMAP)] in order}."""
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    with open(os.path.join(root, "dovecot-keywords"), "w") as f:
        f.write("0 $Junk\n1 NonJunk\n")
    expected = {}
    for sub, name, mtime, flags, folder in MAILDIR:
        directory = os.path.join(root, sub)
        os.makedirs(directory, exist_ok=True)
        for part in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(os.path.dirname(directory), part), exist_ok=True)
        data = message(f"{folder} {name}", text=f"Body of {name}.\nSecond line.")
        path = os.path.join(directory, name)
        with open(path, "wb") as f:
            f.write(data)
        os.utime(path, (mtime, mtime))
        if folder is not None:
            expected.setdefault(folder, []).append((mtime, flags, crlf(data)))
    return {folder: [(frozenset(f), imap_date(t), d)
                     for t, f, d in sorted(items, key=lambda x: x[0])]
            for folder, items in expected.items()}


MBOX = b"""From alice@example.com Mon Jan  1 10:00:00 2024
Status: RO
X-Status: AF
X-Keywords: $Label1 Work
X-UID: 17
Subject: first
  continued

body
>From quoted, and in the message unquoted
>>From twice quoted
From a line that starts a paragraph, with no empty line before it

From bob@example.org  Tue Feb  2 11:00:00 2021 +0200
Subject: second
Status: O

From the team: after an empty line, but with no date this starts no message

From MAILER-DAEMON Wed Mar  3 12:00:00 2021
Subject: third
X-Status: D

last line
"""

MBOX_EXPECTED = [
    ({"\\Seen", "\\Answered", "\\Flagged", "$Label1", "Work"}, "01-Jan-2024 10:00:00 +0000",
     b"Subject: first\r\n  continued\r\n\r\nbody\r\nFrom quoted, and in the message unquoted\r\n"
     b">From twice quoted\r\nFrom a line that starts a paragraph, with no empty line before it"
     b"\r\n"),
    (set(), "02-Feb-2021 09:00:00 +0000",
     b"Subject: second\r\n\r\nFrom the team: after an empty line, but with no date this "
     b"starts no message\r\n"),
    ({"\\Deleted"}, "03-Mar-2021 12:00:00 +0000", b"Subject: third\r\n\r\nlast line\r\n"),
]


@pytest.fixture
def config_path(tmp_path):
    path = harness.write_config(tmp_path)
    harness.add_users(path)
    return path


def deliver_first(tmp_path):
    """One message delivered over SMTP by a real server (then stopped): mail already there."""
    server = harness.Server(tmp_path, in_reactor, users=None)
    server.start()
    try:
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=harness.TIMEOUT) as s:
            s.sendmail("x@example.net", [ALICE], b"Subject: already here\r\n\r\nhi\r\n")
    finally:
        server.stop()


def read_folders(tmp_path, folders):
    server = harness.Server(tmp_path, in_reactor, users=None)
    server.start()
    try:
        client = Client(server.port("imap"), ALICE, PASSWORD)
        try:
            return client.folders(), {f: client.folder(f) for f in folders}
        finally:
            client.close()
    finally:
        server.stop()


def without_recent(flags):
    return flags - {"\\Recent"}


def test_import_maildir_with_subfolders_flags_and_dates(tmp_path, config_path):
    expected = make_maildir(str(tmp_path / "Maildir"))
    deliver_first(tmp_path)
    out = ok(run_cli("import", "maildir", str(tmp_path / "Maildir"), ALICE, config=config_path))
    assert "imported 9 messages" in out, out
    listed, seen = read_folders(tmp_path, expected)
    assert "Archive/2024" in listed and "Entw&APw-rfe" in listed
    for folder, messages in expected.items():
        got = seen[folder]["messages"]
        uids = sorted(got)
        if folder == "INBOX":  # after the mail already there, in the order it arrived
            assert b"already here" in got[uids[0]][2]
            uids = uids[1:]
        assert len(uids) == len(messages), folder
        for uid, (flags, date, data) in zip(uids, messages):
            assert without_recent(got[uid][0]) == flags, (folder, uid)
            assert got[uid][1] == date, (folder, uid)
            assert got[uid][2] == data, (folder, uid)
    assert sorted(seen["INBOX"]["messages"]) == [1, 2, 3, 4, 5, 6]

    # A second import adds nothing and says so; the folders are as they were.
    out = ok(run_cli("import", "maildir", str(tmp_path / "Maildir"), ALICE, config=config_path))
    assert "nothing new: all 9 messages" in out, out
    _, again = read_folders(tmp_path, expected)
    assert {f: sorted(v["messages"]) for f, v in again.items()} == \
        {f: sorted(v["messages"]) for f, v in seen.items()}


def test_import_maildir_into_a_folder_of_choice(tmp_path, config_path):
    expected = make_maildir(str(tmp_path / "Maildir"))
    ok(run_cli("import", "maildir", str(tmp_path / "Maildir"), ALICE, "--folder", "From Dovecot",
               config=config_path))
    folders = {"INBOX": "From Dovecot", "Archive/2024": "From Dovecot/Archive/2024",
               "Sent": "From Dovecot/Sent", "Entw&APw-rfe": "From Dovecot/Entw&APw-rfe"}
    listed, seen = read_folders(tmp_path, list(folders.values()) + ["INBOX"])
    assert seen["INBOX"]["messages"] == {}
    for source, target in folders.items():
        assert [m[2] for _, m in sorted(seen[target]["messages"].items())] == \
            [m[2] for m in expected[source]]


def test_import_mbox_with_flags_dates_and_unquoting(tmp_path, config_path):
    path = tmp_path / "old.mbox"
    path.write_bytes(MBOX)
    out = ok(run_cli("import", "mbox", str(path), ALICE, "--folder", "Archive/Old mail",
                     config=config_path))
    assert "imported 3 messages" in out, out
    listed, seen = read_folders(tmp_path, ["Archive/Old mail"])
    assert "Archive/Old mail" in listed
    got = seen["Archive/Old mail"]["messages"]
    assert sorted(got) == [1, 2, 3]
    for uid, (flags, date, data) in zip(sorted(got), MBOX_EXPECTED):
        assert without_recent(got[uid][0]) == flags, uid
        assert got[uid][1] == date, uid
        assert got[uid][2] == data, uid

    out = ok(run_cli("import", "mbox", str(path), ALICE, "--folder", "Archive/Old mail",
                     config=config_path))
    assert "nothing new: all 3 messages" in out, out
    # Into INBOX after the mail there: new UIDs follow it.
    deliver_first(tmp_path)
    ok(run_cli("import", "mbox", str(path), ALICE, config=config_path))
    _, seen = read_folders(tmp_path, ["INBOX", "Archive/Old mail"])
    assert sorted(seen["INBOX"]["messages"]) == [1, 2, 3, 4]
    assert sorted(seen["Archive/Old mail"]["messages"]) == [1, 2, 3]


def test_import_refuses_what_it_cannot_use(tmp_path, config_path):
    make_maildir(str(tmp_path / "Maildir"))
    harness.assert_one_line_error(
        run_cli("import", "maildir", str(tmp_path / "Maildir"), "nobody@example.com",
                config=config_path), "no such user: nobody@example.com", "user add")
    harness.assert_one_line_error(
        run_cli("import", "maildir", str(tmp_path), ALICE, config=config_path),
        "is not a Maildir")
    (tmp_path / "notes.txt").write_bytes(b"Subject: not an mbox\n\nhi\n")
    harness.assert_one_line_error(
        run_cli("import", "mbox", str(tmp_path / "notes.txt"), ALICE, config=config_path),
        "not an mbox")
    harness.assert_one_line_error(
        run_cli("import", "mbox", str(tmp_path / "absent"), ALICE, config=config_path),
        "is not a file")


# -- the mbox reader alone: the same messages whatever the read size ----------------------

def _parse_all(data, chunk):
    return [(m.parse(), m.offset) for m in mbox.messages(io.BytesIO(data), chunk)]


@pytest.mark.parametrize("chunk", [1, 5, 7, 64, 1 << 20])
def test_mbox_reader_finds_the_same_messages_whatever_the_chunk_size(chunk):
    assert _parse_all(MBOX, chunk) == _parse_all(MBOX, 1 << 20)
    parsed = _parse_all(MBOX, chunk)
    assert [p[0][0] for p in parsed] == [m[2] for m in MBOX_EXPECTED]


def test_mbox_reader_takes_crlf_files_and_messages_larger_than_a_chunk():
    big = b"x" * 200 + b"\n"
    text = (b"From a@b Mon Jan  1 10:00:00 2024\nSubject: big\n\n" + big * 50 +
            b"\nFrom c@d Mon Jan  1 11:00:00 2024\nSubject: small\n\nend\n")
    for data in (text, text.replace(b"\n", b"\r\n")):
        parsed = [m.parse() for m in mbox.messages(io.BytesIO(data), 64)]
        assert [p[0] for p in parsed] == [
            b"Subject: big\r\n\r\n" + crlf(big) * 50, b"Subject: small\r\n\r\nend\r\n"]
        assert [p[2] for p in parsed] == [1704103200.0, 1704106800.0]


def test_mbox_from_line_dates():
    assert mbox.from_line_date(b"From x Sat Jan  3 01:05:34 1996") == 820631134.0
    assert mbox.from_line_date(b"From x Sat Jan  3 01:05:34 1996 -0100") == 820634734.0
    assert mbox.from_line_date(b"From x Sat Jan  3 01:05:34 PST 1996") == 820631134.0
    assert mbox.from_line_date(b"From x no date here") is None
