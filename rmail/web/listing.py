"""A folder's message list for the API, from the index alone.

The list shows from/to/cc/subject/date for each message without opening a message
file: the store keeps each message's header block in its index at delivery
(``messages(..., headers=True)``), and the fields are read from it with the same
RFC 5322 parser IMAP's ENVELOPE uses (``rmail.rfc5322``), so both views agree.
``preview``, the opening words of the text (``rmail.preview``), is kept with the
header block at delivery; it is null for messages indexed before rmail kept it.

Paging is newest first: offset 0 is the highest UID.  The store slices a page's UIDs
from the folder's UID list, which it keeps between changes (``IUserStore.page``), and
only the page's rows are read, so a deep page costs what the first one does, gaps left
by expunges or not.

Pure functions, safe on any thread.
"""

import datetime
import functools

from rmail import rfc5322

DEFAULT_LIMIT = 50
MAX_LIMIT = 500  # SPEC: limit at most 500


def _text(raw: bytes | None) -> str:
    return "" if not raw else raw.decode("utf-8", "replace")


def _addresses(value: bytes | None) -> list[dict]:
    if value is None:
        return []
    out = []
    for name, _route, mailbox, host in rfc5322.addresses(value, fill=False):
        if host is None:  # the start or end of a group (RFC 3501 section 7.4.2)
            continue
        address = _text(mailbox) + ("@" + _text(host) if host else "")
        out.append({"name": rfc5322.decode_words(name).strip() if name else None,
                    "address": address})
    return out


def _iso(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def summary(info) -> dict:
    """The API's view of one message (a MessageInfo read with its header block)."""
    fields = _header_view(info.header or b"")
    return {
        "uid": info.uid,
        **fields,
        "date": fields["date"] or _iso(info.internaldate),
        "flags": sorted(info.flags),
        "size": info.size,
        "preview": info.preview,
    }


@functools.lru_cache(maxsize=4096)
def _header_view(header: bytes) -> dict:
    """From, To, Cc, Subject and Date as the list shows them, read from a header block.

    Kept for the last few thousand header blocks (a message's never changes): clients
    list the same newest page again and again, and parsing the addresses of 25 headers
    costs more than everything else in answering.  Callers must not change the result."""
    first = {}
    for name, value, _, _ in rfc5322.header_fields(header):
        first.setdefault(name, value)
    senders = _addresses(first.get(b"from"))
    date = first.get(b"date")
    parsed = rfc5322.parse_date(date) if date is not None else None
    subject = first.get(b"subject")
    return {
        "from": senders[0] if senders else None,
        "to": _addresses(first.get(b"to")),
        "cc": _addresses(first.get(b"cc")),
        "subject": rfc5322.decode_words(subject).strip(" \t") if subject is not None else "",
        "date": _iso(parsed[0]) if parsed is not None else None,
    }
