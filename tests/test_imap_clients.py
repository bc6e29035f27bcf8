"""Real command-line IMAP clients against rmail: mbsync, offlineimap and fetchmail.

The clients are Debian's, installed by .ci/run with
``apt-get install -y isync offlineimap fetchmail``.  A test skips only when its
client's binary is missing.  Every client runs as a subprocess with HOME in the
test's tmp_path and a timeout; the server is the in-process one of the ``server``
fixture.

Alice's mailbox is filled with 225 varied messages (short and long, a few of
100 KB and more, MIME multiparts with attachments, raw 8-bit UTF-8 headers, encoded
words, dot and "From " lines, an empty body), delivered both over SMTP and by IMAP
APPEND, with system flags and keywords set by APPEND and by STORE, in INBOX, Sent,
Archive, a sub-folder and a folder with a non-ASCII name.  The two synchronisers copy
it to a Maildir, which must then match the server message for message (content
modulo line endings, system flags, keywords where the client maps them); local
changes (flags set and cleared, new messages, a new folder) are synced back and
checked on the server through the store; a last run must change nothing.
"""

import base64
import email.header
import email.utils
import getpass
import hashlib
import imaplib
import os
import quopri
import random
import re
import shutil
import smtplib
import ssl
import stat
import subprocess

import pytest

from tests.harness import TIMEOUT, USERS, client_tls, shared_certificate

ALICE = "alice@example.com"
PASSWORD = USERS[ALICE]
RUN_TIMEOUT = 240  # seconds for one run of a client over the whole mailbox

SYSTEM = {"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"}
MAILDIR_LETTERS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen",
                   "T": "\\Deleted"}
KEYWORDS = {"a": "$Label1", "b": "Work"}  # offlineimap's customflag_a / customflag_b

# (folder as the store names it, how many corpus messages it gets)
FOLDERS = [("INBOX", 200), ("Sent", 4), ("Archive", 12), ("Projects/Alpha", 6), ("Café", 3)]


def _need(binary, package):
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (Debian package {package}; .ci/run installs it)")
    return path


# -- the corpus ---------------------------------------------------------------------------

_WORDS = ("mail server imap sync maildir flag seen answered draft folder message header "
          "body quoted printable base64 attachment ÿ café naïve Straße 東京 Ελληνικά "
          "emoji 😀 tab\tinside trailing-space ").split(" ")


def _text(rng, words, width=72) -> str:
    out, line = [], []
    for _ in range(words):
        line.append(rng.choice(_WORDS))
        if sum(len(w) + 1 for w in line) > width:
            out.append(" ".join(line))
            line = []
    out.append(" ".join(line))
    return "\r\n".join(out)


def _b64(data: bytes) -> str:
    text = base64.b64encode(data).decode()
    return "\r\n".join(text[i:i + 76] for i in range(0, len(text), 76))


def _message(folder_tag: str, i: int, rng: random.Random, big: int = 0) -> bytes:
    """One message; its kind, and so its structure, depends on i."""
    mid = f"<{folder_tag}-{i}@corpus.rmail.test>"
    date = email.utils.formatdate(1_600_000_000 + i * 3607 + rng.randrange(3600), localtime=False)
    head = [f"Message-ID: {mid}", f"Date: {date}", "To: Alice <alice@example.com>",
            "MIME-Version: 1.0"]
    kind = i % 8
    if big:
        head += ["From: Big Sender <big@example.net>",
                 f"Subject: {folder_tag} {i}: large attachment",
                 'Content-Type: multipart/mixed; boundary="big-b"']
        body = ("--big-b\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
                "The attachment follows.\r\n--big-b\r\n"
                "Content-Type: application/octet-stream; name=\"blob.bin\"\r\n"
                "Content-Transfer-Encoding: base64\r\n"
                "Content-Disposition: attachment; filename=\"blob.bin\"\r\n\r\n"
                + _b64(rng.randbytes(big)) + "\r\n--big-b--\r\n")
    elif kind == 0:
        head += ["From: Plain Sender <plain@example.net>", f"Subject: {folder_tag} {i}: plain text",
                 "Content-Type: text/plain; charset=us-ascii"]
        body = "".join(c for c in _text(rng, rng.randrange(5, 400)) if ord(c) < 128) + "\r\n"
    elif kind == 1:
        head += ['From: "Zoë Ångström" <zoe@example.org>',
                 f"Subject: {folder_tag} {i}: Grüße aus 東京 — naïve café",
                 "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
        body = _text(rng, rng.randrange(20, 600)) + "\r\n"
    elif kind == 2:
        subject = email.header.Header(f"{folder_tag} {i}: encodé ☃ words", "utf-8").encode()
        head += ["From: =?iso-8859-1?q?Andr=E9?= <andre@example.net>", f"Subject: {subject}",
                 "Content-Type: text/plain; charset=utf-8",
                 "Content-Transfer-Encoding: quoted-printable"]
        raw = (_text(rng, rng.randrange(50, 900), width=200) + "\n").encode()
        body = quopri.encodestring(raw).decode().replace("\n", "\r\n")
    elif kind == 3:
        head += ["From: News <news@example.com>", f"Subject: {folder_tag} {i}: alternative",
                 'Content-Type: multipart/alternative; boundary="alt-%d"' % i]
        text = _text(rng, rng.randrange(10, 300))
        body = (f"This is a MIME message.\r\n--alt-{i}\r\n"
                "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
                f"{text}\r\n--alt-{i}\r\nContent-Type: text/html; charset=utf-8\r\n"
                "Content-Transfer-Encoding: 8bit\r\n\r\n"
                f"<html><body><p>{text.replace(chr(13) + chr(10), '<br>' + chr(13) + chr(10))}</p>"
                f"</body></html>\r\n--alt-{i}--\r\n")
    elif kind == 4:
        head += ["From: Files <files@example.net>", f"Subject: {folder_tag} {i}: attachment",
                 'Content-Type: multipart/mixed; boundary="mix-%d"' % i]
        blob = rng.randbytes(rng.randrange(100, 20000))
        body = (f"--mix-{i}\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--mix-{i}\r\n"
                "Content-Type: image/png; name=\"p.png\"\r\nContent-Transfer-Encoding: base64\r\n"
                "Content-Disposition: attachment; filename=\"p.png\"\r\n\r\n"
                f"{_b64(blob)}\r\n--mix-{i}--\r\n")
    elif kind == 5:
        head += ["From: Tricky <tricky@example.net>", f"Subject: {folder_tag} {i}: tricky lines",
                 "Content-Type: text/plain; charset=us-ascii"]
        body = ("From the start of a line, a mbox reader would split here.\r\n"
                ".\r\n..two dots\r\n.single dot\r\n>From quoted\r\n"
                "    leading spaces and trailing ones   \r\n\ttab first\r\n"
                + "x" * 990 + "\r\n" + "\r\n" * 3 + "last line\r\n")
    elif kind == 6:
        head += ["From: Nested <nested@example.net>",
                 f"Subject: {folder_tag} {i}: nested multiparts",
                 'Content-Type: multipart/mixed; boundary="out-%d"' % i]
        inner = (f"Message-ID: <inner-{folder_tag}-{i}@corpus.rmail.test>\r\n"
                 "From: inner@example.org\r\nSubject: forwarded\r\n\r\nforwarded body\r\n")
        body = (f"--out-{i}\r\nContent-Type: multipart/alternative; boundary=\"in-{i}\"\r\n\r\n"
                f"--in-{i}\r\nContent-Type: text/plain\r\n\r\nplain part\r\n"
                f"--in-{i}\r\nContent-Type: text/html\r\n\r\n<b>html part</b>\r\n--in-{i}--\r\n"
                f"--out-{i}\r\nContent-Type: message/rfc822\r\n\r\n{inner}"
                f"--out-{i}\r\nContent-Type: application/pdf; name=\"d.pdf\"\r\n"
                "Content-Transfer-Encoding: base64\r\n\r\n"
                f"{_b64(rng.randbytes(rng.randrange(1000, 6000)))}\r\n--out-{i}--\r\n")
    else:
        refs = " ".join(f"<ref-{k}@corpus.rmail.test>" for k in range(12))
        head += ["From: Threads <threads@example.net>", f"Subject: {folder_tag} {i}: header only",
                 "Received: from a.example.net by b.example.net; " + date,
                 "Received: from c.example.net\r\n\tby d.example.net; " + date,
                 "References: " + refs.replace("> <", ">\r\n <"),
                 "X-Long-Header: " + " ".join(["folded"] * 40).replace("folded folded folded ",
                                                                       "folded folded folded\r\n ")]
        body = ""
    return ("\r\n".join(head) + "\r\n\r\n" + body).encode("utf-8")


def _flags(i: int) -> list:
    flags = []
    if i % 3 == 0:
        flags.append("\\Seen")
    if i % 7 == 0:
        flags.append("\\Flagged")
    if i % 5 == 0:
        flags.append("\\Answered")
    if i % 37 == 0:
        flags.append("\\Draft")
    if i % 11 == 0:
        flags.append("$Label1")
    if i % 13 == 0:
        flags.append("Work")
    return flags


BIG = {17: 150_000, 101: 400_000, 163: 1_200_000}  # INBOX messages of 100 KB and more


def _populate(server):
    """Fill alice's folders; SMTP for every fourth INBOX message (flags by STORE), APPEND
    (flags in the command) for the rest."""
    rng = random.Random(20240601)
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=TIMEOUT)
    imap.starttls(client_tls())
    imap.login(ALICE, PASSWORD)
    for folder, _ in FOLDERS:
        if folder not in ("INBOX", "Sent", "Archive"):
            assert imap.create(_wire(folder))[0] == "OK"
    smtp = smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=TIMEOUT)
    by_smtp = {}
    for folder, count in FOLDERS:
        tag = re.sub(r"[^a-z]", "", folder.lower()) or "x"
        for i in range(count):
            data = _message(tag, i, rng, BIG.get(i, 0) if folder == "INBOX" else 0)
            flags = _flags(i) if folder != "Sent" else ["\\Seen"]
            if folder == "INBOX" and i % 4 == 1:
                smtp.sendmail("sender@external.com", [ALICE], data, mail_options=["BODY=8BITMIME"])
                by_smtp[_msgid(data)] = flags
                continue
            when = imaplib.Time2Internaldate(1_600_000_000 + i * 86400) if i % 2 else None
            flag_list = "(" + " ".join(flags) + ")" if flags else None
            status, reply = imap.append(_wire(folder), flag_list, when, data)
            assert status == "OK", (folder, i, reply)
    smtp.quit()
    server.wait_for(lambda: len(server.messages(ALICE)) == FOLDERS[0][1], "the SMTP deliveries")
    imap.select("INBOX")
    for uid, _, data in server.messages(ALICE):
        flags = by_smtp.get(_msgid(data))
        if flags:
            status, _ = imap.uid("STORE", str(uid), "+FLAGS.SILENT", "(" + " ".join(flags) + ")")
            assert status == "OK"
    imap.logout()
    expected = {folder: count for folder, count in FOLDERS}
    for folder, count in FOLDERS:
        assert len(server.messages(ALICE, folder)) == count, folder
    return expected


def _wire(folder: str) -> str:
    """A folder name as imaplib must send it: modified UTF-7, quoted."""
    return '"' + folder.encode("imap4-utf-7").decode("ascii") + '"'


# -- reading both sides ---------------------------------------------------------------------

def _header(data: bytes) -> bytes:
    data = data.replace(b"\r\n", b"\n")
    end = data.find(b"\n\n")
    return data if end < 0 else data[:end + 1]


def _msgid(data: bytes) -> str:
    m = re.search(rb"^Message-ID:[ \t]*(<[^>\n]*>)", _header(data), re.I | re.M)
    assert m, data[:300]
    return m.group(1).decode()


def _normal(data: bytes, drop=(), blank_lines=True) -> bytes:
    """Content compared across the sync: LF line ends, without the headers *drop* lists,
    and without blank lines unless *blank_lines*."""
    data = data.replace(b"\r\n", b"\n")
    if drop:
        head, sep, body = data.partition(b"\n\n")
        lines = [line for line in head.split(b"\n")
                 if not any(line.lower().startswith(d.lower() + b":") for d in drop)]
        data = b"\n".join(lines) + sep + body
    if not blank_lines:
        data = b"\n".join(line for line in data.split(b"\n") if line)
    return data


def _server_folders(server) -> set:
    return {f.name for f in server.in_reactor(server.store.user(ALICE).folders)}


def _server_side(server, folder) -> dict:
    """{Message-ID: (flags, bytes, uid)} of one folder, through the store."""
    out = {}
    for uid, flags, data in server.messages(ALICE, folder):
        mid = _msgid(data)
        assert mid not in out, f"{mid} twice in {folder} on the server"
        out[mid] = (frozenset(flags), data, uid)
    return out


def _maildir_folders(root) -> set:
    """Relative paths (with '/') of the Maildir folders under *root*."""
    found = set()
    for dirpath, dirnames, _ in os.walk(root):
        if {"cur", "new", "tmp"} <= set(dirnames):
            found.add(os.path.relpath(dirpath, root).replace(os.sep, "/"))
    return found


def _maildir(path, keywords=None) -> dict:
    """{Message-ID: (flags, bytes, file path)} of one Maildir folder."""
    out = {}
    for sub in ("new", "cur"):
        for name in sorted(os.listdir(os.path.join(path, sub))):
            full = os.path.join(path, sub, name)
            info = name.rsplit(":2,", 1)[1] if ":2," in name else ""
            flags = {MAILDIR_LETTERS[c] for c in info if c in MAILDIR_LETTERS}
            flags |= {keywords[c] for c in info if keywords and c in keywords}
            with open(full, "rb") as f:
                data = f.read()
            mid = _msgid(data)
            assert mid not in out, f"{mid} twice in {path}"
            out[mid] = (frozenset(flags), data, full)
    return out


def _set_maildir_flags(path: str, flags) -> str:
    """Rename a Maildir message file (into cur/) so that its info has *flags* (letters)."""
    folder = os.path.dirname(os.path.dirname(path))
    base = os.path.basename(path).rsplit(":2,", 1)[0]
    new = os.path.join(folder, "cur", base + ":2," + "".join(sorted(flags)))
    os.rename(path, new)
    return new


def _assert_same(server, folder, local, drop=(), keywords=False, blank_lines=True):
    """The Maildir folder holds exactly the server's messages, same content and flags."""
    remote = _server_side(server, folder)
    assert sorted(local) == sorted(remote), (
        f"{folder}: only on the server {sorted(set(remote) - set(local))[:5]}, "
        f"only local {sorted(set(local) - set(remote))[:5]}")
    wrong_flags, wrong_data = [], []
    for mid, (flags, data, _) in remote.items():
        lflags, ldata, _ = local[mid]
        expected = flags if keywords else flags & SYSTEM
        if lflags != expected:
            wrong_flags.append((mid, sorted(expected), sorted(lflags)))
        if _normal(ldata, drop, blank_lines) != _normal(data, drop, blank_lines):
            wrong_data.append(mid)
    assert not wrong_flags, f"{folder}: flags differ (server, local): {wrong_flags[:5]}"
    assert not wrong_data, f"{folder}: content differs: {wrong_data[:5]}"
    return remote


def _local_message(tag: str, n: int) -> bytes:
    """A message written by the local side (LF line ends, as Maildir writers do)."""
    date = email.utils.formatdate(1_700_000_000 + n)
    return (f"Message-ID: <{tag}-{n}@local.rmail.test>\nDate: {date}\n"
            f"From: Alice <alice@example.com>\nTo: bob@example.com\n"
            f"Subject: {tag} {n}: written locally, Grüße\nMIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
            f"Local message {n}.\nZweite Zeile — ünïcödé.\n.\nFrom here\n").encode()


def _write_maildir_message(folder_dir, name, data, flags=None):
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(folder_dir, sub), exist_ok=True)
    tmp = os.path.join(folder_dir, "tmp", name)
    with open(tmp, "wb") as f:
        f.write(data)
    if flags is None:
        os.rename(tmp, os.path.join(folder_dir, "new", name))
    else:
        os.rename(tmp, os.path.join(folder_dir, "cur", name + ":2," + "".join(sorted(flags))))


def _local_changes(inbox_dir, folder_dir_of, keywords=None):
    """Flag changes in INBOX, new messages in INBOX and Archive, a new folder.

    Returns {folder: {Message-ID: expected flags on the server}} for what changed."""
    inbox = _maildir(inbox_dir, keywords)
    mids = sorted(inbox)
    expected = {"INBOX": {}, "Archive": {}, "Local/Notes": {}}
    changes = 0
    for n, mid in enumerate(mids):
        path = inbox[mid][2]
        name = os.path.basename(path)
        letters = set(name.rsplit(":2,", 1)[1]) if ":2," in name else set()
        new_letters = set(letters)
        if n % 6 == 1 and "S" not in letters:
            new_letters.add("S")  # read locally
        if n % 9 == 2:
            new_letters ^= {"F"}  # flagged or unflagged
        if n % 15 == 3 and "S" in letters:
            new_letters.discard("S")  # marked unread again
        if n % 17 == 4:
            new_letters.add("R")  # answered
        if new_letters != letters:
            _set_maildir_flags(path, new_letters)
            expected["INBOX"][mid] = new_letters
            changes += 1
    assert changes > 40
    for n in range(3):
        data = _local_message("inbox-new", n)
        _write_maildir_message(inbox_dir, f"1700000000.local{n}.rmailtest", data,
                               None if n == 0 else {"S"} if n == 1 else {"S", "F"})
        expected["INBOX"][_msgid(data)] = set() if n == 0 else {"S"} if n == 1 else {"S", "F"}
    data = _local_message("archive-new", 0)
    _write_maildir_message(folder_dir_of("Archive"), "1700000001.archive0.rmailtest", data, {"S"})
    expected["Archive"][_msgid(data)] = {"S"}
    for n in range(2):
        data = _local_message("notes-new", n)
        _write_maildir_message(folder_dir_of("Local/Notes"), f"1700000002.notes{n}.rmailtest",
                               data, {"S", "F"} if n else None)
        expected["Local/Notes"][_msgid(data)] = {"S", "F"} if n else set()
    return {folder: {mid: {MAILDIR_LETTERS[c] for c in letters if c in MAILDIR_LETTERS}
                     for mid, letters in items.items()}
            for folder, items in expected.items()}


def _assert_pushed(server, expected, before):
    """The server shows the local changes; keywords and untouched flags survive."""
    for folder, items in expected.items():
        remote = _server_side(server, folder)
        for mid, flags in items.items():
            assert mid in remote, f"{mid} did not reach {folder} on the server"
            got = remote[mid][0]
            assert got & SYSTEM == flags, f"{folder} {mid}: {sorted(got)}, want {sorted(flags)}"
            old = before.get(folder, {}).get(mid)
            if old is not None:  # keywords the client does not map are kept
                assert got - SYSTEM == old[0] - SYSTEM, (mid, sorted(old[0]), sorted(got))
    new_data = {mid: data for folder in expected for mid, (_, data, _) in
                _server_side(server, folder).items() if "@local.rmail.test" in mid}
    assert len(new_data) == 6
    for mid, data in new_data.items():
        tag, n = re.match(r"<(.*)-(\d+)@", mid).groups()
        assert b"\n" not in data.replace(b"\r\n", b""), f"{mid}: bare LF stored"
        written = _normal(_local_message(tag, int(n)))
        assert _normal(data, (b"X-TUID", b"X-OfflineIMAP")) == written, mid


# -- mbsync (isync) -------------------------------------------------------------------------

def _mbsync_version(binary):
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=TIMEOUT)
    m = re.search(r"(\d+)\.(\d+)", out.stdout + out.stderr)
    return (int(m.group(1)), int(m.group(2))) if m else (1, 4)


def _run(argv, home, timeout=RUN_TIMEOUT):
    env = dict(os.environ, HOME=str(home), LANG="C.UTF-8", LC_ALL="C.UTF-8")
    try:
        proc = subprocess.run(argv, env=env, cwd=str(home), stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{argv[0]} did not finish in {timeout}s:\n"
                    f"{(e.stdout or b'').decode(errors='replace')[-3000:]}\n"
                    f"{(e.stderr or b'').decode(errors='replace')[-3000:]}")
    output = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    return proc.returncode, output


def _complaints(output: str) -> list:
    """The lines of a client's output that report an error or a warning."""
    return [line for line in output.splitlines()
            if re.search(r"error|warning", line, re.I) and "running as root" not in line.lower()]


def test_mbsync_syncs_both_ways(server, tmp_path):
    binary = _need("mbsync", "isync")
    expected_counts = _populate(server)
    local = tmp_path / "mbsync"
    local.mkdir()
    tls = "TLSType" if _mbsync_version(binary) >= (1, 5) else "SSLType"
    rc_file = tmp_path / "mbsyncrc"
    rc_file.write_text(f"""
IMAPAccount rmail
Host 127.0.0.1
Port {server.port("imap")}
User {ALICE}
Pass {PASSWORD}
{tls} STARTTLS
CertificateFile {shared_certificate()[0]}
SystemCertificates no
Timeout 30

IMAPStore rmail-remote
Account rmail

MaildirStore rmail-local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel alice
Far :rmail-remote:
Near :rmail-local:
Patterns * INBOX
Create Both
Remove None
Expunge None
Sync All
SyncState *
CopyArrivalDate yes
""")
    argv = [binary, "-c", str(rc_file), "-a"]

    code, output = _run(argv, tmp_path)
    assert code == 0 and not _complaints(output), output
    server_folders = _server_folders(server)
    assert server_folders >= {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive",
                              "Projects/Alpha", "Café"}
    # isync 1.4 keeps mailbox names as the wire spells them (modified UTF-7) on disk;
    # later versions may decode them.
    on_disk = {name: name for name in server_folders}
    utf7 = "Café".encode("imap4-utf-7").decode()
    on_disk["Café"] = utf7 if (local / utf7).is_dir() else "Café"
    assert _maildir_folders(local) == set(on_disk.values())
    before = {}
    for folder in server_folders:
        maildir = _maildir(local / on_disk[folder])
        assert len(maildir) == expected_counts.get(folder, 0), folder
        before[folder] = _assert_same(server, folder, maildir, drop=(b"X-TUID",))
    inbox = {mid: flags for mid, (flags, _, _) in before["INBOX"].items()}
    assert sum("\\Seen" in f for f in inbox.values()) == 67  # the corpus's mix
    assert sum("$Label1" in f for f in inbox.values()) == 19

    # Local changes, synced back.
    expected = _local_changes(local / "INBOX", lambda name: local / name)
    code, output = _run(argv, tmp_path)
    assert code == 0 and not _complaints(output), output
    # CREATE Local/Notes made its parent too (RFC 3501 6.3.3); mbsync sees it next time.
    assert _server_folders(server) == server_folders | {"Local", "Local/Notes"}
    _assert_pushed(server, expected, before)
    for folder in server_folders | {"Local/Notes"}:
        _assert_same(server, folder, _maildir(local / on_disk.get(folder, folder)),
                     drop=(b"X-TUID",))

    # A third run brings the parent and finds nothing else to do: no duplicates either way.
    counts = {f: len(server.messages(ALICE, f)) for f in _server_folders(server)}
    code, output = _run(argv, tmp_path)
    assert code == 0 and not _complaints(output), output
    assert {f: len(server.messages(ALICE, f)) for f in _server_folders(server)} == counts
    on_disk.update({"Local": "Local", "Local/Notes": "Local/Notes"})
    assert _maildir_folders(local) == set(on_disk.values())
    for folder in _server_folders(server):
        _assert_same(server, folder, _maildir(local / on_disk[folder]), drop=(b"X-TUID",))


# -- offlineimap -------------------------------------------------------------------------------

def _fingerprint(cert_path) -> str:
    with open(cert_path) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    return hashlib.sha256(der).hexdigest()


def test_offlineimap_syncs_both_ways(server, tmp_path):
    binary = _need("offlineimap", "offlineimap")
    expected_counts = _populate(server)
    local = tmp_path / "offlineimap"
    rc_file = tmp_path / "offlineimaprc"
    rc_file.write_text(f"""
[general]
accounts = alice
metadata = {tmp_path}/offlineimap-state
maxsyncaccounts = 1
socktimeout = 30

[Account alice]
localrepository = alice-local
remoterepository = alice-remote

[Repository alice-local]
type = Maildir
localfolders = {local}
sep = /
customflag_a = {KEYWORDS["a"]}
customflag_b = {KEYWORDS["b"]}

[Repository alice-remote]
type = IMAP
remotehost = 127.0.0.1
remoteport = {server.port("imaps")}
ssl = yes
cert_fingerprint = {_fingerprint(shared_certificate()[0])}
remoteuser = {ALICE}
remotepass = {PASSWORD}
maxconnections = 2
expunge = no
""")
    argv = [binary, "-c", str(rc_file), "-o", "-u", "basic"]

    code, output = _run(argv, tmp_path)
    assert code == 0 and not _complaints(output), output
    server_folders = _server_folders(server)
    # offlineimap parses each message and writes it out again with Python's email
    # generator, which adds a blank line after a nested multipart's closing delimiter:
    # contents are compared without blank lines.
    # offlineimap keeps the wire's modified UTF-7 names on disk unless told otherwise.
    on_disk = {name: name.encode("imap4-utf-7").decode() for name in server_folders}
    assert _maildir_folders(local) == set(on_disk.values())
    before = {}
    for folder in server_folders:
        maildir = _maildir(local / on_disk[folder], KEYWORDS)
        assert len(maildir) == expected_counts.get(folder, 0), folder
        before[folder] = _assert_same(server, folder, maildir, keywords=True, blank_lines=False)

    expected = _local_changes(local / "INBOX", lambda name: local / name, KEYWORDS)
    # offlineimap creates the parent of a new nested folder on the server, then stops on
    # finding no local folder of that name: the parent must be a Maildir of its own.
    for sub in ("cur", "new", "tmp"):
        (local / "Local" / sub).mkdir()
    code, output = _run(argv, tmp_path)
    assert code == 0 and not _complaints(output), output
    assert _server_folders(server) == server_folders | {"Local", "Local/Notes"}
    _assert_pushed(server, expected, before)
    on_disk.update({"Local": "Local", "Local/Notes": "Local/Notes"})
    for folder in server_folders | {"Local", "Local/Notes"}:
        _assert_same(server, folder, _maildir(local / on_disk.get(folder, folder), KEYWORDS),
                     drop=(b"X-OfflineIMAP",), keywords=True, blank_lines=False)

    counts = {f: len(server.messages(ALICE, f)) for f in _server_folders(server)}
    code, output = _run(argv, tmp_path)
    assert code == 0 and not _complaints(output), output
    assert {f: len(server.messages(ALICE, f)) for f in _server_folders(server)} == counts
    assert _maildir_folders(local) == set(on_disk.values())
    for folder in _server_folders(server):
        _assert_same(server, folder, _maildir(local / on_disk[folder], KEYWORDS),
                     drop=(b"X-OfflineIMAP",), keywords=True, blank_lines=False)


# -- fetchmail ---------------------------------------------------------------------------------

def _fetched(directory) -> dict:
    """{Message-ID: [bytes, ...]} of the messages fetchmail's MDA wrote, one file each."""
    out = {}
    for name in os.listdir(directory):
        with open(os.path.join(directory, name), "rb") as f:
            data = f.read()
        out.setdefault(_msgid(data), []).append(data)
    return out


def _without_fetchmail_received(data: bytes) -> bytes:
    """The message without the Received header fetchmail adds (first, or just before the
    first Received header already there)."""
    lines = data.split(b"\n")
    starts = [i for i, line in enumerate(lines[:lines.index(b"")])
              if line.startswith(b"Received: from 127.0.0.1 [127.0.0.1]")]
    assert len(starts) == 1, data[:500]
    end = starts[0] + 1
    while lines[end][:1] in (b" ", b"\t"):
        end += 1
    assert b"with IMAP (fetchmail" in b"".join(lines[starts[0]:end])
    return b"\n".join(lines[:starts[0]] + lines[end:])


def test_fetchmail_fetches_new_then_all(server, tmp_path):
    binary = _need("fetchmail", "fetchmail")
    _populate(server)
    before = _server_side(server, "INBOX")
    unseen = {mid for mid, (flags, _, _) in before.items() if "\\Seen" not in flags}
    assert len(unseen) == 133
    out = tmp_path / "delivered"
    out.mkdir()
    rc_file = tmp_path / "fetchmailrc"
    rc_file.write_text(f"""
set no syslog
set no bouncemail
poll 127.0.0.1 with proto IMAP port {server.port("imap")} timeout 60
    user "{ALICE}" there with password "{PASSWORD}" is "{getpass.getuser()}" here
    sslproto "TLS1.2+" sslcertck sslcertfile "{shared_certificate()[0]}"
    sslcommonname "mail.example.com"
    no rewrite
    mda "cat > $(mktemp -p {out} msg.XXXXXXXX)"
""")
    rc_file.chmod(stat.S_IRUSR | stat.S_IWUSR)
    argv = [binary, "-f", str(rc_file), "--nodetach", "--nosyslog", "-v"]

    # New (unseen) messages only, kept on the server: fetching marks them seen.
    code, output = _run(argv + ["--keep"], tmp_path)
    assert code == 0 and not _complaints(output), output
    fetched = _fetched(out)
    assert set(fetched) == unseen, (sorted(set(fetched) ^ unseen)[:5], output[-3000:])
    assert all(len(copies) == 1 for copies in fetched.values())
    for mid in unseen:
        assert _normal(_without_fetchmail_received(fetched[mid][0])) == _normal(before[mid][1]), mid
    after = _server_side(server, "INBOX")
    assert set(after) == set(before)
    for mid, (flags, data, uid) in after.items():
        assert flags == before[mid][0] | {"\\Seen"}, (mid, sorted(before[mid][0]), sorted(flags))
        assert data == before[mid][1]

    # Nothing new: fetchmail says so with exit status 1.
    code, output = _run(argv + ["--keep"], tmp_path)
    assert code == 1 and not _complaints(output), output
    assert sum(len(v) for v in _fetched(out).values()) == len(unseen)

    # Everything, deleted from the server afterwards.
    code, output = _run(argv + ["--fetchall", "--nokeep"], tmp_path)
    assert code == 0 and not _complaints(output), output
    fetched = _fetched(out)
    assert set(fetched) == set(before)
    for mid, (_, data, _) in before.items():
        copies = fetched[mid]
        assert len(copies) == (2 if mid in unseen else 1), mid
        for copy in copies:
            assert _normal(_without_fetchmail_received(copy)) == _normal(data), mid
    assert server.messages(ALICE, "INBOX") == []
