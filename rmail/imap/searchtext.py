"""What SEARCH reads as a message's text: its header fields, addresses and MIME bodies,
decoded and folded the way the keys compare them (``rmail.imap.search`` compiles the
keys; this module reads one message for them, lazily, and does no I/O of its own).

Text matching (RFC 3501 leaves the details open):

- A message is read the way FETCH reads it: header fields, addresses, dates and encoded
  words through ``rmail.rfc5322`` and ``rmail.rfc2047``, the MIME part tree through ``rmail.mimeparts``. What
  is left here is what only SEARCH does: turning fields and bodies into text to match.
- A string matches as a substring, ignoring case, after NFKC normalization of both sides.
- Header values are unfolded. Raw 8-bit bytes are read as UTF-8, and invalid bytes become
  U+FFFD. RFC 2047 encoded-words are decoded the way Dovecot's search decodes them
  (``decode_words(search=True)``: also when glued to other text, an unknown charset as
  UTF-8), including RFC 2231's ``charset*lang`` form.
- FROM/TO/CC/BCC match the address list as ENVELOPE parses it (RFC 5322 section 3.4),
  written back as ``name <mailbox@host>``. Comments are dropped, the comment after a bare
  address becomes its name, and parsing stops at the first piece of garbage.
- SUBJECT/FROM/... look at every field of that name in the top-level header. BODY and
  TEXT look inside every MIME part and attached message that BODYSTRUCTURE shows. Base64
  and quoted-printable are decoded, and each text part's charset is converted.
  Preambles, epilogues, non-text parts and parts with an unknown transfer encoding are
  skipped (RFC 2045 section 6.4).
- ``HEADER name ""`` (likewise ``SUBJECT ""`` etc.) matches every message that has the field.
- The SENT* keys use the date as written in the first Date header (``rfc5322.parse_date``).
  A missing or unparsable Date counts as 1-Jan-1970, as in Dovecot. BEFORE/ON/SINCE use
  the UTC date of INTERNALDATE.
"""

from __future__ import annotations

import binascii
import datetime
import re
import unicodedata

from rmail.mimeparts import parse as parse_parts, unparsed_container
from rmail.rfc2047 import base64_octets, decode_words
from rmail.rfc5322 import addresses, header_fields, parse_date

_EPOCH = datetime.date(1970, 1, 1)


# Charsets whose decoders turn ASCII bytes into the same characters (and only those):
# for any other (UTF-7, UTF-16, ISO-2022's shifts into fullwidth letters, ...) a body's
# text may hold a word its bytes do not.
_CHARSET = re.compile(rb'charset\s*=\s*"?([^\s";]*)')
_ASCII_CHARSETS = frozenset(
    [b"", b"us-ascii", b"ascii", b"utf-8", b"utf8"]
    + [b"iso-8859-%d" % i for i in range(1, 17)] + [b"iso8859-%d" % i for i in range(1, 17)]
    + [b"windows-%d" % i for i in range(1250, 1259)] + [b"cp%d" % i for i in range(1250, 1259)]
    + [b"latin1", b"latin-1", b"koi8-r", b"koi8-u"])


_BLANK_LINE = re.compile(rb"\n\r?\n")
_CONTENT_TYPE = re.compile(rb"\ncontent-type[ \t]*:\s*([!#-'*+.0-9^-~-]+)/")


def _base64_only_in_attachments(lower: bytes) -> bool:
    """Whether every "base64" of a (lower-cased) message stands in a header block that
    names a Content-Type, and only types other than text and message: bodies so encoded
    are not searched (``part_text``), so they cannot hide a needle.  A block runs from
    the last blank line or "--" line before the word to the next blank line; any doubt
    (no type, a text type, text before the first blank line) answers False."""
    pos = lower.find(b"base64")
    while pos >= 0:
        # after a blank line, or a line that may be a boundary
        start = max(lower.rfind(b"\n\n", 0, pos), lower.rfind(b"\n\r\n", 0, pos),
                    lower.rfind(b"\n--", 0, pos))
        if start < 0:
            return False  # in the message's own header: a single-part message
        end = _BLANK_LINE.search(lower, pos)
        types = _CONTENT_TYPE.findall(lower, start, end.start() if end else len(lower))
        if not types or any(t in (b"text", b"message") for t in types):
            return False
        pos = lower.find(b"base64", end.end()) if end else -1
    return True


def _field_values(lower: bytes, name: bytes) -> list[bytes]:
    """The raw values (continuation lines included) of every field called *name* in a
    lower-cased header block: each line where *name* stands at the start (after white
    space at most) followed by a colon.  Never fewer than ``rfc5322.read_header`` finds."""
    values = []
    n = len(lower)
    pos = lower.find(name)
    while pos >= 0:
        after = pos + len(name)
        if not lower[lower.rfind(b"\n", 0, pos) + 1:pos].strip(b" \t"):
            colon = after
            while colon < n and lower[colon] in (32, 9):
                colon += 1
            if colon < n and lower[colon] == 58:
                end = lower.find(b"\n", colon)
                while 0 <= end < n - 1 and lower[end + 1] in (32, 9):
                    end = lower.find(b"\n", end + 1)
                values.append(lower[colon + 1:end if end >= 0 else n])
        pos = lower.find(name, after)
    return values



class MessageText:
    """A message being tested. It reads header() and raw() at most once, and only if
    asked."""

    __slots__ = ("msg", "max_seq", "max_uid", "_header", "_raw", "_fields", "_texts", "_parts",
                 "_lower")

    def __init__(self, msg, max_seq: int, max_uid: int):
        self.msg = msg
        self.max_seq = max_seq
        self.max_uid = max_uid
        self._header: bytes | None = None
        self._raw: bytes | None = None
        self._fields: list[tuple[str, bytes]] | None = None
        self._texts: dict = {}
        self._parts: list[tuple[list, str | None]] | None = None
        self._lower: bytes | None = None

    def may_contain(self, name: bytes, needle: bytes, unsafe: tuple) -> bool:
        """False only when no field *name*'s text can contain *needle* (printable ASCII,
        folded): every such field is ASCII without the *unsafe* marks of decoding, so its
        text is its bytes, and the needle is not among them."""
        if self._lower is None:
            self._lower = self.header().lower()
        for value in _field_values(self._lower, name):
            if needle in value or not value.isascii() or any(m in value for m in unsafe):
                return True
        return False

    def body_may_contain(self, needle: bytes) -> bool:
        """False only when no part's text can contain *needle* (ASCII, folded) without
        parsing the message: it is ASCII throughout, nothing in it is base64, its charsets
        map ASCII to itself, and the needle is neither in its bytes nor in them with
        quoted-printable undone (which only ever joins or decodes, RFC 2045 6.7)."""
        raw = self.raw()
        lower = raw.lower()
        if needle in lower:
            return True
        if not raw.isascii() or b"\0" in raw or \
                (b"base64" in lower and not _base64_only_in_attachments(lower)) or \
                any(c not in _ASCII_CHARSETS for c in _CHARSET.findall(lower)):
            return True
        if b"quoted-printable" in lower:
            decoded = binascii.a2b_qp(raw)
            return not decoded.isascii() or needle in decoded.lower()
        return False

    def raw(self) -> bytes:
        if self._raw is None:
            self._raw = self.msg.raw()
        return self._raw

    def header(self) -> bytes:
        if self._header is None:
            self._header = self.msg.header()
        return self._header

    def fields(self) -> list[tuple[str, bytes]]:
        if self._fields is None:
            self._fields = _search_fields(header_fields(self.header()))
        return self._fields

    def header_texts(self, name: str, kind: str) -> list[str]:
        """The folded text of every top-level field called ``name`` (all of them, where
        ``rfc5322.decoded_header`` gives only the first); from the index when it keeps
        them (``KEPT``)."""
        key = (name, kind)
        if key not in self._texts:
            if KEPT.get(name) == kind:
                kept = self.msg.kept_texts()
                if kept is not None:
                    joined = kept[KEPT_COLUMN[name]]
                    texts = self._texts[key] = [] if joined is None else joined.split("\0")
                    return texts
            texts = []
            for field, value in self.fields():
                if field == name:
                    if kind == "address":
                        value = _written_addresses(value)
                    elif kind == "squeezed":  # runs of white space (Unicode too) as one
                        value = " ".join(value.decode("utf-8", "replace").split()).encode()
                    texts.append(fold(decode_words(value, search=True)))
            self._texts[key] = texts
        return self._texts[key]

    def sent_date(self) -> datetime.date:
        """The first Date field's day as written there (its own zone, not UTC)."""
        for field, value in self.fields():
            if field == "date":
                parsed = parse_date(value)
                if parsed is None:
                    return _EPOCH
                epoch, offset = parsed
                return _EPOCH + datetime.timedelta(days=(epoch + offset * 60) // 86400)
        return _EPOCH

    def parts(self) -> list[tuple[list, str | None]]:
        if self._parts is None:
            self._parts = _mime_parts(self.raw())
        return self._parts

    def body_texts(self) -> list[str]:
        if "body" not in self._texts:
            self._texts["body"] = [fold(body) for _, body in self.parts() if body]
        return self._texts["body"]

    def full_texts(self) -> list[str]:
        """For TEXT: the top-level header, then each part's header and body."""
        if "full" not in self._texts:
            texts = [fold(_header_text(self.fields()))]
            for i, (fields, body) in enumerate(self.parts()):
                head = _header_text(_search_fields(fields)) if i else ""
                texts.append(fold(head + "\r\n" + (body or "")))
            self._texts["full"] = texts
        return self._texts["full"]


# The fields clients search most, as SUBJECT, FROM, TO, CC and BCC compare them: their
# texts are computed at delivery (``kept_texts``) and kept in the index, so that such a
# search reads no header block.  The index keeps them in this order.
KEPT = {"subject": "squeezed", "from": "address", "to": "address", "cc": "address",
        "bcc": "address"}
KEPT_COLUMN = {name: i for i, name in enumerate(KEPT)}


class _HeaderOnly:
    def __init__(self, header: bytes):
        self._header = header

    def header(self) -> bytes:
        return self._header

    def kept_texts(self):
        return None


def kept_texts(header: bytes) -> tuple:
    """What the index keeps: for each field of ``KEPT``, the texts of every such field
    joined by NUL, or None without one.  (A NUL within a text becomes U+FFFD: no search
    string holds one, RFC 3501's CHAR8 being 1-255.)"""
    message = MessageText(_HeaderOnly(header), 0, 0)
    return tuple("\0".join(t.replace("\0", "\ufffd") for t in texts) if texts else None
                 for texts in (message.header_texts(name, kind) for name, kind in KEPT.items()))


def fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _header_text(fields: list[tuple[str, bytes]]) -> str:
    return "".join(f"{name}: {decode_words(value, search=True)}\r\n" for name, value in fields)


def _search_fields(fields: list) -> list[tuple[str, bytes]]:
    """``rfc5322.header_fields`` as the keys compare them: the name as lower-case text
    (a query's field name is text), the value unfolded (RFC 5322 section 2.2.3) and each
    tab made a space, so that a string with a space finds words on either side of one."""
    return [(name.decode("latin-1").strip().lower(),
             value.replace(b"\n", b"").replace(b"\t", b" "))
            for name, value, _, _ in fields]


def _written_addresses(value: bytes) -> bytes:
    """The address list parsed as ENVELOPE parses it (``rfc5322.addresses``) and written
    back as ``name <route:mailbox@host>, <mailbox@host>, group: ...;``, the way Dovecot
    2.3 writes it for SEARCH (message_address_write): comments are dropped, the comment
    after a bare address is its name, parsing stops at the first piece of garbage, and
    every address is in angle brackets. Unlike Dovecot, names are not re-quoted and
    nothing is made up for a missing mailbox or domain (ENVELOPE's MISSING_DOMAIN is no
    text of the message)."""
    out = []
    for name, route, mailbox, host in addresses(value, fill=False):
        if host is None:  # a group: (name) opens it, (nothing) closes it
            out.append(b";" if mailbox is None else mailbox + b":")
            continue
        addr = mailbox + b"@" + host if host else mailbox
        if route:
            addr = route + b":" + addr
        if not addr:
            out.append(name or b"")
        else:
            out.append((name + b" <" if name else b"<") + addr + b">")
    return b", ".join(out).replace(b", ;", b";").replace(b":, ", b": ")


# -- message parts -------------------------------------------------------------------------

_IDENTITY_ENCODINGS = {b"", b"7bit", b"8bit", b"binary"}


def _mime_parts(raw: bytes) -> list[tuple[list, str | None]]:
    """(header fields, decoded body text or None) for every part of ``rmail.mimeparts``'
    tree, the message's own header first: the parts FETCH numbers, cut off at the same
    nesting depth. A body is None when it is not searched (RFC 2045 section 6.4): it is a
    container, it is not text, or its transfer encoding is unknown. Preambles and
    epilogues belong to no part."""
    out = []
    stack = [parse_parts(raw)]  # not mimeparts.tree: a search reads each message once
    while stack:
        part = stack.pop()
        out.append((part.fields, part_text(raw, part)))
        stack.extend(reversed(part.children))
    return out


def part_text(raw: bytes, part, limit: int | None = None) -> str | None:
    """The part's body as text, if it is text/* or message/* (or has no parsable type,
    which RFC 2045 section 5.2 makes text/plain), decoded as Dovecot's search decodes it;
    only its first *limit* octets when given (``rmail.preview``)."""
    if part.multipart or part.rfc822 or unparsed_container(part):
        return None
    if part.ctype is not None and part.subtype and part.ctype.lower() not in (b"text", b"message"):
        return None
    # The transfer encoding is read from any part, MIME-Version or not: Dovecot's search
    # decodes what the part says, where BODYSTRUCTURE (part.cte) reports it for MIME
    # parts only (RFC 2045 section 4).
    encoding = next((value for name, value, _, _ in part.fields
                     if name == b"content-transfer-encoding"), b"").strip().lower()
    end = part.end if limit is None else min(part.end, part.body_start + limit)
    body = raw[part.body_start:end]
    if encoding == b"base64":
        body = base64_octets(body)
    elif encoding == b"quoted-printable":
        body = binascii.a2b_qp(body)
    elif encoding not in _IDENTITY_ENCODINGS:
        return None
    charset = next((value for key, value in part.params or () if key.lower() == b"charset"), None)
    return _to_str(body, charset.decode("ascii", "replace") if charset else None)


def _to_str(data: bytes, charset: str | None) -> str:
    try:
        return data.decode(charset or "utf-8", "replace")
    except LookupError:  # an unknown charset: keep what reads as UTF-8, as Dovecot does
        return data.decode("utf-8", "replace")
