"""rmail.imap.search against Dovecot's recorded SEARCH answers, and its own contract.

The corpus (tests/corpus/imap, see its README) holds 59 messages and 81 queries with
Dovecot 2.3.19.1's answers. Here the messages are set up as recorded: message i (file-name
order, from 1) has seq = uid = i, the INTERNALDATE and flags from expected.json, \\Recent,
and RFC822.SIZE = the file's length. Each query goes through Twisted's own
``parseNestedParens``, as ``IMAP4Server`` does, before ``compile`` sees it.
"""

import datetime
import json
import os
import re
from dataclasses import dataclass, field, replace

import pytest
from twisted.mail.imap4 import parseNestedParens

from rmail.imap.search import BadCharset, SearchError, compile
from rmail.imap.searchtext import kept_texts

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "imap")
with open(os.path.join(CORPUS, "expected.json"), encoding="utf-8") as _f:
    EXPECTED = json.load(_f)

# Where Dovecot's answer contradicts an RFC, we follow the RFC (corpus README, "Where
# Dovecot is not the rule"). query -> (files added to Dovecot's answer, files removed, rule)
RFC_OVER_DOVECOT = {
    # RFC 3501 section 9: "*" is the largest number in use (59 here), and a seq-range holds
    # every number between its two ends in either order, so 80:* is 59:80 and holds
    # message 59. Dovecot reads it as 80..4294967295, clips that to the mailbox and finds
    # nothing. (Section 9 also says a server SHOULD answer BAD to a sequence number above
    # the message count; Query.highest_seq lets the server do that, see
    # test_highest_seq_lets_the_server_refuse_numbers_beyond_the_mailbox.)
    "80:*": ({"088-deep-nesting.eml"}, set(), "RFC 3501 section 9, seq-range"),
    # RFC 2231 section 5 extends RFC 2047: an encoded-word's charset may carry a language,
    # "=?UTF-8*en?Q?with_language?=", which decodes to "with language". Dovecot decodes the
    # word but treats "UTF-8*en" as an unknown charset. Its decode_utf8_callback then
    # appends the text without case normalization, so a case-insensitive search misses it.
    'SUBJECT "with language"': ({"052-encoded-words-malformed.eml"}, set(),
                                "RFC 2231 section 5, language in encoded-words"),
}


@dataclass
class Message:
    """A SearchMessage. It counts how often header() and raw() are read."""
    seq: int
    uid: int
    flags: frozenset
    recent: bool
    internaldate: float
    size: int
    data: bytes = b""
    reads: dict = field(default_factory=lambda: {"header": 0, "raw": 0})
    kept: tuple | None = None  # what the index keeps (searchtext.kept_texts), if it does

    def header(self) -> bytes:
        self.reads["header"] += 1
        return self._header()

    def _header(self) -> bytes:
        end = re.search(rb"(?:\A|\n)\r?\n", self.data)
        return self.data[:end.end()] if end else self.data

    def raw(self) -> bytes:
        self.reads["raw"] += 1
        return self.data

    def kept_texts(self):
        return self.kept

    def keeping(self) -> "Message":
        """This message as the index holds it since schema 6: with its kept texts."""
        return replace(self, kept=kept_texts(self._header()),
                       reads={"header": 0, "raw": 0})


def _corpus_messages() -> list[Message]:
    messages = []
    for i, entry in enumerate(EXPECTED["messages"], 1):
        with open(os.path.join(CORPUS, entry["file"]), "rb") as f:
            data = f.read()
        when = datetime.datetime.strptime(entry["internaldate"], "%d-%b-%Y %H:%M:%S %z")
        messages.append(Message(seq=i, uid=i, flags=frozenset(entry["flags"]), recent=True,
                                internaldate=when.timestamp(), size=len(data), data=data))
    return messages


MESSAGES = _corpus_messages()
KEEPING = [m.keeping() for m in MESSAGES]
FILES = [entry["file"] for entry in EXPECTED["messages"]]


def tokens(query: str) -> tuple[list, str | None]:
    """The query as Twisted hands it to ISearchableMailbox.search, and its CHARSET.

    Twisted's opt_charset removes "CHARSET x" before the keys are parsed. The recorded
    client sent a non-ASCII quoted string as a literal of its UTF-8 bytes, and
    parseNestedParens inlines a literal as one token. Doing the same here gives the same
    tokens.
    """
    charset = None
    if query.startswith("CHARSET UTF-8 "):
        charset, query = "UTF-8", query[len("CHARSET UTF-8 "):]
    line = b""
    for piece in re.split(r'("[^"]*")', query):
        data = piece.encode("utf-8")
        if piece.startswith('"') and not piece.isascii():
            data = b"{%d}\r\n%s" % (len(data) - 2, data[1:-1])
        line += data
    return parseNestedParens(line), charset


def search(query: list, charset=None, messages=MESSAGES) -> set[str]:
    compiled = compile(query, charset)
    messages = [m for m in messages if _may_match(compiled, m)]
    return {FILES[m.seq - 1] for m in messages if compiled.matches(m, len(messages), len(messages))}


def _may_match(compiled, message) -> bool:
    """The index's narrowing (``messages(containing=compiled.kept_filters)``): SQLite's
    instr() on each kept text; a message with no kept texts is always read."""
    if message.kept is None:
        return True
    return all(message.kept[column] is not None and needle in message.kept[column]
               for column, needle in compiled.kept_filters)


# -- the corpus ---------------------------------------------------------------------------


@pytest.mark.parametrize("messages", [MESSAGES, KEEPING], ids=["header", "kept"])
@pytest.mark.parametrize("case", EXPECTED["searches"],
                         ids=[c["query"] for c in EXPECTED["searches"]])
def test_corpus_query_matches_dovecot(case, messages):
    """Each recorded query finds exactly Dovecot's messages, except where RFC_OVER_DOVECOT
    names an RFC rule that Dovecot breaks: from the header blocks, and from the texts the
    index keeps (messages delivered since schema 6)."""
    query, charset = tokens(case["query"])
    expected = set(case["matches"])
    if case["query"] in RFC_OVER_DOVECOT:
        added, removed, _rule = RFC_OVER_DOVECOT[case["query"]]
        assert added or removed
        assert not (added & expected) and removed <= expected  # still a real difference
        expected = (expected | added) - removed
    assert search(query, charset, messages) == expected


@pytest.mark.parametrize("query, filters", [
    ([b"SUBJECT", b"Dingus"], ((0, "dingus"),)),
    ([b"FROM", b"barry", b"TO", b"x", b"UNSEEN"], ((1, "barry"), (2, "x"))),
    ([[b"CC", b"a"], b"BCC", b"b"], ((3, "a"), (4, "b"))),
    ([b"SUBJECT", b""], ()),                    # "" matches any message with a Subject
    ([b"OR", b"SUBJECT", b"a", b"SEEN"], ()),   # either may match
    ([b"NOT", b"SUBJECT", b"a"], ()),
    ([b"HEADER", b"Subject", b"a"], ()),        # not compared as SUBJECT is
    ([b"BODY", b"a"], ()),
])
def test_kept_filters_name_what_every_match_holds(query, filters):
    """What the index may narrow a search down to: the kept-text keys every match must
    pass (tests above check, on all 81 corpus queries, that no match is lost by it)."""
    assert compile(query).kept_filters == filters


def test_every_named_difference_is_a_corpus_query():
    assert set(RFC_OVER_DOVECOT) <= {case["query"] for case in EXPECTED["searches"]}


def test_literal_tokens_are_what_twisted_produces():
    """The test's query conversion yields one UTF-8 token for a non-ASCII string."""
    assert tokens('CHARSET UTF-8 FROM "André"') == ([b"FROM", "André".encode()], "UTF-8")
    assert tokens('OR (SUBJECT "dingus") NOT (SEEN)') == (
        [b"OR", [b"SUBJECT", b"dingus"], b"NOT", [b"SEEN"]], None)


# -- malformed queries ----------------------------------------------------------------------


@pytest.mark.parametrize("query", [
    [b"FOO"],                            # unknown key
    [None],                              # a bare NIL is no key
    [b"CHARSET", b"UTF-8", b"ALL"],      # Twisted strips CHARSET; here it is a stray word
    [],                                  # no key at all
    [[]],                                # empty parenthesized list
    [b"OR", b"SEEN"],                    # OR with one operand
    [b"OR"],
    [b"NOT"],
    [b"SUBJECT"],                        # missing string
    [b"SUBJECT", [b"x"]],                # a list where a string belongs
    [b"HEADER", b"Subject"],             # HEADER needs name and string
    [b"BEFORE", b"32-Jan-2024"],         # bad dates
    [b"BEFORE", b"1-Foo-2024"],
    [b"SINCE", b"2024-01-01"],
    [b"ON", b"29-Feb-2023"],
    [b"SENTBEFORE"],
    [b"LARGER", b"abc"],                 # bad numbers
    [b"SMALLER", b"-1"],
    [b"LARGER", b"4294967296"],
    [b"1:x"],                            # bad sequence sets
    [b"0"],
    [b"1,,2"],
    [b"1:"],
    [b"UID", b"1:x"],
    [b"UID", [b"1"]],
    [b"KEYWORD", b"\\Seen"],             # a flag keyword is an atom
    [b"KEYWORD", b"a b"],
    [b"SEEN", [b"FLAGGED", b"FOO"]],     # found inside a list, after good keys
])
def test_malformed_query_raises_search_error(query):
    with pytest.raises(SearchError) as caught:
        compile(query)
    message = str(caught.value)
    assert message and all(" " <= c <= "~" for c in message)


def test_error_text_is_safe_for_a_bad_reply():
    """A literal can carry CR LF. The error text echoes it as printable ASCII only, so
    it cannot inject a response line."""
    with pytest.raises(SearchError) as caught:
        compile([b"X\r\n* BYE forged\xff" + b"y" * 100])
    text = str(caught.value)
    assert "\r" not in text and "\n" not in text and len(text) < 80


def test_unknown_charset_is_bad_charset():
    """RFC 3501 section 6.4.4: an unsupported CHARSET gets NO [BADCHARSET], so it has its
    own subclass."""
    with pytest.raises(BadCharset):
        compile([b"SUBJECT", b"x"], "X-NO-SUCH-CHARSET")
    with pytest.raises(BadCharset):
        compile([b"ALL"], "base64")  # a codec, but not a charset
    with pytest.raises(SearchError):
        compile([b"SUBJECT", b"\xff\xfe"], "UTF-8")  # not UTF-8 at all
    assert compile([b"SUBJECT", "café".encode("latin-1")], b"ISO-8859-1")


# -- what a query reads -------------------------------------------------------------------------


@pytest.mark.parametrize("query, needs", [
    ([b"ALL"], (False, False, False)),
    ([b"SEEN", b"UNFLAGGED", b"KEYWORD", b"$Label1", b"UNKEYWORD", b"x"], (False, False, False)),
    ([b"NOT", [b"OR", b"DELETED", b"DRAFT"]], (False, False, False)),
    ([b"NEW", b"OLD", b"RECENT", b"ANSWERED", b"UNANSWERED"], (False, False, False)),
    ([b"UID", b"1:*", b"2,4:7", b"LARGER", b"10", b"SMALLER", b"99"], (False, False, False)),
    ([b"BEFORE", b"1-Jan-2024", b"ON", b"2-Jan-2024", b"SINCE", b"3-Jan-2024"],
     (False, False, False)),
    ([b"BODY", b""], (False, False, False)),           # "" is in every body: nothing to read
    ([b"FROM", b"x"], (True, False, False)),
    ([b"OR", b"SEEN", b"SUBJECT", b""], (True, False, False)),
    ([b"CC", b"x", b"BCC", b"y", b"TO", b"z"], (True, False, False)),
    ([b"HEADER", b"Subject", b"x"], (False, True, False)),  # unsqueezed: not what is kept
    ([b"HEADER", b"X-Mailer", b""], (False, True, False)),
    ([b"SENTON", b"1-Jan-2024"], (False, True, False)),
    ([b"NOT", [b"BODY", b"x"]], (False, False, True)),
    ([b"TEXT", b"x"], (False, True, True)),
    ([b"OR", b"TO", b"x", b"BODY", b"y"], (True, False, True)),
])
def test_needs_kept_texts_header_and_body(query, needs):
    compiled = compile(query)
    assert (compiled.needs_kept, compiled.needs_header, compiled.needs_body) == needs
    # ...and evaluation keeps to it, on every corpus message the index keeps texts for
    for message in KEEPING:
        message = replace(message, reads={"header": 0, "raw": 0})
        compiled.matches(message, 59, 59)
        assert bool(message.reads["header"]) <= needs[1]
        assert bool(message.reads["raw"]) <= needs[2]


def test_each_part_of_the_message_is_read_once():
    compiled = compile([b"SUBJECT", b"zz", b"FROM", b"zz", b"SENTSINCE", b"1-Jan-1970",
                        b"OR", b"BODY", b"zz", b"TEXT", b"zz"])
    message = _corpus_messages()[0]
    compiled.matches(message, 59, 59)
    assert message.reads == {"header": 1, "raw": 0}  # SUBJECT already failed
    message = _corpus_messages()[4]  # 007, subject "... dingus ..." from Barry
    compile([b"SUBJECT", b"dingus", b"FROM", b"barry", b"BODY", b"zz",
             b"TEXT", b"zz"]).matches(message, 59, 59)
    assert message.reads == {"header": 1, "raw": 1}


def test_index_keys_run_before_message_keys():
    """In an AND, flags are checked first, so a seen message's body is never read for
    ``BODY x UNSEEN``."""
    message = _corpus_messages()[0]  # \\Seen
    assert not compile([b"BODY", b"x", b"UNSEEN"]).matches(message, 59, 59)
    assert message.reads == {"header": 0, "raw": 0}


# -- sequence sets and "*" ---------------------------------------------------------------------


def _plain(seq: int, uid: int, **kw) -> Message:
    values = dict(flags=frozenset(), recent=False, internaldate=0.0, size=0)
    values.update(kw)
    return Message(seq=seq, uid=uid, **values)


def _matching(query: list, count: int = 10, uid_step: int = 10) -> list[int]:
    compiled = compile(query)
    return [seq for seq in range(1, count + 1)
            if compiled.matches(_plain(seq, seq * uid_step), count, count * uid_step)]


def test_star_is_the_last_message():
    assert _matching([b"*"]) == [10]
    assert _matching([b"8:*"]) == [8, 9, 10]
    assert _matching([b"*:8"]) == [8, 9, 10]
    assert _matching([b"UID", b"*"]) == [10]
    assert _matching([b"UID", b"95:*"]) == [10]


def test_ranges_hold_both_ends_in_either_order():
    assert _matching([b"4:2"]) == [2, 3, 4]
    assert _matching([b"2,4:5,9,5:4"]) == [2, 4, 5, 9]
    assert _matching([b"UID", b"25:45,100"]) == [3, 4, 10]


def test_a_range_past_the_end_still_holds_the_last_message():
    """RFC 3501 section 9: with 10 messages, 60:* means 10:60, for UIDs and sequence
    numbers alike."""
    assert _matching([b"UID", b"600:*"]) == [10]
    assert _matching([b"60:*"]) == [10]
    assert _matching([b"60:70"]) == []


def test_star_follows_the_mailbox_between_calls():
    """One compiled query serves mailboxes of any size: "*" is resolved on each call."""
    compiled = compile([b"5:*"])
    assert [s for s in range(1, 8) if compiled.matches(_plain(s, s), 7, 7)] == [5, 6, 7]
    assert [s for s in range(1, 4) if compiled.matches(_plain(s, s), 3, 3)] == [3]


def test_highest_seq_lets_the_server_refuse_numbers_beyond_the_mailbox():
    assert compile([b"NOT", [b"OR", b"80:*", b"3"]]).highest_seq == 80
    assert compile([b"*"]).highest_seq == 0
    assert compile([b"UID", b"900"]).highest_seq == 0  # UIDs need not exist


# -- flags, dates and sizes --------------------------------------------------------------------


def test_new_and_old_follow_recent():
    recent_unseen = _plain(1, 1, recent=True)
    recent_seen = _plain(2, 2, recent=True, flags=frozenset({"\\Seen"}))
    old = _plain(3, 3)
    messages = (recent_unseen, recent_seen, old)
    assert [compile([b"NEW"]).matches(m, 3, 3) for m in messages] == [True, False, False]
    assert [compile([b"OLD"]).matches(m, 3, 3) for m in messages] == [False, False, True]


def test_keywords_and_system_flags_ignore_case():
    message = _plain(1, 1, flags=frozenset({"\\SEEN", "$label1"}))
    assert compile([b"seen", b"KEYWORD", b"$LABEL1"]).matches(message, 1, 1)
    assert not compile([b"UNKEYWORD", b"$Label1"]).matches(message, 1, 1)


def test_internal_dates_ignore_the_time():
    noon = datetime.datetime(2024, 1, 10, 23, 59, 59, tzinfo=datetime.timezone.utc).timestamp()
    message = _plain(1, 1, internaldate=noon)
    assert compile([b"ON", b"10-Jan-2024", b"SINCE", b"10-Jan-2024"]).matches(message, 1, 1)
    assert compile([b"BEFORE", b"11-Jan-2024"]).matches(message, 1, 1)
    assert not compile([b"BEFORE", b"10-Jan-2024"]).matches(message, 1, 1)


def test_sizes_are_strict_comparisons():
    message = _plain(1, 1, size=500)
    assert not compile([b"LARGER", b"500"]).matches(message, 1, 1)
    assert not compile([b"SMALLER", b"500"]).matches(message, 1, 1)
    assert compile([b"LARGER", b"499", b"SMALLER", b"501"]).matches(message, 1, 1)


def _with_header(header: bytes) -> Message:
    return _plain(1, 1, data=header + b"\r\n\r\nbody\r\n")


def test_subject_squeezes_folding_white_space():
    """SUBJECT compares with runs of white space made one space, as Dovecot does. A
    folded subject still matches the words on either side of the fold."""
    message = _with_header(b"Subject: first half\r\n      second half")
    assert compile([b"SUBJECT", b"half second"]).matches(message, 1, 1)
    assert not compile([b"HEADER", b"Subject", b"half second"]).matches(message, 1, 1)


def test_white_space_between_encoded_words_is_dropped():
    """RFC 2047 section 6.2: adjacent encoded-words join with no space between them.
    Text between a word and plain text keeps its space."""
    message = _with_header(b"Subject: =?UTF-8?Q?Caf=C3=A9?= =?ISO-8859-1?Q?cr=E8me?= "
                           b"br=C3=BBl=C3=A9e")
    assert compile([b"SUBJECT", "Cafécrème br=".encode()], "UTF-8").matches(message, 1, 1)
    assert not compile([b"SUBJECT", "Café crème".encode()], "UTF-8").matches(message, 1, 1)


def test_encoded_words_are_read_as_dovecot_searches_them():
    """SEARCH decodes more than display does (``decode_words(search=True)``): a word
    glued to other text, and a word in an unknown charset, read as UTF-8."""
    message = _with_header(b"Subject: word=?UTF-8?Q?inside?=word =?X-UNKNOWN?Q?caf=C3=A9?=")
    assert compile([b"SUBJECT", b"wordinsideword"]).matches(message, 1, 1)
    assert compile([b"SUBJECT", "café".encode()], "UTF-8").matches(message, 1, 1)


def test_hostile_nesting_is_cut_off_not_fatal():
    """Attached messages nested 5,000 deep: parts past the cut-off are not searched,
    and nothing overflows the stack."""
    wrapper = b"Content-Type: message/rfc822\r\n\r\n"
    deep = _plain(1, 1, data=wrapper * 5000 + b"Subject: x\r\n\r\nneedle\r\n")
    shallow = _plain(1, 1, data=wrapper * 3 + b"Subject: x\r\n\r\nneedle\r\n")
    assert not compile([b"TEXT", b"needle"]).matches(deep, 1, 1)
    assert compile([b"TEXT", b"needle"]).matches(shallow, 1, 1)


# -- scale -----------------------------------------------------------------------------------------


class IndexOnly:
    """An index row: reading the message would be a bug."""
    __slots__ = ("seq", "uid", "flags", "recent", "internaldate", "size")

    def __init__(self, i: int):
        self.seq, self.uid = i, 3 * i
        self.flags = frozenset({"\\Seen"} if i % 2 else {"$Label1"} if i % 3 else ())
        self.recent = i % 5 == 0
        self.internaldate = 1.7e9 + 60 * i
        self.size = 1000 + i % 5000

    def header(self):
        raise AssertionError("an index-only query read the header")

    def raw(self):
        raise AssertionError("an index-only query read the message")

    def kept_texts(self):
        return None  # an index without kept texts: header() is read


def test_index_only_search_of_100000_messages():
    """Flags, size and UID keys over 100,000 messages finish, and they do not touch a
    message. Rates are measured by hand, not here (DESIGN.md: tests do not time)."""
    count = 100_000
    messages = [IndexOnly(i) for i in range(1, count + 1)]
    compiled = compile([b"OR", b"SEEN", b"KEYWORD", b"$label1", b"LARGER", b"2000",
                        b"UID", b"3000:*", b"NOT", b"DELETED", b"1:*"])
    found = [m.seq for m in messages if compiled.matches(m, count, 3 * count)]
    expected = [m.seq for m in messages
                if ("\\Seen" in m.flags or "$Label1" in m.flags) and m.size > 2000
                and m.uid >= 3000]
    assert found == expected and 0 < len(found) < count


# -- the quick test on header bytes --------------------------------------------------------------


@pytest.mark.parametrize("header, query, found", [
    # The needle is in the bytes: the full test decides.
    (b"Subject: Quarterly report\r\n", [b"SUBJECT", b"REPORT"], True),
    (b"Subject: Quarterly report\r\nX-Report: 1\r\n", [b"SUBJECT", b"x-report"], False),
    # Not in the bytes, and nothing is decoded: no match.
    (b"Subject: Quarterly report\r\n", [b"SUBJECT", b"invoice"], False),
    # Not in the bytes, but decoding makes it: encoded words, quoted pairs, comments.
    (b"Subject: =?utf-8?b?aGVsbG8gd29ybGQ=?=\r\n", [b"SUBJECT", b"hello"], True),
    (b"Subject: =?utf-8?q?Caf=C3=A9_Wien?=\r\n", [b"SUBJECT", b"caf\xc3\xa9"], True),
    (b'From: "Jo\\hn" <x@example.org>\r\n', [b"FROM", b"john"], True),
    (b"From: \xef\xbc\xaaohn <x@example.org>\r\n", [b"FROM", b"john"], True),  # NFKC
    # Folded lines keep their white space: a needle without any cannot span them.
    (b"Subject: Quarterly\r\n report\r\n", [b"SUBJECT", b"quarterlyreport"], False),
    (b"Subject: Quarterly\r\n report\r\n", [b"SUBJECT", b"quarterly report"], True),
])
def test_header_keys_skip_messages_whose_bytes_cannot_match(header, query, found):
    message = _plain(1, 1, data=header + b"\r\nbody\r\n")
    assert compile(query).matches(message, 1, 1) is found
    assert message.reads == {"header": 1, "raw": 0}


@pytest.mark.parametrize("header, query, found", [
    # Only the named field counts: encoded words elsewhere do not stop the quick test.
    (b"From: =?utf-8?q?J=C3=B6rg?= <j@example.org>\r\nSubject: plain\r\n", [b"SUBJECT", b"zebra"],
     False),
    (b"From: Zebra <z@example.org>\r\nSubject: plain\r\n", [b"SUBJECT", b"zebra"], False),
    # Fields are found however they are written: first line indented, space before the
    # colon, continuation lines, several of them.
    (b" Subject: zebra\r\n", [b"SUBJECT", b"zebra"], True),
    (b"Subject : zebra\r\n", [b"SUBJECT", b"zebra"], True),
    (b"Subject: a\r\n\tzebra\r\n", [b"SUBJECT", b"zebra"], True),
    (b"Subject: a\r\nSubject: =?utf-8?b?emVicmE=?=\r\n", [b"SUBJECT", b"zebra"], True),
    (b"X-Subject: zebra\r\n", [b"SUBJECT", b"zebra"], False),
    (b"X-Tag: zebra\r\n", [b"HEADER", b"x-tag", b"ZEBRA"], True),
])
def test_header_quick_test_looks_at_the_named_fields(header, query, found):
    message = _plain(1, 1, data=header + b"\r\nbody\r\n")
    assert compile(query).matches(message, 1, 1) is found


def _multipart(first: bytes, second: bytes, preamble: bytes = b"") -> bytes:
    """Two base64 parts, "quokkaberry" encoded in the second: part headers *first* and
    *second* (each a Content-Type line or nothing) before their encoding."""
    def part(head):
        return (b"--b\r\n" + (head + b"\r\n" if head else b"")
                + b"Content-Transfer-Encoding: base64\r\n\r\ncXVva2thYmVycnk=\r\n")
    return (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + preamble + b"\r\n"
            + part(first) + part(second) + b"--b--\r\n")


@pytest.mark.parametrize("message, found", [
    (b"Subject: a\r\n\r\nA quokkaberry pie\r\n", True),
    (b"Subject: a\r\n\r\nnothing here\r\n", False),
    # Quoted-printable: a soft line break or an escape hides the word from the bytes.
    (b"Content-Transfer-Encoding: quoted-printable\r\n\r\nquokka=\r\nberry\r\n", True),
    (b"Content-Transfer-Encoding: quoted-printable\r\n\r\n=71uokkaberry\r\n", True),
    # Base64, and charsets that turn ASCII bytes into other text, are always parsed.
    (b"Content-Transfer-Encoding: base64\r\n\r\ncXVva2thYmVycnk=\r\n", True),
    (b"Content-Type: text/plain; charset=utf-7\r\n\r\n+AHEAdQBvAGsAawBhAGIAZQByAHIAeQ-\r\n",
     True),
    (b"Content-Type: text/plain; charset=iso-2022-jp\r\n\r\n\x1b$B#q#u#o#k#k#a#b#e#r#r#y\x1b(B\r\n",
     True),
    # The word in a header only is not in the body.
    (b"Subject: quokkaberry\r\n\r\nplain\r\n", False),
    # A base64 text part after a base64 image; one whose type a preamble seems to give;
    # one that is text by default; one in a message/rfc822 part.
    (_multipart(b"Content-Type: image/png", b"Content-Type: text/plain"), True),
    (_multipart(b"Content-Type: image/png", b"", preamble=b"Content-Type: image/png"), True),
    (_multipart(b"Content-Type: image/png", b"Content-Type: message/rfc822"), False),
    (_multipart(b"Content-Type: image/png", b"Content-Type: application/pdf"), False),
])
def test_body_quick_test_never_hides_a_match(message, found):
    msg = _plain(1, 1, data=message)
    assert compile([b"BODY", b"quokkaberry"]).matches(msg, 1, 1) is found
    assert msg.reads["raw"] <= 1


def test_base64_of_attachments_alone_does_not_stop_the_quick_test():
    """A message whose only base64 parts are attachments (not text, not message) is
    judged from its bytes: the word is in no searched text, so no parse is needed."""
    from rmail.imap.searchtext import _base64_only_in_attachments
    assert _base64_only_in_attachments(
        _multipart(b"Content-Type: image/png", b"Content-Type: application/pdf").lower())
    for second in (b"Content-Type: text/plain", b"", b"Content-Type: message/rfc822"):
        assert not _base64_only_in_attachments(
            _multipart(b"Content-Type: image/png", second).lower())
