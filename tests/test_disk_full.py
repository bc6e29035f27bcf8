"""A write the disk refuses: every protocol says "try again later", nothing half-stored.

The server runs as a process whose file-size limit (RLIMIT_FSIZE, what `prlimit
--fsize` sets) is lowered while it runs: a message larger than the limit cannot be
written (EFBIG, as ENOSPC would on a full disk; Python ignores SIGXFSZ).  Raising the
limit again is the disk getting space back: the same messages are then accepted.
"""

import imaplib
import os
import resource
import smtplib

import pytest

from tests import harness
from tests.harness import TIMEOUT

LIMIT = 1024 * 1024
BIG = b"Subject: big\r\n\r\n" + (b"x" * 76 + b"\r\n") * (LIMIT * 3 // 2 // 78)


@pytest.fixture
def process(tmp_path):
    config = harness.write_config(tmp_path)
    harness.add_users(config)
    proc = harness.Process(config)
    proc.mail_root = os.path.join(tmp_path, "data")
    yield proc
    proc.stop()


def _set_file_limit(pid, limit):
    """The soft limit only: raising it again needs no privilege."""
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))


def _imap(proc):
    imap = imaplib.IMAP4("127.0.0.1", proc.ports["imap"], timeout=TIMEOUT)
    imap.login("alice@example.com", "alice-pw")
    return imap


def _message_files(proc):
    """Every file under mail_root's spool and message directories."""
    found = []
    for top, _, files in os.walk(proc.mail_root):
        if os.path.basename(top) in ("spool", "messages"):
            found += [os.path.join(top, f) for f in files]
    return found


def test_full_disk_refuses_on_every_protocol_then_recovers(process):
    pid = process.proc.pid
    _set_file_limit(pid, LIMIT)

    with smtplib.SMTP("127.0.0.1", process.ports["smtp"], timeout=TIMEOUT) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail("someone@example.net", ["alice@example.com"], BIG)
        assert refused.value.smtp_code == 452
        assert refused.value.smtp_error.startswith(b"4.3.1")
        # The session goes on: a small message still fits.
        smtp.sendmail("someone@example.net", ["alice@example.com"], b"Subject: small\r\n\r\nhi\r\n")
    process.wait_for_output(rb"cannot store message")

    imap = _imap(process)
    typ, data = imap.append("INBOX", None, None, BIG)
    assert typ == "NO" and data[0].startswith(b"[OVERQUOTA]"), (typ, data)
    assert imap.noop()[0] == "OK"

    api = harness.APIClient(process.ports["http"])
    api.login("alice@example.com", "alice-pw")
    r = api.request("POST", "/folders/INBOX/messages", data=BIG,
                    headers={"Content-Type": "message/rfc822"})
    assert r.status == 507, r
    assert "try again later" in r.json()["error"]

    # Nothing of the refused messages is visible or left behind: only the small one.
    assert imap.select("INBOX") == ("OK", [b"1"])
    assert len(_message_files(process)) == 1

    # Space comes back: the same three are accepted.
    _set_file_limit(pid, resource.RLIM_INFINITY)
    with smtplib.SMTP("127.0.0.1", process.ports["smtp"], timeout=TIMEOUT) as smtp:
        assert smtp.sendmail("someone@example.net", ["alice@example.com"], BIG) == {}
    assert imap.append("INBOX", None, None, BIG)[0] == "OK"
    r = api.request("POST", "/folders/INBOX/messages", data=BIG,
                    headers={"Content-Type": "message/rfc822"})
    assert r.status == 201, r
    assert imap.select("INBOX") == ("OK", [b"4"])
    typ, data = imap.fetch("1:4", "(RFC822.SIZE)")
    sizes = [int(d.split(b"RFC822.SIZE ")[1].rstrip(b")")) for d in data]
    assert sizes.count(len(BIG)) == 2  # APPEND and POST store it as it is
    assert max(sizes) > len(BIG)  # SMTP adds its trace headers
    imap.logout()
