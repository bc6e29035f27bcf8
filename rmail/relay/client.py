"""One SMTP client session: one message, to one address of one destination host.

All of the message's recipients at that destination go in the one transaction
(RFC 5321 section 5.1 allows, and every MTA does, one copy per host).  The session:

- reads the greeting, sends ``EHLO hostname`` (``HELO`` if EHLO is refused);
- runs STARTTLS whenever it is offered and TLS is wanted (opportunistic, RFC 7435:
  the certificate is not checked, because the alternative is clear text).  If the
  handshake fails the session ends with ``tls_failed`` set, and the caller reconnects
  in clear with ``use_tls=False``; Twisted's ESMTPSenderFactory cannot (TWISTED.md 10);
- sends MAIL, every RCPT and DATA in one write when PIPELINING is offered (RFC 2920),
  else one at a time; the body streams from the queued file through ``BodyEncoder``;
- applies the timeouts RFC 5321 section 4.5.3.2 suggests for each wait.

The outcome is a ``SessionResult``: each recipient's final reply (the RCPT refusal,
or the reply to the end of data), or a failure for the whole session with
``next_host`` set when nothing was transacted and another host may be tried.
Nothing here touches the queue; ``rmail.relay.service`` decides what a reply means.
"""

import os
from collections import deque

from OpenSSL import SSL
from twisted.internet import defer, error, reactor, threads
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, connectProtocol
from twisted.internet.interfaces import (
    IHandshakeListener, IOpenSSLClientConnectionCreator, IPushProducer,
)
from twisted.protocols.basic import LineOnlyReceiver
from zope.interface import implementer

from rmail.relay import results
from rmail.relay.body import BodyEncoder
from rmail.relay.results import RemoteReply

# RFC 5321 section 4.5.3.2 (seconds).  The connect timeout is not in the RFC: a host
# that does not even answer SYN is better given up on for the next MX.
CONNECT_TIMEOUT = 30
GREETING_TIMEOUT = 5 * 60  # 4.5.3.2.1 initial 220
COMMAND_TIMEOUT = 5 * 60  # 4.5.3.2.2-3 MAIL, RCPT (and EHLO, STARTTLS alike)
DATA_START_TIMEOUT = 2 * 60  # 4.5.3.2.4 DATA initiation
DATA_BLOCK_TIMEOUT = 3 * 60  # 4.5.3.2.5 each block of data sent
DATA_END_TIMEOUT = 10 * 60  # 4.5.3.2.6 the reply to the final dot
QUIT_TIMEOUT = 30

CHUNK = 256 * 1024
MAX_REPLY_LINE = 4096


class Job:
    """What one session carries: one message for some of its recipients."""

    def __init__(self, queue_id, sender, recipients, path, size, helo):
        self.queue_id = queue_id
        self.sender = sender
        self.recipients = list(recipients)
        self.path = path
        self.size = size
        self.helo = helo


class SessionResult:
    def __init__(self, label: str):
        self.label = label  # "mx.example.net[192.0.2.1]:25"
        self.replies = {}  # recipient -> its final RemoteReply
        self.failure = None  # a RemoteReply for everyone without a reply of their own
        self.next_host = False  # nothing was transacted: another host may do better
        self.tls = None  # the TLS version, when the session ran over TLS
        self.tls_failed = None  # why the STARTTLS handshake failed
        self.interrupted = False  # cut off at shutdown: nothing that counts happened

    def reply_for(self, recipient: str) -> RemoteReply:
        return self.replies.get(recipient) or self.failure or results.CONNECTION_LOST(
            host=self.label, stage="before an answer")


@implementer(IOpenSSLClientConnectionCreator)
class OpportunisticTLS:
    """A client TLS connection that checks no certificate (RFC 7435), with SNI."""

    _context = None

    def __init__(self, server_name: str):
        self.server_name = server_name

    @classmethod
    def context(cls):
        if cls._context is None:
            ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
            ctx.set_verify(SSL.VERIFY_NONE)
            ctx.set_options(SSL.OP_NO_COMPRESSION)
            cls._context = ctx
        return cls._context

    def clientConnectionForTLS(self, tls_protocol):
        connection = SSL.Connection(self.context(), None)
        name = self.server_name
        if name and not name.startswith("[") and not name.replace(".", "").isdigit() \
                and ":" not in name:
            connection.set_tlsext_host_name(name.encode("idna"))
        return connection


@implementer(IHandshakeListener)
class RelayClient(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = MAX_REPLY_LINE

    def __init__(self, job: Job, server_name: str, label: str, use_tls: bool, clock=reactor):
        self.job = job
        self.server_name = server_name
        self.use_tls = use_tls
        self.clock = clock
        self.result = SessionResult(label)
        self.done = defer.Deferred()
        self._lines = []
        self._expect = deque()  # (command, handler, timeout) in the order replies come
        self._later = deque()  # commands not sent yet (no PIPELINING)
        self._timer = None
        self._tls = None  # None, "handshake", "on"
        self._extensions = {}
        self._in_transaction = False
        self._mail_reply = None
        self._accepted = []
        self._finished = False
        self._pump = None

    # -- reading replies -----------------------------------------------------------

    def connectionMade(self):
        self._expect.append(("the greeting", self._on_greeting, GREETING_TIMEOUT))
        self._arm()

    def lineReceived(self, line: bytes):
        if self._tls == "handshake":
            return  # clear text sent after the 220 to STARTTLS: never trusted (RFC 3207 4.2)
        text = line.rstrip(b"\r").decode("utf-8", "replace")
        self._lines.append(text)
        if len(text) >= 4 and text[3] == "-" and len(self._lines) < 100:
            return
        lines, self._lines = self._lines, []
        code = text[:3]
        if not (code.isdigit() and code[0] in "2345") or not self._expect:
            return self._broken(RemoteReply(421, f"4.5.0 Unexpected reply from "
                                                 f"{self.result.label}: {text[:200]}"))
        reply = RemoteReply(int(code), " ".join(part[4:].strip() for part in lines).strip())
        _, handler, _ = self._expect.popleft()
        self._arm()
        handler(reply, lines)

    def lineLengthExceeded(self, line):
        self._broken(RemoteReply(421, f"4.5.0 Reply line too long from {self.result.label}"))

    def _send(self, line: str, name: str, handler, timeout=COMMAND_TIMEOUT):
        self._expect.append((name, handler, timeout))
        if len(self._expect) == 1:
            self._arm()
        self.transport.write(line.encode("utf-8") + b"\r\n")

    def _arm(self, timeout=None, name=None):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if timeout is None and self._expect:
            name, _, timeout = self._expect[0]
        if timeout is not None and not self._finished:
            self._timer = self.clock.callLater(timeout, self._timed_out, name)

    def _timed_out(self, name):
        self._timer = None
        self._broken(results.TIMED_OUT(command=name, host=self.result.label))
        self.transport.abortConnection()

    # -- the conversation ------------------------------------------------------------

    def _on_greeting(self, reply, lines):
        if reply.code != 220:
            return self._give_up(reply, next_host=True)
        self._send(f"EHLO {self.job.helo}", "EHLO", self._on_ehlo)

    def _on_ehlo(self, reply, lines):
        if reply.ok:
            self._extensions = _extensions(lines)
            if "STARTTLS" in self._extensions and self.use_tls and self._tls is None:
                return self._send("STARTTLS", "STARTTLS", self._on_starttls)
            return self._transaction()
        if reply.code in (500, 501, 502, 504, 550):  # no ESMTP: RFC 5321 4.1.4
            return self._send(f"HELO {self.job.helo}", "HELO", self._on_helo)
        self._give_up(reply, next_host=True)

    def _on_helo(self, reply, lines):
        if not reply.ok:
            return self._give_up(reply, next_host=True)
        self._extensions = {}
        self._transaction()

    def _on_starttls(self, reply, lines):
        if reply.code != 220:
            return self._transaction()  # refused: go on in clear (RFC 3207 4)
        self._tls = "handshake"
        self._buffer = b""  # LineOnlyReceiver's: clear text must not leak into TLS
        self.transport.startTLS(OpportunisticTLS(self.server_name))
        # RFC 3207 4.2: forget what the server said in clear, ask again inside TLS.
        self._send(f"EHLO {self.job.helo}", "EHLO after STARTTLS", self._on_tls_ehlo)

    def handshakeCompleted(self):
        self._tls = "on"
        handle = self.transport.getHandle()
        self.result.tls = handle.get_protocol_version_name()

    def _on_tls_ehlo(self, reply, lines):
        if not reply.ok:
            return self._give_up(reply, next_host=True)
        self._extensions = _extensions(lines)
        self._transaction()

    def _transaction(self):
        job = self.job
        limit = self._extensions.get("SIZE", "")
        if limit.isdigit() and int(limit) and job.size > int(limit):
            return self._give_up(RemoteReply(552, f"5.3.4 Message of {job.size} bytes exceeds "
                                                  f"the limit of {self.result.label} ({limit})"))
        self._in_transaction = True
        params = f" SIZE={job.size}" if "SIZE" in self._extensions else ""
        if "8BITMIME" in self._extensions:
            params += " BODY=8BITMIME"
        commands = [(f"MAIL FROM:<{job.sender}>{params}", "MAIL", self._on_mail,
                     COMMAND_TIMEOUT)]
        commands += [(f"RCPT TO:<{r}>", "RCPT", self._on_rcpt, COMMAND_TIMEOUT)
                     for r in job.recipients]
        commands.append(("DATA", "DATA", self._on_data, DATA_START_TIMEOUT))
        self._rcpt_order = deque(job.recipients)
        if "PIPELINING" in self._extensions:
            for line, name, handler, timeout in commands:
                self._expect.append((name, handler, timeout))
            self._arm()
            self.transport.writeSequence([line.encode("utf-8") + b"\r\n"
                                          for line, *_ in commands])
        else:
            self._later.extend(commands)
            self._next()

    def _next(self):
        """Without PIPELINING: send the next command, if the transaction still makes sense."""
        if self._finished or not self._later:
            return
        if self._mail_reply is not None and not self._mail_reply.ok:
            return self._finish()
        line, name, handler, timeout = self._later.popleft()
        if name == "DATA" and not self._accepted:
            return self._finish()
        self._send(line, name, handler, timeout)

    def _on_mail(self, reply, lines):
        self._mail_reply = reply
        if not reply.ok:
            self.result.failure = reply
        self._next()

    def _on_rcpt(self, reply, lines):
        recipient = self._rcpt_order.popleft()
        if self._mail_reply is not None and self._mail_reply.ok:
            if reply.ok:
                self._accepted.append(recipient)
            else:
                self.result.replies[recipient] = reply
        self._next()

    def _on_data(self, reply, lines):
        if reply.code != 354:
            for recipient in self._accepted:
                self.result.replies[recipient] = reply
            if self.result.failure is None and not self._accepted:
                self.result.failure = reply
            return self._finish()
        if not self._accepted or not self._mail_reply.ok:
            # RFC 2920 3.1: pipelined DATA got 354 although nobody was accepted.
            self._expect.append(("the end of data", lambda r, l: self._finish(), DATA_END_TIMEOUT))
            self._arm()
            self.transport.write(b".\r\n")
            return
        self._pump = BodyPump(self, self.job.path)
        self._pump.start().addCallbacks(self._body_sent, self._body_failed)

    def _body_sent(self, _):
        self._pump = None
        if self._finished:
            return
        self._expect.append(("the end of data", self._on_end_of_data, DATA_END_TIMEOUT))
        self._arm()

    def _body_failed(self, failure):
        self._pump = None
        if not self._finished:
            self._broken(results.READ_FAILED(reason=failure.getErrorMessage()))
            self.transport.abortConnection()

    def _on_end_of_data(self, reply, lines):
        for recipient in self._accepted:
            self.result.replies[recipient] = reply
        self._finish()

    # -- ending --------------------------------------------------------------------------

    def _give_up(self, reply, next_host=False):
        self.result.failure = reply
        self.result.next_host = next_host
        self._finish()

    def _finish(self, quit=True):
        if self._finished:
            return
        self._finished = True
        self._later.clear()
        if quit and self.transport.connected:
            self._expect.clear()
            self._expect.append(("QUIT", lambda r, l: self.transport.loseConnection(),
                                 QUIT_TIMEOUT))
            self._arm_quit()
            self.transport.write(b"QUIT\r\n")
        else:
            self._arm()
            self.transport.loseConnection()
        self.done.callback(self.result)

    def _arm_quit(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.clock.callLater(QUIT_TIMEOUT, self.transport.abortConnection)

    def _broken(self, reply):
        """The conversation cannot go on (connection lost, timeout, nonsense)."""
        if self._finished:
            return
        if self._tls == "handshake":
            self.result.tls_failed = reply.text
            self.result.failure = results.TLS_FAILED(host=self.result.label, reason=reply.text)
            self.result.next_host = True
        elif not self._in_transaction:
            self.result.failure = reply
            self.result.next_host = True
        else:
            self.result.failure = reply
        self._finish(quit=False)

    def connectionLost(self, reason):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._pump is not None:
            self._pump.stopProducing()
        if not self._finished:
            where = ("during the TLS handshake" if self._tls == "handshake"
                     else "during DATA" if self._pump is not None or self._accepted
                     else "in the middle of the session")
            detail = reason.getErrorMessage() if not reason.check(error.ConnectionDone) else ""
            self._broken(results.CONNECTION_LOST(
                host=self.result.label, stage=where + (f" ({detail})" if detail else "")))

    def abort(self):
        """Used at shutdown: drop the connection now; the recipients stay pending."""
        if not self._finished:
            self.result.failure = results.STOPPED()
            self.result.interrupted = True
            self._finish(quit=False)
        self.transport.abortConnection()


@implementer(IPushProducer)
class BodyPump:
    """Streams the queued file into the session, pausing while the socket is full."""

    def __init__(self, session: RelayClient, path: str):
        self.session = session
        self.path = path
        self._paused = None  # a Deferred while paused
        self._stopped = False

    @defer.inlineCallbacks
    def start(self):
        transport = self.session.transport
        transport.registerProducer(self, True)
        encoder = BodyEncoder()
        fd = None
        try:
            fd, data = yield threads.deferToThread(_open_and_read, self.path)
            offset = len(data)
            while True:
                if self._stopped:
                    return
                transport.write(encoder.feed(data))
                self.session._arm(DATA_BLOCK_TIMEOUT, "a block of data")
                if len(data) < CHUNK:
                    break
                if self._paused is not None:
                    yield self._paused
                data = yield threads.deferToThread(os.pread, fd, CHUNK, offset)
                offset += len(data)
            if not self._stopped:
                transport.write(encoder.finish())
        finally:
            if fd is not None:
                os.close(fd)
            if not self._stopped:
                transport.unregisterProducer()

    def pauseProducing(self):
        if self._paused is None:
            self._paused = defer.Deferred()

    def resumeProducing(self):
        paused, self._paused = self._paused, None
        if paused is not None:
            paused.callback(None)

    def stopProducing(self):
        self._stopped = True
        self.resumeProducing()


def _open_and_read(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return fd, os.pread(fd, CHUNK, 0)
    except BaseException:
        os.close(fd)
        raise


def _extensions(lines) -> dict:
    """EHLO keywords -> their parameters (the first line is the greeting)."""
    out = {}
    for line in lines[1:]:
        keyword, _, params = line[4:].strip().partition(" ")
        if keyword:
            out[keyword.upper()] = params.strip()
    return out


def _connect_failure(failure) -> str:
    if failure.check(error.ConnectionRefusedError):
        return "connection refused"
    if failure.check(error.TimeoutError, defer.TimeoutError):
        return "connection timed out"
    if failure.check(error.NoRouteError):
        return "no route to host"
    return failure.getErrorMessage()


def open_session(job: Job, server_name: str, address: str, port: int, use_tls: bool,
                 clock=reactor):
    """Connect and run one session: (the RelayClient, Deferred SessionResult)."""
    label = f"{server_name}[{address}]:{port}" if server_name != address else f"[{address}]:{port}"
    session = RelayClient(job, server_name, label, use_tls, clock)
    kind = TCP6ClientEndpoint if ":" in address else TCP4ClientEndpoint
    connecting = connectProtocol(kind(clock, address, port, timeout=CONNECT_TIMEOUT), session)

    def failed(failure):
        if failure.check(defer.CancelledError):
            result = SessionResult(label)
            result.failure = results.STOPPED()
            result.interrupted = True
            return result
        result = SessionResult(label)
        result.failure = results.CONNECT_FAILED(host=label, reason=_connect_failure(failure))
        result.next_host = True
        return result
    connecting.addCallbacks(lambda _: session.done, failed)
    session.connecting = connecting
    return session, connecting
