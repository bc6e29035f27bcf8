"""IMAP SEARCH: compile the search keys once, then test messages one by one.

RFC 3501 section 6.4.4 defines the keys and section 9 the sequence sets. Where the RFCs leave
room, this module does what Dovecot does, because most clients were tested against it.

Twisted's ``IMAP4Server`` parses the keys with ``parseNestedParens``. Tokens arrive as bytes,
and a literal arrives as one token. A parenthesized list arrives as a Python list, and a bare
NIL arrives as None. ``CHARSET`` is removed before the query reaches us, so the server must
pass it to ``compile`` itself.

Invariants:

- ``compile`` checks the whole query before any message is looked at. A malformed query
  raises ``SearchError``, which the server answers with BAD. ``BadCharset`` is a subclass,
  and the server answers it with ``NO [BADCHARSET]`` (RFC 3501 section 6.4.4).
- Evaluation takes time linear in the number of messages. A message's ``header()`` or
  ``raw()`` is read only if a key needs it, and at most once per ``matches`` call.
  ``Query.needs_kept``, ``needs_header`` and ``needs_body`` tell the mailbox ahead of time
  which of the index's header texts (``kept_texts()``), header and body will be read.
- The module does no I/O of its own. Reading ``header()`` and ``raw()`` may block, so a
  caller whose messages load from disk runs ``matches`` in the thread pool. A ``Query``
  caches its resolved sequence sets, so use it from one thread at a time.

How a message's fields and bodies become text to match is ``rmail.imap.searchtext``'s.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Callable, Protocol

from rmail.imap import seqset
from rmail.imap.searchtext import KEPT, KEPT_COLUMN, MessageText, fold as _fold

__all__ = ["BadCharset", "Query", "SearchError", "SearchMessage", "compile"]


class SearchError(Exception):
    """A malformed query. The text is one printable ASCII sentence for the BAD reply."""


class BadCharset(SearchError):
    """The CHARSET is not one we can decode. Answer ``NO [BADCHARSET]``, not BAD."""


class SearchMessage(Protocol):
    seq: int
    uid: int
    flags: frozenset[str]
    recent: bool
    internaldate: float  # seconds since the epoch
    size: int  # RFC822.SIZE

    def header(self) -> bytes:
        """The raw header block. Called only when a key needs it."""

    def raw(self) -> bytes:
        """The whole raw message. Called only when a key needs a body."""

    def kept_texts(self) -> tuple | None:
        """What the index keeps of the header (``searchtext.kept_texts``), or None; then
        ``header()`` is read instead."""


# What a key reads besides the index's rows, cheapest first: the header texts the index
# keeps (``searchtext.KEPT``), the header block, the whole message.
_KEPT, _HEADER, _BODY = 1, 2, 4


@dataclass(frozen=True)
class _Node:
    test: Callable[["MessageText"], bool]
    needs: int = 0
    # (kept text's position, string): what every message this node matches holds in its
    # kept texts, for the index to narrow a search down before Python sees a row
    required: tuple = ()


class Query:
    """A compiled search program; ``matches`` tests one message."""

    def __init__(self, root: _Node, highest_seq: int):
        self._test = root.test
        self.needs_kept = bool(root.needs & _KEPT)
        self.needs_header = bool(root.needs & _HEADER)
        self.needs_body = bool(root.needs & _BODY)
        # For the store's ``messages(containing=...)``: only messages whose kept texts hold
        # these can match (a necessary condition; ``matches`` still decides).
        self.kept_filters = root.required
        # The largest message sequence number written in the query (0 if none). RFC 3501
        # section 9 says a server SHOULD answer BAD if it is above the message count; if the
        # query runs anyway, a range such as 80:* still means 80 down to the last message.
        self.highest_seq = highest_seq

    def matches(self, msg: SearchMessage, max_seq: int, max_uid: int) -> bool:
        """``max_seq`` / ``max_uid`` give "*" its value: the mailbox's message count and
        its highest UID (RFC 3501 section 9, seq-number)."""
        return self._test(MessageText(msg, max_seq, max_uid))


def compile(query: list, charset: str | bytes | None = None) -> Query:  # noqa: A001
    """Compile Twisted's token list. ``charset`` is the SEARCH CHARSET. It defaults to
    UTF-8, which covers US-ASCII, the RFC's default."""
    if isinstance(charset, bytes):
        charset = charset.decode("ascii", "replace")
    charset = charset or "utf-8"
    try:
        b"a".decode(charset, "replace")  # b"" would skip the codec lookup
    except (LookupError, ValueError):  # ValueError: a NUL in the name
        raise BadCharset(f"charset {_show(charset)} is not supported; use UTF-8") from None
    if not query:
        raise SearchError("SEARCH needs at least one search key")
    compiler = _Compiler(query, charset)
    return Query(compiler.all(), compiler.highest_seq[0])


# -- compiling -------------------------------------------------------------------------


_FLAG_KEYS = {  # key: (flag, whether the message must have it)
    "ANSWERED": ("\\answered", True), "UNANSWERED": ("\\answered", False),
    "DELETED": ("\\deleted", True), "UNDELETED": ("\\deleted", False),
    "DRAFT": ("\\draft", True), "UNDRAFT": ("\\draft", False),
    "FLAGGED": ("\\flagged", True), "UNFLAGGED": ("\\flagged", False),
    "SEEN": ("\\seen", True), "UNSEEN": ("\\seen", False),
}
_ADDRESS_KEYS = {"FROM", "TO", "CC", "BCC"}
_INTERNAL_DATE_KEYS = {"BEFORE", "ON", "SINCE"}
_SENT_DATE_KEYS = {"SENTBEFORE": "BEFORE", "SENTON": "ON", "SENTSINCE": "SINCE"}
_MONTHS = {m: i for i, m in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
_DATE = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")  # RFC 3501 date-text
_ATOM_SPECIALS = re.compile(rb'[\x00-\x20\x7f-\xff(){%*"\\\]]')  # RFC 3501 section 9
_MAX_NESTING = 100  # parenthesized lists, NOT and OR inside each other


class _Compiler:
    def __init__(self, tokens: list, charset: str, highest_seq: list[int] | None = None,
                 nesting: list[int] | None = None):
        self._tokens = tokens
        self._pos = 0
        self._charset = charset
        self.highest_seq = highest_seq or [0]  # shared with the compilers of nested lists
        self._nesting = nesting or [0]  # keys being compiled inside each other, shared too

    def all(self) -> _Node:
        """search-key *(SP search-key): all of them must match."""
        nodes = []
        while self._pos < len(self._tokens):
            nodes.append(self.key())
        return _all_of(nodes)

    def key(self) -> _Node:
        if self._nesting[0] >= _MAX_NESTING:
            raise SearchError(f"search keys nested more than {_MAX_NESTING} deep")
        self._nesting[0] += 1
        try:
            return self._key()
        finally:
            self._nesting[0] -= 1

    def _key(self) -> _Node:
        token = self._take("a search key", "SEARCH")
        if isinstance(token, list):
            if not token:
                raise SearchError("a parenthesized list needs at least one search key")
            return _Compiler(token, self._charset, self.highest_seq, self._nesting).all()
        if token is None:
            raise SearchError("unknown search key NIL")
        if token[:1].isdigit() or token[:1] == b"*":
            numbers = _number_set(token, "sequence set")
            self.highest_seq[0] = max(self.highest_seq[0], numbers.highest)
            return _Node(lambda v: numbers.contains(v.msg.seq, v.max_seq))
        name = token.decode("ascii", "replace").upper()
        if name in _FLAG_KEYS:
            flag, wanted = _FLAG_KEYS[name]
            return _Node(lambda v: _has_flag(v.msg.flags, flag) is wanted)
        if name in _ADDRESS_KEYS:
            return _header_node(name.lower(), self._string(name), "address")
        if name == "SUBJECT":
            return _header_node("subject", self._string(name), "squeezed")
        if name in _INTERNAL_DATE_KEYS:
            compare = _date_test(name, self._date(name))
            return _Node(lambda v: compare(_utc_date(v.msg.internaldate)))
        if name in _SENT_DATE_KEYS:
            compare = _date_test(_SENT_DATE_KEYS[name], self._date(name))
            return _Node(lambda v: compare(v.sent_date()), _HEADER)
        handler = getattr(self, "_key_" + name, None)
        if handler is None:
            raise SearchError(f"unknown search key {_show(token)}")
        return handler()

    # keys that do not fit a family above, in RFC 3501 order

    def _key_ALL(self):
        return _Node(lambda v: True)

    def _key_BODY(self):
        needle = _fold(self._string("BODY"))
        if not needle:
            return _Node(lambda v: True)  # "" is in every body

        def test(v):
            return any(needle in text for text in v.body_texts())
        if needle.isascii():
            raw_needle = needle.encode("ascii")
            return _Node(lambda v: v.body_may_contain(raw_needle) and test(v), _BODY)
        return _Node(test, _BODY)

    def _key_HEADER(self):
        name = self._string("HEADER").strip().lower()
        return _header_node(name, self._string("HEADER"), "plain")

    def _key_KEYWORD(self):
        keyword = self._keyword("KEYWORD")
        return _Node(lambda v: _has_flag(v.msg.flags, keyword))

    def _key_LARGER(self):
        size = self._number("LARGER")
        return _Node(lambda v: v.msg.size > size)

    def _key_NEW(self):
        return _Node(lambda v: v.msg.recent and not _has_flag(v.msg.flags, "\\seen"))

    def _key_NOT(self):
        inner = self._operand("NOT", "a search key")
        return _Node(lambda v: not inner.test(v), inner.needs)

    def _key_OLD(self):
        return _Node(lambda v: not v.msg.recent)

    def _key_OR(self):
        first = self._operand("OR", "two search keys")
        second = self._operand("OR", "two search keys")
        first, second = sorted((first, second), key=lambda n: n.needs)
        return _Node(lambda v: first.test(v) or second.test(v), first.needs | second.needs)

    def _key_RECENT(self):
        return _Node(lambda v: v.msg.recent)

    def _key_SMALLER(self):
        size = self._number("SMALLER")
        return _Node(lambda v: v.msg.size < size)

    def _key_TEXT(self):
        needle = _fold(self._string("TEXT"))
        if not needle:
            return _Node(lambda v: True)
        return _Node(lambda v: any(needle in text for text in v.full_texts()), _HEADER | _BODY)

    def _key_UID(self):
        uids = _number_set(self._take("a UID set", "UID"), "UID set")
        return _Node(lambda v: uids.contains(v.msg.uid, v.max_uid))

    def _key_UNKEYWORD(self):
        keyword = self._keyword("UNKEYWORD")
        return _Node(lambda v: not _has_flag(v.msg.flags, keyword))

    # arguments

    def _take(self, what: str, key: str):
        if self._pos >= len(self._tokens):
            raise SearchError(f"{key} needs {what} after it")
        token = self._tokens[self._pos]
        self._pos += 1
        return token

    def _operand(self, key: str, what: str) -> _Node:
        if self._pos >= len(self._tokens):
            raise SearchError(f"{key} needs {what} after it")
        return self.key()

    def _atom(self, what: str, key: str) -> bytes:
        token = self._take(what, key)
        if not isinstance(token, bytes):
            raise SearchError(f"{key} needs {what}, not a parenthesized list or NIL")
        return token

    def _string(self, key: str) -> str:
        token = self._take("a string", key)
        if isinstance(token, list):
            raise SearchError(f"{key} needs a string, not a parenthesized list")
        try:
            return (b"NIL" if token is None else token).decode(self._charset)
        except UnicodeDecodeError:
            raise SearchError(f"{key} argument is not valid {_show(self._charset)}") from None

    def _keyword(self, key: str) -> str:
        token = self._take("a flag keyword", key)
        if not isinstance(token, bytes) or not token or _ATOM_SPECIALS.search(token):
            raise SearchError(f"{key} needs a flag keyword such as $Label1, not {_show(token)}")
        return token.decode("ascii").casefold()

    def _number(self, key: str) -> int:
        token = self._atom("a number of octets", key)
        if not token.isdigit() or len(token) > seqset.DIGITS or int(token) >= seqset.LIMIT:
            raise SearchError(f"{key} needs a number of octets, not {_show(token)}")
        return int(token)

    def _date(self, key: str) -> datetime.date:
        token = self._atom("a date", key)
        match = _DATE.fullmatch(token)
        try:
            if not match:
                raise ValueError
            day, month, year = match.groups()
            return datetime.date(int(year), _MONTHS[month.decode().lower()], int(day))
        except (KeyError, ValueError):
            raise SearchError(f"{key} needs a date like 1-Feb-2024, not {_show(token)}") from None


def _all_of(nodes: list[_Node]) -> _Node:
    if len(nodes) == 1:
        return nodes[0]
    nodes = sorted(nodes, key=lambda n: n.needs)  # index-only keys first: they are cheap
    tests = [n.test for n in nodes]
    needs = 0
    for n in nodes:
        needs |= n.needs
    required = tuple(r for n in nodes for r in n.required)
    return _Node(lambda v: all(test(v) for test in tests), needs, required)


def _header_node(name: str, value: str, kind: str) -> _Node:
    """``kind`` says how a field's text is prepared: "address" (the parsed address list),
    "squeezed" (runs of white space made one space, as Dovecot does for SUBJECT) or
    "plain"."""
    needle = _fold(value)
    if KEPT.get(name) == kind:  # from the index: no header block to read
        if not needle:  # "" matches every message that has the field
            return _Node(lambda v: bool(v.header_texts(name, kind)), _KEPT)
        return _Node(lambda v: any(needle in text for text in v.header_texts(name, kind)),
                     _KEPT, ((KEPT_COLUMN[name], needle),))
    if not needle:
        return _Node(lambda v: any(field == name for field, _ in v.fields()), _HEADER)

    def test(v):
        return any(needle in text for text in v.header_texts(name, kind))
    if _PLAIN_NEEDLE.fullmatch(needle) and _FIELD_NAME.fullmatch(name) and \
            (kind != "address" or _WORD.fullmatch(needle)):
        raw_name, raw_needle = name.encode("ascii"), needle.encode("ascii")
        unsafe = _DECODED + _PARSED if kind == "address" else _DECODED
        return _Node(lambda v: v.may_contain(raw_name, raw_needle, unsafe) and test(v), _HEADER)
    return _Node(test, _HEADER)


# The quick test before parsing a header (``MessageText.may_contain``): a needle of printable
# ASCII without white space is in a field's text only if it is in the field's bytes
# (ignoring case), unless decoding changes them.  For addresses, parsing joins tokens,
# so only a run of letters and digits is safe.
_PLAIN_NEEDLE = re.compile(r"[!-~]+")
_FIELD_NAME = re.compile(r"[!-9;-~]+")
_WORD = re.compile(r"[a-z0-9]+")
_DECODED = (b"=?", b"\\")  # encoded words, quoted pairs
_PARSED = (b"(", b'"')  # comments and quoted strings, which address parsing rewrites


def _date_test(relation: str, day: datetime.date) -> Callable[[datetime.date], bool]:
    if relation == "BEFORE":
        return lambda d: d < day
    if relation == "ON":
        return lambda d: d == day
    return lambda d: d >= day


def _has_flag(flags: frozenset[str], folded: str) -> bool:
    """Flags and keywords compare without case (RFC 3501 section 9, rule 3)."""
    return any(flag.casefold() == folded for flag in flags)


def _utc_date(epoch: float) -> datetime.date:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).date()


def _show(token) -> str:
    """A token as printable ASCII for an error reply: a literal may hold CR LF."""
    text = token.decode("ascii", "replace") if isinstance(token, bytes) else str(token)
    text = "".join(c if " " <= c <= "~" else "?" for c in text)
    return text if len(text) <= 40 else text[:37] + "..."


def _number_set(token, what: str) -> seqset.SequenceSet:
    if not isinstance(token, bytes):
        raise SearchError(f"bad {what} {_show(token)}: use numbers and ranges such as 1:5,7,9:*")
    try:
        return seqset.parse(token)
    except seqset.BadSet as e:
        raise SearchError(f"bad {what} {_show(token)}: {e}") from None
