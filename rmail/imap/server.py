"""The IMAP server protocol: Twisted's IMAP4Server, extended for real clients.

Kept from Twisted: the state/command tables (``unauth_X``, ``auth_X``, ``select_X``),
argument dispatch and parsers (``arg_seqset``, ``arg_plist``, ``parseNestedParens``,
``_FetchParser``), response helpers and the idle timeout.  Replaced, each for a reason
TWISTED.md records on the stock class:

- framing (``rmail.imap.framing``): whole commands with their literals, LITERAL+,
  limits checked before ``+`` is sent (items 20, 23, 24);
- one command at a time, answered in order; unsolicited updates only at command
  boundaries or while IDLE (RFC 3501 7.4.1) from ``rmail.imap.view``;
- STARTTLS discards pipelined input (item 19); IDLE ends only on DONE (item 18);
- SELECT sends UIDNEXT, PERMANENTFLAGS, UNSEEN (item 17); STATUS validates its items
  (item 14); failures answer NO with response codes, never BAD-by-accident (item 15);
- FETCH renders from the stored bytes (``rmail.imap.fetch``; items 11, 12, 16, 25, 26);
- SEARCH evaluates with ``rmail.imap.search`` (item 13);
- MOVE, UIDPLUS, UNSELECT, ENABLE, ID, SPECIAL-USE (item 28); hub listeners are
  removed when a session ends (item 21); store calls are Deferreds throughout (22).
"""

import base64
import binascii
import re
import secrets
from email.utils import parsedate_tz, mktime_tz

from twisted.cred import error as cred_error
from twisted.cred.credentials import UsernamePassword
from twisted.internet import defer, reactor, threads
from twisted.logger import Logger
from twisted.mail import imap4

from rmail import auth
from rmail.imap import fetch as fetching
from rmail.imap import folders
from rmail.imap.framing import CommandReader
from rmail.imap.view import SelectedFolder
from rmail.store import names
from rmail.store.interfaces import (
    FolderExists, FolderNotDeletable, InvalidFlag, InvalidFolderName, NoSuchFolder, StoreError,
)

log = Logger(namespace="rmail.imap")

_BARE_NEWLINE = re.compile(rb"\r\n|\r|\n")
SYSTEM_FLAGS = b"\\Answered \\Flagged \\Deleted \\Seen \\Draft"
STATUS_ITEMS = (b"MESSAGES", b"RECENT", b"UIDNEXT", b"UIDVALIDITY", b"UNSEEN")
# Commands whose answers must not carry EXPUNGE (RFC 3501 7.4.1).
_NO_EXPUNGE = (b"FETCH", b"STORE", b"SEARCH")


def _quote(value: bytes) -> bytes:
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


class IMAPServer(imap4.IMAP4Server):
    IDENT = b"rmail IMAP4rev1 ready"

    def __init__(self, factory):
        super().__init__(chal={}, contextFactory=factory.tls)
        self.factory = factory
        self.session = secrets.token_hex(4)
        self.reader = CommandReader(self._command, self._continue, self._refuse,
                                    factory.append_limit)
        self._busy = None  # (tag, verb, uid) of the command being answered
        self._idle = None  # tag of a running IDLE
        self._sasl = None  # tag of an AUTHENTICATE waiting for its response
        self._closing = False
        self._processing = False
        self.user = None
        self.mailstore = None
        self.view = None

    # -- connection --------------------------------------------------------------------

    @property
    def remote(self) -> str:
        return getattr(self.transport.getPeer(), "host", "?")

    @property
    def secure(self) -> bool:
        return self.startedTLS or self.factory.implicit_tls

    def connectionMade(self):
        self.tags = {}
        self.canStartTLS = self.factory.tls is not None and not self.factory.implicit_tls
        self.factory.sessions.add(self)
        self.setTimeout(self.timeOut)
        self.sendServerGreeting()

    def connectionLost(self, reason=None):
        self.setTimeout(None)
        self.factory.sessions.discard(self)
        self._unselect()

    def timeoutConnection(self):
        self.sendLine(b"* BYE Autologout; connection idle too long")
        self._close()

    def _close(self):
        self._closing = True
        self.reader.buffer = b""
        self.transport.loseConnection()

    def shut_down(self):
        self.sendLine(b"* BYE Server shutting down")
        self._close()

    def capabilities(self):
        caps = {}
        if self.canStartTLS and not self.secure:
            caps[b"STARTTLS"] = None
        if self.secure or self.factory.allow_plaintext_auth:
            caps[b"AUTH"] = [b"PLAIN"]
        else:
            caps[b"LOGINDISABLED"] = None
        for name in (b"LITERAL+", b"SASL-IR", b"IDLE", b"NAMESPACE", b"UIDPLUS", b"MOVE",
                     b"UNSELECT", b"SPECIAL-USE", b"ID", b"ENABLE", b"CHILDREN"):
            caps[name] = None
        caps[b"APPENDLIMIT=%d" % self.factory.append_limit] = None
        return caps

    # -- input: one whole command at a time ----------------------------------------------

    def dataReceived(self, data):
        self.reader.buffer += data
        self._process()

    def _process(self):
        if self._processing:
            return
        self._processing = True
        try:
            while not self._closing and self.reader.buffer:
                if self._idle is not None:
                    if not self._idle_line():
                        break
                    continue
                if self._busy is not None:
                    break
                before = len(self.reader.buffer)
                self.reader.feed(b"", ready=lambda: self._busy is None and self._idle is None
                                 and not self._closing)
                if len(self.reader.buffer) == before:
                    break
        finally:
            self._processing = False

    def _continue(self):
        self.sendContinuationRequest(b"Ready for literal data")

    def _refuse(self, tag, why, fatal):
        log.info("imap: session={session} client={client}: {why}", session=self.session,
                 client=self.remote, why=why)
        if fatal:
            self.sendLine(b"* BYE " + why.encode())
            self._close()
        elif "literal" in why:
            self.sendNegativeResponse(tag, b"[TOOBIG] " + why.encode())
        else:
            self.sendBadResponse(tag, why.encode())

    def _command(self, line: bytes):
        self.resetTimeout()
        if self._sasl is not None:
            return self._auth_response(line)
        parts = line.split(None, 2)
        if len(parts) < 2:
            return self.sendBadResponse(parts[0] if parts else None, b"Missing command")
        tag, verb = parts[0], parts[1].upper()
        uid = False
        rest = parts[2] if len(parts) > 2 else None
        if verb == b"UID" and rest:
            sub = rest.split(None, 1)
            verb, uid = sub[0].upper(), True
            rest = sub[1] if len(sub) > 1 else None
        self._busy = (tag, verb, uid)
        try:
            handler = self.lookupCommand(verb)
            if handler is None or (uid and verb not in (b"FETCH", b"STORE", b"SEARCH", b"COPY",
                                                          b"MOVE", b"EXPUNGE")):
                self.sendBadResponse(tag, b"Unknown command or not valid in this state")
                return
            self.dispatchCommand(tag, verb, rest, uid=uid if uid else None)
        except (imap4.IllegalClientResponse, imap4.IllegalIdentifierError) as e:
            self.sendBadResponse(tag, b"Syntax error: " + str(e).encode("utf-8", "replace"))
        except Exception:
            log.failure("imap: session={session}: {verb} failed", session=self.session, verb=verb)
            self.sendNegativeResponse(tag, b"[SERVERBUG] Internal error (session %s)"
                                      % self.session.encode())

    def lookupCommand(self, cmd):
        return getattr(self, f"{self.state}_{cmd.decode('ascii', 'replace').upper()}", None)

    def _respond(self, state, tag, message):
        final = tag is not None and tag != b"*" and state in (b"OK", b"NO", b"BAD")
        if final and self.view is not None:
            verb = self._busy[1] if self._busy else b""
            uid = self._busy[2] if self._busy else False
            for line in self.view.flush(allow_expunge=uid or verb not in _NO_EXPUNGE):
                self.sendLine(b"* " + line)
        super()._respond(state, tag, message)
        if final and self._busy is not None and self._busy[0] == tag:
            self._busy = None
            if self.reader.buffer:
                reactor.callLater(0, self._process)

    def _fail(self, tag, failure, what: bytes):
        """Answer a failed store call: NO with a response code, never a traceback."""
        if failure.check(NoSuchFolder):
            code = b"[TRYCREATE] " if what in (b"APPEND", b"COPY", b"MOVE") else b"[NONEXISTENT] "
            return self.sendNegativeResponse(tag, code + b"No such mailbox")
        if failure.check(FolderExists):
            return self.sendNegativeResponse(tag, b"[ALREADYEXISTS] Mailbox exists")
        if failure.check(InvalidFolderName, folders.BadName, InvalidFlag, FolderNotDeletable,
                         StoreError):
            return self.sendNegativeResponse(tag, str(failure.value).encode("utf-8", "replace"))
        if failure.check(OSError):
            log.failure("imap: session={session}: storage error", failure, session=self.session)
            return self.sendNegativeResponse(tag, b"[SERVERBUG] Storage error, try again later")
        log.failure("imap: session={session}: {what} failed", failure, session=self.session,
                    what=what)
        self.sendNegativeResponse(tag, b"[SERVERBUG] Internal error (session %s)"
                                  % self.session.encode())

    # -- back-pressure while a FETCH streams (IPushProducer for the transport) -------

    _drained = None

    def pauseProducing(self):
        if self._drained is None:
            self._drained = defer.Deferred()

    def resumeProducing(self):
        drained, self._drained = self._drained, None
        if drained is not None:
            drained.callback(None)

    def stopProducing(self):
        self._closing = True
        self.resumeProducing()

    # -- literals inline (see framing.py) ---------------------------------------------------

    def _inline_literal(self, line):
        head, _, rest = line.partition(b"}\r\n")
        try:
            size = int(head[1:])
        except ValueError:
            raise imap4.IllegalClientResponse("Malformed literal")
        data, rest = rest[:size], rest[size:]
        if len(data) != size:
            raise imap4.IllegalClientResponse("Short literal")
        return data, rest[1:] if rest.startswith(b" ") else rest

    def arg_astring(self, line, final=False):
        """An atom, quoted string or literal; the rest of the line is left as it is
        (Twisted's version strips it, which cuts the CRLF off a following literal)."""
        line = (line or b"").lstrip(b" ")
        if not line:
            raise imap4.IllegalClientResponse("Missing argument")
        if line[:1] == b"{":
            return self._inline_literal(line)
        if line[:1] == b'"':
            out, i = bytearray(), 1
            while i < len(line):
                c = line[i:i + 1]
                if c == b"\\" and i + 1 < len(line):
                    out += line[i + 1:i + 2]
                    i += 2
                    continue
                if c == b'"':
                    rest = line[i + 1:]
                    return bytes(out), rest[1:] if rest.startswith(b" ") else rest
                out += c
                i += 1
            raise imap4.IllegalClientResponse("Unmatched quotes")
        arg, _, rest = line.partition(b" ")
        return arg, rest

    def _IMAP4Server__ebDispatch(self, failure, tag):
        """Twisted's dispatch errback, which would send exception text as BAD."""
        if failure.check(imap4.IllegalClientResponse, imap4.IllegalIdentifierError):
            return self.sendBadResponse(tag, b"Syntax error: " + str(failure.value).encode(
                "utf-8", "replace"))
        self._fail(tag, failure, b"command")

    def arg_literal(self, line):
        if not line or line[:1] != b"{":
            raise imap4.IllegalClientResponse("Missing literal")
        return self._inline_literal(line)

    # -- not authenticated -------------------------------------------------------------------

    def do_STARTTLS(self, tag):
        if self.secure or not self.canStartTLS:
            return self.sendBadResponse(tag, b"TLS already active or not available")
        self.sendPositiveResponse(tag, b"Begin TLS negotiation now")
        self.reader.buffer = b""  # RFC 3501 6.2.1: nothing sent before TLS counts
        self.transport.startTLS(self.factory.tls)
        self.startedTLS = True

    unauth_STARTTLS = (do_STARTTLS,)

    def do_LOGIN(self, tag, user, passwd):
        if not (self.secure or self.factory.allow_plaintext_auth):
            return self.sendNegativeResponse(tag, b"[PRIVACYREQUIRED] LOGIN needs STARTTLS first")
        self._login(tag, UsernamePassword(user, passwd))

    unauth_LOGIN = (do_LOGIN, arg_astring, imap4.IMAP4Server.arg_finalastring)

    def do_AUTHENTICATE(self, tag, mechanism, initial=None):
        if mechanism.upper() != b"PLAIN":
            return self.sendNegativeResponse(tag, b"Unsupported authentication mechanism")
        if not (self.secure or self.factory.allow_plaintext_auth):
            return self.sendNegativeResponse(tag, b"[PRIVACYREQUIRED] Use STARTTLS first")
        if initial is not None:
            return self._auth_response(initial, tag)
        self._sasl = tag
        self.sendContinuationRequest(b"")

    def _auth_args(self, line):
        mechanism, _, initial = (line or b"").strip().partition(b" ")
        if not mechanism:
            raise imap4.IllegalClientResponse("Missing mechanism")
        return (mechanism, initial.strip() or None), b""

    def _dispatch_authenticate(self, tag, args):
        mechanism, initial = args
        self.do_AUTHENTICATE(tag, mechanism, initial)

    unauth_AUTHENTICATE = (_dispatch_authenticate, _auth_args)

    def _auth_response(self, line, tag=None):
        tag, self._sasl = tag or self._sasl, None
        if line.strip() == b"*":
            return self.sendBadResponse(tag, b"AUTHENTICATE cancelled")
        try:
            decoded = b"" if line.strip() == b"=" else base64.b64decode(line.strip(), validate=True)
            authzid, authcid, password = decoded.split(b"\0")
        except (binascii.Error, ValueError):
            return self.sendBadResponse(tag, b"Malformed AUTHENTICATE PLAIN response")
        if authzid and authzid != authcid:
            return self.sendNegativeResponse(tag, b"[AUTHORIZATIONFAILED] No proxy logins")
        self._login(tag, UsernamePassword(authcid, password))

    def _login(self, tag, credentials):
        d = self.factory.authenticator.login(credentials, self.remote, "imap")

        def ok(user):
            self.user = user
            self.mailstore = self.factory.store.user(user.address)
            self.state = "auth"
            self.setTimeout(self.POSTAUTH_TIMEOUT)
            self.sendPositiveResponse(
                tag, b"[CAPABILITY " + b" ".join(self.listCapabilities()) + b"] Logged in")

        def failed(f):
            if f.check(auth.TooManyFailures):
                self.sendNegativeResponse(tag, b"[UNAVAILABLE] Too many failed logins, try later")
            elif f.check(cred_error.UnauthorizedLogin):
                self.sendNegativeResponse(tag, b"[AUTHENTICATIONFAILED] Authentication failed")
            else:
                self._fail(tag, f, b"LOGIN")
        d.addCallbacks(ok, failed)

    # -- any state -----------------------------------------------------------------------------

    def do_ID(self, tag, args=None):
        self.sendUntaggedResponse(b'ID ("name" "rmail" "version" "%s")'
                                  % __import__("rmail").__version__.encode())
        self.sendPositiveResponse(tag, b"ID completed")

    def _rest(self, line):
        return line or b"", b""

    unauth_ID = auth_ID = select_ID = (do_ID, _rest)

    def do_LOGOUT(self, tag):
        self.sendUntaggedResponse(b"BYE rmail logging out")
        self.sendPositiveResponse(tag, b"LOGOUT completed")
        self._close()

    unauth_LOGOUT = auth_LOGOUT = select_LOGOUT = (do_LOGOUT,)

    def do_NOOP(self, tag):
        self.sendPositiveResponse(tag, b"NOOP completed")

    unauth_NOOP = auth_NOOP = select_NOOP = (do_NOOP,)
    select_CHECK = (do_NOOP,)

    # -- authenticated ---------------------------------------------------------------------------

    def do_ENABLE(self, tag, args=None):
        self.sendUntaggedResponse(b"ENABLED")
        self.sendPositiveResponse(tag, b"ENABLE completed")

    auth_ENABLE = select_ENABLE = (do_ENABLE, _rest)

    def do_NAMESPACE(self, tag):
        self.sendUntaggedResponse(b'NAMESPACE (("" "/")) NIL NIL')
        self.sendPositiveResponse(tag, b"NAMESPACE completed")

    auth_NAMESPACE = select_NAMESPACE = (do_NAMESPACE,)

    def _name(self, tag, wire):
        try:
            return folders.decode(wire)
        except folders.BadName as e:
            self.sendNegativeResponse(tag, str(e).encode("utf-8", "replace"))
            return None

    def _store_call(self, tag, what, d, ok_text):
        d.addCallbacks(lambda _: self.sendPositiveResponse(tag, ok_text),
                       lambda f: self._fail(tag, f, what))

    def do_CREATE(self, tag, wire):
        name = self._name(tag, wire.rstrip(b"/"))
        if name is not None:
            self._store_call(tag, b"CREATE", self.mailstore.create_folder(name), b"CREATE completed")

    auth_CREATE = select_CREATE = (do_CREATE, imap4.IMAP4Server.arg_finalastring)

    def do_DELETE(self, tag, wire):
        name = self._name(tag, wire)
        if name is not None:
            if self.view is not None and self.view.name == name:
                self._unselect()
                self.state = "auth"
            self._store_call(tag, b"DELETE", self.mailstore.delete_folder(name), b"DELETE completed")

    auth_DELETE = select_DELETE = (do_DELETE, imap4.IMAP4Server.arg_finalastring)

    def do_RENAME(self, tag, old_wire, new_wire):
        old, new = self._name(tag, old_wire), None
        if old is not None:
            new = self._name(tag, new_wire)
        if old is not None and new is not None:
            self._store_call(tag, b"RENAME", self.mailstore.rename_folder(old, new),
                             b"RENAME completed")

    auth_RENAME = select_RENAME = (do_RENAME, arg_astring,
                                   imap4.IMAP4Server.arg_finalastring)

    def _subscribe(self, tag, wire, subscribed):
        name = self._name(tag, wire)
        if name is not None:
            self._store_call(tag, b"SUBSCRIBE", self.mailstore.subscribe(name, subscribed),
                             b"SUBSCRIBE completed" if subscribed else b"UNSUBSCRIBE completed")

    def do_SUBSCRIBE(self, tag, wire):
        self._subscribe(tag, wire, True)

    def do_UNSUBSCRIBE(self, tag, wire):
        self._subscribe(tag, wire, False)

    auth_SUBSCRIBE = select_SUBSCRIBE = (do_SUBSCRIBE, imap4.IMAP4Server.arg_finalastring)
    auth_UNSUBSCRIBE = select_UNSUBSCRIBE = (do_UNSUBSCRIBE, imap4.IMAP4Server.arg_finalastring)

    def _list(self, tag, verb, reference, patterns, select=(), returns=()):
        """LIST/LSUB, with RFC 5258's basic selection and return options as RFC 6154 uses
        them: ``LIST (SPECIAL-USE) "" "*"`` and ``RETURN (SPECIAL-USE SUBSCRIBED)``."""
        subscribed_only = verb == b"LSUB" or b"SUBSCRIBED" in select
        special_only = b"SPECIAL-USE" in select
        show_subscribed = b"SUBSCRIBED" in select or b"SUBSCRIBED" in returns
        if patterns == [b""]:
            self.sendUntaggedResponse(verb + b' (\\Noselect) "/" ""')
            return self.sendPositiveResponse(tag, verb + b" completed")
        regexes = [folders.pattern(reference, p) for p in patterns]

        def listed(infos):
            all_names = [f.name for f in infos]
            for info in infos:
                if (subscribed_only and not info.subscribed) or \
                        (special_only and not info.special_use):
                    continue
                wire = folders.encode(info.name).decode("latin-1")
                if not any(r.fullmatch(wire) for r in regexes):
                    continue
                attrs = folders.attributes(info, all_names)
                if show_subscribed and info.subscribed and verb == b"LIST":
                    attrs = attrs[:-1] + b" \\Subscribed)"
                self.sendUntaggedResponse(verb + b" " + attrs + b' "/" ' + folders.quoted(info.name))
            self.sendPositiveResponse(tag, verb + b" completed")
        self.mailstore.folders().addCallbacks(listed, lambda f: self._fail(tag, f, verb))

    def _list_args(self, line):
        """``[(selection)] reference (pattern | (patterns)) [RETURN (options)]``."""
        line = (line or b"").lstrip(b" ")
        select = ()
        if line.startswith(b"("):
            close = line.find(b")")
            if close < 0:
                raise imap4.IllegalClientResponse("Mismatched parenthesis")
            select, line = tuple(line[1:close].upper().split()), line[close + 1:]
        reference, line = self.arg_astring(line)
        line = line.lstrip(b" ")
        if line.startswith(b"("):
            close = line.find(b")")
            if close < 0:
                raise imap4.IllegalClientResponse("Mismatched parenthesis")
            patterns, rest = [], line[1:close]
            while rest.strip():
                pattern, rest = self.arg_astring(rest)
                patterns.append(pattern)
            line = line[close + 1:]
        else:
            pattern, line = self.arg_astring(line)
            patterns = [pattern]
        returns = ()
        line = line.strip()
        if line[:6].upper() == b"RETURN":
            options = line[6:].strip()
            if not (options.startswith(b"(") and options.endswith(b")")):
                raise imap4.IllegalClientResponse("RETURN needs a list of options")
            returns, line = tuple(options[1:-1].upper().split()), b""
        if line:
            raise imap4.IllegalClientResponse("Too many arguments")
        return (select, reference, patterns, returns), b""

    def do_LIST(self, tag, args):
        select, reference, patterns, returns = args
        self._list(tag, b"LIST", reference, patterns, select, returns)

    def do_LSUB(self, tag, args):
        _, reference, patterns, _ = args
        self._list(tag, b"LSUB", reference, patterns)

    auth_LIST = select_LIST = (do_LIST, _list_args)
    auth_LSUB = select_LSUB = (do_LSUB, _list_args)

    def do_STATUS(self, tag, wire, items):
        name = self._name(tag, wire)
        if name is None:
            return
        items = [i.upper() for i in items]
        unknown = [i for i in items if i not in STATUS_ITEMS]
        if unknown or not items:
            return self.sendBadResponse(tag, b"Unknown STATUS item " + b" ".join(unknown))

        def status(info):
            values = {b"MESSAGES": info.messages, b"UIDNEXT": info.uidnext,
                      b"UIDVALIDITY": info.uidvalidity, b"UNSEEN": info.unseen,
                      b"RECENT": self.factory.recent_count(self.user.address, info)}
            body = b" ".join(b"%s %d" % (i, values[i]) for i in items)
            self.sendUntaggedResponse(b"STATUS " + folders.quoted(name) + b" (" + body + b")")
            self.sendPositiveResponse(tag, b"STATUS completed")
        self.mailstore.status(name).addCallbacks(status, lambda f: self._fail(tag, f, b"STATUS"))

    auth_STATUS = select_STATUS = (do_STATUS, arg_astring,
                                   imap4.IMAP4Server.arg_plist)

    def do_APPEND(self, tag, wire, flags, date, data):
        name = self._name(tag, wire)
        if name is None:
            return
        when = None
        if date:
            parsed = parsedate_tz(date.decode("ascii", "replace").replace("-", " "))
            if parsed is None:
                return self.sendBadResponse(tag, b"Bad date-time")
            when = mktime_tz(parsed)
        flag_names = [f.decode("utf-8", "replace") for f in flags or ()]
        if data.count(b"\n") != data.count(b"\r\n") or data.count(b"\r") != data.count(b"\r\n"):
            # Stored messages are CRLF throughout, so RFC822.SIZE is the size of BODY[].
            data = _BARE_NEWLINE.sub(b"\r\n", data)
        writer = self.factory.store.new_message()
        writer.write(data)
        d = writer.finish()
        d.addCallback(lambda _: defer.gatherResults(
            [self.mailstore.status(name), self.mailstore.append(name, writer, flag_names, when)],
            consumeErrors=True))

        def appended(result):
            status, uid = result
            self.sendPositiveResponse(
                tag, b"[APPENDUID %d %d] APPEND completed" % (status.uidvalidity, uid))

        def failed(f):
            writer.discard()
            if f.check(defer.FirstError):
                f = f.value.subFailure
            self._fail(tag, f, b"APPEND")
        d.addCallbacks(appended, failed)

    auth_APPEND = select_APPEND = (do_APPEND, arg_astring,
                                   imap4.IMAP4Server.opt_plist, imap4.IMAP4Server.opt_datetime,
                                   arg_literal)

    # -- selecting ------------------------------------------------------------------------------

    def _select(self, tag, wire, readonly):
        name = self._name(tag, wire)
        if name is None:
            return
        self._unselect()
        self.state = "auth"
        store = self.mailstore
        d = defer.gatherResults([store.status(name), store.messages(name, summaries=False)],
                                consumeErrors=True)

        def selected(result):
            status, infos = result
            recent = self.factory.claim_recent(self.user.address, name, status.uidvalidity,
                                               [i.uid for i in infos], readonly)
            view = SelectedFolder(name, status, infos, readonly, recent)
            self.view = view
            view.on_change = self._pushed
            self.factory.store.hub.subscribe(self.user.address, name, view.receive)
            self.state = "select"
            keywords = sorted({f for i in infos for f in i.flags if not f.startswith("\\")})
            flags = SYSTEM_FLAGS + b"".join(b" " + k.encode() for k in keywords)
            self.sendUntaggedResponse(b"%d EXISTS" % view.exists)
            self.sendUntaggedResponse(b"%d RECENT" % len(view.recent))
            self.sendUntaggedResponse(b"FLAGS (" + flags + b")")
            self.sendUntaggedResponse(b"OK [PERMANENTFLAGS (" + flags + b" \\*)] Flags permitted")
            unseen = next((i + 1 for i, info in enumerate(infos) if names.SEEN not in info.flags), None)
            if unseen:
                self.sendUntaggedResponse(b"OK [UNSEEN %d] First unseen" % unseen)
            self.sendUntaggedResponse(b"OK [UIDVALIDITY %d] UIDs valid" % status.uidvalidity)
            self.sendUntaggedResponse(b"OK [UIDNEXT %d] Predicted next UID" % status.uidnext)
            mode = b"[READ-ONLY] EXAMINE" if readonly else b"[READ-WRITE] SELECT"
            self.sendPositiveResponse(tag, mode + b" completed")

        def failed(f):
            if f.check(defer.FirstError):
                f = f.value.subFailure
            self._fail(tag, f, b"SELECT")
        d.addCallbacks(selected, failed)

    def do_SELECT(self, tag, wire):
        self._select(tag, wire, False)

    def do_EXAMINE(self, tag, wire):
        self._select(tag, wire, True)

    auth_SELECT = select_SELECT = (do_SELECT, imap4.IMAP4Server.arg_finalastring)
    auth_EXAMINE = select_EXAMINE = (do_EXAMINE, imap4.IMAP4Server.arg_finalastring)

    def _unselect(self):
        if self.view is not None:
            self.factory.store.hub.unsubscribe(self.user.address, self.view.name, self.view.receive)
            self.view.on_change = None
            self.view = None

    def do_UNSELECT(self, tag):
        self._unselect()
        self.state = "auth"
        self.sendPositiveResponse(tag, b"UNSELECT completed")

    select_UNSELECT = (do_UNSELECT,)

    def do_CLOSE(self, tag):
        view = self.view
        if view.readonly:
            self._unselect()
            self.state = "auth"
            return self.sendPositiveResponse(tag, b"CLOSE completed")
        d = self.mailstore.expunge(view.name)

        def closed(_):
            self._unselect()
            self.state = "auth"
            self.sendPositiveResponse(tag, b"CLOSE completed")
        d.addCallbacks(closed, lambda f: self._fail(tag, f, b"CLOSE"))

    select_CLOSE = (do_CLOSE,)

    # -- IDLE (RFC 2177) ---------------------------------------------------------------------------

    def do_IDLE(self, tag):
        self._idle = tag
        self.sendContinuationRequest(b"idling")
        self._pushed()

    auth_IDLE = select_IDLE = (do_IDLE,)

    def _pushed(self):
        if self._idle is not None and self.view is not None and self.view.pending:
            for line in self.view.flush():
                self.sendLine(b"* " + line)

    def _idle_line(self) -> bool:
        newline = self.reader.buffer.find(b"\n")
        if newline < 0:
            if len(self.reader.buffer) > 1024:
                self.reader.buffer = b""
            return False
        line, self.reader.buffer = self.reader.buffer[:newline].rstrip(b"\r"), \
            self.reader.buffer[newline + 1:]
        tag, self._idle = self._idle, None
        if line.strip().upper() == b"DONE":
            self.sendPositiveResponse(tag, b"IDLE terminated")
        else:
            self.sendBadResponse(tag, b"Expected DONE to end IDLE")
        return True

    # -- messages --------------------------------------------------------------------------------

    def _uids(self, tag, id_list, uid):
        try:
            return self.view.resolve(id_list, uid)
        except IndexError:
            self.sendBadResponse(tag, b"Invalid message sequence number")
            return None

    def arg_fetchatt(self, line):
        try:
            return fetching.parse(line or b""), b""
        except fetching.FetchError as e:
            raise imap4.IllegalClientResponse(str(e))

    def do_FETCH(self, tag, id_list, items, uid=False):
        uids = self._uids(tag, id_list, uid)
        if uids is None:
            return
        view = self.view
        mark_seen = fetching.sets_seen(items) and not view.readonly
        d = self.mailstore.messages(view.name, uids, summaries=fetching.wants_summary(items))
        if mark_seen:
            unseen = [u for u in uids if names.SEEN not in view.flags.get(u, ())]

            def set_seen(infos):
                d2 = self.mailstore.set_flags(view.name, unseen, [names.SEEN], "add")

                def noted(changed):
                    for u, flags in changed.items():
                        view.set_flags(u, flags)
                    return infos, set(changed)
                return d2.addCallback(noted)
            d.addCallback(set_seen)
        else:
            d.addCallback(lambda infos: (infos, set()))

        @defer.inlineCallbacks
        def send(result):
            infos, seen_now = result
            self.transport.registerProducer(self, True)
            try:
                for info in infos:
                    seq = view.seq(info.uid)
                    if seq is None or self._closing:
                        continue
                    raw = None
                    if fetching.needs_file(items, info):
                        raw = yield threads.deferToThread(_read, info.path)
                    data = fetching.render(items, info, view.flag_list(info.uid), raw, uid,
                                           seen_now=info.uid in seen_now)
                    self.transport.write(b"* %d FETCH " % seq + data + b"\r\n")
                    if self._drained is not None:
                        yield self._drained  # the client reads slower than we send
            finally:
                self.transport.unregisterProducer()
            self.sendPositiveResponse(tag, b"FETCH completed")
        d.addCallback(send)
        d.addErrback(lambda f: self._fail(tag, f, b"FETCH"))

    select_FETCH = (do_FETCH, imap4.IMAP4Server.arg_seqset, arg_fetchatt)

    def do_STORE(self, tag, id_list, mode, flags, uid=False):
        mode = mode.upper()
        silent = mode.endswith(b".SILENT")
        how = {b"FLAGS": "replace", b"+FLAGS": "add", b"-FLAGS": "remove"}.get(
            mode[:-7] if silent else mode)
        if how is None:
            return self.sendBadResponse(tag, b"STORE needs FLAGS, +FLAGS or -FLAGS")
        if self.view.readonly:
            return self.sendNegativeResponse(tag, b"[READ-ONLY] Mailbox is read-only")
        uids = self._uids(tag, id_list, uid)
        if uids is None:
            return
        view = self.view
        flag_names = [f.decode("utf-8", "replace") for f in flags]
        d = self.mailstore.set_flags(view.name, uids, flag_names, how)

        def stored(changed):
            for u in sorted(changed):
                view.set_flags(u, changed[u])
                seq = view.seq(u)
                if not silent and seq is not None:
                    extra = b" UID %d" % u if uid else b""
                    self.sendUntaggedResponse(b"%d FETCH (FLAGS %s%s)" % (seq, view.flag_list(u), extra))
            self.sendPositiveResponse(tag, b"STORE completed")
        d.addCallbacks(stored, lambda f: self._fail(tag, f, b"STORE"))

    select_STORE = (do_STORE, imap4.IMAP4Server.arg_seqset, imap4.IMAP4Server.arg_atom,
                    imap4.IMAP4Server.arg_flaglist)

    def _copy(self, tag, id_list, wire, uid, move):
        verb = b"MOVE" if move else b"COPY"
        target = self._name(tag, wire)
        if target is None:
            return
        uids = self._uids(tag, id_list, uid)
        if uids is None:
            return
        view = self.view
        if move and view.readonly:
            return self.sendNegativeResponse(tag, b"[READ-ONLY] Mailbox is read-only")
        if not uids:
            return self.sendPositiveResponse(tag, verb + b" completed")
        call = self.mailstore.move if move else self.mailstore.copy
        d = defer.gatherResults([self.mailstore.status(target),
                                 call(view.name, uids, target)], consumeErrors=True)

        def copied(result):
            status, pairs = result
            code = b"COPYUID %d %s %s" % (
                status.uidvalidity, _uid_set([a for a, _ in pairs]), _uid_set([b for _, b in pairs]))
            if move:
                self.sendUntaggedResponse(b"OK [" + code + b"] Moved")
                for line in view.remove([a for a, _ in pairs]):
                    self.sendUntaggedResponse(line)
                self.sendPositiveResponse(tag, b"MOVE completed")
            else:
                self.sendPositiveResponse(tag, b"[" + code + b"] COPY completed")

        def failed(f):
            if f.check(defer.FirstError):
                f = f.value.subFailure
            self._fail(tag, f, verb)
        d.addCallbacks(copied, failed)

    def do_COPY(self, tag, id_list, wire, uid=False):
        self._copy(tag, id_list, wire, uid, move=False)

    def do_MOVE(self, tag, id_list, wire, uid=False):
        self._copy(tag, id_list, wire, uid, move=True)

    select_COPY = (do_COPY, imap4.IMAP4Server.arg_seqset, imap4.IMAP4Server.arg_finalastring)
    select_MOVE = (do_MOVE, imap4.IMAP4Server.arg_seqset, imap4.IMAP4Server.arg_finalastring)

    def do_EXPUNGE(self, tag, id_list=None, uid=False):
        view = self.view
        if view.readonly:
            return self.sendNegativeResponse(tag, b"[READ-ONLY] Mailbox is read-only")
        only = None
        if uid:
            if id_list is None:
                return self.sendBadResponse(tag, b"UID EXPUNGE needs a UID set")
            only = view.resolve(id_list, True)
        d = self.mailstore.expunge(view.name, only)

        def expunged(removed):
            for line in view.remove(removed):
                self.sendUntaggedResponse(line)
            self.sendPositiveResponse(tag, b"EXPUNGE completed")
        d.addCallbacks(expunged, lambda f: self._fail(tag, f, b"EXPUNGE"))

    def _optional_seqset(self, line):
        if line:
            return imap4.IMAP4Server.arg_seqset(self, line)
        return None, b""

    select_EXPUNGE = (do_EXPUNGE, _optional_seqset)

    def do_SEARCH(self, tag, charset, query, uid=False):
        from rmail.imap import search
        try:
            compiled = search.compile(query, charset.decode() if charset else None)
        except search.BadCharset as e:
            return self.sendNegativeResponse(tag, b"[BADCHARSET (UTF-8 US-ASCII)] "
                                             + str(e).encode("ascii", "replace"))
        except search.SearchError as e:
            return self.sendBadResponse(tag, str(e).encode("utf-8", "replace"))
        view = self.view
        d = self.mailstore.messages(view.name, summaries=False)

        def evaluate(infos):
            records = [_SearchRecord(view, info) for info in infos if view.seq(info.uid)]
            max_seq, max_uid = view.exists, view.uids[-1] if view.uids else 0
            if compiled.needs_header or compiled.needs_body:
                return threads.deferToThread(
                    lambda: [r for r in records if compiled.matches(r, max_seq, max_uid)])
            return [r for r in records if compiled.matches(r, max_seq, max_uid)]
        d.addCallback(evaluate)

        def answer(found):
            ids = sorted(r.uid if uid else r.seq for r in found)
            self.sendUntaggedResponse(b"SEARCH" + b"".join(b" %d" % i for i in ids))
            self.sendPositiveResponse(tag, b"SEARCH completed")
        d.addCallbacks(answer, lambda f: self._fail(tag, f, b"SEARCH"))

    select_SEARCH = (do_SEARCH, imap4.IMAP4Server.opt_charset, imap4.IMAP4Server.arg_searchkeys)


class _SearchRecord:
    """One message as the search evaluator sees it; file contents read lazily."""

    __slots__ = ("seq", "uid", "flags", "recent", "internaldate", "size", "_path", "_raw")

    def __init__(self, view, info):
        self.seq = view.seq(info.uid)
        self.uid = info.uid
        self.flags = view.flags.get(info.uid, info.flags)
        self.recent = info.uid in view.recent
        self.internaldate = info.internaldate
        self.size = info.size
        self._path = info.path
        self._raw = None

    def raw(self) -> bytes:
        if self._raw is None:
            self._raw = _read(self._path)
        return self._raw

    def header(self) -> bytes:
        raw = self.raw()
        end = raw.find(b"\r\n\r\n")
        return raw if end < 0 else raw[:end + 2]


def _read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _uid_set(uids) -> bytes:
    """A compact UID set: 1:3,7 (RFC 4315 COPYUID keeps the source order)."""
    out = []
    for u in uids:
        if out and out[-1][1] + 1 == u:
            out[-1][1] = u
        else:
            out.append([u, u])
    return b",".join(b"%d" % a if a == b else b"%d:%d" % (a, b) for a, b in out)

