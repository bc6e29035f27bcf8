"""Reading an mbox as a stream: one message at a time, whatever the size of the file.

The format (RFC 4155, in its mboxrd and mboxo variants): each message starts with a
``From `` line (the From_ line: the envelope sender and, in asctime form, when the
message arrived), messages are separated by an empty line, and body lines that started
with ``From `` were quoted with ``>`` when the mbox was written.

- A message starts at a ``From `` line at the start of the file or after an empty line
  that carries an asctime date (as mutt's ``is_from`` asks): an unquoted "From the
  team," after a blank line in a body, which careless writers leave, stays in its
  message.
- Unquoting is mboxrd's: one ``>`` comes off ``>From ``, ``>>From `` and so on.  In an
  mboxo file this also unquotes a ``>From `` the author typed -- that format's own
  ambiguity, which no reader can settle.
- Flags come from the headers mail programs keep in an mbox: ``Status`` (``R``
  \\Seen; ``O`` only means "not new"), ``X-Status`` (``A`` \\Answered, ``F`` \\Flagged,
  ``T`` \\Draft, ``D`` \\Deleted) and ``X-Keywords`` (keywords).  Those headers and
  ``X-UID``, ``X-IMAP``, ``X-IMAPbase`` are the old store's bookkeeping, not part of the
  message: the stored copy leaves them out (as Dovecot hides them).
- The internal date is the From_ line's (UTC unless the line names an offset); without
  one, the ``Date:`` header's.

Memory: the file is read in 1 MB chunks and one message is held at a time.
"""

import calendar
import email.utils
import re

from rmail.store import names
from rmail.store.interfaces import StoreError
from rmail.store.loader import crlf

CHUNK = 1 << 20
HIDDEN = (b"status", b"x-status", b"x-keywords", b"x-uid", b"x-imap", b"x-imapbase")
_MONTHS = {m: i for i, m in enumerate(
    (b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
     b"dec"), 1)}
_ASCTIME = re.compile(
    rb"(?i)\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)\s+(\d{1,2})\s+"
    rb"(\d{1,2}):(\d\d)(?::(\d\d))?\s+(?:([A-Z]{1,5}|[+-]\d{4})\s+)?(\d{4})(?:\s+([+-]\d{4}))?")
_QUOTED = re.compile(rb"(?m)^>(>*From )")
_X_STATUS = {"A": "\\Answered", "F": "\\Flagged", "T": "\\Draft", "D": "\\Deleted"}


class MboxError(Exception):
    pass


class MboxMessage:
    """One message of the mbox: *raw* from its From_ line on, *offset* where it starts."""

    __slots__ = ("raw", "offset", "end")

    def __init__(self, raw, offset, end):
        self.raw, self.offset, self.end = raw, offset, end

    def parse(self):
        """(message bytes as stored, flags, internal date or None)."""
        newline = self.raw.find(b"\n")
        from_line = self.raw[:newline if newline >= 0 else len(self.raw)]
        body = self.raw[newline + 1:] if newline >= 0 else b""
        if b">From " in body:
            body = _QUOTED.sub(rb"\1", body)
        data = crlf(body)
        end = data.find(b"\r\n\r\n")
        header = data if end < 0 else data[:end + 2]
        kept, bookkeeping = _split_header(header)
        if bookkeeping:
            data = kept + data[len(header):]
        flags = _flags(bookkeeping)
        when = from_line_date(from_line)
        if when is None:
            when = _header_date(kept)
        return data, flags, when


def messages(f, chunk=CHUNK):
    """Yield each MboxMessage of the binary file *f*, in order, reading *chunk* bytes at a
    time."""
    buf = bytearray()
    base = 0  # file offset of buf[0]
    eof = False

    def more():
        nonlocal eof
        data = f.read(chunk)
        if data:
            buf.extend(data)
        else:
            eof = True

    while not eof and len(buf) < 5:
        more()
    start = 0
    while start < len(buf) and buf[start] in b"\r\n":
        start += 1
        if start == len(buf) and not eof:
            more()
    while len(buf) - start < 5 and not eof:
        more()
    if start >= len(buf):
        return
    if not buf.startswith(b"From ", start):
        raise MboxError("it does not start with a \"From \" line, so it is not an mbox")
    scan = start
    while True:
        pos = buf.find(b"\nFrom ", scan)
        if pos < 0 or (buf.find(b"\n", pos + 1) < 0 and not eof):
            if eof:
                yield MboxMessage(bytes(_strip_separator(buf[start:])), base + start,
                                  base + len(buf))
                return
            scan = max(start, min(pos if pos >= 0 else len(buf), len(buf) - 5))
            del buf[:start]  # keep only the message being read: memory is one message
            base += start
            scan -= start
            start = 0
            more()
            continue
        line_end = buf.find(b"\n", pos + 1)
        line = bytes(buf[pos + 1:line_end if line_end >= 0 else len(buf)])
        blank = buf[pos - 1] == 0x0A or (buf[pos - 1] == 0x0D and buf[pos - 2] == 0x0A)
        if pos - 1 > start and blank and _ASCTIME.search(line):
            end = pos - 1 if buf[pos - 1] == 0x0D else pos
            yield MboxMessage(bytes(buf[start:end]), base + start, base + pos + 1)
            start = pos + 1
        scan = pos + 1


def _strip_separator(raw):
    """The last message of the file, without the empty line writers end each one with."""
    if raw.endswith(b"\r\n\r\n"):
        return raw[:-2]
    if raw.endswith(b"\n\n"):
        return raw[:-1]
    return raw


def from_line_date(line: bytes):
    """Seconds since the epoch from a From_ line's asctime date, or None."""
    m = _ASCTIME.search(line)
    if not m:
        return None
    month, day, hour, minute, second, zone1, year, zone2 = m.groups()
    try:
        when = calendar.timegm((int(year), _MONTHS[month.lower()], int(day), int(hour),
                                int(minute), int(second or 0), 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    for zone in (zone2, zone1):
        if zone and zone[:1] in b"+-":
            offset = int(zone[1:3]) * 3600 + int(zone[3:5]) * 60
            when -= offset if zone[:1] == b"+" else -offset
            break
    return float(when)


def _split_header(header: bytes):
    """(the header without the mbox bookkeeping fields, {field name: value})."""
    kept, bookkeeping = [], {}
    hidden = False
    lines = header.split(b"\r\n")
    if header.endswith(b"\r\n"):
        lines.pop()
    for line in lines:
        if line[:1] in (b" ", b"\t"):  # a folded field goes on
            if not hidden:
                kept.append(line)
            continue
        name, colon, value = line.partition(b":")
        hidden = bool(colon) and name.strip().lower() in HIDDEN
        if hidden:
            bookkeeping[name.strip().lower()] = value.strip()
        else:
            kept.append(line)
    text = b"\r\n".join(kept)
    return (text + b"\r\n" if kept else b""), bookkeeping


def _flags(bookkeeping) -> frozenset:
    flags = set()
    if b"R" in bookkeeping.get(b"status", b""):
        flags.add("\\Seen")
    for letter in bookkeeping.get(b"x-status", b"").decode("ascii", "replace"):
        if letter in _X_STATUS:
            flags.add(_X_STATUS[letter])
    for keyword in re.split(rb"[\s,]+", bookkeeping.get(b"x-keywords", b"")):
        try:
            flags.add(names.flag(keyword.decode("ascii")))
        except (StoreError, UnicodeDecodeError):
            continue  # empty, or not an IMAP atom: nothing a client could show
    return frozenset(flags)


def _header_date(header: bytes):
    for line in header.split(b"\r\n"):
        if line[:5].lower() == b"date:":
            try:
                return email.utils.parsedate_to_datetime(
                    line[5:].decode("ascii", "replace").strip()).timestamp()
            except (TypeError, ValueError, IndexError):
                return None
    return None
