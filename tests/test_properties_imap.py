"""Property-based tests of what the IMAP server parses from the network.

The documented errors, which the server answers with BAD or NO (anything else escaping
is answered ``NO [SERVERBUG]``):

- ``rmail.imap.framing.CommandReader``: never raises; the commands it cuts out of the
  stream do not depend on how the stream is cut into TCP segments;
- argument parsers (``rmail.imap.arguments`` and the Twisted ones it keeps: sequence
  sets, flag lists, search keys ...): ``IllegalClientResponse`` or
  ``IllegalIdentifierError``;
- ``rmail.imap.search.compile``: ``SearchError``;
- ``rmail.imap.fetch.parse``: ``FetchError``; ``rmail.mime.parse_section``: ValueError;
- ``rmail.imap.folders.decode`` (modified UTF-7 mailbox names): ``BadName``;
- the whole server, over a real socket: every command gets its tagged answer, never
  ``[SERVERBUG]``.

Round trips: a UID set written by the server (``_uid_set``) parses back to its UIDs;
SEARCH's sequence sets mean what FETCH's mean; mailbox names survive modified UTF-7;
an IMAP string written by ``rmail.mime.quote`` reads back with the server's own
argument parser; a FETCH section label parses back to itself.
"""

import glob
import re
import socket

import pytest
from hypothesis import example, given, strategies as st
from twisted.mail import imap4

from rmail import mime
from rmail.imap import fetch, folders, search
from rmail.imap.arguments import opt_charset, searchkeys, seqset
from rmail.imap.framing import CommandReader
from rmail.imap.messages import _uid_set
from rmail.imap.server import IMAPServer
from rmail.imap.view import SelectedFolder
from rmail.store.interfaces import InvalidFolderName
from rmail.store.names import folder_name
from tests.conftest import in_reactor
from tests.harness import ROOT, TIMEOUT, USERS, Server
from tests.properties_common import ALICE, PROPERTY, long_digits, mutated

SYNTAX_ERRORS = (imap4.IllegalClientResponse, imap4.IllegalIdentifierError)

# The server's argument parsers are methods that use no state: call them on a bare instance.
PARSERS = IMAPServer.__new__(IMAPServer)

# -- the RFC 3501 grammar, as strategies ---------------------------------------------------

number = st.one_of(st.integers(1, 20), st.integers(1, 2**32 - 1), st.just(0))
seq_number = st.one_of(number.map(str), st.just("*"))
seq_range = st.one_of(seq_number, st.tuples(seq_number, seq_number).map(":".join))
sequence_set = st.lists(seq_range, min_size=1, max_size=5).map(",".join).map(str.encode)

atom = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789$-_.",
               min_size=1, max_size=10).map(str.encode)
quoted = st.binary(max_size=12).map(
    lambda b: b'"' + b.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"')
literal = st.binary(max_size=12).map(lambda b: b"{%d}\r\n%s" % (len(b), b))
astring = st.one_of(atom, quoted, literal)
date = st.builds(lambda d, m, y: f"{d}-{m}-{y}".encode(), st.integers(0, 40),
                 st.sampled_from(["Jan", "feb", "MAR", "Dec", "Foo"]), st.integers(0, 99999))

_SEARCH_SIMPLE = [b"ALL", b"ANSWERED", b"DELETED", b"DRAFT", b"FLAGGED", b"NEW", b"OLD",
                  b"RECENT", b"SEEN", b"UNANSWERED", b"UNDELETED", b"UNDRAFT", b"UNFLAGGED",
                  b"UNSEEN", b"NIL", b"FOO"]
_SEARCH_STRING = [b"BCC", b"BODY", b"CC", b"FROM", b"SUBJECT", b"TEXT", b"TO", b"KEYWORD",
                  b"UNKEYWORD"]
_SEARCH_DATE = [b"BEFORE", b"ON", b"SINCE", b"SENTBEFORE", b"SENTON", b"SENTSINCE"]


def _search_key(inner):
    return st.one_of(
        st.sampled_from(_SEARCH_SIMPLE),
        sequence_set,
        st.tuples(st.sampled_from(_SEARCH_STRING), astring).map(b" ".join),
        st.tuples(st.just(b"HEADER"), astring, astring).map(b" ".join),
        st.tuples(st.sampled_from(_SEARCH_DATE), st.one_of(date, atom)).map(b" ".join),
        st.tuples(st.sampled_from([b"LARGER", b"SMALLER"]),
                  st.one_of(number.map(lambda n: b"%d" % n), atom)).map(b" ".join),
        st.tuples(st.just(b"UID"), sequence_set).map(b" ".join),
        st.tuples(st.just(b"NOT"), inner).map(b" ".join),
        st.tuples(st.just(b"OR"), inner, inner).map(b" ".join),
        st.lists(inner, min_size=1, max_size=3).map(lambda keys: b"(" + b" ".join(keys) + b")"),
    )


search_key = st.recursive(st.sampled_from(_SEARCH_SIMPLE), _search_key, max_leaves=8)
search_program = st.tuples(
    st.sampled_from([b"", b"CHARSET UTF-8 ", b"CHARSET US-ASCII ", b"CHARSET X-NONE ",
                     b"CHARSET "]),
    st.lists(search_key, min_size=1, max_size=4).map(b" ".join)).map(b"".join)

_HEADER_NAMES = st.lists(st.sampled_from([b"From", b"To", b"Subject", b'"X-A b"', b"Date"]),
                         min_size=1, max_size=3).map(b" ".join)
section = st.one_of(
    st.just(b""), st.sampled_from([b"HEADER", b"TEXT", b"1.MIME", b"1", b"2.1", b"1.TEXT"]),
    _HEADER_NAMES.map(lambda names: b"HEADER.FIELDS (" + names + b")"),
    _HEADER_NAMES.map(lambda names: b"1.HEADER.FIELDS.NOT (" + names + b")"))
fetch_att = st.one_of(
    st.sampled_from([b"ALL", b"FAST", b"FULL", b"ENVELOPE", b"FLAGS", b"INTERNALDATE",
                     b"RFC822", b"RFC822.HEADER", b"RFC822.SIZE", b"RFC822.TEXT", b"BODY",
                     b"BODYSTRUCTURE", b"UID"]),
    st.tuples(st.sampled_from([b"BODY[", b"BODY.PEEK["]), section, st.just(b"]"),
              st.one_of(st.just(b""), st.tuples(st.integers(0, 99), st.integers(0, 99))
                        .map(lambda p: b"<%d.%d>" % p))).map(b"".join))
fetch_atts = st.one_of(fetch_att, st.lists(fetch_att, min_size=1, max_size=4).map(
    lambda items: b"(" + b" ".join(items) + b")"))
flag = st.one_of(st.sampled_from([b"\\Seen", b"\\Deleted", b"\\Flagged", b"\\Recent",
                                  b"\\Foo", b"$Label1"]), atom)
flag_list = st.lists(flag, max_size=3).map(lambda flags: b"(" + b" ".join(flags) + b")")
mailbox_name = st.one_of(
    st.sampled_from([b"INBOX", b"inbox", b'"Sent"', b"Archive/2024", b'""', b"&AOk-t&AOk-",
                     b"&-", b"&Jjo-", b"&ZeVnLIqe", b"a//b", b"..", b"%", b"*"]), astring)

# (verb, arguments) of the commands that take arguments in the selected state.
_COMMANDS = {
    b"FETCH": st.tuples(sequence_set, fetch_atts),
    b"UID FETCH": st.tuples(sequence_set, fetch_atts),
    b"STORE": st.tuples(sequence_set, st.sampled_from(
        [b"FLAGS", b"+FLAGS", b"-FLAGS.SILENT", b"FLAGS.SILENT", b"XFLAGS"]), flag_list),
    b"SEARCH": st.tuples(search_program),
    b"UID SEARCH": st.tuples(search_program),
    b"COPY": st.tuples(sequence_set, mailbox_name),
    b"STATUS": st.tuples(mailbox_name, st.lists(st.sampled_from(
        [b"MESSAGES", b"UIDNEXT", b"UNSEEN", b"RECENT", b"UIDVALIDITY", b"SIZE"]), max_size=3)
        .map(lambda items: b"(" + b" ".join(items) + b")")),
    b"LIST": st.tuples(st.sampled_from([b"", b"(SPECIAL-USE) ", b"(SUBSCRIBED) "]),
                       mailbox_name, mailbox_name,
                       st.sampled_from([b"", b" RETURN (SPECIAL-USE)", b" RETURN ("]))
    .map(lambda p: (p[0] + p[1], p[2] + p[3])),
    b"LSUB": st.tuples(mailbox_name, mailbox_name),
    b"EXAMINE": st.tuples(mailbox_name),
    b"SUBSCRIBE": st.tuples(mailbox_name),
    b"ENABLE": st.tuples(atom),
    b"ID": st.tuples(st.sampled_from([b"NIL", b'("name" "x")'])),
    b"NOOP": st.just(()),
}


@st.composite
def command(draw):
    """``(verb, arguments)`` as a client writes them, before mutation."""
    verb = draw(st.sampled_from(sorted(_COMMANDS)))
    return verb, b" ".join(draw(_COMMANDS[verb]))


# -- framing ---------------------------------------------------------------------------------


def _frame(stream: bytes, cuts, append_limit=2000):
    """Feed *stream* in the pieces *cuts* makes; what the reader reported, in order (up to
    a fatal refusal, after which the server closes the connection)."""
    events = []
    reader = CommandReader(lambda cmd: events.append(("command", cmd)),
                           lambda: events.append(("continue",)),
                           lambda tag, why, fatal: events.append(("refuse", tag, why, fatal)),
                           append_limit)
    bounds = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    for start, stop in zip(bounds, bounds[1:]):
        reader.feed(stream[start:stop])
        if events and events[-1][0] == "refuse" and events[-1][3]:
            break
    return events


framing_stream = st.lists(st.one_of(
    st.binary(max_size=20),
    st.sampled_from([b"\r\n", b"\n", b"\r", b"A1 ", b"APPEND ", b"A2 LOGIN ", b"{", b"}",
                     b"+}", b"{0}\r\n", b"{3}\r\n", b"{3+}\r\n", b"{5000}\r\n", b"{5000+}\r\n",
                     b"{99999999999999999999}\r\n", b"x{2}\r\nab\r\n"]),
    st.integers(1, 12).map(lambda n: b"{%d}\r\n" % n)), max_size=15).map(b"".join)


@PROPERTY(100)
@given(stream=framing_stream, cuts=st.lists(st.integers(0, 500), max_size=8))
def test_framing_does_not_depend_on_segments(stream, cuts):
    assert _frame(stream, cuts) == _frame(stream, [])


@PROPERTY(10)
@given(tag=st.binary(min_size=1, max_size=64).filter(lambda t: b"\n" not in t and b" " not in t),
       cuts=st.lists(st.integers(0, 70_000), max_size=3))
def test_framing_long_line(tag, cuts):
    """A line over the limit is refused once, naming its tag, however it arrives, and the
    next command is read as usual."""
    stream = tag + b" NOOP " + b"x" * 66_000 + b"\r\nA2 NOOP\r\n"
    events = _frame(stream, cuts)
    assert events == [("refuse", tag, "command line too long", False), ("command", b"A2 NOOP")]


# -- argument parsing, as the server's dispatch does it ------------------------------------------


def _parse_arguments(state: str, verb: bytes, rest):
    """Run the parsers of the command table entry on *rest* (Twisted's ``__doCommand``);
    the arguments, or None when the state has no such command."""
    entry = getattr(PARSERS, f"{state}_{verb.decode('ascii', 'replace').upper()}", None)
    if entry is None:
        return None
    args = []
    line = rest
    for parser in entry[1:]:
        value, line = parser(PARSERS, line)
        args.append(value)
    if line:
        raise imap4.IllegalClientResponse("Too many arguments")
    return args


def _check_meaning(verb: bytes, args):
    """What the handler does with the parsed arguments before touching the store."""
    verb = verb.upper()
    if verb == b"SEARCH":
        charset, query = args
        try:
            search.compile(query, charset.decode("ascii", "replace") if charset else None)
        except search.SearchError:
            pass
    elif verb == b"FETCH":
        items = args[1]
        fetch.wants_summary(items)
        fetch.sets_seen(items)
        for item in items:
            if item.type == "body" and not fetch._is_structure(item):
                label = fetch.section_label(item)
                assert isinstance(label, bytes)
    elif verb in (b"SELECT", b"EXAMINE", b"CREATE", b"DELETE", b"SUBSCRIBE", b"STATUS"):
        try:
            folders.decode(args[0])
        except folders.BadName:
            pass
    elif verb == b"LIST":
        _, reference, patterns, _ = args[0]
        for pattern in patterns:
            folders.pattern(reference, pattern)


def _dispatch(line: bytes):
    parts = line.split(None, 1)
    if not parts:
        return
    verb, rest = parts[0], parts[1] if len(parts) > 1 else None
    if verb.upper() == b"UID" and rest:
        sub = rest.split(None, 1)
        verb, rest = sub[0], sub[1] if len(sub) > 1 else None
    for state in ("unauth", "auth", "select"):
        try:
            args = _parse_arguments(state, verb, rest)
        except SYNTAX_ERRORS:
            continue
        if args is not None:
            _check_meaning(verb, args)


@PROPERTY(100)
@given(line=st.binary(max_size=120))
def test_commands_from_random_bytes(line):
    _dispatch(line)


@PROPERTY(100)
@given(cmd=command().flatmap(lambda c: mutated(st.just(c[0] + b" " + c[1]))))
@example(cmd=b"SEARCH {abc}")
@example(cmd=b"SEARCH " + b"(" * 3000 + b"ALL" + b")" * 3000)
@example(cmd=b"SEARCH " + b"NOT " * 3000 + b"ALL")
@example(cmd=b"SEARCH " + b"9" * 5000)
@example(cmd=b"SEARCH LARGER " + b"9" * 5000)
@example(cmd=b"FETCH 1 BODY[" + b"9" * 5000 + b"]")
@example(cmd=b"FETCH")
@example(cmd=b"STORE 1 FLAGS")
@example(cmd=b"SEARCH")
@example(cmd=b"STATUS INBOX ((MESSAGES)")
def test_commands_from_almost_valid_commands(cmd):
    _dispatch(cmd)


@PROPERTY(15)
@given(verb=st.sampled_from(sorted({v.split()[-1] for v in _COMMANDS} | {b"SELECT", b"CREATE",
                                                                        b"APPEND", b"LOGIN"})),
       digits=long_digits())
def test_commands_with_huge_numbers(verb, digits):
    for rest in (digits, digits + b":*", b"1 " + digits, b"(" + digits + b")",
                 b"LARGER " + digits, b"1 BODY[" + digits + b"]<" + digits + b">",
                 b"{" + digits + b"}\r\n"):
        _dispatch(verb + b" " + rest)


@PROPERTY(60)
@given(query=search_program.flatmap(lambda q: mutated(st.just(q))))
def test_search_compiles_or_refuses(query):
    """Parsed search keys compile or raise SearchError; a compiled query runs on a message
    of any content."""
    try:
        charset, keys = opt_charset(PARSERS, query)
        tokens, _ = searchkeys(PARSERS, keys)
    except SYNTAX_ERRORS:
        return
    try:
        compiled = search.compile(tokens, charset)
    except search.SearchError:
        return
    assert compiled.matches(_Message(), 3, 10) in (True, False)


class _Message:
    """A stored message as SEARCH sees it (rmail.imap.search.SearchMessage)."""

    seq, uid, flags, recent, internaldate, size = 2, 7, frozenset({"\\Seen", "$Label1"}), True, \
        1.7e9, 321
    _raw = (b"From: A <a@example.com>\r\nTo: b@example.org\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n"
            b"Date: Fri, 4 May 2001 14:05:44 -0400\r\n\r\nBody text\r\n")

    def header(self):
        return self._raw.split(b"\r\n\r\n")[0] + b"\r\n"

    def raw(self):
        return self._raw

    def kept_texts(self):
        return None  # an index without kept texts: header() is read


# -- sequence sets ---------------------------------------------------------------------------------


@PROPERTY(50)
@given(uids=st.lists(st.integers(1, 2**32 - 1), min_size=1, max_size=30))
def test_uid_set_round_trip(uids):
    """COPYUID's UID sets read back (as a client's parser reads them) to the same UIDs."""
    uids = sorted(set(uids))
    parsed = imap4.parseIdList(_uid_set(uids))
    got = set()
    for start, end in parsed.ranges:
        got.update(range(start, end + 1))
    assert got == set(uids)


@PROPERTY(100)
@given(text=sequence_set, star=st.integers(1, 50))
@example(text=b"*:*", star=1)
def test_sequence_sets_mean_the_same_in_search_and_fetch(text, star):
    """A sequence set names the same messages in SEARCH as in FETCH or STORE."""
    try:
        numbers = search._number_set(text, "sequence set")
    except search.SearchError:
        numbers = None
    try:
        parsed, _ = seqset(PARSERS, text)
    except SYNTAX_ERRORS:
        assert numbers is None
        return
    assert numbers is not None
    uids = list(range(1, star + 1))
    view = SelectedFolder("INBOX", _Status(), [(u, frozenset()) for u in uids], False)
    named = set(view.resolve(parsed, True))
    if numbers is not None:
        assert {n for n in uids if numbers.contains(n, star)} == named
    try:
        assert set(view.resolve(parsed, False)) <= set(uids)
    except IndexError:
        pass  # a sequence number above the message count: BAD, as RFC 3501 allows


@PROPERTY(80)
@given(text=mutated(sequence_set), uids=st.lists(st.integers(1, 100), max_size=10, unique=True))
@example(text=b"9" * 5000, uids=[1])
def test_sequence_set_parsing(text, uids):
    try:
        parsed, _ = seqset(PARSERS, text)
    except SYNTAX_ERRORS:
        return
    view = SelectedFolder("INBOX", _Status(), [(u, frozenset()) for u in sorted(uids)], False)
    assert set(view.resolve(parsed, True)) <= set(uids)
    try:
        view.resolve(parsed, False)
    except IndexError:
        pass


class _Status:
    uidvalidity, uidnext = 1, 101


# -- FETCH items and sections --------------------------------------------------------------------


@PROPERTY(80)
@given(items=st.one_of(st.binary(max_size=60), mutated(fetch_atts)))
def test_fetch_items_parse_or_refuse(items):
    try:
        parsed = fetch.parse(items)
    except fetch.FetchError:
        return
    for item in parsed:
        assert item.type


@PROPERTY(60)
@given(spec=st.one_of(st.text(max_size=40), mutated(section).map(
    lambda b: b.decode("latin-1"))))
@example(spec="9" * 5000)
def test_section_spec_parses_or_value_error(spec):
    try:
        part, kind, fields = mime.parse_section(spec)
    except ValueError:
        return
    assert all(isinstance(n, int) and n > 0 for n in part)
    assert kind in (None, "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME")


@PROPERTY(60)
@given(item=st.tuples(st.sampled_from([b"BODY[", b"BODY.PEEK["]), section, st.just(b"]"))
       .map(b"".join))
def test_section_label_round_trip(item):
    """The label FETCH answers with parses back to the same section."""
    (parsed,) = fetch.parse(item)
    label = fetch.section_label(parsed)
    (again,) = fetch.parse(b"BODY[" + label + b"]")
    assert fetch.section_label(again) == label


# -- mailbox names and IMAP strings --------------------------------------------------------------


@PROPERTY(80)
@given(wire=st.one_of(st.binary(max_size=40), mutated(mailbox_name)))
def test_mailbox_names_decode_or_bad_name(wire):
    try:
        name = folders.decode(wire)
    except folders.BadName:
        return
    assert name == folder_name(name)


@PROPERTY(100)
@given(name=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30))
@example(name="&")
@example(name="Entwürfe/2024 & später")
def test_mailbox_name_round_trip(name):
    """Every name the store accepts goes out in modified UTF-7 and comes back the same,
    and its quoted form reads back with the server's own string parser."""
    try:
        canonical = folder_name(name)
    except InvalidFolderName:
        return
    wire = folders.encode(canonical)
    assert wire.isascii()
    assert folders.decode(wire) == canonical
    assert PARSERS.arg_astring(folders.quoted(canonical)) == (wire, b"")


@PROPERTY(100)
@given(value=st.binary(max_size=60), tail=st.sampled_from([b"", b" rest", b" {3}\r\nabc"]))
def test_imap_string_round_trip(value, tail):
    """What ``mime.quote`` writes, the server's astring parser reads back (NUL aside)."""
    wire = mime.quote(value)
    assert PARSERS.arg_astring(wire + tail) == (value.replace(b"\0", b"\x80"), tail[1:])


@PROPERTY(80)
@given(line=st.one_of(st.binary(max_size=60), mutated(astring.map(lambda s: s + b" x")),
                      mutated(st.tuples(astring, astring).map(b" ".join))))
def test_astring_parses_or_refuses(line):
    for parser in (PARSERS.arg_astring, PARSERS.arg_literal, PARSERS.list_args):
        try:
            value, rest = parser(line)
        except SYNTAX_ERRORS:
            continue
        assert isinstance(rest, bytes)


# -- the server, over a real socket --------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("properties-imap"), in_reactor, users=ALICE)
    srv.start()
    for path in sorted(glob.glob(ROOT + "/tests/corpus/*.eml"))[:12]:
        with open(path, "rb") as f:
            raw = f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        in_reactor(_append, srv.store, "alice@example.com", raw)
    yield srv
    srv.stop()


def _append(store, address, raw):
    writer = store.new_message()
    writer.write(raw)
    d = writer.finish()
    return d.addCallback(lambda _: store.user(address).append("INBOX", writer))


class _IMAP:
    """A raw IMAP session: send a command, read up to its tagged answer."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.f = self.sock.makefile("rb")
        self.tags = 0
        assert self.f.readline().startswith(b"* OK")

    def command(self, text: bytes) -> list[bytes]:
        self.tags += 1
        tag = b"P%d" % self.tags
        self.sock.sendall(tag + b" " + text + b"\r\n")
        lines = []
        while True:
            line = self.f.readline()
            if not line:
                lines.append(b"<closed>")
                return lines
            m = re.search(rb"\{(\d+)\}\r\n$", line)
            if m:
                line += self.f.read(int(m.group(1)))
            lines.append(line)
            if line.startswith(b"+ ") and b"literal" not in line:
                self.sock.sendall(b"DONE\r\n")  # IDLE: end it
            if line.startswith(tag + b" "):
                return lines

    def close(self):
        self.f.close()
        self.sock.close()


def _wire_command(verb: bytes, args: bytes) -> bytes:
    """A command line that cannot leave the server waiting for literal bytes never sent."""
    line = verb + b" " + args
    pieces = re.split(rb"(\{\d+\+?\}\r\n)", line)
    out = bytearray()
    i = 0
    while i < len(pieces):
        text = pieces[i].replace(b"\r", b" ").replace(b"\n", b" ")
        out += text
        if i + 1 < len(pieces):
            size = int(re.match(rb"\{(\d+)", pieces[i + 1]).group(1))
            data = pieces[i + 2][:size] if i + 2 < len(pieces) else b""
            data = data.ljust(size, b"x")
            out += b"{%d}\r\n" % size + data
            pieces[i + 2:i + 3] = [pieces[i + 2][size:]] if i + 2 < len(pieces) else []
            i += 2
        else:
            i += 1
    if re.search(rb"\{\d+\+?\}$", bytes(out)):
        out += b" x"
    return bytes(out)


server_command = st.one_of(
    st.binary(max_size=80).map(lambda b: _wire_command(b"", b)[1:]),
    command().flatmap(lambda c: mutated(st.just(c[1])).map(lambda a: _wire_command(c[0], a))),
)


@PROPERTY(30)
@given(commands=st.lists(server_command, min_size=1, max_size=3))
@example(commands=[b"SEARCH {abc}"])
@example(commands=[b"FETCH"])
@example(commands=[b"STORE 1 +FLAGS", b"UID SEARCH", b"FETCH *:* (FLAGS)"])
@example(commands=[b"SEARCH " + b"(" * 2000 + b"ALL" + b")" * 2000])
def test_selected_session_answers_every_command(server, commands):
    client = _IMAP(server.port("imap"))
    try:
        assert client.command(b'LOGIN alice@example.com "%s"'
                              % USERS["alice@example.com"].encode())[-1].split()[1] == b"OK"
        assert client.command(b"SELECT INBOX")[-1].split()[1] == b"OK"
        for text in commands + [b"NOOP"]:
            lines = client.command(text)
            assert not any(b"SERVERBUG" in line for line in lines), (text, lines)
            if lines[-1] == b"<closed>" or any(line.startswith(b"* BYE") for line in lines):
                return
            assert lines[-1].split()[1] in (b"OK", b"NO", b"BAD"), (text, lines)
    finally:
        client.close()
