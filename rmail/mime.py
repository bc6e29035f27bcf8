"""IMAP FETCH views of one stored message: ENVELOPE, BODY and BODYSTRUCTURE,
BODY[section], RFC822.SIZE, and the IMAP strings they are written in.

Replaces Twisted's header formatting, ENVELOPE and BODYSTRUCTURE code, which breaks on
8-bit headers and on a trailing ``;``, lower-cases parameter values, ignores partial
ranges and rewrites header names (docs: TWISTED.md items 11, 12, 16, 26).

The message is read through ``rmail.rfc5322`` (header fields, tokens, addresses, dates,
encoded words) and ``rmail.mimeparts`` (Content-Type, the part tree); the header helpers
``header_value``, ``decoded_header``, ``sent_date``, ``parse_date`` and ``decode_words``
live in rfc5322 and are also offered here.

Invariants:

- Pure and byte-level: bytes in, bytes out, no I/O, no Twisted, safe on any thread.
  No input bytes make it raise.
- The answers are Dovecot 2.3's wherever Dovecot agrees with the RFCs; the oracle is
  ``tests/corpus/imap``.
- Sizes and line counts are those of the message with CRLF line endings, and sections
  are returned that way (bare LF becomes CRLF, NUL becomes 0x80: IMAP4rev1 literals
  cannot carry NUL), so BODY[] is exactly RFC822.SIZE (``rfc822_size``) octets long.
- FETCH strings are never decoded: envelope fields and parameter values are the raw
  header bytes (encoded words stay encoded, 8-bit bytes go out in literals). Only
  ``decoded_header`` and ``decode_words`` decode RFC 2047, for search and display.

RFCs: 3501 §4.3 (strings), §6.4.5 (section specs) and §7.4.2 (ENVELOPE, BODY,
BODYSTRUCTURE).
"""

from __future__ import annotations

import re

from rmail.mimeparts import (MAX_BOUNDARY, MAX_NESTED_PARTS, MAX_TOTAL_PARTS, Part,
                             size_and_lines, tree, unparsed_container)
from rmail.rfc2047 import decode_words
from rmail.rfc5322 import (MAX_HEADER_NAME, addresses, decoded_header, header_fields,
                           header_value, nul_replaced, parse_date, sent_date)

__all__ = ["MAX_BOUNDARY", "MAX_HEADER_NAME", "MAX_NESTED_PARTS", "MAX_QUOTED",
           "MAX_TOTAL_PARTS", "NIL", "bodystructure", "decode_words", "decoded_header",
           "envelope", "header_value", "parse_date", "parse_section", "quote", "rfc822_size",
           "section", "sent_date"]

MAX_QUOTED = 1024            # longer strings are sent as literals (keeps lines short)

NIL = b"NIL"
_EMPTY_BODY = b'"text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0'
_EMPTY_EXTENSION = b" NIL NIL NIL NIL"

_LITERAL_NEEDED = re.compile(rb"[\x00\r\n\x80-\xff]")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_WSP_RUN = re.compile(rb"[ \t\r\n]+")
_LINE_BREAK_BEFORE_TEXT = re.compile(rb"[\r\n](?![ \t\r\n]|\Z)")
_LINE_BREAK = re.compile(rb"[\r\n]")


# --------------------------------------------------------------------------- IMAP strings

def quote(value: bytes | str | None) -> bytes:
    """IMAP string for *value*: NIL for None, a quoted string when it can be one, else a
    literal (CR, LF, NUL or 8-bit bytes cannot be quoted, RFC 3501 §4.3; long strings
    go as literals too). NUL, which no IMAP4rev1 string may carry, is sent as 0x80."""
    if value is None:
        return NIL
    if isinstance(value, str):
        value = value.encode("utf-8")
    if len(value) > MAX_QUOTED or _LITERAL_NEEDED.search(value):
        value = value.replace(b"\0", b"\x80")
        return b"{%d}\r\n%s" % (len(value), value)
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _nolf(value: bytes | None) -> bytes:
    """A header value without its line breaks (Dovecot's nstring_nolf): a break that is
    not followed by whitespace becomes one space, so folded words stay apart."""
    if value is None:
        return NIL
    if b"\n" in value or b"\r" in value:
        value = _LINE_BREAK.sub(b"", _LINE_BREAK_BEFORE_TEXT.sub(b" ", value))
    return quote(value)


def _for_humans(value: bytes | None) -> bytes:
    """Subject and display names: whitespace runs become one space, ends trimmed."""
    if value is None:
        return NIL
    return quote(_WSP_RUN.sub(b" ", value).strip(b" "))


def _address_list(addresses) -> bytes:
    if not addresses:
        return NIL
    return b"(" + b"".join(
        b"(%s %s %s %s)" % (_for_humans(name), quote(route), quote(mailbox), quote(host))
        for name, route, mailbox, host in addresses) + b")"


# --------------------------------------------------------------------------- ENVELOPE

_ENVELOPE_STRINGS = {b"date": 0, b"subject": 1, b"in-reply-to": 8, b"message-id": 9}
_ENVELOPE_ADDRESSES = {b"from": 2, b"sender": 3, b"reply-to": 4, b"to": 5, b"cc": 6, b"bcc": 7}


def _envelope(fields) -> bytes:
    """ENVELOPE from header fields: the last Date/Subject/In-Reply-To/Message-ID wins,
    repeated address fields add up (as if one comma-separated field), Sender and
    Reply-To default to From (RFC 3501 §7.4.2)."""
    slot = [None] * 10
    for name, value, _, _ in fields:
        i = _ENVELOPE_STRINGS.get(name)
        if i is not None:
            slot[i] = nul_replaced(value)
            continue
        i = _ENVELOPE_ADDRESSES.get(name)
        if i is not None:
            slot[i] = (slot[i] or []) + addresses(value)
    sender, reply_to = slot[3] or slot[2], slot[4] or slot[2]
    return b"(%s %s %s %s %s %s %s %s %s %s)" % (
        _nolf(slot[0]), _for_humans(slot[1]), _address_list(slot[2]),
        _address_list(sender), _address_list(reply_to), _address_list(slot[5]),
        _address_list(slot[6]), _address_list(slot[7]), _nolf(slot[8]), _nolf(slot[9]))


def envelope(raw: bytes) -> bytes:
    """The IMAP ENVELOPE of *raw*, serialized (parenthesised list, RFC 3501 §7.4.2)."""
    return _envelope(header_fields(bytes(raw)))


def rfc822_size(raw: bytes) -> int:
    """RFC822.SIZE: the message's size with CRLF line endings, the length of BODY[]."""
    return size_and_lines(raw, 0, len(raw))[0]


# --------------------------------------------------------------------------- BODYSTRUCTURE

def _param_list(params, default_charset: bool) -> bytes:
    if not params and not default_charset:
        return NIL
    items = []
    seen = False
    for key, value in params or ():
        items.append(quote(key) + b" " + quote(value))
        seen = seen or key.lower() == b"charset"
    if default_charset and not seen:
        items.append(b'"charset" "us-ascii"')        # RFC 2045 §5.2 default
    return b"(" + b" ".join(items) + b")"


def _extension(part: Part) -> bytes:
    """body-fld-dsp, body-fld-lang, body-fld-loc."""
    if part.disposition is None:
        dsp = NIL
    else:
        dsp = b"(%s %s)" % (quote(part.disposition), _param_list(part.disposition_params, False))
    lang = NIL if part.language is None else b"(" + b" ".join(map(quote, part.language)) + b")"
    return b" %s %s %s" % (dsp, lang, _nolf(part.location))


def _write_body(raw: bytes, part: Part, out: list, extensible: bool):
    if part.multipart:
        if part.children:
            for child in part.children:
                out.append(b"(")
                _write_body(raw, child, out, extensible)
                out.append(b")")
        else:                                       # no parts: one empty text/plain
            out.append(b"(" + _EMPTY_BODY + (_EMPTY_EXTENSION if extensible else b"") + b")")
        out.append(b" " + quote(part.subtype))
        if extensible:
            out.append(b" " + _param_list(part.params, False) + _extension(part))
        return
    if part.rfc822:
        out.append(b'"message" "rfc822"')
        text = False
    elif unparsed_container(part):
        out.append(b'"application" "octet-stream"')  # cut off by the nesting limits
        text = False
    elif part.ctype is None:
        out.append(b'"text" "plain"')                   # RFC 2045 §5.2 default
        text = True
    else:
        out.append(quote(part.ctype) + b" " + quote(part.subtype))
        text = part.ctype.lower() == b"text"
    size, lines = size_and_lines(raw, part.body_start, part.end)
    out.append(b" %s %s %s %s %d" % (
        _param_list(part.params, text), _nolf(part.cid), _nolf(part.description),
        quote(part.cte) if part.cte is not None else b'"7bit"', size))
    if text:
        out.append(b" %d" % lines)
    elif part.rfc822:
        out.append(b" " + _envelope(part.children[0].fields) + b" (")
        _write_body(raw, part.children[0], out, extensible)
        out.append(b") %d" % lines)
    if extensible:
        out.append(b" " + _nolf(part.md5) + _extension(part))


def bodystructure(raw: bytes, extensible: bool = True, root: Part | None = None) -> bytes:
    """BODYSTRUCTURE (with extension data) or, with extensible=False, BODY, serialized
    (RFC 3501 §7.4.2); *root* is the part tree when the caller has parsed it already."""
    raw = raw if type(raw) is bytes else bytes(raw)
    out = [b"("]
    _write_body(raw, root or tree(raw), out, extensible)
    out.append(b")")
    return b"".join(out)


# --------------------------------------------------------------------------- sections

_SECTION_NUMBER = re.compile(r"[1-9][0-9]*")
_SECTION_TEXT = re.compile(r"(HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME)(?: (.*))?\Z",
                           re.I | re.S)
_HEADER_LIST = re.compile(r' *\((.*)\) *\Z', re.S)
_HEADER_NAME = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|([^\s()"{}%*\\\x00-\x1f\x7f]+))\s*', re.S)


def parse_section(spec: str) -> tuple:
    """A FETCH section spec (the text between BODY[ and ]) as ``(part, kind, fields)``:
    "2.1" -> ((2, 1), None, ()), "1.MIME" -> ((1,), "MIME", ()),
    "HEADER.FIELDS (From Subject)" -> ((), "HEADER.FIELDS", ("From", "Subject")).
    Raises ValueError for anything RFC 3501 §6.4.5 does not allow."""
    part = []
    pos = 0
    while True:
        m = _SECTION_NUMBER.match(spec, pos)
        if m is None:
            break
        part.append(int(m.group()))
        pos = m.end()
        if pos == len(spec):
            return tuple(part), None, ()
        if spec[pos] != ".":
            raise ValueError("bad section part number: %r" % spec)
        pos += 1
    if pos == len(spec) and not part:
        return (), None, ()
    m = _SECTION_TEXT.match(spec, pos)
    if m is None:
        raise ValueError("bad section spec: %r" % spec)
    kind, rest = m.group(1).upper(), m.group(2)
    if kind == "MIME" and not part:
        raise ValueError("MIME needs a part number: %r" % spec)
    if not kind.startswith("HEADER.FIELDS"):
        if rest is not None:
            raise ValueError("bad section spec: %r" % spec)
        return tuple(part), kind, ()
    names = _HEADER_LIST.match(rest or "")
    if names is None:
        raise ValueError("bad header list in section spec: %r" % spec)
    names = names.group(1)
    fields = []
    pos = 0
    while pos < len(names):
        f = _HEADER_NAME.match(names, pos)
        if f is None or f.end() == pos:
            raise ValueError("bad header name in section spec: %r" % spec)
        fields.append(re.sub(r"\\(.)", r"\1", f.group(1)) if f.group(1) is not None
                      else f.group(2))
        pos = f.end()
    if not fields:
        raise ValueError("empty header list in section spec: %r" % spec)
    return tuple(part), kind, tuple(fields)


def find_part(root: Part, numbers: tuple):
    """The part a section number names (RFC 3501 §6.4.5): multiparts number their parts,
    numbers after a message/rfc822 part go on into the encapsulated message, and a
    message that is not multipart has only part 1, its body. Other parts have no parts."""
    part, message = root, True
    for i, num in enumerate(numbers):
        more = i + 1 < len(numbers)
        if part.multipart:
            if not 0 < num <= len(part.children):
                return None
            part = part.children[num - 1]
        elif not message or num != 1 or (more and not part.rfc822):
            return None
        message = more and part.rfc822
        if message:
            part = part.children[0]
    return part


def _crlf(data: bytes) -> bytes:
    """Section bytes as sent: CRLF line endings and no NUL (Dovecot sends 0x80)."""
    if b"\0" in data:
        data = data.replace(b"\0", b"\x80")
    lf = data.count(b"\n")
    if lf and lf != data.count(b"\r\n"):
        data = _BARE_LF.sub(b"\r\n", data)
    return data


def section(raw: bytes, part: tuple = (), kind: str | None = None, fields: tuple = ()) -> bytes:
    """The bytes of BODY[<section>] before any <partial> slicing: *part* is the part
    number path ((1, 2) is "1.2"), *kind* None (the part's content, or the whole message
    when part=()), "HEADER", "TEXT", "MIME", "HEADER.FIELDS" or "HEADER.FIELDS.NOT"
    (*fields*: header names, any case). A part that does not exist gives b""."""
    raw = raw if type(raw) is bytes else bytes(raw)
    kind = kind.upper() if kind else None
    if not part:
        if kind is None:
            return _crlf(raw)
        if kind == "MIME":
            return b""
        target = tree(raw)
    else:
        target = find_part(tree(raw), tuple(part))
        if target is None:
            return b""
        if kind is None:
            return _crlf(raw[target.body_start:target.end])
        if kind == "MIME":
            return _crlf(raw[target.start:target.body_start])
        if not target.rfc822:
            return b""                    # HEADER/TEXT only name an encapsulated message
        target = target.children[0]
    if kind == "HEADER":
        return _crlf(raw[target.start:target.body_start])
    if kind == "TEXT":
        return _crlf(raw[target.body_start:target.end])
    if kind not in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        return b""
    wanted = {f.lower() if isinstance(f, bytes) else str(f).lower().encode("utf-8")
              for f in fields}
    keep = kind == "HEADER.FIELDS"
    out = []
    for name, _, start, end in target.fields:
        if (name in wanted) == keep:
            line = raw[start:end]
            out.append(line if line.endswith(b"\n") else line + b"\r\n")
    if target.eoh:                        # RFC 3501: the blank line, when there is one
        out.append(b"\r\n")
    return _crlf(b"".join(out))
