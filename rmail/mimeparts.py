"""The MIME structure of a message: Content-Type and its parameters, and the tree of
parts (where each part's header and body are, what kind of part it is).

Both FETCH (``rmail.mime``: BODYSTRUCTURE, BODY[section]) and SEARCH (BODY, TEXT) read
messages through this one tree, so they agree on where the parts are.

Invariants:

- Pure and byte-level: bytes in, no I/O, no Twisted, safe on any thread. No input
  bytes make it raise (bare LF or CR, NUL, 8-bit bytes, a header with no blank line, a
  missing final boundary, broken Content-Type ...). Trees are never changed once built.
- The tree follows Dovecot 2.3's lenient message parser: a delimiter line is searched
  from the innermost boundary outwards and may be followed by anything (RFC 2046
  §5.1.1), the [CR]LF before it belongs to the delimiter, an unclosed multipart ends
  with the message, a Content-Type without MIME-Version still counts.
- Offsets are into the raw message as stored; nothing is decoded here.

RFCs: 2045 (MIME header fields), 2046 (multipart, message/rfc822, digest defaults),
2231 (parameter continuations).
"""

from __future__ import annotations

import re
from functools import lru_cache

from rmail.rfc5322 import NUL_REPLACEMENT, Lexer, nul_replaced, read_header

# Limits. The RFCs set none; these are Dovecot's, so that pathological nesting or part
# counts degrade the same way (deeper parts become opaque, see ``unparsed_container``).
MAX_NESTED_PARTS = 100
MAX_TOTAL_PARTS = 10000
MAX_BOUNDARY = 80            # RFC 2046 allows 70 characters; longer ones are cut here


# --------------------------------------------------------------------------- MIME parameters

def _content_param(lx: Lexer):
    """One ``; attribute=value`` (RFC 2045 §5.1): (1, key, value), (0,) at the end,
    (-1,) when broken."""
    if lx.p >= lx.end:
        return (0,)
    if lx.d[lx.p] != 59:
        return (-1,)
    lx.p += 1
    if lx.skip_lwsp() <= 0:
        return (-1,)
    key = bytearray()
    if lx.mime_token(key) <= 0 or lx.d[lx.p] != 61:
        return (-1,)
    lx.p += 1
    value = bytearray()
    ret = lx.skip_lwsp()
    if ret > 0:
        c = lx.d[lx.p]
        if c == 34:
            ret = lx.quoted_string(value)
        elif c == 61:                  # unquoted encoded word: name==?utf-8?b?...?=
            e = lx.p
            while e < lx.end and lx.d[e] not in (59, 32, 9, 13, 10):
                e += 1
            value += lx.d[lx.p:e]
            lx.p = e
        else:
            ret = lx.mime_token(value)
    return (-1,) if ret < 0 else (1, bytes(key), bytes(value))


_SECTION_SUFFIX = re.compile(rb"(\d{0,9})(\*?)\Z")  # longer: not a section number


def parameters(lx: Lexer) -> list:
    """Parameters after the value, RFC 2231 continuations joined (``name*0*``,
    ``name*1*`` become ``name*``; ``name*0``, ``name*1`` become ``name``). The
    charset'language' prefix stays: IMAP sends the value as written. Broken
    parameters are skipped."""
    plain, split = [], []
    while True:
        got = _content_param(lx)
        if got[0] == 0:
            break
        if got[0] < 0:
            if lx.p >= lx.end:
                break
            lx.p += 1
            continue
        key, value = got[1], got[2]
        star = key.find(b"*")
        m = _SECTION_SUFFIX.match(key, star + 1) if star >= 0 else None
        if m is None:
            plain.append((key, value))
        elif star + 1 == len(key):                       # name*=charset'lang'value
            split.append((key[:star], 0, True, value))
        else:
            split.append((key[:star], int(m.group(1) or 0), bool(m.group(2)), value))
    if not split:
        return plain
    split.sort(key=lambda s: (s[0], s[1]))
    i = 0
    while i < len(split):
        lower = split[i][0].lower()
        j = i
        while j < len(split) and split[j][0].lower() == lower:
            j += 1
        group = split[i:j]
        extended = any(s[2] for s in group)
        if [s[1] for s in group] != list(range(len(group))):
            for key, idx, ext, value in group:            # a piece is missing: keep them apart
                plain.append((b"%s*%d%s" % (key, idx, b"*" if ext else b""), value))
        else:
            value = b"''" if extended and not group[0][2] else b""
            for _, _, ext, piece in group:
                value += piece.replace(b"%", b"%25") if extended and not ext else piece
            plain.append((group[0][0] + (b"*" if extended else b""), value))
        i = j
    return plain


def content_type(value: bytes):
    """Parse a Content-Type value: ``(ok, "type/subtype", parameters)``. When not ok the
    type is what could be read ("" when the subtype is missing) and there are no
    parameters."""
    lx = Lexer(value, nul=NUL_REPLACEMENT)
    out = bytearray()
    if lx.skip_lwsp() <= 0 or lx.mime_token(out) <= 0 or not out:
        return False, bytes(out), None
    if lx.d[lx.p] != 47:
        return False, b"", None
    lx.p += 1
    if lx.skip_lwsp() <= 0:
        return False, b"", None
    out += b"/"
    mark = len(out)
    ret = lx.mime_token(out)
    if ret < 0 or len(out) == mark or (lx.p < lx.end and lx.d[lx.p] != 59):
        return False, b"", None
    return True, bytes(out), parameters(lx)


# --------------------------------------------------------------------------- the part tree

class Part:
    """One MIME part: header at raw[start:body_start], body at raw[body_start:end]."""

    __slots__ = ("parent", "depth", "start", "body_start", "end", "eoh", "fields", "children",
                 "multipart", "rfc822", "digest", "ctype", "subtype", "params", "cte", "cid",
                 "description", "md5", "disposition", "disposition_params", "language",
                 "location")

    def __init__(self, parent, start):
        self.parent, self.start = parent, start
        self.depth = parent.depth + 1 if parent is not None else 0
        self.end = None
        self.children = []


def _settle_header(part: Part, fields, mime: bool):
    """Decide the part's kind and its Content-* data from its header. Returns the
    multipart boundary, if any. Content-* fields count only in a MIME part (one with
    MIME-Version, or a Content-Type, or inside a multipart)."""
    part.fields = fields
    ctype_value = None
    for name, value, _, _ in fields:
        if name == b"mime-version":
            mime = True
        elif name == b"content-type":
            mime = True
            if ctype_value is None:
                ctype_value = value
    part.multipart = part.rfc822 = part.digest = False
    part.ctype = part.subtype = part.params = part.cte = part.cid = part.description = None
    part.md5 = part.disposition = part.disposition_params = part.language = None
    part.location = None
    boundary = None
    if ctype_value is not None:
        ok, mime_type, params = content_type(ctype_value)
        lower = mime_type.lower()
        if lower == b"message/rfc822":
            part.rfc822 = True
        elif lower.startswith(b"multipart/"):
            part.multipart = True
            part.digest = lower == b"multipart/digest"
            for key, value in params or ():
                if key.lower() == b"boundary":
                    boundary = value[:MAX_BOUNDARY]
                    break
        slash = mime_type.find(b"/")
        part.ctype = mime_type[:slash] if slash >= 0 else mime_type
        part.subtype = mime_type[slash + 1:] if slash >= 0 else b""
        part.params = params or None
    elif part.parent is not None and part.parent.digest:
        part.rfc822 = True                     # RFC 2046 §5.1.5: digest default
    for name, value, _, _ in fields:
        if not name.startswith(b"content-"):
            continue
        name = name[8:]
        if name == b"transfer-encoding" and part.cte is None:
            lx = Lexer(value)
            token = bytearray()
            lx.skip_lwsp()
            if lx.mime_token(token) >= 0 and lx.skip_lwsp() == 0 and token:
                part.cte = bytes(token)
        elif name == b"id" and part.cid is None:
            part.cid = nul_replaced(value)
        elif name == b"description" and part.description is None:
            part.description = nul_replaced(value)
        elif name == b"md5" and part.md5 is None:
            part.md5 = nul_replaced(value)
        elif name == b"location" and part.location is None:
            part.location = nul_replaced(value)
        elif name == b"disposition" and part.disposition_params is None:
            lx = Lexer(value, nul=NUL_REPLACEMENT)
            token = bytearray()
            lx.skip_lwsp()
            if lx.mime_token(token) >= 0:
                part.disposition = bytes(token)
                part.disposition_params = parameters(lx) or None
        elif name == b"language" and part.language is None:
            lx = Lexer(value)
            langs = []
            lx.skip_lwsp()
            while True:
                token = bytearray()
                if lx.atom(token) < 0:
                    break
                langs.append(bytes(token))
                if lx.p >= lx.end or lx.d[lx.p] != 44:
                    break
                lx.p += 1
                lx.skip_lwsp()
            part.language = langs or None
    if not mime:                               # RFC 2045 §4: no MIME, no Content-*
        part.multipart = part.rfc822 = part.digest = False
        part.ctype = part.subtype = part.params = part.cte = part.cid = None
        part.description = part.md5 = part.disposition = part.disposition_params = None
        part.language = part.location = None
        boundary = None
        if part.parent is not None and part.parent.digest:
            part.rfc822 = True
    return boundary


def _delimiter(raw: bytes, line: int, boundaries: list):
    """The boundary whose delimiter line starts at *line* (which starts with "--"):
    the innermost boundary that prefixes the line, preferring the longest, or None."""
    s = line + 2
    lf = raw.find(b"\n", s)
    if lf < 0:
        e, trailing = min(len(raw), s + MAX_BOUNDARY + 4), False
    else:
        e = lf - 1 if lf > s and raw[lf - 1] == 13 else lf
        trailing = e - s > 2 and raw[e - 2:e] == b"--"
    size = e - s
    best = None
    for entry in reversed(boundaries):
        text = entry[0]
        if len(text) <= size and raw.startswith(text, s) \
                and (best is None or len(best[0]) < len(text)):
            best = entry
            if len(text) == size or (trailing and len(text) == size - 2):
                break
    return best


def parse(raw: bytes) -> Part:
    """Split *raw* into its part tree (Dovecot's message-parser, on the whole buffer)."""
    n = len(raw)
    root = cur = Part(None, 0)
    boundaries = []                      # [boundary, part] pairs, innermost last
    total = 1
    pos = 0
    in_header, mime = True, False

    def at_boundary(p):
        return _delimiter(raw, p, boundaries) is not None

    while True:
        if in_header:
            fields, pos, eoh, cut = read_header(
                raw, pos, at_boundary if boundaries and total < MAX_TOTAL_PARTS else None)
            mark = pos                          # where the next region starts
            if cut:                             # the [CR]LF before the delimiter is not ours
                mark = pos - (2 if raw[pos - 2] == 13 else 1) if fields else cur.start
                cur.end = mark
            cur.body_start, cur.eoh = mark, eoh
            boundary = _settle_header(cur, fields, mime)
            in_header = False
            if cur.multipart and boundary is not None and eoh:
                if cur.depth + 1 < MAX_NESTED_PARTS:
                    boundaries.append([boundary, cur])
                else:
                    cur.multipart = False       # too deep: an opaque part
            elif cur.rfc822:
                if cur.depth + 1 < MAX_NESTED_PARTS and total < MAX_TOTAL_PARTS:
                    child = Part(cur, mark)
                    cur.children.append(child)
                    total += 1
                    cur, in_header, mime = child, True, False
                    continue
                cur.rfc822 = False
        found = None
        if boundaries and total < MAX_TOTAL_PARTS:
            if raw.startswith(b"--", pos):
                b = _delimiter(raw, pos, boundaries)
                if b is not None:
                    found = (b, pos, mark)
            i = pos
            while found is None:
                j = raw.find(b"\n--", i)
                if j < 0:
                    break
                b = _delimiter(raw, j + 1, boundaries)
                if b is not None:
                    found = (b, j + 1, j - 1 if j > pos and raw[j - 1] == 13 else j)
                i = j + 1
        if found is None:
            break
        (text, owner), line, cut_at = found
        while cur is not owner:
            if cur.end is None:
                cur.end = cut_at
            cur = cur.parent
        index = next(i for i, b in enumerate(boundaries) if b[1] is owner)
        if raw[line + 2 + len(text):line + 4 + len(text)] == b"--":
            del boundaries[index:]              # close-delimiter: an epilogue follows
        else:
            del boundaries[index + 1:]
        lf = raw.find(b"\n", line)
        if lf < 0:
            break
        pos = mark = lf + 1
        if boundaries and boundaries[-1][1] is cur:
            child = Part(cur, pos)
            cur.children.append(child)
            total += 1
            cur, in_header, mime = child, True, True
    while cur is not None:
        if cur.end is None:
            cur.end = n
        cur = cur.parent
    return root


# Messages up to this size have their tree cached. The cache's key is the message's
# bytes, which it keeps alive: four 50 MB messages would stay in memory for good.
CACHED_MESSAGE_SIZE = 1 << 20


@lru_cache(maxsize=4)
def _structure(raw: bytes) -> Part:
    """The part tree, kept for the last few messages (a FETCH asks for BODYSTRUCTURE
    and several sections of the same message). Trees are never changed."""
    return parse(raw)


def tree(raw) -> Part:
    """The part tree of *raw*, from the cache when it is one of the last few messages
    (of at most CACHED_MESSAGE_SIZE bytes; larger ones are parsed each time)."""
    raw = raw if type(raw) is bytes else bytes(raw)
    return _structure(raw) if len(raw) <= CACHED_MESSAGE_SIZE else parse(raw)


def size_and_lines(raw: bytes, start: int, end: int):
    """Octets with CRLF line endings, and lines, of raw[start:end]."""
    lines = raw.count(b"\n", start, end)
    return end - start + lines - raw.count(b"\r\n", start, end), lines


def unparsed_container(part: Part) -> bool:
    """A multipart or message/rfc822 part left a leaf: its contents were not parsed
    (the nesting limits cut it off, or a multipart type lacks its subtype). BODYSTRUCTURE
    calls it application/octet-stream and SEARCH does not look inside it."""
    if part.multipart or part.rfc822:
        return False
    ctype = part.ctype
    if ctype is None:
        return part.parent is not None and part.parent.digest
    ctype = ctype.lower()
    return ctype == b"multipart" or (ctype == b"message" and part.subtype.lower() == b"rfc822")
