"""The one delivery path: who may send what where, and putting accepted mail away.

SMTP (both the MX port and submission) and the HTTP API's send call these same
checks, so policy lives here and nowhere else:

- a recipient in a local domain must resolve to a user (exact user, then aliases);
- a recipient elsewhere is relayed only for an authenticated sender while
  ``relay.enabled`` is true (read at every check, so SIGHUP changes it at once);
  it becomes an ``ExternalRecipient``, and ``deliver`` puts the message in the
  outbound queue (``rmail.relay``) for it;
- an authenticated sender may use only its own address or one that resolves to it.

Accepted mail is delivered once per user however many of its addresses were named,
and queued once for all its external recipients; ``deliver``'s Deferred fires only
when both are durable.
"""

from typing import NamedTuple

from twisted.internet import defer
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


class ExternalRecipient(NamedTuple):
    """A recipient outside the local domains, accepted for relaying from *sender*."""

    address: str
    sender: str


class MailPolicy:
    def __init__(self, settings, directory: Directory, store, relay=None):
        self.settings = settings  # .config is the config in force (replaced on SIGHUP)
        self.directory = directory
        self.store = store
        self.relay = relay  # the outbound queue (rmail.relay.service.RelayService)

    def check_sender(self, user, sender: str) -> None:
        """Refuse a MAIL FROM the authenticated *user* (or None) may not use."""
        if user is not None and not self.directory.owns(user, sender):
            raise Refused(Refused.SENDER_NOT_OWNED, sender)

    def check_recipient(self, user, recipient: str, sender=None) -> "User | ExternalRecipient":
        """The local User that *recipient* delivers to, or an ExternalRecipient to relay
        to from *sender* (default: the user's address); Refused otherwise."""
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
        if user is None or not self.settings.config.relay.enabled or self.relay is None:
            raise Refused(Refused.RELAY_DENIED, recipient)
        return ExternalRecipient(recipient, user.address if sender is None else sender)

    def check_submission(self, user, sender: str, recipients) -> list:
        """A whole submission at once (the HTTP API's send): what to deliver to, one per
        recipient (a local User or an ExternalRecipient); Refused for the first sender or
        recipient not accepted, so that a refused message goes to nobody."""
        self.check_sender(user, sender)
        return [self.check_recipient(user, recipient, sender) for recipient in recipients]

    def deliver(self, message, recipients):
        """Deliver a finished message to each distinct local user, and queue it once for
        the external recipients; Deferred {address: uid} of the local deliveries."""
        external = [r for r in recipients if isinstance(r, ExternalRecipient)]
        addresses = list(dict.fromkeys(
            user.address for user in recipients if not isinstance(user, ExternalRecipient)))
        if not external:
            return self.store.deliver(message, addresses)
        # Queued first: the store may take the file over (rename) for its one recipient.
        unique = {}
        for r in external:
            unique.setdefault(r.address.lower(), r.address)
        d = self.relay.enqueue(message, external[0].sender, list(unique.values()), hold=True)

        def queued(queue_id):
            local = defer.maybeDeferred(self.store.deliver, message, addresses)

            def delivered(uids):
                self.relay.release(queue_id)
                return uids

            def failed(failure):  # nothing was accepted: send nothing either
                self.relay.cancel(queue_id)
                return failure
            return local.addCallbacks(delivered, failed)
        return d.addCallback(queued)
