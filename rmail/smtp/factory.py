"""The SMTP listeners' factory: one per port kind, sharing the policy, store and TLS.

It also owns graceful shutdown (SPEC, Signals): stop taking new transactions, let the
ones in flight finish within ``limits.SHUTDOWN_GRACE`` seconds, then close the rest.
"""

from twisted.internet import defer, protocol, reactor

from rmail.smtp import limits
from rmail.smtp.server import SMTPServer


class SMTPFactory(protocol.ServerFactory):
    protocol = SMTPServer
    noisy = False  # rmail logs its own connection lines

    def __init__(self, kind, settings, policy, store, authenticator, tls, implicit_tls=False,
                 clock=reactor):
        self.kind = kind
        self.settings = settings
        self.policy = policy
        self.store = store
        self.authenticator = authenticator
        self.tls = tls
        self.implicit_tls = implicit_tls
        self.clock = clock
        self.sessions = set()
        self._drained = []

    @property
    def hostname(self) -> str:
        return self.settings.config.hostname

    @property
    def max_message_size(self) -> int:
        return self.settings.config.smtp.max_message_size

    @property
    def max_recipients(self) -> int:
        return self.settings.config.smtp.max_recipients

    def buildProtocol(self, addr):
        return self.protocol(self)

    def session_closed(self, session):
        if not self.sessions:
            waiters, self._drained = self._drained, []
            for d in waiters:
                d.callback(None)

    def shut_down(self):
        """Deferred firing when every session has closed (forced after the grace period)."""
        if not self.sessions:
            return defer.succeed(None)
        d = defer.Deferred()
        self._drained.append(d)
        for session in list(self.sessions):
            session.shut_down()

        def force():
            for session in list(self.sessions):
                session.transport.abortConnection()
        call = self.clock.callLater(limits.SHUTDOWN_GRACE, force)
        return d.addBoth(lambda r: (call.active() and call.cancel(), r)[1])
