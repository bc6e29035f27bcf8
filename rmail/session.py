"""What the SMTP and IMAP sessions share: who is on the other end, and whether TLS is on."""


class Session:
    """Mixed into the protocol classes; expects ``transport``, ``startedTLS`` and a
    ``factory`` with ``implicit_tls`` (TLS from the first byte, ports 465 and 993)."""

    @property
    def remote(self) -> str:
        return getattr(self.transport.getPeer(), "host", "?")

    @property
    def secure(self) -> bool:
        return self.startedTLS or self.factory.implicit_tls
