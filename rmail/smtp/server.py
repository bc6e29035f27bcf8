"""The SMTP server protocol: Twisted's ESMTP, with the pieces TWISTED.md shows broken replaced.

Kept from Twisted: the ``do_``/``ext_`` command dispatch (``lookupMethod``), the idle
timeout (``TimeoutMixin``), the transport and TLS plumbing.  Replaced here, each for a
reason observed on the stock class:

- input framing (``dataReceived``): commands are answered strictly in order, and no
  further command is read while one is being answered (pipelining with asynchronous
  validation, RFC 2920); over-long lines get ``500 5.5.2`` without desynchronising;
- DATA (``rmail.smtp.data``): only CRLF.CRLF ends it, bare LF/CR are normalised, the
  size limit holds while streaming to disk, and an over-long line never turns the rest
  of the body into commands;
- STARTTLS: bytes pipelined before the handshake are discarded and the session state
  is reset (RFC 3207 section 4.2, the CVE-2011-0411 class);
- MAIL/RCPT parameters are parsed and enforced (SIZE, BODY), unknown ones refused;
- every reply comes from ``rmail.smtp.replies`` with its enhanced status code.

The protocol holds no policy: who may send where is ``rmail.delivery.MailPolicy``, and
logins go through ``rmail.auth.Authenticator``.  It touches no files: messages stream
into a store ``MessageWriter``.
"""

import base64
import binascii
import secrets
import time
from email.utils import formatdate

from twisted.cred import error as cred_error
from twisted.logger import Logger
from twisted.mail import smtp

from rmail import auth, crashpoint
from rmail.session import Session
from rmail.logs import cached_per_second
from rmail.delivery import Refused
from rmail.smtp import address, limits, replies, sasl
from rmail.smtp.data import DataReader

log = Logger(namespace="rmail.smtp")

COMMAND, DATA, AUTH = "command", "data", "auth"

_received_date = cached_per_second(lambda second: formatdate(second, localtime=True))

# What each listener is for (SPEC: 25 relay-in, 587 STARTTLS+AUTH, 465 TLS+AUTH).
MX, SUBMISSION = "mx", "submission"

_REFUSALS = {
    Refused.UNKNOWN_USER: replies.USER_UNKNOWN,
    Refused.RELAY_DENIED: replies.RELAY_DENIED,
    Refused.SENDER_NOT_OWNED: replies.SENDER_NOT_OWNED,
}


class SMTPServer(Session, smtp.ESMTP):
    def __init__(self, factory):
        smtp.ESMTP.__init__(self, chal={}, contextFactory=factory.tls)
        self.mode = COMMAND
        self.factory = factory
        self.host = factory.hostname
        self.session = secrets.token_hex(4)
        self._buffer = b""
        self._busy = False  # a command is being answered; read nothing more until it is
        self._paused = False
        self._skip_line = False  # discarding the rest of an over-long line
        self._errors = 0
        self._closing = False
        self._close_after_transaction = False
        self.user = None  # the authenticated directory User
        self._sasl = None
        self._reset_transaction()

    # -- connection ---------------------------------------------------------------

    def connectionMade(self):
        self.factory.session_opened(self)
        self.canStartTLS = self.factory.tls is not None and not self.factory.implicit_tls
        self._helo = None
        self.reply(replies.GREETING.format(self.factory.hostname))
        self.setTimeout(self.factory.limits.idle_timeout)
        self.transport.registerProducer(self, True)  # replies not read stop the commands

    def connectionLost(self, reason=None):
        self.setTimeout(None)
        if self._writer is not None:
            self._writer.discard()
            self._log_transaction("aborted: connection lost")
            self._writer = None
        self.factory.session_closed(self)

    def timeoutConnection(self):
        self.reply(replies.TIMEOUT.format(self.factory.hostname))
        self._close()

    def _close(self):
        self._closing = True
        self._buffer = b""
        if self._paused:  # a TLS close waits to read the client's close_notify
            self._paused = False
            self.transport.resumeProducing()
        self.transport.unregisterProducer()  # else the transport waits for it to finish
        self.transport.loseConnection()

    def shut_down(self):
        """Service stopping: close now when idle, else right after the transaction."""
        if self._writer is None and not self._busy:
            self.reply(replies.SHUTTING_DOWN.format(self.factory.hostname))
            self._close()
        else:
            self._close_after_transaction = True

    # -- replies --------------------------------------------------------------------

    def reply(self, reply: replies.Reply):
        if reply.code >= 400 and reply.code not in (421,):
            self._errors += 1
        self.transport.writeSequence([line + b"\r\n" for line in reply.lines()])
        if self._errors > self.factory.limits.max_errors and not self._closing:
            self.transport.writeSequence(
                [line + b"\r\n" for line in replies.TOO_MANY_ERRORS.format(self.factory.hostname).lines()])
            log.info("smtp: session={session} client={client}: too many errors, disconnected",
                     session=self.session, client=self.remote)
            self._close()

    def sendCode(self, code, message=b""):
        """Twisted's reply path, kept for its callers; rmail's own code uses ``reply``."""
        self.reply(replies.Reply(code, "", message.decode("utf-8", "replace")))

    # -- input framing ----------------------------------------------------------------

    # The transport's producer: while the client leaves replies unread, no command runs.
    _output_full = False

    def pauseProducing(self):
        self._output_full = True

    def resumeProducing(self):
        self._output_full = False
        if not self._closing:
            self._process()

    def stopProducing(self):
        pass

    def dataReceived(self, data):
        if self._closing:
            return
        self._buffer += data
        if self._busy or self._output_full:
            if len(self._buffer) > limits.PIPELINE_BUFFER and not self._paused:
                self._paused = True
                self.transport.pauseProducing()
            return
        self._process()

    def _process(self):
        while self._buffer and not self._busy and not self._output_full and not self._closing:
            if self.mode == DATA:
                self.resetTimeout()
                end = self._reader.feed(self._buffer)
                if end is None:
                    self._buffer = b""
                    self._throttle_data()
                else:
                    self._buffer = self._buffer[end:]
                    self._end_of_data()
                continue
            newline = self._buffer.find(b"\n")
            if newline < 0:
                if len(self._buffer) > limits.MAX_LINE:
                    self._buffer = b""
                    if not self._skip_line:
                        self._skip_line = True
                        self.resetTimeout()
                        self.reply(replies.LINE_TOO_LONG)
                break
            line, self._buffer = self._buffer[:newline], self._buffer[newline + 1:]
            if self._skip_line:
                self._skip_line = False
                continue
            self.resetTimeout()
            self._line(line[:-1] if line.endswith(b"\r") else line)
        if self._paused and not self._busy and not self._output_full and not self._closing:
            self._paused = False
            self.transport.resumeProducing()

    def _wait(self, d):
        """Answer asynchronously: read no further command until *d* has replied."""
        self._busy = True

        def done(result):
            self._busy = False
            if self._close_after_transaction and self._writer is None:
                self.shut_down()
            elif not self._closing:
                self._process()
            return result
        d.addBoth(done)
        d.addErrback(self._internal_error)

    def _internal_error(self, failure):
        log.failure("smtp: session={session}: internal error", failure, session=self.session)
        if not self._closing:
            self.reply(replies.LOCAL_ERROR.format(self.session))

    def _line(self, line: bytes):
        if self.mode == AUTH:
            return self._auth_response(line)
        verb, _, rest = line.strip().partition(b" ")
        rest = rest.strip()
        if not verb:
            return self.reply(replies.SYNTAX_ERROR)
        verb = verb.upper()
        limit = limits.AUTH_LINE if verb == b"AUTH" else self.factory.limits.max_command_line
        if len(line) + 2 > limit:
            return self.reply(replies.LINE_TOO_LONG)
        try:
            method = self.lookupMethod(verb.decode("ascii"))
        except UnicodeDecodeError:
            method = None
        if method is None:
            return self.reply(replies.NOT_IMPLEMENTED)
        try:
            method(rest)
        except Exception:
            self._internal_error(None)

    # -- session commands ---------------------------------------------------------------

    def _reset_transaction(self):
        self._from = None  # None: no MAIL yet; "": the null sender
        self._to = []  # (address as given, directory User)
        self._writer = None
        self._reader = None
        self._body_8bit = False
        self._started = None

    def extensions(self):
        ext = {b"SIZE": [str(self.factory.max_message_size).encode()], b"8BITMIME": None,
               b"PIPELINING": None}
        if self.canStartTLS and not self.startedTLS:
            ext[b"STARTTLS"] = None
        if self.factory.kind == SUBMISSION and self.secure and self.user is None:
            ext[b"AUTH"] = list(sasl.MECHANISMS)
        ext[b"ENHANCEDSTATUSCODES"] = None
        return ext

    def do_EHLO(self, rest):
        if not rest:
            return self.reply(replies.BAD_ARGUMENTS.format("EHLO hostname"))
        self._helo = rest.decode("ascii", "replace")
        self._reset_transaction()
        lines = [self.factory.hostname] + [
            line.decode() for line in self.listExtensions().split(b"\n") if line]
        self.reply(replies.EHLO.format("\n".join(lines)))

    def do_HELO(self, rest):
        if not rest:
            return self.reply(replies.BAD_ARGUMENTS.format("HELO hostname"))
        self._helo = rest.decode("ascii", "replace")
        self._reset_transaction()
        self.reply(replies.HELO.format(self.factory.hostname))

    def do_NOOP(self, rest):
        self.reply(replies.OK)

    def do_RSET(self, rest):
        if rest:
            return self.reply(replies.BAD_ARGUMENTS.format("RSET"))
        self._reset_transaction()
        self.reply(replies.OK)

    def do_VRFY(self, rest):
        if not rest:
            return self.reply(replies.BAD_ARGUMENTS.format("VRFY address"))
        self.reply(replies.VRFY)

    def do_HELP(self, rest):
        self.reply(replies.HELP)

    def do_QUIT(self, rest):
        self.reply(replies.CLOSING.format(self.factory.hostname))
        self._close()

    def ext_STARTTLS(self, rest):
        if rest:
            return self.reply(replies.BAD_ARGUMENTS.format("STARTTLS"))
        if self.secure:
            return self.reply(replies.TLS_ACTIVE)
        if not self.canStartTLS:
            return self.reply(replies.TLS_UNAVAILABLE)
        self.reply(replies.READY_FOR_TLS)
        # RFC 3207 4.2: forget everything learnt in clear, including pipelined input.
        self._buffer = b""
        self._skip_line = False
        self._helo = None
        self.user = None
        self._reset_transaction()
        self.transport.startTLS(self.factory.tls)
        self.startedTLS = True

    # -- AUTH (RFC 4954) --------------------------------------------------------------------

    def ext_AUTH(self, rest):
        if self.factory.kind != SUBMISSION:
            return self.reply(replies.NOT_IMPLEMENTED)
        if self._helo is None:
            return self.reply(replies.NEED_HELO)
        if not self.secure:
            return self.reply(replies.ENCRYPTION_REQUIRED)
        if self.user is not None:
            return self.reply(replies.ALREADY_AUTHENTICATED)
        if self._from is not None:
            return self.reply(replies.AUTH_IN_TRANSACTION)
        mechanism, _, initial = rest.partition(b" ")
        factory = sasl.MECHANISMS.get(mechanism.upper())
        if factory is None:
            return self.reply(replies.UNKNOWN_MECHANISM)
        if self.factory.authenticator.throttle.locked(self.remote):
            return self.reply(replies.AUTH_LOCKED)
        self._sasl = factory()
        self.mode = AUTH
        if initial.strip():
            self._auth_response(b"" if initial.strip() == b"=" else initial.strip(), initial=True)
        else:
            self._send_challenge()

    def _send_challenge(self):
        challenge = base64.b64encode(self._sasl.challenge()).decode()
        self.transport.write(f"334 {challenge}\r\n".encode())

    def _auth_response(self, line: bytes, initial=False):
        if line == b"*" and not initial:
            self.mode, self._sasl = COMMAND, None
            return self.reply(replies.AUTH_ABORTED)
        try:
            decoded = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            self.mode, self._sasl = COMMAND, None
            return self.reply(replies.BAD_BASE64)
        try:
            ready = self._sasl.respond(decoded)
        except sasl.SASLError:
            self.mode, self._sasl = COMMAND, None
            self.factory.authenticator.throttle.failed(self.remote)
            return self.reply(replies.AUTH_FAILED)
        if not ready:
            return self._send_challenge()
        credentials, self._sasl, self.mode = self._sasl.credentials, None, COMMAND
        d = self.factory.authenticator.login(credentials, self.remote, "smtp")

        def ok(user):
            self.user = user
            self.reply(replies.AUTH_OK)

        def failed(f):
            if f.check(auth.TooManyFailures):
                self.reply(replies.AUTH_LOCKED)
            elif f.check(cred_error.UnauthorizedLogin):
                self.reply(replies.AUTH_FAILED)
            else:
                return f
        self._wait(d.addCallbacks(ok, failed))

    # -- the mail transaction ------------------------------------------------------------------

    def do_MAIL(self, rest):
        if self._helo is None:
            return self.reply(replies.NEED_HELO)
        if self.factory.kind == SUBMISSION and self.user is None:
            return self.reply(replies.AUTH_REQUIRED)
        if self._from is not None:
            return self.reply(replies.NESTED_MAIL)
        try:
            sender, params = address.parse(rest, b"FROM", replies.BAD_SENDER_SYNTAX, allow_null=True)
        except address.PathError as e:
            return self.reply(e.reply)
        body_8bit = False
        for key, value in params.items():
            if key == "SIZE":
                if value is None or not value.isdigit():
                    return self.reply(replies.BAD_ARGUMENTS.format("SIZE=<octets>"))
                if int(value) > self.factory.max_message_size:
                    return self.reply(replies.MESSAGE_TOO_BIG)
            elif key == "BODY":
                if (value or "").upper() not in ("7BIT", "8BITMIME"):
                    return self.reply(replies.BAD_ARGUMENTS.format("BODY=7BIT or BODY=8BITMIME"))
                body_8bit = value.upper() == "8BITMIME"
            elif key == "AUTH" and self.factory.kind == SUBMISSION:
                pass  # RFC 4954 5: accepted; the authenticated identity is what counts
            else:
                return self.reply(replies.UNSUPPORTED_PARAMETER.format(key))
        try:
            if sender or self.user is not None:
                self.factory.policy.check_sender(self.user, sender)
        except Refused as e:
            return self.reply(_REFUSALS[e.reason])
        self._from = sender
        self._body_8bit = body_8bit
        self._started = time.time()
        self.reply(replies.SENDER_OK)

    def do_RCPT(self, rest):
        if self._from is None:
            return self.reply(replies.NEED_MAIL)
        try:
            recipient, params = address.parse(
                rest, b"TO", replies.BAD_RECIPIENT_SYNTAX, allow_null=False)
        except address.PathError as e:
            if rest.strip().upper().endswith(b"<POSTMASTER>"):
                recipient, params = "postmaster", {}
            else:
                return self.reply(e.reply)
        if params:
            return self.reply(replies.UNSUPPORTED_PARAMETER.format(next(iter(params))))
        if len(self._to) >= self.factory.max_recipients:
            return self.reply(replies.TOO_MANY_RECIPIENTS)
        try:
            user = self.factory.policy.check_recipient(self.user, recipient, self._from)
        except Refused as e:
            return self.reply(_REFUSALS[e.reason])
        self._to.append((recipient, user))
        self.reply(replies.RECIPIENT_OK)

    def do_DATA(self, rest):
        if rest:
            return self.reply(replies.BAD_ARGUMENTS.format("DATA"))
        if self._from is None:
            return self.reply(replies.NEED_MAIL)
        if not self._to:
            return self.reply(replies.NEED_RCPT)
        self._writer = self.factory.store.new_message()
        self._writer.write(self._trace_headers())
        self._reader = DataReader(self._writer.write, self.factory.max_message_size)
        self.mode = DATA
        self.reply(replies.START_DATA)

    def _trace_headers(self) -> bytes:
        """Return-Path and Received (RFC 5321 4.4), in front of the message."""
        protocol = "ESMTP" + ("S" if self.secure else "") + ("A" if self.user else "")
        recipient = f"\r\n\tfor <{self._to[0][0]}>" if len(self._to) == 1 else ""
        helo = "".join(c if 32 < ord(c) < 127 and c not in "()" else "?" for c in self._helo)
        return (
            f"Return-Path: <{self._from}>\r\n"
            f"Received: from {helo} ([{self.remote}])\r\n"
            f"\tby {self.factory.hostname} (rmail) with {protocol} id {self.session}"
            f"{recipient};\r\n\t{_received_date(time.time())}\r\n"
        ).encode("utf-8")

    def _throttle_data(self):
        """Stop reading while the disk is behind, so a message never piles up in memory."""
        if self._writer.backlog > 4 * 1024 * 1024:
            self.transport.pauseProducing()
            self._paused = True
            self._wait(self._writer.when_below(1024 * 1024))

    def _end_of_data(self):
        reader, writer = self._reader, self._writer
        self._writer = None  # the delivery owns it now, even if the client goes away
        self.mode = COMMAND
        if reader.rejected:
            reply = replies.MESSAGE_TOO_BIG if reader.too_big else replies.DATA_LINE_TOO_LONG
            writer.discard()
            self._finish_transaction(reply, reader.size)
            return
        d = writer.finish()
        d.addCallback(lambda _: self.factory.policy.deliver(writer, [u for _, u in self._to]))

        def delivered(uids):
            crashpoint.reach("smtp.before-250")
            self._finish_transaction(replies.ACCEPTED, reader.size)
            crashpoint.after_flush(self.transport, "smtp.after-250")

        def failed(f):
            if f.check(OSError):
                log.failure("smtp: session={session}: cannot store message", f, session=self.session)
                writer.discard()
                self._finish_transaction(replies.STORAGE_ERROR, reader.size)
            else:
                writer.discard()
                self._finish_transaction(replies.LOCAL_ERROR.format(self.session), reader.size)
                return f
        d.addCallbacks(delivered, failed)
        d.addErrback(lambda f: log.failure("smtp: session={session}: delivery failed", f,
                                           session=self.session))
        self._wait(d)

    def _finish_transaction(self, reply, size):
        self._log_transaction(f"{reply.code} {reply.enhanced}", size)
        self._reset_transaction()
        if self._closing:
            return
        self.reply(reply)
        if self._close_after_transaction and not self._busy:
            self.shut_down()

    def _log_transaction(self, result, size=None):
        log.info(
            "smtp: session={session} client={client} port={kind} user={user} from=<{sender}> "
            "to={recipients} size={size} result={result}",
            session=self.session, client=self.remote, kind=self.factory.kind,
            user=self.user.address if self.user else "-", sender=self._from,
            recipients=",".join(f"<{r}>" for r, _ in self._to),
            size=size if size is not None else "-", result=result)
