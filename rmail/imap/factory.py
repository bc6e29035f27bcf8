"""The IMAP listeners' factory: shared store, logins, TLS, and the \\Recent bookkeeping.

\\Recent (RFC 3501 2.3.2) means "this session is the first to see the message".  The
factory remembers, per user and folder, the highest UID a read-write session has
claimed; it lives in memory, so after a restart everything old counts as seen before.
"""

from twisted.internet import protocol

from rmail.imap.server import IMAPServer


class IMAPFactory(protocol.ServerFactory):
    protocol = IMAPServer
    noisy = False

    def __init__(self, settings, store, authenticator, tls, implicit_tls=False):
        self.settings = settings
        self.store = store
        self.authenticator = authenticator
        self.tls = tls
        self.implicit_tls = implicit_tls
        self.sessions = set()
        self._recent_mark = {}  # (address, folder, uidvalidity) -> highest UID claimed

    @property
    def append_limit(self) -> int:
        return self.settings.config.smtp.max_message_size

    @property
    def allow_plaintext_auth(self) -> bool:
        return self.settings.config.imap.allow_plaintext_auth

    def buildProtocol(self, addr):
        return self.protocol(self)

    def claim_recent(self, address, folder, uidvalidity, uids, readonly) -> set:
        key = (address, folder, uidvalidity)
        mark = self._recent_mark.get(key, 0)
        recent = {u for u in uids if u > mark}
        if not readonly and uids:
            self._recent_mark[key] = max(mark, uids[-1])
        return recent

    def recent_count(self, address, info) -> int:
        mark = self._recent_mark.get((address, info.name, info.uidvalidity), 0)
        return max(0, min(info.messages, info.uidnext - 1 - mark))

    def shut_down(self):
        for session in list(self.sessions):
            session.shut_down()
