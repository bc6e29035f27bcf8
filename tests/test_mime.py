"""rmail.mime against Dovecot's recorded FETCH answers and against the RFCs.

Every FETCH answer recorded in tests/corpus/imap (Dovecot 2.3.19.1) is its own test case:
the module's value is wrapped in the same ``* n FETCH (...)`` response an IMAP server
would send and compared with the project's oracle checker (tests/tools/imap_oracle.py),
so "matches" means exactly what it means against a live server. FLAGS and INTERNALDATE
belong to the store; RFC822.SIZE is checked against ``rfc822_size``.
"""

import calendar
import json
import os
import random
import re

import pytest

from rmail import mime
from tests.tools import imap_oracle

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "imap")
STORE_ITEMS = {"FLAGS", "INTERNALDATE", "RFC822.SIZE"}

with open(os.path.join(CORPUS, "expected.json"), encoding="utf-8") as _f:
    MESSAGES = {m["file"]: m for m in json.load(_f)["messages"]}

# Recorded answers where Dovecot contradicts RFC 3501 or the MIME RFCs and rmail follows
# the RFC instead: {(file, item): the RFC rule}. Such an answer must keep differing, so
# a change that quietly goes back to Dovecot's answer fails here. The corpus has none:
# where the RFCs leave room (a Content-Type without subtype gives "" "", a multipart
# without boundary gives one empty part, an RFC 2231 "boundary*" is not a boundary),
# rmail makes Dovecot's choice. The cases outside the corpus are in RFC_OVER_DOVECOT.
CORPUS_DIFFERENCES = {}

_PEEK = re.compile(r"BODY\.PEEK\[(.*)\](?:<(\d+)\.(\d+)>)?\Z", re.S)


def raw_message(name):
    with open(os.path.join(CORPUS, name), "rb") as f:
        return f.read()


def fetch_response(seq, item, raw):
    """The untagged FETCH response a server built on rmail.mime sends for *item*."""
    if item == "ENVELOPE":
        value = b"ENVELOPE " + mime.envelope(raw)
    elif item == "BODYSTRUCTURE":
        value = b"BODYSTRUCTURE " + mime.bodystructure(raw)
    elif item == "BODY":
        value = b"BODY " + mime.bodystructure(raw, extensible=False)
    else:
        spec, origin, length = _PEEK.match(item).groups()
        data = mime.section(raw, *mime.parse_section(spec))
        label = "BODY[%s]" % spec
        if origin is not None:          # RFC 3501: <a.b> sends b octets from a, labelled <a>
            data = data[int(origin):int(origin) + int(length)]
            label += "<%s>" % origin
        value = label.encode("ascii") + b" {%d}\r\n" % len(data) + data
    return b"* %d FETCH (%s)\r\n" % (seq, value)


CASES = [(name, item) for name, m in sorted(MESSAGES.items())
         for item in m["fetch"] if item not in STORE_ITEMS]


@pytest.mark.parametrize("name,item", CASES, ids=["%s:%s" % c for c in CASES])
def test_corpus_answer(name, item):
    """Each recorded answer is matched, structurally, the way imap_oracle compares."""
    expected = MESSAGES[name]["fetch"][item]
    seq = int(expected.split()[1])
    diff = imap_oracle.compare_fetch(item, expected, [fetch_response(seq, item, raw_message(name))])
    if (name, item) in CORPUS_DIFFERENCES:
        assert diff is not None, "now matches Dovecot, against " + CORPUS_DIFFERENCES[name, item]
    else:
        assert diff is None, diff


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_rfc822_size(name):
    """RFC822.SIZE is the stored size (CRLF corpus) and Dovecot's."""
    raw = raw_message(name)
    recorded = imap_oracle.fetch_items(MESSAGES[name]["fetch"]["RFC822.SIZE"].encode("latin-1"))
    assert mime.rfc822_size(raw) == len(raw) == int(recorded["RFC822.SIZE"])


def structure_sizes(body, prefix=()):
    """(part numbers, size, lines or None) for every part of a parsed BODYSTRUCTURE."""
    if isinstance(body[0], list):                  # multipart: the leading lists are parts
        count = next((k for k, x in enumerate(body) if not isinstance(x, list)), len(body))
        for i in range(count):
            yield from structure_sizes(body[i], prefix + (i + 1,))
        return
    path = prefix or (1,)
    text = body[0].upper() == b"TEXT"
    yield path, int(body[6]), int(body[7]) if text else None
    if body[0].upper() == b"MESSAGE" and body[1].upper() == b"RFC822":
        inner = body[8]
        yield from structure_sizes(inner, path if isinstance(inner[0], list) else path + (1,))


def check_sizes(raw):
    """Every part's size and line count in BODYSTRUCTURE equal its BODY[part] section."""
    parsed = imap_oracle.fetch_items(b"* 1 FETCH (BODYSTRUCTURE %s)\r\n" % mime.bodystructure(raw))
    for path, size, lines in structure_sizes(parsed["BODYSTRUCTURE"]):
        data = mime.section(raw, path)
        assert len(data) == size, (path, size, len(data))
        assert lines is None or data.count(b"\n") == lines, (path, lines)
    assert len(mime.section(raw)) == mime.rfc822_size(raw)


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_structure_sizes_match_sections(name):
    """Sizes and line counts describe exactly the bytes that BODY[part] returns."""
    check_sizes(raw_message(name))


# --------------------------------------------------------------------------- quote

@pytest.mark.parametrize("value,wire", [
    (None, b"NIL"),
    (b"", b'""'),
    (b"plain text", b'"plain text"'),
    (b'say "hi" \\o/', b'"say \\"hi\\" \\\\o/"'),
    (b"NIL", b'"NIL"'),
    (b"two\r\nlines", b"{10}\r\ntwo\r\nlines"),
    (b"bare\nlf", b"{7}\r\nbare\nlf"),
    (b"caf\xc3\xa9", b"{5}\r\ncaf\xc3\xa9"),
    (b"caf\xe9", b"{4}\r\ncaf\xe9"),
    (b"nul\0byte", b"{8}\r\nnul\x80byte"),
    ("Jörg", b"{5}\r\nJ\xc3\xb6rg"),
    (b"x" * 2000, b"{2000}\r\n" + b"x" * 2000),
])
def test_quote(value, wire):
    """Quoted when possible; CR, LF, NUL, 8-bit and long strings go as literals; NUL,
    which no IMAP4rev1 string may carry, goes as 0x80."""
    assert mime.quote(value) == wire


# --------------------------------------------------------------------------- header helpers

HEADERS = (b"Received: from a\r\n\tby b; Mon, 1 Apr 2024 10:00:00 +0000\r\n"
           b"Subject: =?UTF-8?Q?Caf=C3=A9?= first\r\n"
           b"subject: second\r\n"
           b"X-Folded: one\r\n two\r\n\tthree  \r\n"
           b"X-Raw: Gr\xc3\xbc\xc3\x9fe\r\n"
           b"X-Empty:\r\n"
           b"\r\nbody\r\n")


@pytest.mark.parametrize("name,value", [
    ("Subject", b"=?UTF-8?Q?Caf=C3=A9?= first"),
    ("SUBJECT", b"=?UTF-8?Q?Caf=C3=A9?= first"),
    ("x-folded", b"one two\tthree"),
    ("Received", b"from a\tby b; Mon, 1 Apr 2024 10:00:00 +0000"),
    ("X-Raw", b"Gr\xc3\xbc\xc3\x9fe"),
    ("X-Empty", b""),
    ("X-Missing", None),
])
def test_header_value(name, value):
    """The first field of that name, unfolded and trimmed, not decoded; None if absent."""
    assert mime.header_value(HEADERS, name) == value


def test_header_value_stops_at_the_body():
    """Body lines that look like fields are not header fields."""
    assert mime.header_value(b"From: a@b\r\n\r\nSubject: not a header\r\n", "Subject") is None


@pytest.mark.parametrize("value,text", [
    (b"=?UTF-8?Q?Caf=C3=A9_cr=C3=A8me?=", "Café crème"),
    (b"=?utf-8?q?Caf=C3=A9?=", "Café"),
    (b"=?ISO-8859-1?B?Y2Fm6SBub2ly?=", "café noir"),
    (b"=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?= <keld@dkuug.dk>",
     "Keld Jørn Simonsen <keld@dkuug.dk>"),
    (b"=?KOI8-R?B?98/Mz8TRIPDV1MnO?=", "Володя Путин"),
    (b"=?Shift_JIS?B?k/qWe4zq?=", "日本語"),
    (b"=?windows-1252?Q?=93Smart=94_Quotes?=", "“Smart” Quotes"),
    # whitespace between encoded words goes, between a word and text it stays
    (b"=?UTF-8?Q?a?= =?ISO-8859-1?Q?b?=\r\n =?UTF-8?Q?c?= d", "abc d"),
    # one character split over two words of the same charset
    (b"=?UTF-8?Q?caf=C3?= =?UTF-8?Q?=A9?=", "café"),
    (b"=?UTF-8?B?w4RyZ2Vy?= =?UTF-8?B?LnR4dA==?=", "Ärger.txt"),
    (b"=?UTF-8?B?bm90IHZhbGlkIGJhc2U2NA?=", "not valid base64"),      # padding missing
    # RFC 2231 §5 language suffix
    (b"=?UTF-8*en?Q?with_language?=", "with language"),
    # malformed words stay as they are
    (b"broken =?UTF-8?Q?no_terminator and more", "broken =?UTF-8?Q?no_terminator and more"),
    (b"word=?UTF-8?Q?inside?=word", "word=?UTF-8?Q?inside?=word"),
    (b"=?X-UNKNOWN?Q?Unknown_charset?=", "=?X-UNKNOWN?Q?Unknown_charset?="),
    (b"=?UTF-8?X?bad_encoding?=", "=?UTF-8?X?bad_encoding?="),
    (b"=?UTF-8?B?a?=", "=?UTF-8?B?a?="),
    (b"=?UTF-8?Q??=", "=?UTF-8?Q??="),
    (b"=?UTF-8?Q?ok=C3=A9?= =?X-UNKNOWN?Q?x?= =?UTF-8?Q?ok?=", "oké =?X-UNKNOWN?Q?x?= ok"),
    # raw 8-bit: UTF-8 when it is, else ISO-8859-1
    (b"Gr\xc3\xbc\xc3\x9fe", "Grüße"),
    (b"caf\xe9", "café"),
    (b"(=?UTF-8?Q?in_a_comment?=)", "(in a comment)"),
])
def test_decoded_header(value, text):
    """RFC 2047 decoding, lenient but never guessing at malformed words."""
    assert mime.decoded_header(b"Subject: " + value + b"\r\n\r\n", "subject") == text


def test_decoded_header_absent_and_first():
    assert mime.decoded_header(b"From: a@b\r\n\r\n", "Subject") == ""
    assert mime.decoded_header(HEADERS, "Subject") == "Café first"


@pytest.mark.parametrize("value,when", [
    (b"Fri, 4 May 2001 14:05:44 -0400", (2001, 5, 4, 18, 5, 44)),
    (b"Fri, 20 Apr 2001 20:18:00 -0400 (EDT)", (2001, 4, 21, 0, 18, 0)),
    (b"4 May 2001 14:05:44 +0200", (2001, 5, 4, 12, 5, 44)),
    (b"Fri, 4 May 2001 14:05 GMT", (2001, 5, 4, 14, 5, 0)),
    (b"Fri, 4 May 2001 14:05:44 EDT", (2001, 5, 4, 18, 5, 44)),
    (b"Fri, 4 May 01 14:05:44 +0000", (2001, 5, 4, 14, 5, 44)),
    (b"Fri, 4 May 99 14:05:44 +0000", (1999, 5, 4, 14, 5, 44)),
    (b"Fri, 4 May 2001 14.05.44 +0000", (2001, 5, 4, 14, 5, 44)),
    (b"Fri, 4 May 2001 14:05:44 +0000 (UTC)", (2001, 5, 4, 14, 5, 44)),
    (b"Fri, 4 May 2001 14:05:44 XYZ", (2001, 5, 4, 14, 5, 44)),      # unknown zone: UTC
    (b"Sat, 31 Dec 2016 23:59:60 +0000", (2016, 12, 31, 23, 59, 59)),  # leap second
    (b"Mon, 32 Foo 2020 25:61:00 +9999", None),
    (b"2024-03-05T10:00:00Z", None),
    (b"Mon, 31 Feb 2024 10:00:00 +0000", None),
    (b"Mon, 1 Feb 2024 24:00:00 +0000", None),
    (b"", None),
])
def test_sent_date(value, when):
    """The Date field as epoch seconds, RFC 5322 and its obsolete forms; None if invalid."""
    raw = b"Date: " + value + b"\r\nDate: Tue, 1 Jan 2030 00:00:00 +0000\r\n\r\n"
    expected = None if when is None else float(calendar.timegm(when + (0, 0, 0)))
    assert mime.sent_date(raw) == expected


def test_sent_date_missing():
    assert mime.sent_date(b"Subject: no date\r\n\r\nbody\r\n") is None


def test_sent_date_year_too_large():
    """A year no datetime can hold is an unparseable date, not an exception."""
    assert mime.sent_date(b"Date: 1 Jan 20242024202420242024 00:00:00 +0000\r\n\r\n") is None


# --------------------------------------------------------------------------- sections

@pytest.mark.parametrize("spec,parsed", [
    ("", ((), None, ())),
    ("1", ((1,), None, ())),
    ("2.1", ((2, 1), None, ())),
    ("10.3.1", ((10, 3, 1), None, ())),
    ("HEADER", ((), "HEADER", ())),
    ("text", ((), "TEXT", ())),
    ("1.MIME", ((1,), "MIME", ())),
    ("3.TEXT", ((3,), "TEXT", ())),
    ("2.HEADER", ((2,), "HEADER", ())),
    ("HEADER.FIELDS (From Subject Date)", ((), "HEADER.FIELDS", ("From", "Subject", "Date"))),
    ("header.fields.not (Received)", ((), "HEADER.FIELDS.NOT", ("Received",))),
    ('2.HEADER.FIELDS ("X-Odd Name" To)', ((2,), "HEADER.FIELDS", ("X-Odd Name", "To"))),
])
def test_parse_section(spec, parsed):
    assert mime.parse_section(spec) == parsed


@pytest.mark.parametrize("spec", [
    "0", "1.0", "01", "1.", ".1", "1..2", "MIME", "1.2x", "HEADERS", "HEADER.FIELDS",
    "HEADER.FIELDS ()", "HEADER.FIELDS (From", "HEADER.FIELDS(From)", "TEXT (From)",
    "1.MIME (From)", "1 TEXT", " 1", "BODY",
])
def test_parse_section_rejects(spec):
    """Anything RFC 3501 §6.4.5 does not allow is a ValueError (the server answers BAD)."""
    with pytest.raises(ValueError):
        mime.parse_section(spec)


NESTED = (b"From: a@example.org\r\nMIME-Version: 1.0\r\n"
          b"Content-Type: multipart/mixed; boundary=outer\r\n\r\n"
          b"--outer\r\nContent-Type: text/plain\r\n\r\nfirst\r\n"
          b"--outer\r\nContent-Type: message/rfc822\r\n\r\n"
          b"Subject: inner\r\nContent-Type: multipart/alternative; boundary=in\r\n\r\n"
          b"--in\r\n\r\ninner one\r\n"
          b"--in\r\nContent-Type: text/html\r\n\r\n<p>two</p>\r\n--in--\r\n"
          b"--outer--\r\n")


@pytest.mark.parametrize("part,kind,data", [
    ((1,), None, b"first"),
    ((1,), "MIME", b"Content-Type: text/plain\r\n\r\n"),
    ((2,), "HEADER", b"Subject: inner\r\nContent-Type: multipart/alternative; boundary=in\r\n\r\n"),
    ((2,), "HEADER.FIELDS", b"Subject: inner\r\n\r\n"),
    ((2, 1), None, b"inner one"),
    ((2, 2), "MIME", b"Content-Type: text/html\r\n\r\n"),
    ((2, 2), None, b"<p>two</p>"),    # the CRLF before a delimiter is the delimiter's
    ((1,), "HEADER", b""),            # HEADER/TEXT name only an encapsulated message
    ((1,), "TEXT", b""),
    ((3,), None, b""),                # no part 3
    ((2, 3), None, b""),
    ((), "MIME", b""),
])
def test_section_parts(part, kind, data):
    assert mime.section(NESTED, part, kind, ("SUBJECT",) if kind == "HEADER.FIELDS" else ()) == data


def test_section_single_part_is_part_one():
    """A non-multipart message has only part 1: its body, with the message header as MIME."""
    raw = b"Subject: s\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
    assert mime.section(raw, (1,)) == b"body\r\n"
    assert mime.section(raw, (1,), "MIME") == b"Subject: s\r\nContent-Type: text/plain\r\n\r\n"
    assert mime.section(raw, (2,)) == b""


def test_section_header_fields_keeps_raw_lines():
    """Selected fields come back verbatim (name case, folding), in message order."""
    raw = b"subject: x\r\nTo: a@b,\r\n c@d\r\nFROM: e@f\r\nReceived: r\r\n\r\nbody\r\n"
    assert mime.section(raw, (), "HEADER.FIELDS", (b"From", "TO")) == \
        b"To: a@b,\r\n c@d\r\nFROM: e@f\r\n\r\n"
    assert mime.section(raw, (), "HEADER.FIELDS.NOT", ("received", "subject")) == \
        b"To: a@b,\r\n c@d\r\nFROM: e@f\r\n\r\n"


def test_bare_lf_and_cr():
    """Bare LF counts and is sent as CRLF; a bare CR is not a line break (RFC 5322 §2.3)."""
    raw = (b"Subject: lf\nContent-Type: multipart/mixed; boundary=b\n\n"
           b"--b\nContent-Type: text/plain\n\none\ntwo\rstill two\n--b--\n")
    assert mime.bodystructure(raw, extensible=False) == \
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 18 1) "mixed")'
    assert mime.section(raw, (1,)) == b"one\r\ntwo\rstill two"
    assert mime.section(raw, (), "HEADER") == \
        b"Subject: lf\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    assert mime.rfc822_size(raw) == len(mime.section(raw)) == len(raw) + raw.count(b"\n")
    check_sizes(raw)


def test_nul_is_sent_as_0x80():
    raw = b"Subject: n\r\n\r\na\0b\r\n"
    assert mime.section(raw, (), "TEXT") == b"a\x80b\r\n"


def test_header_without_blank_line():
    """A message that is all header: no body, and BODY[HEADER] has no blank line."""
    raw = b"From: a@example.org\r\nSubject: only a header"
    assert mime.section(raw, (), "HEADER") == raw
    assert mime.section(raw, (), "TEXT") == b""
    assert mime.bodystructure(raw, extensible=False) == \
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)'
    assert b'"only a header"' in mime.envelope(raw)


def test_parameter_values_keep_their_case():
    """TWISTED.md 16: names and values as written, quotes removed, trailing ';' harmless."""
    raw = (b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8;\r\n"
           b'Content-Disposition: attachment; filename="Report.PDF"\r\n\r\nx\r\n')
    assert mime.bodystructure(raw) == (b'("text" "plain" ("charset" "UTF-8") NIL NIL "7bit" 3 1'
                                       b' NIL ("attachment" ("filename" "Report.PDF")) NIL NIL)')


def test_eight_bit_envelope_goes_in_literals():
    """TWISTED.md 11: raw 8-bit header bytes are passed through, as literals."""
    raw = b"Subject: caf\xc3\xa9\r\nFrom: J\xc3\xb6rg <j@example.org>\r\n\r\n"
    jorg = b'(({5}\r\nJ\xc3\xb6rg NIL "j" "example.org"))'
    assert mime.envelope(raw) == \
        b"(NIL {5}\r\ncaf\xc3\xa9 %s %s %s NIL NIL NIL NIL NIL)" % (jorg, jorg, jorg)


def test_envelope_groups():
    """RFC 3501 §7.4.2: a group is opened by (NIL NIL name NIL), closed by (NIL NIL NIL NIL)."""
    raw = b"To: Friends: a@x.example, B <b@y.example>;, c@z.example\r\n\r\n"
    assert mime.envelope(raw) == (
        b'(NIL NIL NIL NIL NIL ((NIL NIL "Friends" NIL)(NIL NIL "a" "x.example")'
        b'("B" NIL "b" "y.example")(NIL NIL NIL NIL)(NIL NIL "c" "z.example")) NIL NIL NIL NIL)')


# --------------------------------------------------------------------------- RFC over Dovecot

def _header_fields_no_blank_line():
    return mime.section(b"From: a@example.org\r\nSubject: no body\r\n", (), "HEADER.FIELDS",
                        ("Subject",))


def _param_after_continuation():
    return mime.bodystructure(b"Content-Type: text/plain; a*0=x; a*1=y; title*=us-ascii'en'z\r\n"
                              b"\r\n", extensible=False)


def _sent(value):
    return lambda: mime.sent_date(b"Date: " + value + b"\r\n\r\n")


# Inputs outside the corpus where Dovecot 2.3.19 (read from its source) contradicts an RFC
# and rmail follows the RFC: (what, rmail's answer, Dovecot's answer, the rule).
RFC_OVER_DOVECOT = [
    ("HEADER.FIELDS of a message with no body and no blank line", _header_fields_no_blank_line,
     b"Subject: no body\r\n", b"Subject: no body\r\n\r\n",
     "RFC 3501 §6.4.5: the blank line is always included in header data, except in the "
     "case of a message which has no body and no blank line"),
    ("a part number below a text part", lambda: mime.section(NESTED, (1, 1)), b"", b"first",
     "RFC 3501 §6.4.5: only multipart and message/rfc822 parts have parts; only a message "
     "that is not multipart has a part 1 that is its body (Dovecot answers BODY[1.1] with "
     "part 1 when part 1 is a leaf, though BODY[1.1] of a one-part message is empty)"),
    ("an RFC 2231 name* after an indexed parameter", _param_after_continuation,
     b'("text" "plain" ("a" "xy" "title*" "us-ascii\'en\'z" "charset" "us-ascii") NIL NIL'
     b' "7bit" 0 0)',
     b'("text" "plain" ("a" "xy" "title*1*" "us-ascii\'en\'z" "charset" "us-ascii") NIL NIL'
     b' "7bit" 0 0)',
     "RFC 2231 §4: name*=charset'lang'value is one whole parameter (Dovecot reuses the "
     "previous parameter's section number)"),
    ("a two-digit year 50-69", _sent(b"1 Jan 55 00:00:00 +0000"),
     float(calendar.timegm((1955, 1, 1, 0, 0, 0))), float(calendar.timegm((2055, 1, 1, 0, 0, 0))),
     "RFC 5322 §4.3: 00-49 are 2000-2049, 50-99 are 1950-1999"),
    ("a three-digit year", _sent(b"1 Jan 104 00:00:00 +0000"),
     float(calendar.timegm((2004, 1, 1, 0, 0, 0))), None,
     "RFC 5322 §4.3: a three-digit year is added to 1900"),
    ("a military zone letter", _sent(b"1 Jan 2024 12:00:00 A"),
     float(calendar.timegm((2024, 1, 1, 12, 0, 0))), float(calendar.timegm((2024, 1, 1, 11, 0, 0))),
     "RFC 5322 §4.3: military zones SHOULD be taken as -0000 (their RFC 822 signs were wrong)"),
    ("an encoded word with an RFC 2231 language", lambda: mime.decode_words(
        b"=?UTF-8*en?Q?with_language?="), "with language", "=?UTF-8*en?Q?with_language?=",
     "RFC 2231 §5: charset*language in encoded words (Dovecot's SEARCH does not decode it, "
     "so corpus query SUBJECT \"with language\" finds nothing there)"),
]


@pytest.mark.parametrize("what,answer,rmail,dovecot,rule", RFC_OVER_DOVECOT,
                         ids=[case[0] for case in RFC_OVER_DOVECOT])
def test_rfc_over_dovecot(what, answer, rmail, dovecot, rule):
    """Where Dovecot contradicts an RFC, rmail answers what the RFC says."""
    assert rmail != dovecot
    assert answer() == rmail, rule


# --------------------------------------------------------------------------- robustness

_SPLICES = [b"\r", b"\n", b"\r\n", b"\0", b"\xff", b"-", b"--", b":", b";", b"=", b"*", b'"',
            b"(", b")", b"\\", b"<", b">", b"@", b",", b" ", b"\t", b"=?utf-8?q?", b"?=",
            b"boundary=", b"--x\r\n", b"MIME-Version: 1.0\r\n", b"*0*=", b"''",
            b"Content-Type: multipart/mixed; boundary=x\r\n\r\n",
            b"Content-Type: message/rfc822\r\n\r\n"]


def mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op, at = rng.randrange(6), rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif op == 1:
            data[at:at] = rng.choice(_SPLICES)
        elif op == 2:
            del data[at:at + rng.randint(1, 60)]
        elif op == 3:
            data[at:at] = data[at:at + rng.randint(1, 200)]
        elif op == 4:
            del data[at:]
        else:
            data = bytearray(bytes(data).replace(b"\r\n", rng.choice([b"\n", b"\r", b"\r\r\n"])))
    return bytes(data)


def test_mutated_corpus_never_raises():
    """300 mutations of the corpus (fixed seed): no exception, the answers are valid IMAP,
    and sizes still describe the sections."""
    rng = random.Random(3501)
    corpus = [raw_message(name) for name in sorted(MESSAGES) if not name.startswith("082")]
    for _ in range(300):
        raw = mutate(rng, rng.choice(corpus))
        for item in ("ENVELOPE", "BODY"):
            imap_oracle.fetch_items(fetch_response(1, item, raw))
        check_sizes(raw)
        for part in ((), (1,), (2,), (1, 1), (2, 1, 1)):
            for kind in (None, "HEADER", "TEXT", "MIME", "HEADER.FIELDS", "HEADER.FIELDS.NOT"):
                mime.section(raw, part, kind, ("From", b"subject"))
        for name in ("From", "Subject", "Date", "Content-Type"):
            mime.header_value(raw, name)
            mime.decoded_header(raw, name)
        mime.sent_date(raw)
