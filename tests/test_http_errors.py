"""Bad input to the HTTP API: each refused with the right status and a JSON error, the
server unharmed, nothing stored."""

import base64
import hashlib
import hmac
import imaplib
import json
import os
import socket
import time

import jwt
import pytest

from tests.conftest import in_reactor
from tests.harness import TIMEOUT, USERS, APIClient, Server

SECRET = "test-secret-" + "x" * 32  # what tests.harness.write_config puts in the config


# Refused requests change nothing, so the tests of this module share one server
# (``server``, ``api``); the tests that change users or the config, or lock the client
# out, get one of their own (``own_server``, ``own_api``).
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("http-errors"), in_reactor)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def api(server):
    client = APIClient(server.port("http"))
    client.login("alice@example.com", USERS["alice@example.com"])
    return client


@pytest.fixture
def own_server(tmp_path):
    srv = Server(tmp_path, in_reactor)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def own_api(own_server):
    client = APIClient(own_server.port("http"))
    client.login("alice@example.com", USERS["alice@example.com"])
    return client


def disk_state(server):
    """Every file under mail_root (SQLite's -wal/-shm journals aside) with its size, and
    what the store holds: to show that a refused request changed nothing."""
    folders = in_reactor(server.store.user("alice@example.com").folders)
    root = server.service.config.mail_root_path
    files = {}
    for directory, _, names in os.walk(root):
        for name in names:
            if name.endswith(("-wal", "-shm")) or name == ".lock":
                continue
            path = os.path.join(directory, name)
            files[os.path.relpath(path, root)] = os.path.getsize(path)
    return files, [(f.name, f.messages, f.uidnext) for f in folders]


def assert_json_error(response, status, *needles):
    assert response.status == status, response
    assert response.headers["Content-Type"].startswith("application/json")
    data = json.loads(response.body)
    assert list(data) == ["error"] and isinstance(data["error"], str)
    for needle in needles:
        assert needle in data["error"], data
    assert b"<html" not in response.body.lower() and b"Traceback" not in response.body
    return data["error"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _token(header: dict, claims: dict, key: bytes | None) -> str:
    signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(signature)


def _claims(**overrides):
    now = int(time.time())
    claims = {"sub": "alice@example.com", "gen": 1, "iat": now, "exp": now + 3600}
    claims.update(overrides)
    return claims


# -- JSON bodies -------------------------------------------------------------------------------

@pytest.mark.parametrize("body, needle", [
    (b"{not json", "not valid JSON"),
    (b"", "empty"),
    (b"[1, 2]", "JSON object"),
    (b"\xff\xfe{}", "UTF-8"),
    (b'{"username": "alice", "password": "\\ud800", "domain": "example.com"}', "Unicode"),
    (b'{"username": 5, "password": "x", "domain": "example.com"}', "username: expected a string"),
    (b'{"username": "alice", "password": ["x"], "domain": "example.com"}', "password"),
    (b'{"username": "alice", "domain": "example.com"}', "missing field 'password'"),
    (b'{"username": "alice", "password": "alice-pw"}', "domain"),
    (b'{"username": "alice", "password": "alice-pw", "domain": "example.com", "x": 1}',
     "unknown field 'x'"),
    (b'{"username": "alice@example.com", "password": "alice-pw", "domain": "example.org"}',
     "does not match"),
])
def test_login_bad_bodies(server, body, needle):
    before = disk_state(server)
    client = APIClient(server.port("http"))
    r = client.request("POST", "/auth/login", data=body, headers={"Content-Type": "application/json"})
    assert_json_error(r, 400, needle)
    assert disk_state(server) == before


@pytest.mark.parametrize("body, needle", [
    ({"to": "bob@example.com", "subject": "s", "body": "b"}, "to: expected a list of strings"),
    ({"to": [1], "subject": "s", "body": "b"}, "to: expected a list"),
    ({"to": ["bob@example.com"], "body": "b"}, "missing field 'subject'"),
    ({"to": ["bob@example.com"], "subject": "s"}, "missing field 'body'"),
    ({"to": ["bob@example.com"], "subject": None, "body": "b"}, "subject: expected a string"),
    ({"to": ["bob@example.com"], "subject": "s", "body": "b", "html": 3}, "html"),
    ({"to": ["bob@example.com"], "subject": "s", "body": "b", "attachments": []}, "unknown field"),
    ({"to": ["Bob <bob@example.com>"], "subject": "s", "body": "b"}, "not an e-mail address"),
    ({"to": ["bob@example.com\r\nBcc: x@y.z"], "subject": "s", "body": "b"}, "not an e-mail"),
    ({"to": [], "subject": "s", "body": "b"}, "no recipients"),
    ({"to": ["bob@example.com"], "subject": "a\r\nBcc: carol@example.org", "body": "b"}, "header"),
])
def test_send_bad_bodies(server, api, body, needle):
    before = disk_state(server)
    assert_json_error(api.request("POST", "/messages/send", body), 400, needle)
    assert disk_state(server) == before
    assert server.messages("bob@example.com") == []


def test_flags_bad_bodies(server, api):
    r = api.request("POST", "/folders/INBOX/messages", data=b"Subject: x\r\n\r\nx\r\n")
    uid = r.json()["uid"]
    before = disk_state(server)
    for body, needle in ((b'{"flags": "\\\\Seen"}', "flags: expected a list"),
                         (b'{"flags": [true]}', "flags"),
                         (b'{}', "missing field 'flags'"),
                         (b'{"flags": ["\\\\Recent"]}', "Recent"),
                         (b'{"flags": ["\\\\Bogus"]}', "not a valid flag"),
                         (b'{"flags": ["two words"]}', "not a valid flag"),
                         (b'nope', "not valid JSON")):
        r = api.request("PATCH", f"/folders/INBOX/messages/{uid}/flags", data=body)
        assert_json_error(r, 400, needle)
    assert disk_state(server) == before
    assert dict((m[0], m[1]) for m in server.messages("alice@example.com"))[uid] == frozenset()


# -- query and path ------------------------------------------------------------------------------

@pytest.mark.parametrize("query, needle", [
    ("limit=-1", "limit"), ("limit=100000", "limit"), ("limit=501", "limit"), ("limit=0", "limit"),
    ("offset=abc", "offset"), ("offset=-5", "offset"), ("limit=1e3", "limit"), ("limit=", "limit"),
])
def test_bad_paging(server, api, query, needle):
    assert_json_error(api.request("GET", f"/folders/INBOX/messages?{query}"), 400, needle)


def test_limit_500_is_allowed(server, api):
    r = api.request("GET", "/folders/INBOX/messages?limit=500")
    assert r.status == 200 and r.json()["limit"] == 500


@pytest.mark.parametrize("folder", [
    "..%2F..%2Fetc", "..", "%2E%2E", "INBOX%2F..%2F..%2Fbob", "%2Fetc", "a%2F%2Fb", "%00",
    "%FF",
])
def test_path_like_folder_names_change_nothing(server, api, folder):
    before = disk_state(server)
    for method, path, kwargs in (
            ("GET", f"/folders/{folder}/messages", {}),
            ("POST", f"/folders/{folder}/messages", {"data": b"Subject: x\r\n\r\nx\r\n"}),
            ("GET", f"/folders/{folder}/messages/1", {}),
            ("DELETE", f"/folders/{folder}/messages/1", {}),
            ("PATCH", f"/folders/{folder}/messages/1/flags", {"json_body": {"flags": []}})):
        r = api.request(method, path, **kwargs)
        assert_json_error(r, 400)
    server.wait_for(lambda: disk_state(server) == before, "the spool to be empty again")
    assert api.request("GET", "/folders").status == 200


@pytest.mark.parametrize("uid", ["abc", "-1", "0", "1.5", "99999999999", "%31"])
def test_uid_that_is_not_a_number(server, api, uid):
    assert_json_error(api.request("GET", f"/folders/INBOX/messages/{uid}"), 400, "UID")
    assert_json_error(api.request("DELETE", f"/folders/INBOX/messages/{uid}"), 400, "UID")


def test_unknown_path_and_method_are_json(server, api):
    assert_json_error(api.request("GET", "/nope"), 404, "no such endpoint")
    assert_json_error(api.request("GET", "/"), 404)
    assert_json_error(api.request("GET", "/folders/"), 404)
    assert_json_error(api.request("GET", "/folders/INBOX/messages/"), 404)
    assert_json_error(api.request("GET", "//folders"), 404)
    r = api.request("PUT", "/folders")
    assert_json_error(r, 405, "PUT")
    assert "GET" in r.headers["Allow"]
    r = api.request("GET", "/auth/login")
    assert_json_error(r, 405)
    assert r.headers["Allow"] == "POST, OPTIONS"


def test_malformed_http_is_answered_in_json(server):
    sock = socket.create_connection(("127.0.0.1", server.port("http")), timeout=TIMEOUT)
    sock.sendall(b"GET /folders HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert json.loads(body) == {"error": "malformed HTTP request"}


def test_non_ascii_raw_path(server, api):
    sock = socket.create_connection(("127.0.0.1", server.port("http")), timeout=TIMEOUT)
    sock.sendall(b"GET /folders/\xc3\xa9t\xc3\xa9/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                 + api.token.encode() + b"\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and list(json.loads(body)) == ["error"]


# -- tokens ------------------------------------------------------------------------------------

def test_no_token_or_bad_scheme(server):
    client = APIClient(server.port("http"))
    for headers in ({}, {"Authorization": "Basic YWxpY2U6eA=="}, {"Authorization": "Bearer "},
                    {"Authorization": "Bearer not-a-jwt"}):
        r = client.request("GET", "/folders", headers=headers)
        assert_json_error(r, 401)
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("name, token_of", [
    ("signed with another key", lambda: _token({"alg": "HS256", "typ": "JWT"}, _claims(),
                                               b"another-key-" + b"y" * 32)),
    ("alg none", lambda: _token({"alg": "none", "typ": "JWT"}, _claims(), None)),
    ("alg none, unsigned PyJWT", lambda: jwt.encode(_claims(), None, algorithm="none")),
    ("HS512 with the right key", lambda: jwt.encode(_claims(), SECRET, algorithm="HS512")),
    ("expired", lambda: _token({"alg": "HS256", "typ": "JWT"},
                               _claims(iat=int(time.time()) - 7200, exp=int(time.time()) - 60),
                               SECRET.encode())),
    ("no exp", lambda: _token({"alg": "HS256", "typ": "JWT"},
                              {"sub": "alice@example.com", "gen": 1, "iat": int(time.time())},
                              SECRET.encode())),
    ("an older password generation", lambda: _token({"alg": "HS256", "typ": "JWT"},
                                                     _claims(gen=0), SECRET.encode())),
    ("a user that does not exist", lambda: _token({"alg": "HS256", "typ": "JWT"},
                                                  _claims(sub="eve@example.com"),
                                                  SECRET.encode())),
    ("tampered claims", lambda: _tampered()),
])
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_forged_tokens_are_refused(server, name, token_of):
    client = APIClient(server.port("http"))
    # The control: a token made the same way with the right key and claims is accepted.
    good = _token({"alg": "HS256", "typ": "JWT"}, _claims(), SECRET.encode())
    assert client.request("GET", "/folders", token=good).status == 200
    before = disk_state(server)
    token = token_of()
    for method, path, kwargs in (("GET", "/folders", {}),
                                 ("GET", "/folders/INBOX/messages", {}),
                                 ("POST", "/folders/INBOX/messages", {"data": b"Subject: x\r\n\r\n"}),
                                 ("POST", "/messages/send", {"json_body": {
                                     "to": ["bob@example.com"], "subject": "s", "body": "b"}}),
                                 ("POST", "/aliases", {"json_body": {"pattern": ".*",
                                                                     "target": "alice"}})):
        r = client.request(method, path, token=token, **kwargs)
        assert_json_error(r, 401)
    server.wait_for(lambda: disk_state(server) == before, "the spool to be empty again")
    assert server.service.directory.aliases("example.com") == []


def _tampered():
    header, claims, signature = _token({"alg": "HS256", "typ": "JWT"}, _claims(sub="bob@example.com"),
                                       SECRET.encode()).split(".")
    alice = _b64(json.dumps(_claims()).encode())
    return f"{header}.{alice}.{signature}"


def test_token_issued_before_a_password_change_is_refused(own_server, own_api):
    token = own_api.token
    assert own_api.request("GET", "/folders").status == 200
    own_server.directory.set_password("alice@example.com", "new-pw")
    own_server.wait_for(lambda: own_api.request("GET", "/folders").status == 401,
                        "the old token to be refused")
    assert_json_error(own_api.request("GET", "/folders", token=token), 401, "password changed")
    own_api.login("alice@example.com", "new-pw")
    assert own_api.request("GET", "/folders").status == 200


def test_password_change_with_the_cli_ends_tokens(own_server, own_api):
    """`run.py user passwd` in another process: the running server refuses the old token
    (its password generation is behind) and issues tokens of the new generation."""
    import subprocess
    import sys
    from tests.harness import ROOT
    old = own_api.token
    result = subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), "user", "passwd",
                             "alice@example.com", "--password", "other-pw",
                             "--config", own_server.config_path],
                            capture_output=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    own_server.wait_for(lambda: own_api.request("GET", "/folders", token=old).status == 401,
                        "the old token to be refused")
    fresh = APIClient(own_server.port("http"))
    fresh.login("alice@example.com", "other-pw")
    claims = jwt.decode(fresh.token, options={"verify_signature": False})
    assert claims["gen"] == 2
    assert fresh.request("GET", "/folders").status == 200


def test_token_of_a_removed_user_is_refused(own_server):
    bob = APIClient(own_server.port("http"))
    bob.login("bob@example.com", "bob-pw")
    own_server.directory.remove_user("bob@example.com")
    own_server.wait_for(lambda: bob.request("GET", "/folders").status == 401,
                        "bob's token to be refused")


def test_secret_change_on_sighup_ends_tokens(own_server, own_api):
    with open(own_server.config_path) as f:
        config = json.load(f)
    config["http"]["jwt_secret"] = "a-new-secret-" + "z" * 32
    with open(own_server.config_path, "w") as f:
        json.dump(config, f)
    assert in_reactor(own_server.service.reload) is True
    assert_json_error(own_api.request("GET", "/folders"), 401, "signature")
    own_api.login("alice@example.com", "alice-pw")
    assert own_api.request("GET", "/folders").status == 200


def test_a_remembered_token_still_expires(own_server):
    """Verified tokens are remembered to skip the HMAC; exp is checked on every use."""
    import types
    from rmail.web.tokens import InvalidToken, TokenIssuer
    now = [time.time()]  # PyJWT checks the first use against the real clock
    issuer = TokenIssuer(types.SimpleNamespace(config=own_server.service.config),
                         own_server.service.directory, clock=lambda: now[0])
    alice = own_server.service.directory.user("alice@example.com")
    token = issuer.issue(alice)
    assert issuer.verify(token) is alice
    assert issuer.verify(token) is alice  # the remembered path
    now[0] += own_server.service.config.http.token_ttl + 1
    with pytest.raises(InvalidToken, match="expired"):
        issuer.verify(token)


def test_login_throttle_is_shared_with_imap(own_server):
    client = APIClient(own_server.port("http"))
    for _ in range(11):
        r = client.request("POST", "/auth/login", {"username": "alice@example.com",
                                                   "password": "wrong"})
        assert r.status in (401, 429)
    r = client.request("POST", "/auth/login", {"username": "alice@example.com",
                                               "password": "alice-pw"})
    assert_json_error(r, 429, "too many failed logins")
    assert int(r.headers["Retry-After"]) > 0
    imap = imaplib.IMAP4("127.0.0.1", own_server.port("imap"))
    with pytest.raises(imaplib.IMAP4.error):
        imap.login("alice@example.com", "alice-pw")
    imap.shutdown()


# -- aliases -------------------------------------------------------------------------------------

def test_non_admin_adding_an_alias_is_refused(server):
    bob = APIClient(server.port("http"))
    bob.login("bob@example.com", "bob-pw")
    before = disk_state(server)
    assert_json_error(bob.request("POST", "/aliases", {"pattern": ".*", "target": "bob"}), 403)
    assert disk_state(server) == before
    assert server.service.directory.resolve("anyone@example.com") is None


@pytest.mark.parametrize("body, needle", [
    ({"pattern": "sales-(", "target": "sales"}, "not a valid regular expression"),
    ({"pattern": "[z-a]", "target": "sales"}, "not a valid regular expression"),
    ({"pattern": "x", "target": "nobody"}, "not an existing user"),
    ({"pattern": "x", "target": "carol@example.net"}, "not an existing user"),
    ({"pattern": "", "target": "sales"}, "empty"),
    ({"pattern": 5, "target": "sales"}, "pattern: expected a string"),
    ({"pattern": "x"}, "missing field 'target'"),
])
def test_bad_alias_is_refused_and_nothing_written(server, api, body, needle):
    before = disk_state(server)
    assert_json_error(api.request("POST", "/aliases", body), 400, needle)
    assert disk_state(server) == before
    assert api.request("GET", "/aliases").json()["aliases"] == []


def test_duplicate_alias_is_refused(own_server, own_api):
    assert own_api.request("POST", "/aliases", {"pattern": "x", "target": "bob"}).status == 201
    assert_json_error(own_api.request("POST", "/aliases", {"pattern": "x", "target": "sales"}), 400,
                      "already exists")
    assert own_api.request("GET", "/aliases").json()["aliases"] == [{"pattern": "x", "target": "bob"}]


def test_removing_an_unknown_alias_is_404(server, api):
    assert_json_error(api.request("DELETE", "/aliases/nothing"), 404, "no alias")


# -- sizes ----------------------------------------------------------------------------------------

@pytest.fixture
def small_server(tmp_path):
    srv = Server(tmp_path, in_reactor, smtp__max_message_size=100000)
    srv.start()
    yield srv
    srv.stop()


def _read_response(sock):
    data = b""
    sock.settimeout(TIMEOUT)
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def test_oversized_body_is_refused_before_it_is_read(small_server):
    """413 comes back for a declared length over the limit though no body byte was sent."""
    client = APIClient(small_server.port("http"))
    token = client.login("alice@example.com", "alice-pw")
    before = disk_state(small_server)
    for path in ("/folders/INBOX/messages", "/messages/send", "/auth/login"):
        sock = socket.create_connection(("127.0.0.1", small_server.port("http")), timeout=TIMEOUT)
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                     f"Origin: https://webmail.example.com\r\n"
                     f"Content-Length: 1000000000\r\n\r\n".encode())
        head, body = _read_response(sock)
        sock.close()
        assert head.startswith(b"HTTP/1.1 413"), head
        assert b"Access-Control-Allow-Origin: *" in head
        assert "100000" in json.loads(body)["error"]
    assert disk_state(small_server) == before
    assert client.request("GET", "/folders").status == 200


def test_oversized_body_with_expect_continue_gets_no_100(small_server):
    client = APIClient(small_server.port("http"))
    token = client.login("alice@example.com", "alice-pw")
    sock = socket.create_connection(("127.0.0.1", small_server.port("http")), timeout=TIMEOUT)
    sock.sendall(f"POST /folders/INBOX/messages HTTP/1.1\r\nHost: x\r\n"
                 f"Authorization: Bearer {token}\r\nExpect: 100-continue\r\n"
                 f"Content-Length: 200000\r\n\r\n".encode())
    head, _ = _read_response(sock)
    sock.close()
    assert head.startswith(b"HTTP/1.1 413") and b"100 Continue" not in head


def test_oversized_chunked_upload_is_cut_off(small_server):
    client = APIClient(small_server.port("http"))
    token = client.login("alice@example.com", "alice-pw")
    before = disk_state(small_server)
    sock = socket.create_connection(("127.0.0.1", small_server.port("http")), timeout=TIMEOUT)
    sock.sendall(f"POST /folders/INBOX/messages HTTP/1.1\r\nHost: x\r\n"
                 f"Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    chunk = b"Subject: big\r\n" + b"x" * 16000 + b"\r\n"
    for _ in range(8):  # 128 KB in chunks, over the 100000-byte limit, no final chunk
        sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    head, body = _read_response(sock)
    sock.close()
    assert head.startswith(b"HTTP/1.1 413"), head
    assert "limit" in json.loads(body)["error"]
    small_server.wait_for(lambda: disk_state(small_server) == before, "the spool to be empty")
    assert small_server.messages("alice@example.com") == []
    assert client.request("GET", "/folders").status == 200


def test_body_at_the_limit_is_accepted(small_server):
    client = APIClient(small_server.port("http"))
    client.login("alice@example.com", "alice-pw")
    raw = b"Subject: fits\r\n\r\n" + b"y" * (100000 - 19) + b"\r\n"
    assert len(raw) == 100000
    r = client.request("POST", "/folders/INBOX/messages", data=raw)
    assert r.status == 201
    assert small_server.messages("alice@example.com")[0][2] == raw
    r = client.request("POST", "/folders/INBOX/messages", data=raw + b"z")
    assert_json_error(r, 413)
    assert len(small_server.messages("alice@example.com")) == 1


def test_send_over_the_limit_is_413(small_server):
    """A body that fits as JSON (80 KB of UTF-8) but not once MIME-encoded (base64)."""
    client = APIClient(small_server.port("http"))
    client.login("alice@example.com", "alice-pw")
    body = json.dumps({"to": ["bob@example.com"], "subject": "s", "body": "é" * 40000},
                      ensure_ascii=False).encode()
    assert len(body) < 100000
    r = client.request("POST", "/messages/send", data=body,
                       headers={"Content-Type": "application/json"})
    assert_json_error(r, 413)
    assert small_server.messages("bob@example.com") == []


def test_upload_without_a_valid_token_is_refused_before_the_body(server):
    before = disk_state(server)
    sock = socket.create_connection(("127.0.0.1", server.port("http")), timeout=TIMEOUT)
    sock.sendall(b"POST /folders/INBOX/messages HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Length: 5000000\r\n\r\n")
    head, body = _read_response(sock)
    sock.close()
    assert head.startswith(b"HTTP/1.1 401")
    assert "token" in json.loads(body)["error"]
    assert disk_state(server) == before


def test_empty_upload_is_refused(server, api):
    before = disk_state(server)
    assert_json_error(api.request("POST", "/folders/INBOX/messages", data=b""), 400, "empty")
    server.wait_for(lambda: disk_state(server) == before, "the spool to be empty")


def test_client_going_away_mid_upload_leaves_nothing(server, api):
    before = disk_state(server)
    sock = socket.create_connection(("127.0.0.1", server.port("http")), timeout=TIMEOUT)
    sock.sendall(b"POST /folders/INBOX/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                 + api.token.encode() + b"\r\nContent-Length: 2000000\r\n\r\n"
                 + b"Subject: cut\r\n\r\n" + b"z" * 500000)
    sock.close()
    server.wait_for(lambda: disk_state(server) == before, "the spool to be empty")


def test_empty_jwt_secret_refuses_every_login(tmp_path):
    """No key, no tokens: login says what to fix, and no token (not even one signed with
    an empty key) is accepted."""
    srv = Server(tmp_path, in_reactor, http__jwt_secret="")
    srv.start()
    try:
        client = APIClient(srv.port("http"))
        r = client.request("POST", "/auth/login", {"username": "alice@example.com",
                                                   "password": "alice-pw"})
        assert_json_error(r, 503, "http.jwt_secret")
        unsigned = _token({"alg": "HS256", "typ": "JWT"}, _claims(), b"")
        assert_json_error(client.request("GET", "/folders", token=unsigned), 401,
                          "http.jwt_secret")
    finally:
        srv.stop()
