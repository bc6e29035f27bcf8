"""FETCH (RFC 3501 6.4.5, 7.4.2): what each data item answers, byte-safe.

Replaces Twisted's ``spew_*`` methods (TWISTED.md items 11, 12, 16, 25, 26): sections are
served from the stored bytes verbatim, partial fetches are sliced and labelled with
their origin only, 8-bit headers and odd parameters never break a response, and a
non-PEEK body fetch sets ``\\Seen``.  Item parsing stays Twisted's (``_FetchParser``).

``render`` runs in a thread when it needs the message file (it reads it); items that
the index answers (FLAGS, UID, INTERNALDATE, RFC822.SIZE) never open the file.
"""

import time

from twisted.mail.imap4 import _FetchParser

from rmail import mime, mimeparts
from rmail.imap import searchtext
from rmail.preview import preview

_FILE_ITEMS = ("envelope", "bodystructure", "body", "rfc822", "rfc822header", "rfc822text")


class FetchError(Exception):
    pass


def parse(query: bytes):
    """The data items of a FETCH, as Twisted's parser objects (macros expanded)."""
    parser = _FetchParser()
    try:
        parser.parseString(query)
    except Exception as e:
        raise FetchError(f"bad FETCH items: {e}")
    if not parser.result:
        raise FetchError("no FETCH items")
    return parser.result


def describe(raw: bytes) -> tuple:
    """What the store keeps per message at delivery: (ENVELOPE, BODY, BODYSTRUCTURE, the
    header block for SEARCH and the API's list, the preview for that list, SEARCH's texts
    of the fields searched most)."""
    end = raw.find(b"\r\n\r\n")
    header = raw if end < 0 else raw[:end + 2]
    root = mimeparts.parse(raw)  # once for all three, and never cached (it may be 50 MB)
    return (mime.envelope(raw), mime.bodystructure(raw, False, root),
            mime.bodystructure(raw, True, root), header, preview(raw, root),
            searchtext.kept_texts(header))


_CACHED = {"envelope": "envelope", "bodystructure": "bodystructure"}


def wants_summary(items) -> bool:
    """Do these items use what the index keeps per message (ENVELOPE, BODY, BODYSTRUCTURE)?"""
    return any(item.type in _CACHED or _is_structure(item) for item in items)


def needs_file(items, info) -> bool:
    """Must this message's file be read, or does the index answer every item?"""
    for item in items:
        if item.type not in _FILE_ITEMS:
            continue
        if item.type in _CACHED and getattr(info, _CACHED[item.type]) is not None:
            continue
        if _is_structure(item) and info.body is not None:
            continue
        return True
    return False


def sets_seen(items) -> bool:
    return any((item.type == "body" and not item.peek and not _is_structure(item))
               or item.type in ("rfc822", "rfc822text") for item in items)


def _is_structure(item) -> bool:
    """BODY without a section is BODYSTRUCTURE's non-extensible form, not content."""
    return item.type == "body" and not (item.empty or item.header or item.text or item.mime
                                        or item.part)


def internaldate(when: float) -> bytes:
    return time.strftime('"%d-%b-%Y %H:%M:%S +0000"', time.gmtime(when)).encode()


def section_label(item) -> bytes:
    part = ".".join(str(p + 1) for p in item.part or ())
    if item.header:
        name = "HEADER"
        if item.header.fields:
            name += ".FIELDS" + (".NOT" if item.header.negate else "")
            name += " (" + " ".join(f.decode("ascii", "replace").upper()
                                    for f in item.header.fields) + ")"
    elif item.text:
        name = "TEXT"
    elif item.mime:
        name = "MIME"
    else:
        name = ""
    return (part + ("." if part and name else "") + name).encode()


def _section_bytes(raw: bytes, item) -> bytes:
    part = tuple(p + 1 for p in item.part or ())
    if item.header:
        if item.header.fields:
            kind = "HEADER.FIELDS.NOT" if item.header.negate else "HEADER.FIELDS"
            return mime.section(raw, part, kind, tuple(item.header.fields))
        return mime.section(raw, part, "HEADER")
    if item.text:
        return mime.section(raw, part, "TEXT")
    if item.mime:
        return mime.section(raw, part, "MIME")
    return mime.section(raw, part)


def literal(data: bytes) -> bytes:
    return b"{%d}\r\n%s" % (len(data), data)


def render(items, info, flags: bytes, raw: bytes | None, uid: bool, seen_now=False) -> bytes:
    """The parenthesized FETCH data for one message (without ``* n FETCH``).

    *seen_now*: this fetch just set \\Seen, so FLAGS is reported even if not asked for."""
    out = []
    if uid and not any(item.type == "uid" for item in items):
        out.append(b"UID %d" % info.uid)
    for item in items:
        kind = item.type
        if kind == "uid":
            out.append(b"UID %d" % info.uid)
        elif kind == "flags":
            out.append(b"FLAGS " + flags)
        elif kind == "internaldate":
            out.append(b"INTERNALDATE " + internaldate(info.internaldate))
        elif kind == "rfc822size":
            out.append(b"RFC822.SIZE %d" % info.size)
        elif kind == "envelope":
            out.append(b"ENVELOPE " + (info.envelope or mime.envelope(raw)))
        elif kind == "bodystructure":
            out.append(b"BODYSTRUCTURE " + (info.bodystructure or mime.bodystructure(raw, True)))
        elif kind == "rfc822":
            out.append(b"RFC822 " + literal(raw))
        elif kind == "rfc822header":
            out.append(b"RFC822.HEADER " + literal(mime.section(raw, (), "HEADER")))
        elif kind == "rfc822text":
            out.append(b"RFC822.TEXT " + literal(mime.section(raw, (), "TEXT")))
        elif _is_structure(item):
            out.append(b"BODY " + (info.body or mime.bodystructure(raw, False)))
        else:
            data = _section_bytes(raw, item)
            label = b"BODY[" + section_label(item) + b"]"
            if item.partialBegin is not None:
                start = item.partialBegin
                data = data[start:start + item.partialLength]
                label += b"<%d>" % start
            out.append(label + b" " + literal(data))
    if seen_now and not any(item.type == "flags" for item in items):
        out.append(b"FLAGS " + flags)
    return b"(" + b" ".join(out) + b")"
