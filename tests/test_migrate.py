"""`python run.py migrate` as a real process: a legacy index.json tree into shards, then read
over IMAP from a real server with the UIDVALIDITY, UIDs, flags, dates and bytes it had."""

import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from datetime import datetime

import pytest

from rmail import config as rconfig
from rmail.store.shardstore import ShardStore
from tests import harness
from tests.conftest import in_reactor
from tests.imapview import Client, imap_date, ok, run_cli

PASSWORDS = harness.USERS


def body(address, folder, uid, extra=b""):
    return (f"From: Sender {uid} <sender{uid}@example.net>\r\nTo: {address}\r\n"
            f"Subject: {folder} message {uid}\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
            f"Message-ID: <{uid}.{folder.replace('/', '.')}@{address}>\r\n\r\n"
            f"Hello {address}, this is UID {uid} of {folder}.\r\n").encode() + extra


# Several users, nested folders (Work/Projects/Q1 without a Work/index.json of its own),
# a non-ASCII folder, flags and keywords, odd UIDs with gaps, UIDNEXT above the last UID.
LEGACY = {
    "alice@example.com": {
        "INBOX": (3857000001, 41, [
            (3, ["\\Seen"], "2024-01-02T03:04:05Z"),
            (4, ["\\Seen", "\\Answered", "$Forwarded"], "2024-01-02T05:00:00+02:00"),
            (9, ["\\Flagged", "$Label1", "NonJunk"], "2023-12-31T23:59:59.750Z"),
            (17, [], "2024-02-29T12:00:00-05:00"),
            (40, ["\\Deleted", "\\Seen"], "2024-03-01T00:00:00Z"),
        ]),
        "Sent": (12, 8, [(1, ["\\Seen"], "2022-06-01T08:00:00Z"),
                         (7, ["\\Seen", "\\Draft"], "2022-06-02T08:00:00Z")]),
        "Archive": (99, 3, [(2, ["\\Seen"], "2020-01-01T00:00:00Z")]),
        "Archive/2024": (100, 1000, [(500, ["\\Seen", "$Important"], "2024-05-05T05:05:05Z"),
                                     (999, [], "2024-06-06T06:06:06Z")]),
        "Work/Projects/Q1": (5, 6, [(5, ["\\Recent", "\\Seen"], "2021-03-03T03:03:03Z")]),
        "Entwürfe": (77, 2, [(1, ["\\Draft"], "2021-04-04T04:04:04Z")]),
    },
    "bob@example.com": {
        "INBOX": (2000000000, 12, [(i, ["\\Seen"] if i % 2 else [], f"2024-01-{i:02d}T10:00:00Z")
                                   for i in range(1, 12)]),
        "Junk": (31, 1, []),
    },
    "carol@example.org": {
        "INBOX": (1, 4, [(1, [], "2019-09-09T09:09:09Z"),
                         (3, ["\\Flagged"], "2019-09-10T09:09:09Z")]),
    },
}
WIRE_NAMES = {"Entwürfe": "Entw&APw-rfe"}  # modified UTF-7 (RFC 3501 5.1.3)
LF_MESSAGE = ("bob@example.com", "INBOX", 5)  # stored with bare LF in the legacy tree


def write_legacy(root, legacy=LEGACY):
    """Write the legacy tree; return {(address, folder, uid): (flags, epoch, bytes over IMAP)}."""
    expected = {}
    for address, folders in legacy.items():
        local, domain = address.split("@")
        for folder, (uidvalidity, uidnext, messages) in folders.items():
            directory = os.path.join(root, domain, local, *folder.split("/"))
            os.makedirs(directory, exist_ok=True)
            entries = []
            for uid, flags, date in messages:
                data = body(address, folder, uid)
                name = f"{uid:06d}.msg"
                stored = data
                if (address, folder, uid) == LF_MESSAGE:
                    stored = data.replace(b"\r\n", b"\n")
                with open(os.path.join(directory, name), "wb") as f:
                    f.write(stored)
                entries.append({"uid": uid, "file": name, "flags": flags, "internaldate": date})
                epoch = datetime.fromisoformat(date).timestamp()
                expected[(address, folder, uid)] = (
                    frozenset(f for f in flags if f != "\\Recent"), epoch, data)
            entries.reverse()  # index.json need not be in UID order
            with open(os.path.join(directory, "index.json"), "w") as f:
                json.dump({"uidvalidity": uidvalidity, "uidnext": uidnext, "messages": entries}, f)
    return expected


def snapshot(root) -> dict:
    """Every file under *root*: its bytes' hash, size, mode and mtime."""
    found = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            st = os.stat(path)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = (hashlib.sha256(f.read()).hexdigest(),
                                                      st.st_size, st.st_mode, st.st_mtime_ns)
    return found


@pytest.fixture
def setup(tmp_path):
    """A config with users (bob has an account; all do), a legacy tree under mail_root."""
    config_path = harness.write_config(tmp_path)
    harness.add_users(config_path)
    mail_root = rconfig.load(config_path).mail_root_path
    expected = write_legacy(mail_root)
    return tmp_path, config_path, mail_root, expected


def legacy_root(mail_root):
    return [os.path.join(mail_root, d) for d in ("example.com", "example.org")]


def legacy_snapshot(mail_root):
    return {d: snapshot(d) for d in legacy_root(mail_root)}


def shard_dir(mail_root, address):
    return ShardStore(mail_root).shard_path(address)


def index_dump(mail_root, address):
    db = sqlite3.connect(os.path.join(shard_dir(mail_root, address), "index.sqlite"))
    try:
        return (db.execute("SELECT * FROM folders ORDER BY id").fetchall(),
                db.execute("SELECT * FROM messages ORDER BY folder_id, uid").fetchall(),
                db.execute("SELECT count(*) FROM summaries").fetchone(),
                db.execute("SELECT count(*) FROM headers").fetchone())
    finally:
        db.close()


def check_over_imap(tmp_path, expected, legacy=LEGACY, skip=()):
    """Start a real server; every legacy folder reads back as it was."""
    server = harness.Server(tmp_path, in_reactor, users=None)
    server.start()
    try:
        for address, folders in legacy.items():
            client = Client(server.port("imap"), address, PASSWORDS[address])
            try:
                listed = client.folders()
                for folder, (uidvalidity, uidnext, messages) in folders.items():
                    if (address, folder) in skip:
                        continue
                    wire = WIRE_NAMES.get(folder, folder)
                    assert wire in listed, (wire, listed)
                    seen = client.folder(wire)
                    assert seen["uidvalidity"] == uidvalidity, (address, folder)
                    assert seen["uidnext"] == uidnext, (address, folder)
                    assert sorted(seen["messages"]) == [m[0] for m in messages], (address, folder)
                    for uid, (flags, date, data) in seen["messages"].items():
                        want_flags, epoch, want = expected[(address, folder, uid)]
                        assert flags == want_flags, (address, folder, uid, flags)
                        assert date == imap_date(epoch), (address, folder, uid)
                        assert data == want, (address, folder, uid)
            finally:
                client.close()
    finally:
        server.stop()
    return server


def test_migrate_keeps_uidvalidity_uids_flags_dates_and_bytes_over_imap(setup):
    tmp_path, config_path, mail_root, expected = setup
    before = legacy_snapshot(mail_root)
    out = ok(run_cli("migrate", config=config_path))
    total = sum(len(m) for folders in LEGACY.values() for _, _, m in folders.values())
    assert f"{total} messages copied and verified" in out, out
    assert "migrated 3 users, 9 folders" in out, out
    assert "1 message had bare LF or CR line ends" in out, out
    assert legacy_snapshot(mail_root) == before  # the legacy tree is only read
    check_over_imap(tmp_path, expected)

    # The index kept what the server computes at delivery: IMAP list views and SEARCH
    # answer from it without opening message files.
    folders, rows, summaries, headers = index_dump(mail_root, "alice@example.com")
    files = {row[2] for row in rows}
    assert summaries == (len(files),) and headers == (len(files),)
    assert any(name == "Work" for _, name, *_ in folders)  # the parent exists, not from legacy


def test_search_and_envelope_answer_for_migrated_mail(setup):
    tmp_path, config_path, mail_root, _ = setup
    ok(run_cli("migrate", config=config_path))
    server = harness.Server(tmp_path, in_reactor, users=None)
    server.start()
    try:
        client = Client(server.port("imap"), "alice@example.com", PASSWORDS["alice@example.com"])
        assert client.search("Archive/2024", "SUBJECT", '"message 999"') == [999]
        assert client.search("INBOX", "KEYWORD", "$Label1") == [9]
        assert client.search("INBOX", "UNSEEN") == [9, 17]
        assert b"INBOX message 17" in client.envelope_subject("INBOX", 17)
        client.close()
    finally:
        server.stop()


def test_a_second_run_changes_nothing_and_says_so(setup):
    tmp_path, config_path, mail_root, expected = setup
    ok(run_cli("migrate", config=config_path))
    dumps = {a: index_dump(mail_root, a) for a in LEGACY}
    files = {a: sorted(os.listdir(os.path.join(shard_dir(mail_root, a), "messages")))
             for a in LEGACY}
    out = ok(run_cli("migrate", config=config_path))
    assert "nothing to do: all 25 messages in 9 folders of 3 users" in out, out
    assert {a: index_dump(mail_root, a) for a in LEGACY} == dumps
    assert {a: sorted(os.listdir(os.path.join(shard_dir(mail_root, a), "messages")))
            for a in LEGACY} == files
    check_over_imap(tmp_path, expected)


def test_migrate_killed_half_way_resumes_without_duplicates(setup):
    tmp_path, config_path, mail_root, expected = setup
    before = legacy_snapshot(mail_root)
    # Commits every 3 messages; of alice's 12, the commit that would reach 7 does not
    # happen (6 are committed, 3 more placed) and the process waits there to be killed.
    env = dict(os.environ, RMAIL_MIGRATE_FAILPOINT="7")
    proc = subprocess.Popen(
        [sys.executable, "run.py", "migrate", "--batch-size", "3", "--config", config_path],
        cwd=harness.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        stdin=subprocess.DEVNULL)
    try:
        line = proc.stderr.readline()
        assert b"RMAIL_MIGRATE_FAILPOINT=7" in line and b"waiting to be killed" in line, line
        proc.send_signal(signal.SIGKILL)
        proc.wait(harness.TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    # Killed between placing files and committing them: fewer rows than files.
    alice = shard_dir(mail_root, "alice@example.com")
    _, rows, _, _ = index_dump(mail_root, "alice@example.com")
    on_disk = set(os.listdir(os.path.join(alice, "messages")))
    assert len(rows) == 6, rows
    assert len(on_disk) > len({r[2] for r in rows})

    out = ok(run_cli("migrate", config=config_path))
    assert "6 already there" in out, out
    assert legacy_snapshot(mail_root) == before
    for address in LEGACY:
        _, rows, _, _ = index_dump(mail_root, address)
        keys = [(r[0], r[1]) for r in rows]
        assert len(keys) == len(set(keys))
        on_disk = set(os.listdir(os.path.join(shard_dir(mail_root, address), "messages")))
        assert on_disk == {r[2] for r in rows}, address  # no leftovers of the killed run
    check_over_imap(tmp_path, expected)
    assert os.listdir(os.path.join(alice, "quarantine")) == []  # the server found no strays


def test_a_missing_message_file_fails_naming_it_and_the_next_run_finishes(setup):
    tmp_path, config_path, mail_root, expected = setup
    path = os.path.join(mail_root, "example.com", "alice", "INBOX", "000009.msg")
    os.rename(path, path + ".away")
    result = run_cli("migrate", config=config_path)
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "Traceback" not in err
    assert "alice@example.com INBOX UID 9" in err and path in err, err
    # Before the missing message: copied; from it on, the folder waits; others are done.
    _, rows, _, _ = index_dump(mail_root, "alice@example.com")
    inbox_uids = [uid for folder_id, uid, *_ in rows if folder_id == 1]
    assert inbox_uids == [3, 4]
    assert len(index_dump(mail_root, "bob@example.com")[1]) == 11

    os.rename(path + ".away", path)
    out = ok(run_cli("migrate", config=config_path))
    assert "3 messages copied" in out, out
    check_over_imap(tmp_path, expected)


def test_migrate_refuses_while_the_server_runs(tmp_path):
    ports = {}
    for key in ("smtp", "imap"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports[key] = s.getsockname()[1]
    config_path = harness.write_config(tmp_path, listen__smtp=ports["smtp"],
                                       listen__imap=ports["imap"])
    harness.add_users(config_path)
    mail_root = rconfig.load(config_path).mail_root_path
    write_legacy(mail_root)
    server = harness.Process(config_path)
    try:
        result = run_cli("migrate", config=config_path)
        line = harness.assert_one_line_error(result, "rmail is running", str(ports["smtp"]),
                                             "stop it first")
        assert "migrate" in line
        assert not os.path.exists(shard_dir(mail_root, "bob@example.com"))
    finally:
        server.stop()
    ok(run_cli("migrate", config=config_path))  # stopped: it runs


def test_expunged_after_migration_stays_gone_on_another_run(setup):
    tmp_path, config_path, mail_root, _ = setup
    ok(run_cli("migrate", config=config_path))
    server = harness.Server(tmp_path, in_reactor, users=None)
    server.start()
    try:
        client = Client(server.port("imap"), "alice@example.com", PASSWORDS["alice@example.com"])
        client.imap.select("INBOX")
        client.imap.uid("STORE", "4", "+FLAGS", "(\\Deleted)")
        client.imap.expunge()
        client.imap.uid("STORE", "17", "+FLAGS", "(\\Seen)")
        client.close()
    finally:
        server.stop()
    out = ok(run_cli("migrate", config=config_path))
    assert "nothing to do" in out
    server = harness.Server(tmp_path, in_reactor, users=None)
    server.start()
    try:
        client = Client(server.port("imap"), "alice@example.com", PASSWORDS["alice@example.com"])
        inbox = client.folder("INBOX")
        client.close()
    finally:
        server.stop()
    assert sorted(inbox["messages"]) == [3, 9, 17]  # 40 was \Deleted too, and expunged
    assert "\\Seen" in inbox["messages"][17][0]  # the change made over IMAP is kept


def test_a_folder_that_received_mail_first_is_reported_or_merged(setup):
    tmp_path, config_path, mail_root, expected = setup
    server = harness.Server(tmp_path, in_reactor, users=None)
    server.start()
    try:
        import smtplib
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=harness.TIMEOUT) as s:
            s.sendmail("x@example.net", ["carol@example.org"],
                       b"Subject: arrived first\r\n\r\nbefore the migration\r\n")
    finally:
        server.stop()
    result = run_cli("migrate", config=config_path)
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "carol@example.org INBOX" in err and "--merge" in err, err
    check_over_imap(tmp_path, expected, skip={("carol@example.org", "INBOX")})

    out = ok(run_cli("migrate", "--merge", config=config_path))
    assert "merged" in out, out
    out = ok(run_cli("migrate", "--merge", config=config_path))
    assert "nothing to do" in out, out
    server = harness.Server(tmp_path, in_reactor, users=None)
    server.start()
    try:
        client = Client(server.port("imap"), "carol@example.org", PASSWORDS["carol@example.org"])
        inbox = client.folder("INBOX")
        client.close()
    finally:
        server.stop()
    uids = sorted(inbox["messages"])
    assert uids == [1, 2, 3]  # rmail's own UID 1 first, then the two legacy messages
    assert b"arrived first" in inbox["messages"][1][2]
    assert inbox["messages"][2][2] == expected[("carol@example.org", "INBOX", 1)][2]
    assert inbox["messages"][3][0] - {"\\Recent"} == {"\\Flagged"}


def test_progress_is_a_bar_on_a_terminal_and_lines_otherwise(setup):
    tmp_path, config_path, mail_root, _ = setup
    import pty
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "run.py", "migrate", "--config", config_path],
                            cwd=harness.ROOT, stdout=follower, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    assert proc.wait(harness.TIMEOUT) == 0, proc.stderr.read()
    proc.stderr.close()
    assert b"\rmigrate [" + b"#" * 30 + b"] 25/25 messages (100%)" in output, output
    assert b"25 messages copied and verified" in output

    out = ok(run_cli("migrate", config=config_path))  # a pipe: plain lines
    assert "\r" not in out
    assert "migrate: 25/25 messages (100%)" in out
