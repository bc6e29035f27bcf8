"""Property-based tests of what the HTTP API reads from clients.

The documented error of every reader is ``ApiError`` (rmail.web.inputs: "Each reader
raises ``ApiError(400)``"); tokens are refused with ``InvalidToken``.  So on arbitrary
input, and on almost-valid input built from each grammar and mutated:

- ``inputs.json_object``, ``inputs.fields``, ``inputs.path_text``, ``inputs.uid``,
  ``compose.check_address``, ``compose.build``, ``autoconfig.requested_address`` and
  the login's username/domain rule return a value or raise ApiError;
- ``TokenIssuer.verify`` returns the token's user or raises InvalidToken, even for a
  correctly signed token with claims of any type;
- a real server answers every request with a JSON status it documents, never a 500.

Round trips and invariants: a JSON object's bytes read back to the object; a message
built for ``POST /messages/send`` has exactly the header fields rmail writes (nothing a
client sends can add one) and its Subject decodes back to the subject sent.
"""

import json
import time
import urllib.parse

import jwt
import pytest
from hypothesis import example, given, strategies as st

from rmail import config as rconfig, rfc5322
from rmail.directory import Directory
from rmail.service import Settings
from rmail.web import autoconfig, compose, inputs
from rmail.web.app import _login_address
from rmail.web.errors import ApiError
from rmail.web.tokens import InvalidToken, TokenIssuer
from tests.conftest import in_reactor
from tests.harness import USERS, APIClient, Server
from tests.properties_common import ALICE, PROPERTY, long_digits, mutated

# -- JSON ---------------------------------------------------------------------------------------

json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                        st.text(max_size=10))
json_value = st.recursive(json_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=10)
json_object = st.dictionaries(st.sampled_from(["to", "cc", "bcc", "subject", "body", "html",
                                               "flags", "username", "password", "domain",
                                               "pattern", "target", "too"]),
                              st.one_of(json_value, st.lists(st.text(max_size=10), max_size=3)),
                              max_size=5)
json_body = st.one_of(
    st.binary(max_size=80),
    json_object.map(lambda o: json.dumps(o).encode()),
    mutated(json_object.map(lambda o: json.dumps(o).encode())),
    st.integers(1000, 100_000).map(lambda n: b"[" * n),
    st.integers(1000, 5000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.sampled_from([b'{"a": "\\ud800"}', b'{"a": NaN}', b'{"a": 1e999}', b"\xef\xbb\xbf{}",
                     b'{"a": 1, "a": 2}', b"  ", b"null"]))


def _read_json(raw):
    try:
        value = inputs.json_object(raw)
    except ApiError as e:
        assert e.status == 400 and e.message
        return None
    assert isinstance(value, dict)
    return value


@PROPERTY(60)
@given(raw=json_body)
@example(raw=b"[" * 100_000)
@example(raw=b'{"a":' * 2000 + b"1" + b"}" * 2000)
def test_json_bodies(raw):
    _read_json(raw)


@PROPERTY(80)
@given(value=json_object)
def test_json_round_trip(value):
    assert _read_json(json.dumps(value, ensure_ascii=False).encode("utf-8")) == value


_SCHEMAS = [({"username": str, "password": str}, {"domain": str}),
            ({"to": list, "subject": str, "body": str}, {"cc": list, "bcc": list, "html": str}),
            ({"flags": list}, {}), ({"pattern": str, "target": str}, {})]


@PROPERTY(60)
@given(data=json_object, schema=st.sampled_from(_SCHEMAS))
def test_fields(data, schema):
    required, optional = schema
    try:
        out = inputs.fields(data, required, optional)
    except ApiError as e:
        assert e.status == 400
        return
    assert set(required) <= set(out) <= set(required) | set(optional)
    assert all(out[k] is data[k] for k in out)


# -- path segments and addresses -------------------------------------------------------------------

segment = st.one_of(st.text(max_size=20),
                    st.binary(max_size=12).map(lambda b: urllib.parse.quote(b, safe="")),
                    st.sampled_from(["%", "%z", "%C3", "%C3%A9", "%00", "%2F", "0", "4294967295",
                                     "4294967296", "٣", "1e3", " 1"]),
                    long_digits(10, 5000).map(bytes.decode))


@PROPERTY(120)
@given(text=segment)
def test_path_segments(text):
    for read in (lambda s: inputs.path_text(s, "folder name"), inputs.uid):
        try:
            value = read(text)
        except ApiError as e:
            assert e.status == 400
            continue
        assert value


@PROPERTY(100)
@given(value=st.one_of(st.text(max_size=30), mutated(st.just(b"alice.b+c@mail.example.com")).map(
    lambda b: b.decode("latin-1"))))
def test_send_addresses(value):
    try:
        assert compose.check_address(value, "to") == value
    except ApiError as e:
        assert e.status == 400


@PROPERTY(80)
@given(username=st.one_of(st.text(max_size=20), st.just("alice@example.com")),
       domain=st.one_of(st.none(), st.text(max_size=12), st.just("Example.COM")))
def test_login_address(username, domain):
    try:
        address = _login_address(username, domain)
    except ApiError as e:
        assert e.status == 400
        return
    assert "@" in address


# -- building a message to send ------------------------------------------------------------------

_HEADER_NAMES = {b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"mime-version",
                 b"content-type", b"content-transfer-encoding"}


@PROPERTY(40)
@given(subject=st.text(max_size=120), body=st.text(max_size=200),
       html=st.one_of(st.none(), st.text(max_size=40)),
       cc=st.lists(st.sampled_from(["bob@example.com", "c.d@example.org"]), max_size=2))
@example(subject="=?utf-8?q?x?=", body="", html=None, cc=[])
def test_built_message(subject, body, html, cc):
    """Headers are exactly rmail's own (no header injection through a subject, whatever
    characters it holds) and the Subject reads back as sent, whitespace aside."""
    try:
        raw = compose.build("alice@example.com", ["bob@example.com"], cc, subject, body, html,
                            "<id@mail.example.com>")
    except ApiError as e:
        assert e.status == 400
        return
    names = [name for name, _, _, _ in rfc5322.header_fields(raw)]
    assert set(names) <= _HEADER_NAMES and len(names) == len(set(names)), names
    if "=?" not in subject:  # Python's email package leaves text that looks encoded as it is
        assert rfc5322.decoded_header(raw, "Subject").split() == subject.split()


# -- autodiscover --------------------------------------------------------------------------------

_AUTODISCOVER = (b'<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.'
                 b'microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request>'
                 b"<EMailAddress>alice@example.com</EMailAddress><AcceptableResponseSchema>"
                 b"x</AcceptableResponseSchema></Request></Autodiscover>")


@PROPERTY(100)
@given(body=st.one_of(st.binary(max_size=80), mutated(st.just(_AUTODISCOVER)),
                      st.sampled_from([b"utf-16", b"foo", b"utf-32", b"ascii", b"idna",
                                       b"rot13", b"base64"]).map(
                          lambda enc: _AUTODISCOVER.replace(b"utf-8", enc))))
@example(body=b'<?xml version="1.0" encoding="foo"?><a/>')
@example(body=b'<?xml version="1.0" encoding="utf-32"?><a/>')
def test_autodiscover_requests(body):
    try:
        address = autoconfig.requested_address(body)
    except ApiError as e:
        assert e.status == 400
        return
    assert address and address == address.strip()


# -- tokens --------------------------------------------------------------------------------------

SECRET = "property-secret-" + "x" * 48


@pytest.fixture(scope="module")
def issuer(tmp_path_factory):
    directory = Directory(str(tmp_path_factory.mktemp("properties-web")), ["example.com"])
    directory.add_user("alice@example.com", "pw")
    config = rconfig.Config(hostname="mail.example.com", http=rconfig.HTTP(jwt_secret=SECRET))
    return TokenIssuer(Settings(config), directory)


_NOW = int(time.time())
claim_value = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                        st.floats(allow_nan=True), st.text(max_size=6),
                        st.lists(st.integers(), max_size=2), st.just({"a": 1}),
                        st.sampled_from([_NOW, _NOW + 3600, _NOW - 3600, 10**30, -10**30]))
claims = st.fixed_dictionaries({}, optional={
    "sub": st.one_of(st.just("alice@example.com"), st.just("ALICE@example.com"), claim_value),
    "gen": st.one_of(st.just(1), claim_value),
    "iat": st.one_of(st.just(_NOW), claim_value),
    "exp": st.one_of(st.just(_NOW + 3600), claim_value),
    "nbf": claim_value})


@st.composite
def tokens(draw):
    kind = draw(st.sampled_from(["signed", "other-key", "other-alg", "text", "mutated"]))
    payload = draw(claims)
    if kind == "text":
        return draw(st.text(max_size=60))
    if kind == "other-alg":
        alg = draw(st.sampled_from(["HS512", "HS384", "none"]))
        return jwt.encode(payload, None if alg == "none" else SECRET, algorithm=alg)
    key = SECRET if kind != "other-key" else "another-secret-" + "y" * 49
    token = jwt.encode(payload, key, algorithm="HS256")
    if kind == "mutated":
        token = draw(mutated(st.just(token.encode()))).decode("latin-1")
    return token


@PROPERTY(100)
@given(token=tokens())
@example(token=jwt.encode({"sub": "alice@example.com", "gen": 1, "iat": _NOW,
                           "exp": float("inf")}, SECRET, algorithm="HS256"))
@example(token=jwt.encode({"sub": "alice@example.com", "gen": 1, "iat": [1],
                           "exp": _NOW + 60}, SECRET, algorithm="HS256"))
def test_tokens_verify_or_invalid(issuer, token):
    try:
        user = issuer.verify(token)
    except InvalidToken as e:
        assert str(e)
        return
    assert user.address == "alice@example.com"


# -- a real server -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("properties-http"), in_reactor, users=ALICE,
                 relay__enabled=False)
    srv.start()
    client = APIClient(srv.port("http"))
    client.login("alice@example.com", USERS["alice@example.com"])
    yield client
    srv.stop()


def _answered(response, allowed):
    assert response.status in allowed, response
    if response.status != 204:
        payload = response.json() if response.headers.get("Content-Type", "").startswith(
            "application/json") else None
        assert payload is None or isinstance(payload, dict), response


query_value = st.one_of(st.integers(-5, 600).map(str), long_digits(10, 5000).map(bytes.decode),
                        st.text(max_size=8).map(lambda t: urllib.parse.quote(t, safe="")),
                        st.sampled_from(["", "%", "1%00", "0x10", "٣", "1&limit=2", "+1"]))


@PROPERTY(30)
@given(folder=segment.filter(lambda s: s and "/" not in s and "?" not in s and "#" not in s),
       offset=st.one_of(st.none(), query_value), limit=st.one_of(st.none(), query_value))
@example(folder="INBOX", offset=None, limit=None)  # the first listing of a user's shard
@example(folder="INBOX", offset="9" * 5000, limit=None)
def test_listing_query_strings(api, folder, offset, limit):
    path = "/folders/" + urllib.parse.quote(folder, safe="%") + "/messages"
    query = "&".join(f"{k}={urllib.parse.quote(v, safe='%&=')}" for k, v in
                     (("offset", offset), ("limit", limit)) if v is not None)
    _answered(api.request("GET", path + ("?" + query if query else "")), {200, 400, 404})


@PROPERTY(30)
@given(endpoint=st.sampled_from([("POST", "/auth/login", {200, 400, 401, 429, 503}),
                                 ("PATCH", "/folders/INBOX/messages/1/flags", {200, 400, 404}),
                                 ("POST", "/messages/send", {202, 400, 403, 404, 413}),
                                 ("POST", "/aliases", {201, 400, 403}),
                                 ("POST", "/autodiscover/autodiscover.xml", {200, 400, 404, 413})]),
       body=json_body)
@example(endpoint=("POST", "/autodiscover/autodiscover.xml", {200, 400, 404, 413}),
         body=b'<?xml version="1.0" encoding="foo"?><a/>')
@example(endpoint=("PATCH", "/folders/INBOX/messages/1/flags", {200, 400, 404}),
         body=b"[" * 50_000)
@example(endpoint=("PATCH", "/folders/INBOX/messages/1/flags", {200, 400, 404}),
         body=b'{"flags": ' + b"[" * 990 + b"]" * 990 + b"}")
@example(endpoint=("POST", "/messages/send", {202, 400, 403, 404, 413}),
         body=b'{"to": [], "body": "", "subject": ' + b"[" * 990 + b"]" * 990 + b"}")
def test_request_bodies(api, endpoint, body):
    method, path, allowed = endpoint
    _answered(api.request(method, path, data=body,
                          headers={"Content-Type": "application/json"}), allowed)


@PROPERTY(20)
@given(header=st.one_of(tokens().map(lambda t: "Bearer " + t), st.text(max_size=40)))
def test_authorization_headers(api, header):
    # http.client sends latin-1 and refuses control characters: send the UTF-8 bytes
    value = "".join(c for c in header.encode("utf-8").decode("latin-1")
                    if " " <= c != "\x7f")
    _answered(api.request("GET", "/folders", headers={"Authorization": value}, token=""),
              {200, 401})
