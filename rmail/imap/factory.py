"""The IMAP listeners' factory: the shared store, logins and TLS.

It registers the IMAP avatar with the cred realm: a login asking for ``IAccount`` gets
an ``rmail.imap.mailbox.Account`` over the user's folders.
"""

from twisted.internet import protocol, reactor
from twisted.mail import imap4

from rmail.imap.mailbox import Account
from rmail.imap.server import IMAPServer
from rmail.listener import Listener


class IMAPFactory(Listener, protocol.ServerFactory):
    protocol = IMAPServer
    noisy = False
    # An IMAP session is told BYE and closed at once (a command in flight has its
    # answer lost either way); a peer that does not close its side (a TLS close_notify
    # never answered) is cut after this.
    shutdown_grace = 2.0

    def __init__(self, settings, store, authenticator, tls, implicit_tls=False, gate=None,
                 clock=reactor):
        self.settings = settings
        self.store = store
        self.authenticator = authenticator
        self.tls = tls
        self.implicit_tls = implicit_tls
        self.init_listener(gate, clock)
        authenticator.realm.avatar_factories[imap4.IAccount] = lambda user: Account(user, store)

    @property
    def append_limit(self) -> int:
        return self.settings.config.smtp.max_message_size

    @property
    def limits(self):
        """imap.* of the config in force (timeouts, command line, literal)."""
        return self.settings.config.imap

    @property
    def allow_plaintext_auth(self) -> bool:
        return self.settings.config.imap.allow_plaintext_auth

    def new_session(self, addr):
        return self.protocol(self)

    def refusal(self, why):
        return b"* BYE [UNAVAILABLE] Too many connections from your address (%s)\r\n" % (
            why.encode())
