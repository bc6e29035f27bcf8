"""Reading and writing the IMAP pieces imaplib leaves raw: FETCH, LIST, STATUS.

imaplib hands back untagged responses as bytes, with each literal split out into a
``(line-before, literal)`` tuple; this module turns those into Python values (RFC 3501
section 4: atoms, quoted strings, literals, NIL, parenthesized lists) and into the
client's own records (``Envelope``, ``Mailbox``).  It also quotes what the client
sends, since imaplib passes arguments through unquoted, and converts folder names
from and to modified UTF-7 (RFC 3501 section 5.1.3).

Pure functions only: no sockets, so everything here is unit tested.
"""

import base64
import datetime
import email.errors
import email.header
import email.utils
import re
from dataclasses import dataclass, field


class Atom(str):
    """An unquoted IMAP atom (a flag, a FETCH item name, a number)."""


class Literal(bytes):
    """A literal's octets, as they came after ``{n}``."""


_LITERAL_AT_END = re.compile(rb"\{(\d+)\+?\}\r?\n?$")


def responses(data):
    """Group imaplib's response list into one list of segments per response.

    A tuple element ``(head, literal)`` is always followed by the rest of the same
    response (imaplib reads the trailer after every literal), so a response ends at
    the first bytes element that does not follow a tuple."""
    grouped, current, continues = [], [], False
    for item in data or []:
        if item is None:
            continue
        if not continues and current:
            grouped.append(current)
            current = []
        if isinstance(item, tuple):
            head, literal = item
            current.append(_LITERAL_AT_END.sub(b"", head))
            current.append(Literal(literal))
            continues = True
        else:
            current.append(item)
            continues = False
    if current:
        grouped.append(current)
    return grouped


def _tokens(segments):
    for segment in segments:
        if isinstance(segment, Literal):
            yield segment
            continue
        text, i, n = segment, 0, len(segment)
        while i < n:
            c = text[i:i + 1]
            if c in b" \r\n":
                i += 1
            elif c in b"()":
                yield c.decode()
                i += 1
            elif c == b'"':
                i += 1
                out = bytearray()
                while i < n and text[i:i + 1] != b'"':
                    if text[i:i + 1] == b"\\" and i + 1 < n:
                        i += 1
                    out += text[i:i + 1]
                    i += 1
                i += 1
                yield bytes(out)
            else:
                start, depth = i, 0
                while i < n:
                    c = text[i:i + 1]
                    if c == b"[":
                        depth += 1
                    elif c == b"]":
                        depth -= 1
                    elif depth <= 0 and c in b" ()\r\n":
                        break
                    i += 1
                word = text[start:i].decode("utf-8", "replace")
                yield None if word.upper() == "NIL" else Atom(word)


def parse(segments):
    """Every top-level value of one response: atoms, bytes (strings), None, lists."""
    stack = [[]]
    for token in _tokens(segments):
        if token == "(" and not isinstance(token, Atom):
            stack.append([])
        elif token == ")" and not isinstance(token, Atom):
            if len(stack) > 1:
                done = stack.pop()
                stack[-1].append(done)
        else:
            stack[-1].append(token)
    while len(stack) > 1:  # tolerate a truncated response
        done = stack.pop()
        stack[-1].append(done)
    return stack[0]


def fetch_items(data):
    """{uid: {ITEM: value}} from the responses of a UID FETCH.

    Responses without a UID (unsolicited flag updates) are left out: the caller
    asked about UIDs and cannot place them."""
    out = {}
    for segments in responses(data):
        values = parse(segments)
        items = next((v for v in values if isinstance(v, list)), None)
        if items is None:
            continue
        pairs = {}
        for key, value in zip(items[0::2], items[1::2]):
            pairs[str(key).upper()] = value
        uid = pairs.get("UID")
        if uid is not None and str(uid).isdigit():
            out[int(uid)] = pairs
    return out


# --- text in headers ---------------------------------------------------------------

def text(value) -> str:
    """A header string from the wire as readable text: RFC 2047 words decoded."""
    if value is None:
        return ""
    raw = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    try:
        decoded = str(email.header.make_header(email.header.decode_header(raw)))
    except (ValueError, LookupError, email.errors.HeaderParseError):
        decoded = raw
    return printable(decoded)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(s: str) -> str:
    """Control characters become spaces: a subject must never drive the terminal."""
    return _CONTROL.sub(" ", s)


@dataclass(frozen=True)
class Address:
    name: str
    address: str

    def __str__(self):
        return email.utils.formataddr((self.name, self.address)) if self.name else self.address

    @property
    def shown(self) -> str:
        """What a list column shows: the name when there is one."""
        return self.name or self.address


def addresses(value) -> list:
    """ENVELOPE address lists (RFC 3501 section 7.4.2), group markers dropped."""
    out = []
    for item in value or []:
        if not isinstance(item, list) or len(item) < 4:
            continue
        name, _route, mailbox, host = item[:4]
        if host is None:  # start (mailbox = group name) or end of a group
            continue
        address = f"{text(mailbox)}@{text(host)}"
        out.append(Address(text(name), address))
    return out


def parse_date(value):
    """An RFC 5322 date (ENVELOPE) or an INTERNALDATE as an aware datetime, or None."""
    if value is None:
        return None
    raw = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    raw = raw.strip()
    try:
        return datetime.datetime.strptime(raw, "%d-%b-%Y %H:%M:%S %z")
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when


@dataclass
class Envelope:
    """What the message list shows of one message, from one UID FETCH."""

    uid: int
    flags: frozenset = frozenset()
    size: int = 0
    date: datetime.datetime | None = None
    subject: str = ""
    sender: list = field(default_factory=list)
    to: list = field(default_factory=list)
    message_id: str = ""

    @property
    def unread(self) -> bool:
        return "\\Seen" not in self.flags

    @property
    def flagged(self) -> bool:
        return "\\Flagged" in self.flags

    @property
    def answered(self) -> bool:
        return "\\Answered" in self.flags


FETCH_ENVELOPES = "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)"


def flags(value) -> frozenset:
    return frozenset(str(f) for f in value or [] if f is not None)


def envelope(uid: int, items: dict) -> Envelope:
    """An Envelope from the items of one FETCH response (see FETCH_ENVELOPES)."""
    env = items.get("ENVELOPE") or []
    env = list(env) + [None] * (10 - len(env))
    size = items.get("RFC822.SIZE")
    return Envelope(
        uid=uid,
        flags=flags(items.get("FLAGS")),
        size=int(size) if size is not None and str(size).isdigit() else 0,
        date=parse_date(env[0]) or parse_date(items.get("INTERNALDATE")),
        subject=text(env[1]),
        sender=addresses(env[2]) or addresses(env[3]),
        to=addresses(env[5]),
        message_id=text(env[9]),
    )


@dataclass(frozen=True)
class Mailbox:
    """One LIST answer: a folder's name (decoded), its attributes and delimiter."""

    name: str
    attributes: frozenset
    delimiter: str | None


def mailbox(segments) -> Mailbox | None:
    values = parse(segments)
    if len(values) < 3 or not isinstance(values[0], list):
        return None
    attributes = frozenset(str(a) for a in values[0] if a is not None)
    delimiter = values[1]
    if isinstance(delimiter, bytes):
        delimiter = delimiter.decode("ascii", "replace")
    name = values[2]
    name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
    return Mailbox(decode_folder(name), attributes, delimiter)


def status(segments) -> dict:
    """{ITEM: int} from one STATUS response."""
    values = parse(segments)
    items = next((v for v in values if isinstance(v, list)), [])
    out = {}
    for key, value in zip(items[0::2], items[1::2]):
        if value is not None and str(value).isdigit():
            out[str(key).upper()] = int(value)
    return out


# --- what the client sends -----------------------------------------------------------

def quoted(s: str) -> str:
    """An IMAP quoted string (imaplib passes arguments as they are)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def folder_argument(name: str) -> str:
    return quoted(encode_folder(name))


def uid_set(uids) -> str:
    """A compact UID set: 1:3,7,9:10."""
    ordered = sorted(set(uids))
    runs = []
    for uid in ordered:
        if runs and uid == runs[-1][1] + 1:
            runs[-1][1] = uid
        else:
            runs.append([uid, uid])
    return ",".join(f"{a}" if a == b else f"{a}:{b}" for a, b in runs)


# --- modified UTF-7 (RFC 3501 section 5.1.3) ----------------------------------------

def encode_folder(name: str) -> str:
    out, pending = [], []

    def flush():
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if "\x20" <= ch <= "\x7e":
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def decode_folder(name: str) -> str:
    def one(match):
        inner = match.group(1)
        if not inner:
            return "&"
        padded = inner.replace(",", "/") + "=" * (-len(inner) % 4)
        try:
            return base64.b64decode(padded).decode("utf-16-be")
        except (ValueError, UnicodeDecodeError):
            return match.group(0)

    return re.sub(r"&([A-Za-z0-9+,]*)-", one, name)
