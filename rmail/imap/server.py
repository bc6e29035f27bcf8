"""The IMAP server protocol: Twisted's IMAP4Server, extended for real clients.

Kept from Twisted: the state/command tables (``unauth_X``, ``auth_X``, ``select_X``),
argument parsers (``arg_plist``, ``arg_flaglist``, ``parseNestedParens``,
``_FetchParser``), response helpers and the idle timeout.  Replaced, each for a reason
TWISTED.md records on the stock class:

- framing (``rmail.imap.framing``): whole commands with their literals, LITERAL+,
  limits checked before ``+`` is sent (items 20, 23, 24); so the table's parsers are
  applied in one pass (``_dispatch``), not through a Deferred per argument, and
  sequence sets are read by ``rmail.imap.seqset``;
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

import errno
import base64
import binascii
import secrets

from twisted.cred import error as cred_error
from twisted.cred.credentials import UsernamePassword
from twisted.internet import defer, reactor
from twisted.python import failure
from twisted.logger import Logger
from twisted.mail import imap4

from rmail import auth
from rmail.session import Session
from rmail.imap import folders
from rmail.imap.arguments import Arguments
from rmail.imap.framing import CommandReader
from rmail.imap.mailboxes import MailboxCommands
from rmail.imap.messages import MessageCommands
from rmail.store.interfaces import (
    FolderExists, FolderNotDeletable, InvalidFlag, InvalidFolderName, NoSuchFolder, StoreError,
)

log = Logger(namespace="rmail.imap")

# A write refused for want of space (disk full, quota, file size limit): NO [OVERQUOTA].
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)

# Unread input kept while a command is answered; beyond it reading pauses.
PIPELINE_BUFFER = 256 * 1024

# Commands whose answers must not carry EXPUNGE (RFC 3501 7.4.1).
_NO_EXPUNGE = (b"FETCH", b"STORE", b"SEARCH")


class IMAPServer(Session, MailboxCommands, MessageCommands, imap4.IMAP4Server):
    IDENT = b"rmail IMAP4rev1 ready"

    def __init__(self, factory):
        super().__init__(chal={}, contextFactory=factory.tls)
        self.factory = factory
        self.session = secrets.token_hex(4)
        limits = factory.limits
        self.reader = CommandReader(self._command, self._continue, self._refuse,
                                    factory.append_limit, limits.max_command_line,
                                    limits.max_literal)
        self._busy = None  # (tag, verb, uid) of the command being answered
        self._idle = None  # tag of a running IDLE
        self._sasl = None  # tag of an AUTHENTICATE waiting for its response
        self._closing = False
        self._processing = False
        self.account = None  # the IAccount avatar, once logged in
        self.mailbox = None  # the selected Mailbox

    @property
    def view(self):
        """The selected folder's sequence numbers and pending changes (rmail.imap.view)."""
        return self.mailbox.view if self.mailbox is not None else None

    # -- connection --------------------------------------------------------------------

    def connectionMade(self):
        self.tags = {}
        self.canStartTLS = self.factory.tls is not None and not self.factory.implicit_tls
        self.factory.session_opened(self)
        self.setTimeout(self.factory.limits.login_timeout)
        self.transport.registerProducer(self, True)  # replies not read stop the commands
        self.sendServerGreeting()

    def connectionLost(self, reason=None):
        self._closing, self.reader.buffer = True, b""  # nothing buffered runs after this
        self.setTimeout(None)
        self.factory.session_closed(self)
        self._unselect()

    def timeoutConnection(self):
        self.sendLine(b"* BYE Autologout; connection idle too long")
        self._close()

    def _close(self):
        self._closing = True
        self.reader.buffer = b""
        self._read(True)  # a TLS close waits to read the client's close_notify
        self.transport.unregisterProducer()  # else the transport waits for it to finish
        self.resumeProducing()  # a FETCH waiting for the client to read ends
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
        if self._closing:
            return
        self.reader.buffer += data
        self._process()
        # Input pipelined behind a command being answered, or behind replies the client
        # has not read, is kept up to a bound only.
        if self._stalled and len(self.reader.buffer) > PIPELINE_BUFFER:
            self._read(False)

    @property
    def _stalled(self) -> bool:
        """No command may start: one is being answered, or replies wait for the client."""
        return (self._busy is not None and self._sasl is None and self._idle is None
                or self._drained is not None)

    _reading = True

    def _read(self, on: bool):
        if on != self._reading:
            self._reading = on
            (self.transport.resumeProducing if on else self.transport.pauseProducing)()

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
                if self._stalled:
                    break
                before = len(self.reader.buffer)
                # An AUTHENTICATE waiting for its response line is busy but must read it.
                self.reader.feed(b"", ready=lambda: (self._busy is None or self._sasl is not None)
                                 and self._idle is None and not self._closing)
                if len(self.reader.buffer) == before:
                    break
        finally:
            self._processing = False
        if not self._reading and (not self._stalled or self._closing):
            self._read(True)

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
        if tag == b"*":  # not a tag (RFC 3501 9); its answer could never complete the command
            return self.sendBadResponse(None, b"Invalid tag")
        uid = False
        rest = parts[2] if len(parts) > 2 else None
        if verb == b"UID" and rest:
            sub = rest.split(None, 1)
            verb, uid = sub[0].upper(), True
            rest = sub[1] if len(sub) > 1 else None
        self._busy = (tag, verb, uid)
        try:
            command = self.lookupCommand(verb)
            if command is None or (uid and verb not in (b"FETCH", b"STORE", b"SEARCH", b"COPY",
                                                          b"MOVE", b"EXPUNGE")):
                self.sendBadResponse(tag, b"Unknown command or not valid in this state")
                return
            self._dispatch(tag, command, rest, uid)
        except (imap4.IllegalClientResponse, imap4.IllegalIdentifierError) as e:
            self.sendBadResponse(tag, b"Syntax error: " + str(e).encode("utf-8", "replace"))
        except Exception:
            self._fail(tag, failure.Failure(), verb)

    def _dispatch(self, tag, command, rest, uid):
        """Twisted's command table entry ``(handler, parser or value, ...)``, applied in
        one pass.  Twisted's own dispatch chains a Deferred through every argument, for
        parsers that wait for a literal; here the framing has read every literal already,
        so each parser answers at once (``(value, rest of the line)``)."""
        handler, *parsers = command
        args = [tag]
        for parse in parsers:
            if callable(parse):
                value, rest = parse(self, rest)
                args.append(value)
            else:
                args.append(parse)
        if rest:
            raise imap4.IllegalClientResponse("Too many arguments for command: " + repr(rest))
        if uid:
            handler(self, *args, uid=True)
        else:
            handler(self, *args)

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
            if self.reader.buffer or not self._reading:
                reactor.callLater(0, self._process)

    def _fail(self, tag, failure, what: bytes):
        """Answer a failed store call: NO with a response code, never a traceback."""
        if failure.check(defer.FirstError):  # from gatherResults: the call that failed
            failure = failure.value.subFailure
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
            if failure.value.errno in _NO_SPACE:
                return self.sendNegativeResponse(tag, b"[OVERQUOTA] Not enough disk space, "
                                                      b"try again later")
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
            reactor.callLater(0, self._process)  # the commands the replies held up

    def stopProducing(self):
        self._closing = True
        self.resumeProducing()

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

    unauth_LOGIN = (do_LOGIN, Arguments.arg_astring, Arguments.finalastring)

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
        d = self.factory.authenticator.login(credentials, self.remote, "imap", imap4.IAccount)

        def ok(account):
            self.account = account
            self.state = "auth"
            self.setTimeout(self.factory.limits.idle_timeout)
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

    unauth_ID = auth_ID = select_ID = (do_ID, Arguments.rest)

    def do_LOGOUT(self, tag):
        self._unselect()  # changes still pending are not sent after the BYE
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

    auth_ENABLE = select_ENABLE = (do_ENABLE, Arguments.rest)

    def do_NAMESPACE(self, tag):
        self.sendUntaggedResponse(b'NAMESPACE (("" "/")) NIL NIL')
        self.sendPositiveResponse(tag, b"NAMESPACE completed")

    auth_NAMESPACE = select_NAMESPACE = (do_NAMESPACE,)


    # -- IDLE (RFC 2177) ---------------------------------------------------------------------------

    def do_IDLE(self, tag):
        self._idle = tag
        self.sendContinuationRequest(b"idling")
        self._pushed()

    auth_IDLE = select_IDLE = (do_IDLE,)

    def _pushed(self, *_):
        if self._idle is not None and self.view is not None and self.view.pending:
            for line in self.view.flush():
                self.sendLine(b"* " + line)

    # IMailboxListener: the selected Mailbox says a change is pending; RFC 3501 7.4.1
    # lets it out at the next command boundary, or at once while IDLE.
    newMessages = flagsChanged = modeChanged = _pushed

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
