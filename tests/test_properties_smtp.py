"""Property-based tests of what the SMTP server parses from the network.

Each parser either returns a result or raises its documented error, whatever the bytes:

- ``rmail.smtp.address.parse`` (MAIL FROM / RCPT TO paths and parameters): ``PathError``;
- ``rmail.smtp.sasl`` (AUTH PLAIN and LOGIN responses): ``SASLError``;
- ``rmail.smtp.data.DataReader`` (the DATA stream): never raises; its result does not
  depend on how the stream is cut into TCP segments;
- the command loop of ``rmail.smtp.server`` (over a real socket): every line gets a
  reply, and never the 451 "internal error" that an escaped exception turns into.

Round trips: an address built from the RFC 5321 grammar parses to itself, and a message
dot-stuffed as a client sends it comes out of ``DataReader`` as it went in.
"""

import base64
import re
import socket

import pytest
from hypothesis import example, given, strategies as st

from rmail.smtp import address, limits, replies, sasl
from rmail.smtp.data import DataReader
from tests.conftest import in_reactor
from tests.harness import TIMEOUT, Server, client_tls, read_reply
from tests.properties_common import ALICE, PROPERTY, long_digits, mutated

# -- the RFC 5321 grammar, as strategies --------------------------------------------------

_ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-"
atom = st.text(_ATEXT, min_size=1, max_size=12)
dot_atom = st.lists(atom, min_size=1, max_size=4).map(".".join)
_QTEXT = "".join(chr(c) for c in range(0x20, 0x7f) if chr(c) not in '"\\')
quoted_local = st.lists(
    st.one_of(st.sampled_from(_QTEXT), st.sampled_from([chr(c) for c in range(0x20, 0x7f)])
              .map(lambda c: "\\" + c)),
    max_size=20).map(lambda parts: '"' + "".join(parts) + '"')
local_part = st.one_of(dot_atom, quoted_local)

_LDH = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
label = st.builds(lambda a, mid, b: a + mid + b if mid or b else a,
                  st.sampled_from(_LDH), st.text(_LDH + "-", max_size=10),
                  st.sampled_from(_LDH))
host_domain = st.lists(label, min_size=1, max_size=4).map(".".join)
address_literal = st.one_of(
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda ip: "[%d.%d.%d.%d]" % ip),
    st.text("0123456789abcdef:", min_size=2, max_size=39).map(lambda v6: f"[IPv6:{v6}]"))
domain = st.one_of(host_domain, host_domain.map(lambda d: d + "."), address_literal)
mailbox = st.tuples(local_part, domain)

param_key = st.builds(lambda a, b: a + b, st.sampled_from(_LDH),
                      st.text(_LDH + "-", max_size=10))
param_value = st.text("".join(chr(c) for c in range(0x21, 0x7f) if c != 0x3d),
                      min_size=1, max_size=12)
params = st.dictionaries(param_key, st.one_of(st.none(), param_value), max_size=4)


def _param_bytes(values: dict) -> bytes:
    return b"".join(b" " + k.encode() + (b"=" + v.encode() if v is not None else b"")
                    for k, v in values.items())


@st.composite
def path_arguments(draw):
    """What follows MAIL or RCPT on the line, as a client writes it (before mutation)."""
    keyword = draw(st.sampled_from([b"FROM", b"TO", b"from", b"To"]))
    if draw(st.booleans()):
        local, dom = draw(mailbox)
        path = f"{local}@{dom}".encode()
    else:
        path = draw(st.sampled_from([b"", b"postmaster", b"@a.b,@c.d:u@e.f", b"x@y"]))
    if draw(st.booleans()):
        path = b"<" + path + b">"
    space = draw(st.sampled_from([b"", b" "]))
    return keyword + b":" + space + path + _param_bytes(draw(params))


# -- address.parse --------------------------------------------------------------------------


def _parse(rest, keyword=b"FROM", allow_null=True):
    bad = replies.BAD_SENDER_SYNTAX if keyword == b"FROM" else replies.BAD_RECIPIENT_SYNTAX
    return address.parse(rest, keyword, bad, allow_null)


def _parses_or_path_error(rest, keyword, allow_null):
    try:
        result, values = _parse(rest, keyword, allow_null)
    except address.PathError as e:
        assert isinstance(e.reply, replies.Reply) and e.reply.code in (501, 553, 555), e.reply
        return None
    assert isinstance(result, str) and result.isascii()
    assert result == "" or "@" in result
    assert all(isinstance(k, str) and k == k.upper() for k in values)
    return result


@PROPERTY(150)
@given(rest=st.binary(max_size=300), keyword=st.sampled_from([b"FROM", b"TO"]),
       allow_null=st.booleans())
def test_path_from_random_bytes(rest, keyword, allow_null):
    _parses_or_path_error(rest, keyword, allow_null)


@PROPERTY(100)
@given(rest=mutated(path_arguments()), allow_null=st.booleans())
def test_path_from_almost_valid_commands(rest, allow_null):
    keyword = b"TO" if rest[:2].upper() == b"TO" else b"FROM"
    _parses_or_path_error(rest, keyword, allow_null)


@PROPERTY(60)
@given(box=mailbox, values=params, brackets=st.booleans())
@example(box=('" >"', "[IPv6:00]"), values={}, brackets=True)
def test_path_round_trip(box, values, brackets):
    """An RFC 5321 mailbox parses to itself (a trailing root dot dropped), with its
    parameters upper-cased; too long a local part or domain is PATH_TOO_LONG."""
    local, dom = box
    text = f"{local}@{dom}".encode()
    path = b"<" + text + b">" if brackets or b" " in text else text
    rest = b"FROM:" + path + _param_bytes(values)
    too_long = len(local) > limits.LOCAL_PART or len(dom) > limits.DOMAIN
    try:
        parsed, got = _parse(rest)
    except address.PathError as e:
        assert too_long and e.reply == replies.PATH_TOO_LONG, (rest, e.reply)
        return
    assert not too_long
    assert parsed == f"{local}@{dom.rstrip('.')}"
    assert got == {k.upper(): v for k, v in values.items()}


# -- SASL -----------------------------------------------------------------------------------


@PROPERTY(50)
@given(responses=st.lists(st.one_of(st.binary(max_size=40),
                                    st.lists(st.binary(max_size=10), max_size=4)
                                    .map(b"\0".join)), min_size=1, max_size=3),
       mechanism=st.sampled_from(sorted(sasl.MECHANISMS)))
def test_sasl_responses(responses, mechanism):
    """A mechanism takes any responses: it asks for more, gives credentials, or raises
    SASLError; credentials always name a user."""
    machine = sasl.MECHANISMS[mechanism]()
    for response in responses:
        assert isinstance(machine.challenge(), bytes)
        try:
            ready = machine.respond(response)
        except sasl.SASLError:
            return
        if ready:
            assert machine.credentials.username
            return
        assert machine.credentials is None


@PROPERTY(40)
@given(user=st.binary(min_size=1, max_size=30).filter(lambda b: b"\0" not in b),
       password=st.binary(max_size=30).filter(lambda b: b"\0" not in b),
       authzid=st.booleans())
def test_sasl_plain_round_trip(user, password, authzid):
    machine = sasl.Plain()
    assert machine.respond((user if authzid else b"") + b"\0" + user + b"\0" + password)
    assert (machine.credentials.username, machine.credentials.password) == (user, password)


# -- DATA -----------------------------------------------------------------------------------


def _read_data(stream: bytes, cuts, max_size=10_000):
    """Feed *stream* to a DataReader in the pieces *cuts* makes, as the server does (bytes
    after the final dot are not fed); (written bytes, end offset in stream, flags)."""
    written = []
    reader = DataReader(written.append, max_size)
    bounds = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    end, stop = None, 0
    for start, stop in zip(bounds, bounds[1:]):
        chunk = stream[start:stop]
        got = reader.feed(chunk)
        if got is not None:
            assert 0 < got <= len(chunk), (got, chunk)
            end = start + got
            break
    if end is None and stop < len(stream):
        raise AssertionError("not everything was fed")
    return b"".join(written), end, reader.too_big, reader.line_too_long, reader.normalised


def _expected_end(stream: bytes):
    """Only CRLF.CRLF ends DATA (the DATA command's own CRLF counts as the first CRLF)."""
    i = (b"\r\n" + stream).find(b"\r\n.\r\n")
    return None if i < 0 else i + 3


data_stream = st.lists(
    st.one_of(st.binary(max_size=30), st.sampled_from(
        [b"\r\n", b".\r\n", b"\r\n.\r\n", b"\n.\n", b"\r.\r", b"..", b"\r", b"\n", b"\n.\r\n"]),
        st.integers(990, 1100).map(lambda n: b"x" * n)),
    max_size=12).map(b"".join)


@PROPERTY(80)
@given(stream=data_stream, cuts=st.lists(st.integers(0, 10_000), max_size=8))
@example(stream=b"a" * 1001 + b"\r\n.\r\n", cuts=[1000])
@example(stream=b"x\r" + b"y" * 1100 + b"\n.\r\n", cuts=[1, 1050])
def test_data_reader_ends_at_crlf_dot_crlf_however_cut(stream, cuts):
    """The data ends at the first CRLF.CRLF and nowhere else, and whether the message is
    refused, and what is written of one accepted, does not depend on where the TCP
    segments end (a refused message's bytes are discarded)."""
    written, end, too_big, too_long, normalised = _read_data(stream, [])
    assert end == _expected_end(stream)
    cut = _read_data(stream, cuts)
    assert cut[1:4] == (end, too_big, too_long)
    if not (too_big or too_long):
        assert (cut[0], cut[4]) == (written, normalised)


@PROPERTY(60)
@given(lines=st.lists(st.binary(max_size=120).map(lambda b: b.replace(b"\r", b"").replace(
    b"\n", b"")), max_size=20), cuts=st.lists(st.integers(0, 4000), max_size=6))
def test_data_reader_round_trip(lines, cuts):
    """A message dot-stuffed by the client comes out as it was, its end found exactly."""
    message = b"".join(line + b"\r\n" for line in lines)
    stuffed = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n"
                       for line in lines)
    stream = stuffed + b".\r\n" + b"QUIT\r\n"
    written, end, too_big, too_long, normalised = _read_data(stream, cuts)
    assert (written, end, too_big, too_long, normalised) == (
        message, len(stuffed) + 3, False, False, 0)


# -- the command loop, over a real socket ------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("properties-smtp"), in_reactor, users=ALICE)
    srv.start()
    yield srv
    srv.stop()


_VERBS = [b"EHLO", b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP", b"VRFY", b"HELP", b"AUTH",
          b"STARTTLS", b"DATA", b"BDAT", b"ETRN", b"mail", b"rcpt", b"auth"]

command_line = st.one_of(
    st.binary(max_size=200),
    st.tuples(st.sampled_from(_VERBS), st.sampled_from([b" ", b"", b"  ", b"\t"]),
              st.one_of(path_arguments(), st.binary(max_size=60),
                        st.sampled_from([b"PLAIN", b"LOGIN", b"PLAIN =", b"PLAIN *", b"CRAM-MD5",
                                         b"client.example", b"<alice@example.com>"]),
                        st.builds(lambda m, r: m + b" " + base64.b64encode(r),
                                  st.sampled_from([b"PLAIN", b"LOGIN"]), st.binary(max_size=40))))
    .map(b"".join).flatmap(lambda line: mutated(st.just(line))),
    long_digits(10, 700).map(lambda d: b"MAIL FROM:<a@example.org> SIZE=" + d),
).map(lambda line: line.replace(b"\n", b" "))


class _Client:
    """A raw SMTP session that counts its replies."""

    def __init__(self, port, tls):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        if tls:
            self.sock = client_tls().wrap_socket(self.sock)
        self.f = self.sock.makefile("rb")
        assert read_reply(self.f)[0].startswith("220 ")

    def exchange(self, line: bytes) -> list[str]:
        self.sock.sendall(line + b"\r\n")
        return read_reply(self.f)

    def close(self):
        self.f.close()
        self.sock.close()


_INTERNAL = re.compile(r"^451 4\.3\.0 ")


def _dialogue(port, tls, lines):
    client = _Client(port, tls)
    try:
        for line in lines:
            reply = client.exchange(line)
            assert not any(_INTERNAL.match(r) for r in reply), (line, reply)
            if reply[-1].startswith("354 "):  # DATA accepted: end an empty message
                reply = client.exchange(b".")
                assert not any(_INTERNAL.match(r) for r in reply), (line, reply)
            elif reply[-1].startswith("334 "):  # AUTH wants a response: cancel it
                reply = client.exchange(b"*")
                assert reply[-1].startswith("501 "), reply
            if reply[-1].startswith(("421 ", "221 ")):
                return
    except ConnectionError:
        return  # closed after too many errors or QUIT: nothing left to check
    finally:
        client.close()


@PROPERTY(50)
@given(lines=st.lists(command_line, min_size=1, max_size=4), helo=st.booleans())
@example(lines=[b'MAIL FROM:<"a>b"@example.org>', b"RCPT TO:<alice@example.com>"], helo=True)
def test_mx_session_answers_every_line(server, lines, helo):
    _dialogue(server.port("smtp"), False,
              ([b"EHLO client.example"] if helo else []) + lines + [b"NOOP"])


@PROPERTY(25)
@given(lines=st.lists(command_line, min_size=1, max_size=3))
def test_submission_session_answers_every_line(server, lines):
    """On the TLS submission port, AUTH and its responses are parsed too."""
    _dialogue(server.port("submissions"), True, [b"EHLO client.example"] + lines + [b"NOOP"])
