"""The seed's HTTP API examples, verbatim (hostnames aside): once with urllib, once with
curl itself (skipped where curl is not installed)."""

import imaplib
import json
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest

from tests.conftest import in_reactor
from tests.harness import TIMEOUT, Server

SEED_USERS = {"alice@example.com": "password", "bob@example.com": "password"}


@pytest.fixture
def seed_server(tmp_path):
    srv = Server(tmp_path, in_reactor, users=SEED_USERS)
    srv.start()
    yield srv
    srv.stop()


def _fill_inbox_to_uid_42(server):
    """Deliver 42 messages so the seed's UID 42 exists."""
    for n in range(1, 43):
        raw = f"From: sender@external.com\r\nTo: alice@example.com\r\nSubject: m{n}\r\n\r\nb{n}\r\n"
        writer = server.store.new_message()
        writer.write(raw.encode())
        in_reactor(writer.finish)
        in_reactor(server.store.deliver, writer, ["alice@example.com"])


def _urlopen(request):
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def _bob_inbox(server):
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    imap.login("bob@example.com", "password")
    imap.select("INBOX")
    status, data = imap.search(None, "ALL")
    uids = data[0].split()
    status, data = imap.fetch(uids[-1], "(BODY.PEEK[])")
    imap.logout()
    return len(uids), data[0][1]


def test_seed_examples_with_urllib(seed_server):
    base = f"http://127.0.0.1:{seed_server.port('http')}"
    _fill_inbox_to_uid_42(seed_server)

    # Authenticate
    status, _, body = _urlopen(urllib.request.Request(
        base + "/auth/login", method="POST", headers={"Content-Type": "application/json"},
        data=b'{"username":"alice","password":"password","domain":"example.com"}'))
    assert status == 200
    token = json.loads(body)["token"]
    auth = {"Authorization": f"Bearer {token}"}

    # List folders
    status, _, body = _urlopen(urllib.request.Request(base + "/folders", headers=auth))
    assert status == 200
    inbox = json.loads(body)["folders"][0]
    assert inbox["name"] == "INBOX" and inbox["messages"] == 42 and inbox["unseen"] == 42

    # List messages with pagination
    status, _, body = _urlopen(urllib.request.Request(
        base + "/folders/INBOX/messages?offset=0&limit=25", headers=auth))
    page = json.loads(body)
    assert status == 200 and page["total"] == 42 and len(page["messages"]) == 25
    assert page["messages"][0]["uid"] == 42 and page["messages"][0]["subject"] == "m42"

    # Get a message (raw RFC822)
    status, headers, body = _urlopen(urllib.request.Request(
        base + "/folders/INBOX/messages/42", headers=auth))
    assert status == 200 and headers["Content-Type"] == "message/rfc822"
    assert body.endswith(b"Subject: m42\r\n\r\nb42\r\n")

    # Update flags
    status, _, body = _urlopen(urllib.request.Request(
        base + "/folders/INBOX/messages/42/flags", method="PATCH",
        headers={**auth, "Content-Type": "application/json"},
        data=rb'{"flags":["\\Seen","\\Flagged"]}'))
    assert status == 200 and json.loads(body) == {"uid": 42, "flags": ["\\Flagged", "\\Seen"]}

    # Send a message
    status, _, body = _urlopen(urllib.request.Request(
        base + "/messages/send", method="POST",
        headers={**auth, "Content-Type": "application/json"},
        data=b'{"to":["bob@example.com"],"subject":"Hello","body":"Message body."}'))
    assert status == 202 and json.loads(body)["message_id"]
    count, raw = _bob_inbox(seed_server)
    assert count == 1 and b"Subject: Hello\r\n" in raw and raw.endswith(b"Message body.\r\n")

    # Delete a message
    status, _, body = _urlopen(urllib.request.Request(
        base + "/folders/INBOX/messages/42", method="DELETE", headers=auth))
    assert status == 204 and body == b""
    assert 42 not in [m[0] for m in seed_server.messages("alice@example.com")]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_seed_examples_with_curl(seed_server):
    host = f"127.0.0.1:{seed_server.port('http')}"
    _fill_inbox_to_uid_42(seed_server)

    def curl(*args):
        result = subprocess.run(["curl", *args], capture_output=True, timeout=TIMEOUT)
        assert result.returncode == 0, result.stderr
        return result.stdout

    out = curl("-s", "-X", "POST", f"http://{host}/auth/login",
               "-H", "Content-Type: application/json",
               "-d", '{"username":"alice","password":"password","domain":"example.com"}')
    token = json.loads(out)["token"]
    bearer = f"Authorization: Bearer {token}"

    folders = json.loads(curl("-s", f"http://{host}/folders", "-H", bearer))["folders"]
    assert folders[0]["name"] == "INBOX" and folders[0]["messages"] == 42

    page = json.loads(curl("-s", f"http://{host}/folders/INBOX/messages?offset=0&limit=25",
                           "-H", bearer))
    assert [m["uid"] for m in page["messages"]] == list(range(42, 17, -1))

    raw = curl("-s", f"http://{host}/folders/INBOX/messages/42", "-H", bearer)
    assert raw.endswith(b"Subject: m42\r\n\r\nb42\r\n")

    flags = json.loads(curl("-s", "-X", "PATCH", f"http://{host}/folders/INBOX/messages/42/flags",
                            "-H", bearer, "-H", "Content-Type: application/json",
                            "-d", r'{"flags":["\\Seen","\\Flagged"]}'))
    assert flags == {"uid": 42, "flags": ["\\Flagged", "\\Seen"]}

    sent = json.loads(curl("-s", "-X", "POST", f"http://{host}/messages/send",
                           "-H", bearer, "-H", "Content-Type: application/json",
                           "-d", '{"to":["bob@example.com"],"subject":"Hello",'
                                 '"body":"Message body."}'))
    assert sent["message_id"].endswith("@mail.example.com>")
    count, raw = _bob_inbox(seed_server)
    assert count == 1 and raw.endswith(b"Message body.\r\n")

    status = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE",
                  f"http://{host}/folders/INBOX/messages/42", "-H", bearer)
    assert status == b"204"
    assert 42 not in [m[0] for m in seed_server.messages("alice@example.com")]

    preflight = curl("-s", "-i", "-X", "OPTIONS", f"http://{host}/folders")
    assert preflight.startswith(b"HTTP/1.1 204")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_upload_of_a_file_and_expect_continue(seed_server, tmp_path):
    """curl --data-binary @file: a 2 MB upload (curl sends Expect: 100-continue for it)."""
    host = f"127.0.0.1:{seed_server.port('http')}"
    out = subprocess.run(["curl", "-s", "-X", "POST", f"http://{host}/auth/login",
                          "-d", '{"username":"alice@example.com","password":"password"}'],
                         capture_output=True, timeout=TIMEOUT).stdout
    token = json.loads(out)["token"]
    message = tmp_path / "message.eml"
    message.write_bytes(b"Subject: file\r\n\r\n" + b"0123456789abcdef\r\n" * 120000)
    out = subprocess.run(["curl", "-s", "-X", "POST", "--data-binary", f"@{message}",
                          "-H", "Content-Type: message/rfc822",
                          "-H", f"Authorization: Bearer {token}",
                          f"http://{host}/folders/INBOX/messages"],
                         capture_output=True, timeout=TIMEOUT).stdout
    assert json.loads(out) == {"uid": 1}
    assert seed_server.messages("alice@example.com")[0][2] == message.read_bytes()
