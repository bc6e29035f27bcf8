"""RFC 5322 lexing of header fields: reading and unfolding fields, the lexical tokens
(atoms, quoted strings, comments, domains), address lists and dates; RFC 2047 encoded
words are ``rmail.rfc2047``'s. What the values mean to IMAP (ENVELOPE, BODYSTRUCTURE)
lives in ``rmail.mime``.

Invariants:

- Pure and byte-level: bytes in, no I/O, no Twisted, safe on any thread. No input
  bytes make it raise (bare LF or CR, NUL, 8-bit bytes, unclosed quotes and comments).
- The lexer and the address parser are Dovecot 2.3's rfc822-parser and message-address
  parser in behaviour, so ENVELOPE and SEARCH see the addresses Dovecot sees; where
  Dovecot contradicts RFC 5322 (obsolete years, military zones) the RFC wins.
- Values stay bytes; only ``decode_words`` and ``decoded_header`` make text.

RFCs: 5322 §2.2 (fields, folding), §3.2-3.4 (lexical tokens, addresses), §3.3 and §4.3
(dates).
"""

from __future__ import annotations

import datetime
import re

from rmail.rfc2047 import decode_words

MAX_HEADER_NAME = 1000       # RFC 5322 §2.1.1 line limit: a longer "name" is all value

NUL_REPLACEMENT = "\ufffd".encode()


def nul_replaced(value: bytes) -> bytes:
    """A header value as Dovecot stores it: NUL becomes U+FFFD."""
    return value.replace(b"\0", NUL_REPLACEMENT) if b"\0" in value else value


# --------------------------------------------------------------------------- header fields

def read_header(raw: bytes, pos: int, at_boundary=None):
    """Read the header block at *pos*: ``(fields, end, eoh, cut)``.

    Each field is ``(lower-case name, value, start, end)``: the value has the leading
    whitespace dropped and continuation lines joined with LF (CRs dropped), start:end
    spans its raw lines. ``eoh`` says the blank line was seen (end is after it). ``cut``
    says a MIME delimiter line ended the header (``at_boundary(pos)`` said so), end is
    then that line. A line without ':' is a field with an empty name (RFC 5322 §2.2)."""
    n = len(raw)
    find = raw.find
    fields = []
    while pos < n:
        c = raw[pos]
        if c == 10:
            return fields, pos + 1, True, False
        if c == 13 and pos + 1 < n and raw[pos + 1] == 10:
            return fields, pos + 2, True, False
        if c == 45 and at_boundary is not None and at_boundary(pos):
            return fields, pos, False, True
        start = pos
        lf = find(b"\n", pos)
        if lf < 0:
            line, pos = raw[start:], n
        else:
            line, pos = raw[start:lf - 1 if lf > start and raw[lf - 1] == 13 else lf], lf + 1
        colon = line.find(b":")
        if colon < 0:
            name, value = b"", line
        else:
            name = line[:colon].rstrip(b" \t")
            if len(name) > MAX_HEADER_NAME:
                name, value = b"", line
            else:
                value = line[colon + 1:]
                stripped = value.lstrip(b" \t")
                value = stripped if stripped or not value else value[1:]
        if pos < n and raw[pos] in (32, 9):
            lines = [value]
            while pos < n and raw[pos] in (32, 9):
                lf = find(b"\n", pos)
                if lf < 0:
                    lines.append(raw[pos:])
                    pos = n
                else:
                    lines.append(raw[pos:lf - 1 if raw[lf - 1] == 13 else lf])
                    pos = lf + 1
            value = b"\n".join(lines)
        fields.append((name.lower(), value, start, pos))
    return fields, pos, False, False


def header_fields(raw: bytes) -> list:
    """The fields of the message header (see ``read_header``)."""
    return read_header(raw, 0)[0]


# --------------------------------------------------------------------------- RFC 5322 lexer

_ATEXT = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                   b"!#$%&'*+-/=?^_`{|}~" + bytes(range(128, 256)))
_ATOM = re.compile(rb"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\x80-\xff]*")
_ATOM_OR_DOT = re.compile(rb"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.\x80-\xff]*")
_MIME_TOKEN = re.compile(rb"[A-Za-z0-9!#$%&'*+\-^_`{|}~.\x80-\xff]*")   # RFC 2045 token
_LWSP = re.compile(rb"[ \t\r\n]*")
_PLAIN_QUOTED = re.compile(rb'[^"\\\n\0]*')


class Lexer:
    """RFC 5322 lexical tokens over one header value, lenient the way Dovecot's
    rfc822-parser is: methods append to *out* and return 1 (more input follows),
    0 (input ended) or -1 (syntax error). Past the end the current byte reads as 0."""

    __slots__ = ("d", "p", "end", "comment", "nul")

    def __init__(self, data: bytes, keep_comments: bool = False, nul: bytes | None = None):
        self.d, self.p, self.end = data, 0, len(data)
        self.comment = bytearray() if keep_comments else None
        self.nul = nul

    def cur(self) -> int:
        return self.d[self.p] if self.p < self.end else 0

    def skip_lwsp(self) -> int:
        """Skip whitespace and comments (CFWS)."""
        d, end = self.d, self.end
        while True:
            if self.p >= end:
                return 0
            c = d[self.p]
            if c in (32, 9, 13, 10):
                self.p = _LWSP.match(d, self.p).end()
            elif c != 40:
                return 1
            elif self._skip_comment() < 0:
                return -1

    def _skip_comment(self) -> int:
        d, end, com = self.d, self.end, self.comment
        p = start = self.p + 1
        if com is not None:
            del com[:]
        level = 1
        while p < end:
            c = d[p]
            if c == 41:
                level -= 1
                if level == 0:
                    if com is not None:
                        com += d[start:p]
                    self.p = p + 1
                    return 1
            elif c == 40:
                level += 1
            elif c == 92:
                if p + 1 >= end:
                    self.p = end
                    return -1
                if d[p + 1] not in (13, 10, 0):
                    if com is not None:
                        com += d[start:p]
                    start = p + 1
                    p += 1
            elif c == 10 and com is not None:
                com += d[start:p - 1 if p > start and d[p - 1] == 13 else p]
                start = p + 1
            elif c == 0 and com is not None and self.nul is not None:
                com += d[start:p] + self.nul
                start = p + 1
            p += 1
        self.p = end
        return -1

    def _run(self, regex, out) -> int:
        e = regex.match(self.d, self.p).end()
        out += self.d[self.p:e]
        self.p = e
        return 0 if e >= self.end else self.skip_lwsp()

    def atom(self, out) -> int:
        if self.cur() not in _ATEXT:
            return -1
        return self._run(_ATOM, out)

    def atom_or_dot(self, out) -> int:
        return self._run(_ATOM_OR_DOT, out)

    def mime_token(self, out) -> int:
        return self._run(_MIME_TOKEN, out)

    def dot_atom(self, out) -> int:
        """dot-atom, allowing CFWS around the dots (RFC 822)."""
        if self.cur() not in _ATEXT:
            return -1
        while True:
            e = _ATOM.match(self.d, self.p).end()
            if e == self.p:
                return -1
            out += self.d[self.p:e]
            self.p = e
            if e >= self.end:
                return 0
            ret = self.skip_lwsp()
            if ret <= 0:
                return ret
            if self.d[self.p] != 46:
                return 1
            self.p += 1
            out += b"."
            if self.skip_lwsp() <= 0:
                return -1

    def quoted_string(self, out) -> int:
        """A quoted-string at '"': quoted-pairs unescaped, folding line breaks dropped."""
        d, end = self.d, self.end
        p = self.p + 1
        while True:
            e = _PLAIN_QUOTED.match(d, p).end()
            out += d[p:e]
            p = e
            if p >= end:
                self.p = end
                return -1
            c = d[p]
            if c == 34:
                self.p = p + 1
                return self.skip_lwsp()
            if c == 10:                                 # folding: drop the line break
                if d[p - 1] == 13 and out[-1:] == b"\r":
                    del out[-1:]
                p += 1
            elif c == 0:
                out += self.nul if self.nul is not None else b"\0"
                p += 1
            else:                                     # backslash
                if p + 1 >= end:
                    self.p = end
                    return -1
                if d[p + 1] in (13, 10, 0):
                    out += b"\\"
                    p += 1
                else:
                    out.append(d[p + 1])
                    p += 2

    def phrase(self, out) -> int:
        """phrase / obs-phrase: words joined by single spaces."""
        if self.p >= self.end:
            return 0
        if self.d[self.p] == 46:
            return -1
        while True:
            ret = self.quoted_string(out) if self.d[self.p] == 34 else self.atom_or_dot(out)
            if ret <= 0:
                return ret
            c = self.d[self.p]
            if c not in _ATEXT and c != 34 and c != 46:
                return self.skip_lwsp()
            out += b" "

    def domain(self, out) -> int:
        """domain after '@': dot-atom or [domain-literal] (its backslashes are kept)."""
        self.p += 1
        if self.skip_lwsp() <= 0:
            return -1
        if self.d[self.p] != 91:
            return self.dot_atom(out)
        d, end = self.d, self.end
        start = p = self.p
        p += 1
        while p < end:
            c = d[p]
            if c == 91:
                self.p = p
                return -1
            if c == 93:
                out += d[start:p + 1]
                self.p = p + 1
                return self.skip_lwsp()
            if c == 10:
                out += d[start:p - 1 if d[p - 1] == 13 else p]
                start = p + 1
            elif c == 0 and self.nul is not None:
                out += d[start:p] + self.nul
                start = p + 1
            elif c == 92:
                if p + 1 >= end:
                    break
                if d[p + 1] in (13, 10, 0):
                    out += d[start:p + 1]
                    start = p + 1
                else:
                    p += 1                              # the escaped byte is kept as is
            p += 1
        self.p = end
        return -1


# --------------------------------------------------------------------------- addresses

class _AddressParser:
    """RFC 5322 §3.4 address-list to IMAP addresses ``(name, route, mailbox, host)``.

    Broken input still yields addresses the way Dovecot fills them (with *fill*, as
    for ENVELOPE): a missing domain is "MISSING_DOMAIN", a missing mailbox
    "MISSING_MAILBOX" (without *fill*: b""), a broken angle-addr has the domain
    "SYNTAX_ERROR", a broken route is "INVALID_ROUTE" (without *fill*: as parsed). A
    group is opened by ``(None, None, name, None)`` and closed by ``(None, None, None,
    None)`` (RFC 3501 §7.4.2); a comment after a bare addr-spec is the display name."""

    def __init__(self, value: bytes, fill: bool = True):
        self.lx = Lexer(value, keep_comments=True, nul=NUL_REPLACEMENT)
        self.fill = fill
        self.out: list = []
        self.word = bytearray()
        self._clear()

    def _clear(self):
        self.name = self.route = self.mailbox = self.domain = None
        self.invalid = False

    def _add(self):
        self.out.append((self.name, self.route, self.mailbox, self.domain))
        self._clear()

    def _add_fixed(self):
        if self.mailbox is None:
            self.mailbox = b"MISSING_MAILBOX" if self.fill else b""
        if not self.domain:
            self.domain = b"MISSING_DOMAIN" if self.fill else b""
        self._add()

    def parse(self) -> list:
        lx = self.lx
        if lx.skip_lwsp() > 0:
            while True:
                if self._address() == 0:
                    break
                if lx.p >= lx.end or lx.d[lx.p] != 44:
                    break
                lx.p += 1
                ret = lx.skip_lwsp()
                if ret <= 0:
                    if ret < 0:
                        self._add_fixed()
                    break
        return self.out

    def _address(self) -> int:
        start = self.lx.p
        ret = self._group()
        if ret < 0:
            self.lx.p = start
            ret = self._mailbox()
        return ret

    def _group(self) -> int:
        lx, word = self.lx, self.word
        del word[:]
        if lx.phrase(word) <= 0 or lx.cur() != 58:
            return -1
        lx.p += 1
        ret = lx.skip_lwsp()
        self.mailbox = bytes(word)
        self._add()
        if ret > 0 and lx.d[lx.p] != 59:
            while True:
                self._mailbox()
                if lx.p >= lx.end or lx.d[lx.p] != 44:
                    break
                lx.p += 1
                if lx.skip_lwsp() <= 0:
                    ret = -1
                    break
        if ret >= 0:
            if lx.p >= lx.end or lx.d[lx.p] != 59:
                ret = -1
            else:
                lx.p += 1
                ret = lx.skip_lwsp()
        self._add()
        return 0 if ret == 0 else 1

    def _mailbox(self) -> int:
        start = self.lx.p
        ret = self._name_addr()
        if ret < 0:
            self.lx.p = start
            ret = self._addr_spec()
            if self.invalid and self.name is None and self.mailbox is not None \
                    and self.domain is None:
                self.name, self.mailbox = self.mailbox, None
        self._add_fixed()
        return ret

    def _name_addr(self) -> int:
        lx, word = self.lx, self.word
        del word[:]
        if lx.phrase(word) <= 0 or lx.cur() != 60:
            return -1
        self.name = bytes(word) or None
        if self._angle_addr() < 0:
            if self.fill:
                self.domain = b"SYNTAX_ERROR"
            self.invalid = True
        return 1 if lx.p < lx.end else 0

    def _angle_addr(self) -> int:
        lx = self.lx
        lx.p += 1
        if lx.skip_lwsp() <= 0:
            return -1
        if lx.d[lx.p] == 64:
            if self._route() > 0 and lx.cur() == 58:
                lx.p += 1
            else:
                if self.fill:
                    self.route = b"INVALID_ROUTE"
                if lx.p >= lx.end:
                    return -1
            if lx.skip_lwsp() <= 0:
                return -1
        if lx.d[lx.p] != 62:
            if self._local_part() <= 0:
                return -1
            if lx.cur() == 64 and self._domain() <= 0:
                return -1
        if lx.cur() != 62:
            return -1
        lx.p += 1
        return lx.skip_lwsp()

    def _route(self) -> int:
        """obs-route "@a,@b:" into the route field as "@a,@b"."""
        lx, word = self.lx, self.word
        del word[:]
        while True:
            if lx.p >= lx.end:
                return 0
            if lx.d[lx.p] != 64:
                break
            if word:
                word += b","
            word += b"@"
            ret = lx.domain(word)
            if ret <= 0:
                return ret
            while lx.skip_lwsp() > 0 and lx.d[lx.p] == 44:
                lx.p += 1
        self.route = bytes(word)
        return 1

    def _addr_spec(self) -> int:
        lx, word = self.lx, self.word
        del lx.comment[:]
        quoted = lx.cur() == 34
        ret = self._local_part()
        if ret <= 0:
            self.invalid = True
        ret2 = -2
        if ret != 0 and lx.cur() == 64:
            ret2 = self._domain()
            if ret2 <= 0:
                ret = ret2
        if lx.comment:
            self.name = bytes(lx.comment)
        elif ret2 == -2:
            # "user" alone is a mailbox; "user more words" is a display name
            word += b" "
            before = len(word)
            lx.phrase(word)
            if len(word) != before:
                self.mailbox, self.name = None, bytes(word)
            elif not quoted:
                self.domain = b""
            self.invalid = True
            ret = -1
        return ret

    def _local_part(self) -> int:
        lx, word = self.lx, self.word
        del word[:]
        if lx.cur() == 34:
            ret = lx.quoted_string(word)
        else:                                  # obs-local-part, dots allowed anywhere
            ret = -1
            while True:
                while lx.cur() == 46:
                    word += b"."
                    lx.p += 1
                    if lx.p >= lx.end:
                        self.mailbox = bytes(word)
                        return 0
                    ret = 1
                if lx.cur() == 64:
                    break
                ret = lx.atom(word)
                if ret <= 0 or lx.cur() != 46:
                    break
        if ret < 0:
            return -1
        self.mailbox = bytes(word)
        return ret

    def _domain(self) -> int:
        word = self.word
        del word[:]
        ret = self.lx.domain(word)
        if ret < 0:
            return -1
        self.domain = bytes(word)
        return ret


def addresses(value: bytes, fill: bool = True) -> list:
    """The addresses of an address-list field value as ``(name, route, mailbox, host)``,
    raw bytes or None (see ``_AddressParser``). *fill* puts in what ENVELOPE shows for
    missing parts (MISSING_DOMAIN ...); without it they stay empty (Dovecot's
    fill_missing flag)."""
    return _AddressParser(value, fill).parse()


# --------------------------------------------------------------------------- dates

_MONTHS = {m: i for i, m in enumerate(
    (b"jan", b"feb", b"mar", b"apr", b"may", b"jun",
     b"jul", b"aug", b"sep", b"oct", b"nov", b"dec"), 1)}
_EPOCH_DAY = datetime.date(1970, 1, 1).toordinal()
_ZONES = {b"UT": 0, b"GMT": 0, b"EST": -300, b"EDT": -240, b"CST": -360, b"CDT": -300,
          b"MST": -420, b"MDT": -360, b"PST": -480, b"PDT": -420}


def _zone(token: bytes) -> int:
    """Minutes east of UTC; an unknown zone counts as UTC (RFC 5322 §4.3)."""
    if len(token) == 5 and token[:1] in b"+-" and token[1:].isdigit():
        minutes = int(token[1:3]) * 60 + int(token[3:])
        return -minutes if token[:1] == b"-" else minutes
    return _ZONES.get(token.upper(), 0)


# The form nearly every Date field has ("Fri, 4 May 2001 14:05:44 -0400 (EDT)"), read
# without the lexer; anything else, or a value out of range, takes the general path.
_PLAIN_DATE = re.compile(
    rb"[ \t]*(?:[A-Za-z]{3},[ \t]*)?([0-9]{1,2})[ \t]+([A-Za-z]{3})[ \t]+([0-9]{4})[ \t]+"
    rb"([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?[ \t]+([+-][0-9]{4})[ \t]*"
    rb"(?:\([^()\\]*\)[ \t]*)?\Z")


def parse_date(value: bytes):
    """An RFC 5322 date-time, leniently (obsolete two-digit years, no seconds, '.' as
    time separator, comments): ``(epoch seconds, zone offset in minutes)`` or None.
    The offset lets SENTON and friends use the date as written (RFC 3501 §6.4.4)."""
    m = _PLAIN_DATE.match(value)
    if m is not None:
        month = _MONTHS.get(m.group(2).lower())
        year = int(m.group(3))
        if month is not None and year >= 1900:
            return _date_time(year, month, int(m.group(1)), int(m.group(4)), int(m.group(5)),
                              int(m.group(6) or 0), _zone(m.group(7)))
    lx = Lexer(value)
    lx.skip_lwsp()

    def token():
        out = bytearray()
        if lx.p < lx.end and lx.atom(out) < 0:
            return None
        return bytes(out)

    tok = token()
    if not tok:
        return None
    if len(tok) == 3:                           # day-of-week
        if lx.cur() != 44:
            return None
        lx.p += 1
        lx.skip_lwsp()
        tok = token()
        if not tok:
            return None
    if not (1 <= len(tok) <= 2 and tok.isdigit()):
        return None
    day = int(tok)
    tok = token()
    if not tok or len(tok) < 3 or tok[:3].lower() not in _MONTHS:
        return None
    month = _MONTHS[tok[:3].lower()]
    tok = token()
    if not tok or not 2 <= len(tok) <= 9 or not tok.isdigit():     # int() reads 4300 digits
        return None
    year = int(tok)
    if len(tok) == 2:                           # obs-year, RFC 5322 §4.3
        year += 2000 if year < 50 else 1900
    elif len(tok) == 3:
        year += 1900
    elif year < 1900:
        return None
    tok = token()
    if not tok or not (1 <= len(tok) <= 2 and tok.isdigit()):
        return None
    hour = int(tok)
    clock = [0, 0]
    for i in range(2):
        if lx.cur() not in (58, 46):
            if i == 0:
                return None
            break
        lx.p += 1
        lx.skip_lwsp()
        tok = token()
        if not tok or len(tok) != 2 or not tok.isdigit():
            return None
        clock[i] = int(tok)
    out = bytearray()
    if lx.p < lx.end and lx.atom(out) < 0:
        return None
    return _date_time(year, month, day, hour, clock[0], clock[1],
                      _zone(bytes(out)) if out else 0)


def _date_time(year, month, day, hour, minute, second, offset):
    try:
        when = datetime.datetime(year, month, day, hour, minute,
                                 59 if second == 60 else second)     # leap second
    except (ValueError, OverflowError):                 # OverflowError: a 20-digit year
        return None
    seconds = (when.toordinal() - _EPOCH_DAY) * 86400 + hour * 3600 + minute * 60 + when.second
    return seconds - offset * 60, offset


# --------------------------------------------------------------------------- header helpers

def _first(raw, name: str):
    key = name.lower().encode("utf-8")
    for field_name, value, _, _ in header_fields(raw if type(raw) is bytes else bytes(raw)):
        if field_name == key:
            return value
    return None


def header_value(raw: bytes, name: str) -> bytes | None:
    """The first *name* field of the message header, unfolded (RFC 5322 §2.2.3) and
    trimmed, still raw (not decoded); None when there is none."""
    value = _first(raw, name)
    return None if value is None else value.replace(b"\n", b"").strip(b" \t")


def decoded_header(raw: bytes, name: str) -> str:
    """The first *name* field of the message header as text (RFC 2047 decoded, see
    ``decode_words``); "" when there is none."""
    value = _first(raw, name)
    return "" if value is None else decode_words(value).strip(" \t")


def sent_date(raw: bytes) -> float | None:
    """The first Date field as epoch seconds; None when missing or unparseable."""
    value = _first(raw, "Date")
    parsed = parse_date(value) if value is not None else None
    return None if parsed is None else float(parsed[0])
