"""SMTP command lines: the session's framing and verb split (rmail/smtp/server.py) and
MAIL/RCPT path parsing (rmail/smtp/address.py).

The input drives a real ``SMTPServer`` (and ``SMTPFactory``, with a real config) over an
in-memory transport, with a policy, store and authenticator that answer at once.  Byte 0 picks the listener (bit 0: submission,
else MX; bit 1: TLS from the first byte; bits 4-7: the size limit), byte 1 where the stream is cut in two
``dataReceived`` calls, the rest is what the client sends.  The server answers every
line itself, so no exception may leave it; an exception it catches and answers with
``451 Internal error`` counts as a crash too.  The first line also goes straight to
``address.parse`` (``PathError`` is its documented refusal).
"""

import harness

from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, task
from twisted.internet.testing import StringTransport

with harness.instrumented():
    from rmail.delivery import Refused
    from rmail import config
    from rmail.smtp import address, factory, replies, server

EXPECTED = ()


class _User:
    def __init__(self, address):
        self.address = address


class _Writer:
    backlog = 0

    def write(self, data):
        pass

    def finish(self):
        return defer.succeed(None)

    def discard(self):
        pass

    def when_below(self, size):
        return defer.succeed(None)


class _Store:
    def new_message(self):
        return _Writer()


class _Policy:
    def check_sender(self, user, sender):
        if sender.startswith("nobody@"):
            raise Refused(Refused.SENDER_NOT_OWNED, sender)

    def check_recipient(self, user, recipient, sender=None):
        if recipient.startswith("unknown@"):
            raise Refused(Refused.UNKNOWN_USER, recipient)
        if recipient.endswith(".org"):
            raise Refused(Refused.RELAY_DENIED, recipient)
        return _User(recipient)

    def deliver(self, writer, users):
        return defer.succeed({u.address: 1 for u in users})


class _Throttle:
    def locked(self, remote):
        return False

    def failed(self, remote):
        pass


class _Authenticator:
    throttle = _Throttle()

    def login(self, credentials, remote, protocol):
        if credentials.password == b"secret":
            return defer.succeed(_User(credentials.username.decode("utf-8", "replace")))
        return defer.fail(UnauthorizedLogin())


class _Settings:
    def __init__(self, config):
        self.config = config


_CLOCK = task.Clock()  # timers (idle timeout, shutdown) never fire: the reactor never runs
_SETTINGS = {}


def _factory(flags):
    """A real SMTPFactory (bit 0: submission, bit 1: implicit TLS, bits 4-7: size limit)."""
    size = 1 << (8 + (flags >> 4))
    if size not in _SETTINGS:
        _SETTINGS[size] = _Settings(config.parse({
            "hostname": "mail.example.com", "domains": ["example.com"],
            "smtp": {"max_message_size": size, "max_recipients": 3}}, "/nonexistent/config.json"))
    kind = server.SUBMISSION if flags & 1 else server.MX
    return factory.SMTPFactory(kind, _SETTINGS[size], _Policy(), _Store(), _Authenticator(),
                               tls=object(), implicit_tls=bool(flags & 2), clock=_CLOCK)


class _Transport(StringTransport):
    def startTLS(self, context):
        pass


class _Server(server.SMTPServer):
    callLater = _CLOCK.callLater  # TimeoutMixin's timer

    def _internal_error(self, failure):
        if failure is None:
            raise  # the exception _line caught: a command crashed
        self.crashes.append(failure)


def test_one_input(data: bytes):
    if len(data) < 2:
        return
    flags, cut, stream = data[0], data[1], data[2:]
    first = stream.split(b"\n", 1)[0].rstrip(b"\r")
    verb, _, rest = first.strip().partition(b" ")
    for keyword in (b"FROM", b"TO"):
        try:
            address.parse(rest.strip(), keyword, replies.BAD_SENDER_SYNTAX,
                          allow_null=keyword == b"FROM")
        except address.PathError:
            pass

    session = _Server(_factory(flags))
    session.crashes = []
    session.makeConnection(_Transport())
    at = len(stream) * cut // 255
    session.dataReceived(stream[:at])
    session.dataReceived(stream[at:])
    session.connectionLost()
    if session.crashes:
        session.crashes[0].raiseException()


if __name__ == "__main__":
    harness.main(test_one_input, EXPECTED)
