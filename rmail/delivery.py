"""The one delivery path: who may send what where, and putting accepted mail away.

SMTP (both the MX port and submission) and, later, the HTTP API's send call these
same checks, so policy lives here and nowhere else:

- a recipient in a local domain must resolve to a user (exact user, then aliases);
- a recipient elsewhere is relayed only for an authenticated sender while
  ``relay.enabled`` is true; until the outbound queue exists every external
  recipient is refused as not permitted;
- an authenticated sender may use only its own address or one that resolves to it.

Accepted mail is delivered once per user however many of its addresses were named.
"""

from twisted.logger import Logger

from rmail.directory import Directory, User, split_address, DirectoryError

log = Logger(namespace="rmail.delivery")

POSTMASTER = "postmaster"


class Refused(Exception):
    """A sender or recipient the policy does not accept; ``reason`` names which rule."""

    UNKNOWN_USER = "unknown user"
    RELAY_DENIED = "relay not permitted"
    SENDER_NOT_OWNED = "sender not owned"

    def __init__(self, reason: str, address: str):
        super().__init__(f"{address}: {reason}")
        self.reason = reason
        self.address = address


class MailPolicy:
    def __init__(self, settings, directory: Directory, store):
        self.settings = settings  # .config is the config in force (replaced on SIGHUP)
        self.directory = directory
        self.store = store

    def check_sender(self, user, sender: str) -> None:
        """Refuse a MAIL FROM the authenticated *user* (or None) may not use."""
        if user is not None and not self.directory.owns(user, sender):
            raise Refused(Refused.SENDER_NOT_OWNED, sender)

    def check_recipient(self, user, recipient: str) -> User:
        """The local User that *recipient* delivers to; Refused otherwise."""
        if "@" not in recipient and recipient.lower() == POSTMASTER:
            recipient = f"{POSTMASTER}@{self.settings.config.domains[0]}"
        try:
            _, domain = split_address(recipient)
        except DirectoryError:
            raise Refused(Refused.UNKNOWN_USER, recipient)
        if self.directory.is_local_domain(domain):
            target = self.directory.resolve(recipient)
            if target is None:
                raise Refused(Refused.UNKNOWN_USER, recipient)
            return target
        # External: the outbound queue is not built yet, so nobody may relay.
        raise Refused(Refused.RELAY_DENIED, recipient)

    def deliver(self, message, recipients):
        """Deliver a finished message to each distinct local user; Deferred {address: uid}."""
        addresses = list(dict.fromkeys(user.address for user in recipients))
        return self.store.deliver(message, addresses)
