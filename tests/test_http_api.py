"""The HTTP API's endpoints against a real server, driven with http.client.

Most tests share one server (``server``, ``api``) and work in a folder of their own
(``folder``), so they do not see each other's mail; tests that change aliases or the
config, or stop the server, start their own (``own_server``)."""

import base64
import email
import email.policy
import imaplib
import itertools
import smtplib
import socket
from urllib.parse import quote

import pytest

from tests.conftest import in_reactor
from tests.harness import TIMEOUT, USERS, APIClient, Server

_folder_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("http-api"), in_reactor)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def api(server):
    client = APIClient(server.port("http"))
    client.login("alice@example.com", USERS["alice@example.com"])
    return client


@pytest.fixture
def folder(server):
    """A new, empty folder of alice's for this test alone."""
    name = f"Test{next(_folder_numbers)}"
    in_reactor(server.store.user("alice@example.com").create_folder, name)
    return name


@pytest.fixture
def own_server(tmp_path):
    srv = Server(tmp_path, in_reactor)
    srv.start()
    yield srv
    srv.stop()


def _append(api, raw, folder="INBOX"):
    response = api.request("POST", f"/folders/{quote(folder, safe='')}/messages", data=raw,
                           headers={"Content-Type": "message/rfc822"})
    assert response.status == 201, response
    return response.json()["uid"]


def _message(n, subject=None):
    subject = subject or f"message {n}"
    return (f"From: Sender {n} <sender{n}@example.net>\r\nTo: alice@example.com\r\n"
            f"Subject: {subject}\r\nDate: Mon, 1 Jan 2024 10:00:{n % 60:02d} +0100\r\n"
            f"\r\nBody {n}\r\n").encode()


def _list(api, folder, query=""):
    r = api.request("GET", f"/folders/{quote(folder, safe='')}/messages{query}")
    assert r.status == 200, r
    return r.json()


# -- login ----------------------------------------------------------------------------------

def test_login_with_username_and_domain_or_full_address(server):
    client = APIClient(server.port("http"))
    r = client.request("POST", "/auth/login", {"username": "alice", "password": "alice-pw",
                                               "domain": "example.com"})
    assert r.status == 200
    assert set(r.json()) == {"token", "expires_in"} and r.json()["expires_in"] == 86400
    r = client.request("POST", "/auth/login", {"username": "bob@example.com", "password": "bob-pw"})
    assert r.status == 200
    assert client.request("GET", "/folders", token=r.json()["token"]).status == 200


def test_login_refused_with_401(server):
    client = APIClient(server.port("http"))
    for body in ({"username": "alice", "password": "wrong", "domain": "example.com"},
                 {"username": "nobody@example.com", "password": "x"},
                 {"username": "alice", "password": "alice-pw", "domain": "example.org"}):
        r = client.request("POST", "/auth/login", body)
        assert r.status == 401 and r.json() == {"error": "wrong username or password"}
        assert "Bearer" in r.headers["WWW-Authenticate"]


def test_token_ttl_from_config(tmp_path):
    srv = Server(tmp_path, in_reactor, http__token_ttl=600)
    srv.start()
    try:
        client = APIClient(srv.port("http"))
        r = client.request("POST", "/auth/login", {"username": "alice@example.com",
                                                   "password": "alice-pw"})
        assert r.json()["expires_in"] == 600
        import jwt
        claims = jwt.decode(r.json()["token"], options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == 600 and claims["sub"] == "alice@example.com"
    finally:
        srv.stop()


# -- folders ---------------------------------------------------------------------------------

def test_folders_with_counts_and_special_use(server, api, folder):
    _append(api, _message(1), folder)
    uid = _append(api, _message(2), folder)
    assert api.request("PATCH", f"/folders/{folder}/messages/{uid}/flags",
                       {"flags": ["\\Seen"]}).status == 200
    folders = api.request("GET", "/folders").json()["folders"]
    names = [f["name"] for f in folders]
    assert names[0] == "INBOX" and names[1:] == sorted(names[1:])
    assert {"Archive", "Drafts", "Junk", "Sent", "Trash", folder} <= set(names)
    (mine,) = [f for f in folders if f["name"] == folder]
    assert mine == {"name": folder, "messages": 2, "unseen": 1, "uidnext": 3,
                    "special_use": None}
    special = {f["name"]: f["special_use"] for f in folders}
    assert special["INBOX"] is None
    assert special["Sent"] == "\\Sent" and special["Trash"] == "\\Trash"
    assert special["Drafts"] == "\\Drafts" and special["Junk"] == "\\Junk"
    assert special["Archive"] == "\\Archive"


def test_nested_folder_names_are_url_encoded(server, api):
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    imap.login("alice@example.com", "alice-pw")
    assert imap.create("Archive/2024")[0] == "OK"
    imap.logout()
    names = [f["name"] for f in api.request("GET", "/folders").json()["folders"]]
    assert "Archive/2024" in names
    uid = _append(api, _message(7), folder="Archive/2024")
    r = api.request("GET", "/folders/Archive%2F2024/messages")
    assert r.status == 200 and [m["uid"] for m in r.json()["messages"]] == [uid]
    assert api.request("GET", f"/folders/Archive%2F2024/messages/{uid}").body == _message(7)
    # The separator is only ever an encoded %2F: a literal / is a different path.
    assert api.request("GET", "/folders/Archive/2024/messages").status == 404
    assert [m[0] for m in server.messages("alice@example.com", "Archive/2024")] == [uid]
    assert server.messages("alice@example.com", "Archive") == []


def test_non_ascii_folder_name(server, api):
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    imap.login("alice@example.com", "alice-pw")
    assert imap.create("&AMk-t&AOk-")[0] == "OK"  # "Été" in modified UTF-7
    imap.logout()
    uid = _append(api, _message(3), folder="Été")
    r = api.request("GET", "/folders/%C3%89t%C3%A9/messages")
    assert [m["uid"] for m in r.json()["messages"]] == [uid]


# -- the message list -------------------------------------------------------------------------

def test_message_list_newest_first_with_pagination(api, folder):
    uids = [_append(api, _message(n), folder) for n in range(1, 31)]
    page = _list(api, folder, "?offset=0&limit=25")
    assert page["total"] == 30 and page["offset"] == 0 and page["limit"] == 25
    assert [m["uid"] for m in page["messages"]] == uids[::-1][:25]
    rest = _list(api, folder, "?offset=25&limit=25")
    assert [m["uid"] for m in rest["messages"]] == [5, 4, 3, 2, 1]
    assert _list(api, folder, "?offset=30")["messages"] == []
    default = _list(api, folder)
    assert default["limit"] == 50 and len(default["messages"]) == 30


def test_message_list_with_gaps_in_the_uids(api, folder):
    """Pages stay exact after deletions (a folder whose UIDs are no longer 1..n)."""
    uids = [_append(api, _message(n), folder) for n in range(1, 13)]
    for uid in (12, 7, 3, 4):
        assert api.request("DELETE", f"/folders/{folder}/messages/{uid}").status == 204
    left = [u for u in uids if u not in (12, 7, 3, 4)][::-1]  # [11, 10, 9, 8, 6, 5, 2, 1]
    pages = [_list(api, folder, f"?offset={o}&limit=3") for o in (0, 3, 6, 9)]
    assert [p["total"] for p in pages] == [8, 8, 8, 8]
    assert [[m["uid"] for m in p["messages"]] for p in pages] == [
        left[0:3], left[3:6], left[6:8], []]
    assert pages[1]["messages"][0]["subject"] == "message 8"


def test_message_list_fields_from_the_headers(api, folder):
    raw = ("From: =?UTF-8?Q?Al=C3=AFce?= <alice@example.com>\r\n"
           "To: bob@example.com, \"Carol X\" <carol@example.org>\r\n"
           "Cc: sales@example.com\r\n"
           "Subject: =?utf-8?b?SMOpbGxv?= world\r\n"
           "Date: Fri, 4 May 2001 14:05:44 -0400\r\n\r\nHello\r\n").encode()
    uid = _append(api, raw, folder)
    api.request("PATCH", f"/folders/{folder}/messages/{uid}/flags", {"flags": ["\\Flagged"]})
    (m,) = _list(api, folder)["messages"]
    assert m == {
        "uid": uid,
        "from": {"name": "Alïce", "address": "alice@example.com"},
        "to": [{"name": None, "address": "bob@example.com"},
               {"name": "Carol X", "address": "carol@example.org"}],
        "cc": [{"name": None, "address": "sales@example.com"}],
        "subject": "Héllo world",
        "date": "2001-05-04T18:05:44Z",
        "flags": ["\\Flagged"],
        "size": len(raw),
        "preview": "Hello",
    }


def test_message_list_preview_is_the_opening_text(api, folder):
    """The first text/plain part that is not an attachment, decoded; else the HTML's
    text; nothing for a message without text."""
    def preview_of(raw):
        uid = _append(api, raw, folder)
        return next(m["preview"] for m in _list(api, folder)["messages"] if m["uid"] == uid)
    mixed = (b"Subject: report\r\nMIME-Version: 1.0\r\n"
             b"Content-Type: multipart/mixed; boundary=outer\r\n\r\n"
             b"--outer\r\nContent-Type: text/plain; name=notes.txt\r\n"
             b"Content-Disposition: attachment\r\n\r\nnot this\r\n"
             b"--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n"
             b"--inner\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
             b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
             b"Ch=E8re Alice,\r\n\r\n   les   chiffres =\r\nsont l=E0.\r\n"
             b"--inner\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--inner--\r\n"
             b"--outer--\r\n")
    assert preview_of(mixed) == "Chère Alice, les chiffres sont là."
    html_only = (b"Subject: h\r\nContent-Type: text/html; charset=utf-8\r\n"
                 b"Content-Transfer-Encoding: base64\r\n\r\n"
                 + base64.encodebytes("<html><head><style>p {}</style></head><body><p>Caf\u00e9 "
                                      "&amp; <b>croissants</b></p></body></html>".encode()))
    assert preview_of(html_only) == "Café & croissants"
    assert preview_of(b"Subject: pic\r\nContent-Type: image/png\r\n\r\n\x89PNG") == ""
    long = b"Subject: long\r\n\r\n" + b"word " * 1000
    assert preview_of(long) == ("word " * 40).strip()


def test_message_list_without_headers_or_date(api, folder):
    uid = _append(api, b"just a body line, no header\r\n", folder)
    (m,) = _list(api, folder)["messages"]
    assert m["uid"] == uid and m["from"] is None and m["to"] == [] and m["subject"] == ""
    assert m["date"].endswith("Z")  # the arrival time stands in


def test_message_list_opens_no_message_file(server, api, folder):
    """The list comes from the index: it works even with the message file moved away."""
    import os
    _append(api, _message(1, "still listed"), folder)
    path = in_reactor(server.store.user("alice@example.com").messages, folder)[0].path
    os.rename(path, path + ".away")
    try:
        (m,) = _list(api, folder)["messages"]
        assert m["subject"] == "still listed" and m["from"]["address"] == "sender1@example.net"
    finally:
        os.rename(path + ".away", path)


# -- append, get, flags, delete ------------------------------------------------------------------

def test_append_stores_the_message_durably_and_normalises_line_ends(server, api, folder):
    r = api.request("POST", f"/folders/{folder}/messages",
                    data=b"Subject: unix\n\nline one\nline two\rline three\n")
    assert r.status == 201 and r.json() == {"uid": 1}
    assert r.headers["Location"] == f"/folders/{folder}/messages/1"
    assert server.messages("alice@example.com", folder) == [
        (1, frozenset(), b"Subject: unix\r\n\r\nline one\r\nline two\r\nline three\r\n")]


def test_get_streams_a_large_message_byte_for_byte(api, folder):
    body = b"".join(b"%08d " % i + b"x" * 90 + b"\r\n" for i in range(40000))  # ~4 MB
    raw = b"Subject: big\r\n\r\n" + body
    uid = _append(api, raw, folder)
    r = api.request("GET", f"/folders/{folder}/messages/{uid}")
    assert r.status == 200
    assert r.headers["Content-Type"] == "message/rfc822"
    assert int(r.headers["Content-Length"]) == len(raw)
    assert r.body == raw
    # A plain GET does not mark the message seen (like BODY.PEEK[]).
    (m,) = _list(api, folder)["messages"]
    assert m["flags"] == []


def test_client_leaving_mid_download_harms_nothing(server, api, folder):
    raw = b"Subject: big\r\n\r\n" + b"y" * 8_000_000 + b"\r\n"
    uid = _append(api, raw, folder)
    sock = socket.create_connection(("127.0.0.1", server.port("http")), timeout=TIMEOUT)
    sock.sendall(f"GET /folders/{folder}/messages/{uid} HTTP/1.1\r\nHost: x\r\n"
                 f"Authorization: Bearer {api.token}\r\n\r\n".encode())
    assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
    sock.close()
    r = api.request("GET", f"/folders/{folder}/messages/{uid}")
    assert r.status == 200 and r.body == raw


def test_head_of_a_message(api, folder):
    uid = _append(api, _message(1), folder)
    r = api.request("HEAD", f"/folders/{folder}/messages/{uid}")
    assert r.status == 200 and r.body == b""
    assert int(r.headers["Content-Length"]) == len(_message(1))


def test_flags_are_replaced_and_seen_over_imap(server, api, folder):
    uid = _append(api, _message(1), folder)
    r = api.request("PATCH", f"/folders/{folder}/messages/{uid}/flags",
                    {"flags": ["\\Seen", "\\Flagged", "$label1"]})
    assert r.status == 200
    assert r.json() == {"uid": uid, "flags": ["$label1", "\\Flagged", "\\Seen"]}
    r = api.request("PATCH", f"/folders/{folder}/messages/{uid}/flags", {"flags": ["\\answered"]})
    assert r.json()["flags"] == ["\\Answered"]
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    imap.login("alice@example.com", "alice-pw")
    imap.select(folder)
    status, data = imap.uid("FETCH", str(uid), "(FLAGS)")
    flags = data[0].split(b"FLAGS (")[1].split(b")")[0].split()
    assert set(flags) - {b"\\Recent"} == {b"\\Answered"}
    imap.logout()
    r = api.request("PATCH", f"/folders/{folder}/messages/{uid}/flags", {"flags": []})
    assert r.json() == {"uid": uid, "flags": []}


def test_delete_removes_the_message(server, api, folder):
    first = _append(api, _message(1), folder)
    second = _append(api, _message(2), folder)
    r = api.request("DELETE", f"/folders/{folder}/messages/{first}")
    assert r.status == 204 and r.body == b""
    assert [m[0] for m in server.messages("alice@example.com", folder)] == [second]
    assert api.request("DELETE", f"/folders/{folder}/messages/{first}").status == 404
    assert api.request("GET", f"/folders/{folder}/messages/{first}").status == 404
    assert api.request("PATCH", f"/folders/{folder}/messages/{first}/flags",
                       {"flags": []}).status == 404


def test_unknown_folder_and_message_are_404(api, folder):
    assert api.request("GET", "/folders/Nope/messages").status == 404
    assert api.request("POST", "/folders/Nope/messages", data=_message(1)).status == 404
    assert api.request("GET", f"/folders/{folder}/messages/99").status == 404


def test_users_see_only_their_own_mail(server, api, folder):
    uid = _append(api, _message(1), folder)
    bob = APIClient(server.port("http"))
    bob.login("bob@example.com", "bob-pw")
    assert bob.request("GET", f"/folders/{folder}/messages").status == 404
    assert bob.request("GET", f"/folders/{folder}/messages/{uid}").status == 404
    assert folder not in [f["name"] for f in bob.request("GET", "/folders").json()["folders"]]


def test_append_shows_up_in_an_idling_imap_session(server, api, folder):
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    imap.login("alice@example.com", "alice-pw")
    imap.select(folder)
    imap.send(b"a001 IDLE\r\n")
    assert imap.readline() == b"+ idling\r\n"
    _append(api, _message(1), folder)
    imap.sock.settimeout(TIMEOUT)
    assert imap.readline() == b"* 1 EXISTS\r\n"
    assert imap.readline() == b"* 1 RECENT\r\n"
    imap.send(b"DONE\r\n")
    assert imap.readline() == b"a001 OK IDLE terminated\r\n"
    imap.logout()


# -- send ---------------------------------------------------------------------------------------

def _fetch_over_imap(server, address, message_id, folder="INBOX"):
    """[(fetch line, raw message)] of *address*'s messages with this Message-ID, over IMAP."""
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    imap.login(address, USERS[address])
    imap.select(folder)
    status, data = imap.uid("SEARCH", "HEADER", "Message-ID", f'"{message_id}"')
    messages = []
    for uid in data[0].split():
        status, data = imap.uid("FETCH", uid, "(FLAGS BODY.PEEK[])")
        messages.append((data[0][0], data[0][1]))
    imap.logout()
    return messages


def _send(api, **fields):
    r = api.request("POST", "/messages/send", fields)
    assert r.status == 202, r
    return r.json()["message_id"]


def test_send_delivers_locally_and_keeps_a_copy_in_sent(server, api):
    message_id = _send(api, to=["bob@example.com"], cc=["sales@example.com"],
                       bcc=["carol@example.org"], subject="Grüße ☃",
                       body="Hällo Bob,\nzweite Zeile.\n")
    assert message_id.startswith("<") and message_id.endswith("@mail.example.com>")
    for address in ("bob@example.com", "sales@example.com", "carol@example.org"):
        ((_, raw),) = _fetch_over_imap(server, address, message_id)
        assert raw.startswith(b"Return-Path: <alice@example.com>\r\nReceived: from [127.0.0.1]")
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert msg["From"] == "alice@example.com"
        assert msg["To"] == "bob@example.com" and msg["Cc"] == "sales@example.com"
        assert msg["Bcc"] is None and b"carol@example.org" not in raw.split(b"\r\n\r\n")[0]
        assert msg["Subject"] == "Grüße ☃"
        assert msg["Message-ID"] == message_id and msg["Date"] is not None
        assert msg.get_content_type() == "text/plain"
        assert msg.get_content().replace("\r\n", "\n") == "Hällo Bob,\nzweite Zeile.\n"
        assert max(raw) < 128  # encoded for 7-bit hops
    ((flags, sent),) = _fetch_over_imap(server, "alice@example.com", message_id, "Sent")
    assert b"\\Seen" in flags
    assert not sent.startswith(b"Return-Path")
    assert email.message_from_bytes(sent, policy=email.policy.default)["Message-ID"] == message_id


def test_send_with_html_is_multipart_alternative(server, api):
    message_id = _send(api, to=["bob@example.com"], subject="Hi", body="plain text",
                       html="<p>rich <b>text</b> ✓</p>")
    ((_, raw),) = _fetch_over_imap(server, "bob@example.com", message_id)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["MIME-Version"] == "1.0"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content().strip() == "plain text"
    assert parts[1].get_content().strip() == "<p>rich <b>text</b> ✓</p>"


def test_send_to_an_alias_and_to_a_user_twice_delivers_once(server, api):
    server.directory.add_alias("example.com", "team-.*", "sales")
    try:
        server.wait_for(lambda: server.service.directory.resolve("team-eu@example.com"), "alias")
        message_id = _send(api, to=["team-eu@example.com", "sales@example.com",
                                    "SALES@example.com"], subject="s", body="b")
        assert len(_fetch_over_imap(server, "sales@example.com", message_id)) == 1
    finally:
        server.directory.remove_alias("example.com", "team-.*")


def test_send_to_an_unknown_local_user_is_refused(server, api):
    sent_before = len(server.messages("alice@example.com", "Sent"))
    r = api.request("POST", "/messages/send", {
        "to": ["bob@example.com", "nobody@example.com"], "subject": "s", "body": "b"})
    assert r.status == 400 and "nobody@example.com" in r.json()["error"]
    assert len(server.messages("alice@example.com", "Sent")) == sent_before


def test_send_with_relay_disabled_refuses_external_and_sends_nothing(tmp_path):
    """relay.enabled false: the same refusal as SMTP submission, for the whole message."""
    srv = Server(tmp_path, in_reactor, relay__enabled=False)
    srv.start()
    try:
        client = APIClient(srv.port("http"))
        client.login("alice@example.com", "alice-pw")
        r = client.request("POST", "/messages/send", {
            "to": ["bob@example.com", "recipient@gmail.com"], "subject": "s", "body": "b"})
        assert r.status == 403 and r.json() == {"error": "Relay not permitted"}
        assert srv.messages("bob@example.com") == []
        assert srv.messages("alice@example.com", "Sent") == []
    finally:
        srv.stop()


def test_send_refuses_too_many_recipients(tmp_path):
    srv = Server(tmp_path, in_reactor, smtp__max_recipients=2)
    srv.start()
    try:
        client = APIClient(srv.port("http"))
        client.login("alice@example.com", "alice-pw")
        r = client.request("POST", "/messages/send", {
            "to": ["bob@example.com", "sales@example.com", "carol@example.org"],
            "subject": "s", "body": "b"})
        assert r.status == 400 and "smtp.max_recipients" in r.json()["error"]
        assert srv.messages("bob@example.com") == []
    finally:
        srv.stop()


# -- aliases ---------------------------------------------------------------------------------------

def test_aliases_as_admin_take_effect_for_smtp_at_once(own_server):
    import json
    import os
    server = own_server
    api = APIClient(server.port("http"))
    api.login("alice@example.com", "alice-pw")
    assert api.request("GET", "/aliases").json() == {"domain": "example.com", "aliases": []}
    r = api.request("POST", "/aliases", {"pattern": "sales-.*", "target": "sales"})
    assert r.status == 201 and r.json() == {"pattern": "sales-.*", "target": "sales"}
    r = api.request("POST", "/aliases", {"pattern": "info", "target": "bob@example.com"})
    assert r.status == 201 and r.json() == {"pattern": "info", "target": "bob"}
    assert api.request("GET", "/aliases").json()["aliases"] == [
        {"pattern": "sales-.*", "target": "sales"}, {"pattern": "info", "target": "bob"}]
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=TIMEOUT) as s:
        s.sendmail("x@external.com", ["sales-eu@example.com"], b"Subject: via alias\r\n\r\nx\r\n")
    assert len(server.messages("sales@example.com")) == 1
    r = api.request("DELETE", "/aliases/" + quote("sales-.*", safe=""))
    assert r.status == 204
    assert api.request("GET", "/aliases").json()["aliases"] == [{"pattern": "info", "target": "bob"}]
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=TIMEOUT) as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            s.sendmail("x@external.com", ["sales-us@example.com"], b"Subject: x\r\n\r\nx\r\n")
    assert api.request("DELETE", "/aliases/" + quote("sales-.*", safe="")).status == 404
    # The file the CLI reads agrees.
    path = os.path.join(server.service.config.mail_root_path, "domains", "example.com",
                        "aliases.json")
    with open(path) as f:
        assert json.load(f) == [{"pattern": "info", "target": "bob"}]


def test_alias_with_slash_in_pattern(server, api):
    assert api.request("POST", "/aliases", {"pattern": "a/b|c", "target": "bob"}).status == 201
    assert server.service.directory.resolve("c@example.com").address == "bob@example.com"
    assert api.request("DELETE", "/aliases/a%2Fb%7Cc").status == 204
    assert server.service.directory.resolve("c@example.com") is None


def test_aliases_as_non_admin(own_server):
    server = own_server
    bob = APIClient(server.port("http"))
    bob.login("bob@example.com", "bob-pw")
    server.directory.add_alias("example.com", "info", "alice")
    server.wait_for(lambda: server.service.directory.aliases("example.com"), "alias")
    assert bob.request("GET", "/aliases").json()["aliases"] == [{"pattern": "info",
                                                                 "target": "alice"}]
    r = bob.request("POST", "/aliases", {"pattern": ".*", "target": "bob"})
    assert r.status == 403 and "administrator" in r.json()["error"]
    assert bob.request("DELETE", "/aliases/info").status == 403
    assert server.service.directory.resolve("anything@example.com") is None
    assert [a.pattern for a in server.service.directory.aliases("example.com")] == ["info"]
    # ... and the other domain's users see their own domain's (empty) list.
    carol = APIClient(server.port("http"))
    carol.login("carol@example.org", "carol-pw")
    assert carol.request("GET", "/aliases").json() == {"domain": "example.org", "aliases": []}


# -- connections -----------------------------------------------------------------------------------

def test_keep_alive_connection_serves_several_requests(server, api):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", server.port("http"), timeout=TIMEOUT)
    for _ in range(3):
        conn.request("GET", "/folders", headers={"Authorization": f"Bearer {api.token}"})
        response = conn.getresponse()
        assert response.status == 200 and b"INBOX" in response.read()
    conn.close()


def test_graceful_stop_closes_idle_connections(own_server):
    api = APIClient(own_server.port("http"))
    api.login("alice@example.com", "alice-pw")
    sock = socket.create_connection(("127.0.0.1", own_server.port("http")), timeout=TIMEOUT)
    sock.sendall(b"GET /folders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                 + api.token.encode() + b"\r\n\r\n")
    assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
    own_server.stop()
    sock.settimeout(TIMEOUT)
    assert sock.recv(65536) == b""  # the idle keep-alive connection was closed
    sock.close()
