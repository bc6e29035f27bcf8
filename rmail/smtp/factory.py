"""The SMTP listeners' factory: one per port kind, sharing the policy, store and TLS.

Graceful shutdown (SPEC, Signals) and the per-address connection gate are
``rmail.listener``'s: a session asked to stop closes at once when idle, else right
after its transaction.
"""

from twisted.internet import protocol, reactor

from rmail.listener import Listener
from rmail.smtp.server import SMTPServer


class SMTPFactory(Listener, protocol.ServerFactory):
    protocol = SMTPServer
    noisy = False  # rmail logs its own connection lines

    def __init__(self, kind, settings, policy, store, authenticator, tls, implicit_tls=False,
                 gate=None, clock=reactor):
        self.kind = kind
        self.settings = settings
        self.policy = policy
        self.store = store
        self.authenticator = authenticator
        self.tls = tls
        self.implicit_tls = implicit_tls
        self.init_listener(gate, clock)

    @property
    def hostname(self) -> str:
        return self.settings.config.hostname

    @property
    def max_message_size(self) -> int:
        return self.settings.config.smtp.max_message_size

    @property
    def max_recipients(self) -> int:
        return self.settings.config.smtp.max_recipients

    @property
    def limits(self):
        """smtp.* of the config in force (command line, errors, idle timeout)."""
        return self.settings.config.smtp

    def new_session(self, addr):
        return self.protocol(self)

    def refusal(self, why):
        return b"421 4.7.0 %s Too many connections from your address (%s)\r\n" % (
            self.hostname.encode("utf-8", "replace"), why.encode())
