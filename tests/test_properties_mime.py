"""Property-based tests of the message parsers behind ENVELOPE, BODYSTRUCTURE, sections
and SEARCH: ``rmail.mime``, ``rmail.mimeparts``, ``rmail.rfc5322``, ``rmail.rfc2047``.

Their documented contract is "no input bytes make it raise" (module docstrings), so the
properties are: on arbitrary bytes, and on MIME messages built from the grammar and then
slightly broken, every function returns; what FETCH sends is well-formed IMAP (the
project's oracle parser reads it); every part's size and line count in BODYSTRUCTURE is
exactly its BODY[part] section; BODY[] is RFC822.SIZE octets.

Round trips: RFC 2047 encoded words (Python's encoder, and base64/Q words written by
hand) decode to the text; RFC 2231 continuations join back to the value; Content-Type
parameters and dates written by Python's email package read back as written.
"""

import base64
import datetime
import email.utils
from email.header import Header

from hypothesis import example, given, strategies as st

from rmail import mime, mimeparts, rfc2047, rfc5322
from tests.properties_common import PROPERTY, long_digits, mutated
from tests.test_mime import check_sizes
from tests.tools import imap_oracle

# -- messages from the grammar ---------------------------------------------------------------

word = st.text("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789", min_size=1, max_size=8)
token = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=8)
addr_spec = st.builds(lambda l, d: f"{l}@{d}.example", word, word)
mailbox = st.one_of(addr_spec, st.builds(lambda n, a: f"{n} <{a}>", word, addr_spec),
                    st.builds(lambda n, a: f'"{n}, jr" <{a}>', word, addr_spec),
                    st.builds(lambda a, c: f"{a} ({c})", addr_spec, word),
                    st.builds(lambda r, a: f"<@{r}.example:{a}>", word, addr_spec))
address_list = st.one_of(
    st.lists(mailbox, min_size=1, max_size=3).map(", ".join),
    st.builds(lambda g, ms: f"{g}: {', '.join(ms)};", word, st.lists(mailbox, max_size=2)))
encoded_word = st.builds(
    lambda cs, text: f"=?{cs}?B?{base64.b64encode(text.encode(cs, 'replace')).decode()}?=",
    st.sampled_from(["utf-8", "iso-8859-1"]), st.text(max_size=10))
unstructured = st.lists(st.one_of(word, encoded_word), min_size=0, max_size=4).map(" ".join)
_ZONES = [datetime.timezone(datetime.timedelta(minutes=m)) for m in (0, -240, 330)]
date_value = st.datetimes(min_value=datetime.datetime(1900, 1, 1),
                          max_value=datetime.datetime(2200, 1, 1),
                          timezones=st.sampled_from(_ZONES))
param = st.one_of(
    st.builds(lambda k, v: f"; {k}={v}", token, token),
    st.builds(lambda k, v: f'; {k}="{v}"', token, st.text(" abcxyz;=\\", max_size=8).map(
        lambda v: v.replace("\\", "\\\\"))),
    st.builds(lambda k, a, b: f"; {k}*0={a}; {k}*1={b}", token, token, token),
    st.builds(lambda k, v: f"; {k}*=utf-8''{v}", token, token),
    st.just(";"))


def _header(name, value):
    return f"{name}: {value}\r\n"


@st.composite
def leaf_headers(draw):
    lines = []
    for name, values in (("From", address_list), ("To", address_list), ("Cc", address_list),
                         ("Subject", unstructured), ("Message-ID", addr_spec.map("<{}>".format)),
                         ("Date", date_value.map(email.utils.format_datetime)),
                         ("Content-Transfer-Encoding", st.sampled_from(
                             ["7bit", "base64", "quoted-printable", "8bit", "x-foo"])),
                         ("Content-Disposition", st.builds(lambda d, p: d + p, st.sampled_from(
                             ["inline", "attachment"]), param)),
                         ("Content-Language", st.sampled_from(["en", "en, de", "x-"]))):
        if draw(st.booleans()):
            lines.append(_header(name, draw(values)))
    return "".join(lines)


@st.composite
def message(draw, depth=0):
    kind = draw(st.sampled_from(["none", "text", "multipart", "rfc822", "digest", "other"]
                                if depth < 3 else ["none", "text", "other"]))
    headers = draw(leaf_headers())
    if draw(st.booleans()):
        headers = "MIME-Version: 1.0\r\n" + headers
    body_text = draw(st.text(st.characters(max_codepoint=0x2FF), max_size=60))
    if kind == "none":
        return (headers + "\r\n" + body_text).encode("utf-8")
    if kind in ("text", "other"):
        ctype = "text/plain" if kind == "text" else draw(st.sampled_from(
            ["application/octet-stream", "image/png", "text", "multipart", "message/rfc822x"]))
        head = headers + _header("Content-Type", ctype + draw(param))
        return (head + "\r\n" + body_text).encode("utf-8")
    if kind == "rfc822":
        head = headers + _header("Content-Type", "message/rfc822")
        return (head + "\r\n").encode() + draw(message(depth + 1))
    boundary = draw(st.sampled_from(["b1", "=_x", "a b", "simple boundary", "--", "b1x"]))
    subtype = "digest" if kind == "digest" else draw(st.sampled_from(["mixed", "alternative"]))
    head = headers + _header("Content-Type", f'multipart/{subtype}; boundary="{boundary}"')
    parts = draw(st.lists(message(depth + 1), max_size=3))
    out = (head + "\r\npreamble\r\n").encode()
    for part in parts:
        out += b"--" + boundary.encode() + b"\r\n" + part + b"\r\n"
    if draw(st.booleans()):
        out += b"--" + boundary.encode() + b"--\r\nepilogue\r\n"
    return out


line_ends = st.sampled_from([b"\r\n", b"\n", b"\r"])
messages = st.one_of(
    st.binary(max_size=300),
    st.tuples(message(), line_ends).map(lambda m: m[0].replace(b"\r\n", m[1])),
    mutated(message()),
)


# -- the whole message ----------------------------------------------------------------------------

_SECTIONS = [((), None), ((), "HEADER"), ((), "TEXT"), ((1,), None), ((1,), "MIME"),
             ((2,), None), ((1, 1), "HEADER"), ((2, 1, 1), "TEXT"), ((1,), "HEADER.FIELDS"),
             ((), "HEADER.FIELDS.NOT"), ((99,), None)]


def _fetch_items(raw: bytes) -> dict:
    response = b"* 1 FETCH (ENVELOPE %s BODY %s BODYSTRUCTURE %s)\r\n" % (
        mime.envelope(raw), mime.bodystructure(raw, False), mime.bodystructure(raw))
    return imap_oracle.fetch_items(response)


@PROPERTY(50)
@given(raw=messages)
@example(raw=b"Content-Type: text/plain; a*" + b"9" * 5000 + b"=x\r\n\r\nhi")
@example(raw=b"Content-Type: multipart/mixed; boundary=b; b*" + b"9" * 4400 + b"*=y\r\n\r\n--b\r\n")
def test_fetch_views_of_any_message(raw):
    """ENVELOPE, BODY and BODYSTRUCTURE are well-formed IMAP, sizes match sections."""
    items = _fetch_items(raw)
    assert len(items["ENVELOPE"]) == 10
    check_sizes(raw)
    for part, kind in _SECTIONS:
        assert isinstance(mime.section(raw, part, kind, ("From", b"subject", "x" * 3)), bytes)


@PROPERTY(30)
@given(raw=messages)
def test_header_helpers_of_any_message(raw):
    for name in ("From", "Subject", "Date", "Content-Type", "X-None"):
        value = mime.header_value(raw, name)
        assert value is None or isinstance(value, bytes)
        assert isinstance(mime.decoded_header(raw, name), str)
    when = mime.sent_date(raw)
    assert when is None or isinstance(when, float)
    for name, value, start, end in rfc5322.header_fields(raw):
        assert name == name.lower() and 0 <= start < end <= len(raw)


@PROPERTY(120)
@given(value=st.one_of(st.binary(max_size=80), mutated(address_list.map(str.encode))),
       fill=st.booleans())
@example(value=b"(" * 2000 + b"a@b", fill=True)
@example(value=b'"' + b"\\" * 3, fill=False)
def test_address_lists(value, fill):
    """Every address is four strings or NILs; groups open and close in pairs."""
    depth = 0
    for entry in rfc5322.addresses(value, fill):
        assert len(entry) == 4 and all(x is None or isinstance(x, bytes) for x in entry)
        name, route, box, host = entry
        if host is None and route is None and name is None:
            depth += 1 if box is not None else -1
            assert depth in (0, 1)
    assert depth == 0


@PROPERTY(80)
@example(value=b"1 Jan " + b"9" * 4301 + b" 10:00 +0000")
@given(value=st.one_of(st.binary(max_size=60), mutated(date_value.map(
    lambda d: email.utils.format_datetime(d).encode())), long_digits(10, 5000).map(
    lambda digits: b"1 Jan " + digits + b" 10:00 +0000")))
def test_dates_parse_or_none(value):
    parsed = rfc5322.parse_date(value)
    assert parsed is None or (isinstance(parsed[0], int) and isinstance(parsed[1], int))


@PROPERTY(60)
@given(moment=date_value, style=st.sampled_from(["email", "obsolete"]))
def test_date_round_trip(moment, style):
    moment = moment.replace(microsecond=0)
    text = email.utils.format_datetime(moment)
    if style == "obsolete":  # no weekday, no seconds, a comment after the zone
        text = moment.strftime("%d %b %Y %H:%M ") + text[-5:] + " (zone)"
        moment = moment.replace(second=0)
    offset = moment.utcoffset() // datetime.timedelta(minutes=1)
    assert rfc5322.parse_date(text.encode()) == (int(moment.timestamp()), offset)


# -- RFC 2047 --------------------------------------------------------------------------------------


@PROPERTY(120)
@given(value=st.one_of(st.binary(max_size=80), mutated(unstructured.map(str.encode)),
                       st.builds(lambda cs, enc, body: b"=?%s?%s?%s?=" % (cs, enc, body),
                                 st.sampled_from([b"utf-8", b"utf-16", b"rot13", b"idna",
                                                  b"x-unknown", b"utf-8*en", b"base64"]),
                                 st.sampled_from([b"B", b"q"]),
                                 st.binary(min_size=1, max_size=20))),
       search=st.booleans())
@example(value=b"=?utf-16?B?2D0=?=", search=False)
@example(value=b"=?idna?q?=FF?=", search=True)
def test_decode_words_any_bytes(value, search):
    assert isinstance(rfc2047.decode_words(value, search), str)


def _q(octets: bytes) -> str:
    """RFC 2047 4.2 Q encoding: letters and digits as they are, a space as "_"."""
    return "".join(chr(b) if chr(b).isascii() and chr(b).isalnum() else "_" if b == 32
                   else f"={b:02X}" for b in octets)


def _encode_words(text: str, charset: str, encoding: str, size: int) -> str:
    """*text* as encoded words of at most *size* characters each, space-separated."""
    words = []
    for i in range(0, len(text), size):
        octets = text[i:i + size].encode(charset)
        body = base64.b64encode(octets).decode() if encoding == "B" else _q(octets)
        words.append(f"=?{charset}?{encoding}?{body}?=")
    return " ".join(words)


texts = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)


@PROPERTY(100)
@given(text=texts, encoding=st.sampled_from(["B", "Q"]), size=st.integers(1, 12),
       charset=st.sampled_from(["utf-8", "UTF-8", "utf-16-le", "iso-8859-1"]))
@example(text="é", encoding="Q", size=1, charset="utf-8")
def test_rfc2047_round_trip(text, encoding, size, charset):
    """Words split anywhere (even inside a character) decode to the text, by both readers."""
    try:
        text.encode(charset)
    except UnicodeEncodeError:
        charset = "utf-8"
    if charset.lower() == "utf-8" and size % 2:
        # split the octets, not the characters: a character cut across two words
        octets = text.encode("utf-8")
        words = []
        for i in range(0, len(octets), size):
            chunk = octets[i:i + size]
            body = base64.b64encode(chunk).decode() if encoding == "B" else _q(chunk)
            words.append(f"=?{charset}?{encoding}?{body}?=")
        wire = " ".join(words)
    else:
        wire = _encode_words(text, charset, encoding, size)
    assert rfc2047.decode_words(wire.encode()) == text
    assert rfc2047.decode_words(wire.encode(), search=True) == text


@PROPERTY(60)
@given(text=texts, charset=st.sampled_from(["utf-8", "iso-8859-1", "iso-2022-jp"]))
def test_rfc2047_round_trip_python_encoder(text, charset):
    """What Python's encoder writes (UTF-16 aside: it starts every word with a BOM, which
    joined words then carry inside the text, as Python's own decoder does too)."""
    try:
        wire = Header(text, charset).encode()
    except UnicodeEncodeError:
        return
    assert rfc2047.decode_words(wire.encode("ascii")) == text


# -- Content-Type --------------------------------------------------------------------------------


@PROPERTY(100)
@given(value=st.one_of(st.binary(max_size=80), mutated(st.builds(
    lambda t, ps: (t + "".join(ps)).encode(),
    st.sampled_from(["text/plain", "multipart/mixed", "message/rfc822", "text", "/x", "a/"]),
    st.lists(param, max_size=4)))))
@example(value=b"text/plain; a*" + b"9" * 5000 + b"=x")
@example(value=b"text/plain; a*" + b"9" * 5000 + b"*=x; a*0*=y")
def test_content_type_any_value(value):
    ok, mime_type, params = mimeparts.content_type(value)
    assert isinstance(mime_type, bytes)
    assert params is None or all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in params)
    assert ok or params is None


def _quoted_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


@PROPERTY(80)
@given(ctype=st.sampled_from(["text/plain", "Application/X-Thing"]),
       values=st.dictionaries(token, st.text("abc XYZ;=,/\\\"", max_size=10), max_size=4),
       pieces=st.integers(1, 4))
def test_content_type_round_trip(ctype, values, pieces):
    """Parameters written quoted (or as RFC 2231 continuations) read back as written."""
    written = ctype
    expected = []
    for i, (key, value) in enumerate(values.items()):
        if i % 2 or not value:
            written += '; %s="%s"' % (key, _quoted_text(value))
        else:  # RFC 2231 section 3: key*0, key*1 ... joined
            step = -(-len(value) // pieces)
            for n, start in enumerate(range(0, len(value), step)):
                written += '; %s*%d="%s"' % (key, n, _quoted_text(value[start:start + step]))
        expected.append((key.encode(), value.encode()))
    ok, mime_type, params = mimeparts.content_type(written.encode())
    assert ok and mime_type == ctype.encode()
    assert sorted(params or []) == sorted(expected)


@PROPERTY(60)
@given(spec=st.text(max_size=40), raw=st.binary(max_size=200))
def test_parse_section_then_section(spec, raw):
    try:
        parsed = mime.parse_section(spec)
    except ValueError:
        return
    assert isinstance(mime.section(raw, *parsed), bytes)
