"""IMAP command arguments: the parsers each command's table names (rmail/imap/arguments.py
and the Twisted ones it keeps: sequence sets, flag and parenthesized lists, search keys),
then what the command does with them before it touches the store: SEARCH compiles its
keys (rmail/imap/search.py) and tests two messages, FETCH parses its items
(rmail/imap/fetch.py) and renders them for a message, folder names are decoded
(rmail/imap/folders.py), LIST patterns compiled, APPEND dates read.

The input is one whole command as ``rmail.imap.framing`` delivers it (literals inline):
``tag [UID] VERB arguments``; it is split the way ``IMAPServer._command`` splits it and
parsed by the server's own ``_dispatch``, in the selected state.  Documented refusals: the
server answers ``IllegalClientResponse`` and ``IllegalIdentifierError`` with BAD,
``search.SearchError`` with BAD (``BadCharset``: NO), ``folders.BadName`` with NO.
Anything else would be answered ``NO [SERVERBUG] Internal error``: a crash.
"""

import datetime
import types

import harness

with harness.instrumented("twisted.mail.imap4"):
    from twisted.mail import imap4
    from rmail import config
    from rmail.imap import fetch as fetching, folders, search
    from rmail.imap.server import IMAPServer

EXPECTED = (imap4.IllegalClientResponse, imap4.IllegalIdentifierError, search.SearchError,
            folders.BadName)

RAW = (b"Return-Path: <alice@example.com>\r\n"
       b"From: Alice <alice@example.com>\r\nTo: bob@example.com, \"Carol\" <carol@example.org>\r\n"
       b"Subject: =?utf-8?q?caf=C3=A9?= report\r\nDate: Tue, 2 Jan 2024 10:00:00 +0100\r\n"
       b"Message-ID: <1@example.com>\r\nMIME-Version: 1.0\r\n"
       b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
       b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello caf\xc3\xa9\r\n"
       b"--b1\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n"
       b"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
       b"\r\nAAECAw==\r\n--b1--\r\n")
_HEADER = RAW[:RAW.find(b"\r\n\r\n") + 2]


class _Message:
    def __init__(self, seq, uid, flags, recent, raw):
        self.seq, self.uid, self.flags, self.recent = seq, uid, frozenset(flags), recent
        self.internaldate = 1704186000.0
        self.size = len(raw)
        self._raw = raw

    def header(self):
        end = self._raw.find(b"\r\n\r\n")
        return self._raw if end < 0 else self._raw[:end + 2]

    def raw(self):
        return self._raw

    def kept_texts(self):
        return None  # an index without kept texts: header() is read


MESSAGES = [_Message(1, 7, ["\\Seen", "$Label1"], False, RAW),
            _Message(2, 9, [], True, b"Subject: no body")]
ENVELOPE, BODY, BODYSTRUCTURE = fetching.describe(RAW)[:3]
INFO = types.SimpleNamespace(uid=7, internaldate=1704186000.0, size=len(RAW),
                             envelope=ENVELOPE, body=BODY, bodystructure=BODYSTRUCTURE)
BARE_INFO = types.SimpleNamespace(uid=9, internaldate=0.0, size=len(RAW),
                                  envelope=None, body=None, bodystructure=None)


class _Factory:
    tls = None
    implicit_tls = False
    allow_plaintext_auth = True

    def __init__(self):
        settings = config.parse({"hostname": "mail.example.com", "domains": ["example.com"]},
                                "/nonexistent/config.json")
        self.append_limit = settings.smtp.max_message_size
        self.limits = settings.imap


SERVER = IMAPServer(_Factory())
SERVER.state = "select"


def _after(verb, args, uid):
    """What the command checks before it calls the store."""
    if verb == b"SEARCH":
        charset, query = args
        compiled = search.compile(query, charset)  # as do_SEARCH
        for message in MESSAGES:
            compiled.matches(message, len(MESSAGES), 9)
    elif verb == b"FETCH":
        items = args[1]
        fetching.wants_summary(items)
        fetching.sets_seen(items)
        for info in (INFO, BARE_INFO):
            fetching.needs_file(items, info)
            fetching.render(items, info, b"(\\Seen)", RAW, uid, seen_now=True)
    elif verb in (b"LIST", b"LSUB"):
        select, reference, patterns, returns = args[0]
        for pattern in patterns:
            folders.pattern(reference, pattern)
    elif verb == b"STATUS":
        folders.decode(args[0])
        [i.upper() for i in args[1]]
    elif verb == b"APPEND":
        wire, flags, date, data = args
        folders.decode(wire)
        if date:
            try:  # as do_APPEND reads it
                datetime.datetime.strptime(date.decode("ascii").strip(),
                                           "%d-%b-%Y %H:%M:%S %z").timestamp()
            except (UnicodeDecodeError, ValueError):
                pass
        [f.decode("utf-8", "replace") for f in flags or ()]
    elif verb == b"RENAME":
        folders.decode(args[0])
        folders.decode(args[1])
    elif verb == b"CREATE":
        folders.decode(args[0].rstrip(b"/"))
    elif verb in (b"DELETE", b"SUBSCRIBE", b"UNSUBSCRIBE", b"SELECT", b"EXAMINE"):
        folders.decode(args[0])
    elif verb in (b"COPY", b"MOVE"):
        folders.decode(args[1])
    elif verb == b"STORE":
        args[1].upper()


def test_one_input(data: bytes):
    parts = data.split(None, 2)  # as IMAPServer._command
    if len(parts) < 2:
        return
    verb = parts[1].upper()
    uid = False
    rest = parts[2] if len(parts) > 2 else None
    if verb == b"UID" and rest:
        sub = rest.split(None, 1)
        verb, uid = sub[0].upper(), True
        rest = sub[1] if len(sub) > 1 else None
    handler = SERVER.lookupCommand(verb)
    if handler is None:
        return
    parsed = []  # the server's own dispatch, with a handler that keeps what it is given
    SERVER._dispatch(b"t", (lambda server, tag, *args, uid=False: parsed.append(args),
                            *handler[1:]), rest, uid)
    (args,) = parsed
    _after(verb, args, uid)


if __name__ == "__main__":
    harness.main(test_one_input, EXPECTED)
