"""What a destination (or the relay itself) answered for a recipient, and the replies the
relay makes up when no server answered.

Every outcome of an attempt is a ``RemoteReply``: a real SMTP reply from the
destination, or one of the synthetic replies below for failures that happen before or
outside an SMTP conversation (DNS, connection, timeouts).  Giving them real codes and
RFC 3463 enhanced codes means one rule decides retry or bounce (4yz retries, 5yz
bounces), and the DSN's Status and Diagnostic-Code fields come out right.
"""

import re
from typing import NamedTuple

_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})\b")


class RemoteReply(NamedTuple):
    code: int
    text: str  # the reply's lines joined with a space, without the code

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def status(self) -> str:
        """The RFC 3463 status: the reply's own enhanced code when it has a matching one,
        else the class alone (``5.0.0``/``4.0.0``, RFC 3463 section 3.1)."""
        match = _ENHANCED.match(self.text)
        if match and match.group(1) == str(self.code)[0]:
            return match.group(0)
        return f"{str(self.code)[0]}.0.0"

    @classmethod
    def parse(cls, text: str) -> "RemoteReply":
        """A reply from its ``str()`` form (as kept in queue entries)."""
        code, _, rest = text.partition(" ")
        return cls(int(code), rest) if code.isdigit() else cls(451, text)


def _made(code, text):
    return lambda **kw: RemoteReply(code, text.format(**kw))


# DNS (RFC 5321 section 5.1; RFC 7505 for the null MX).
NO_SUCH_DOMAIN = _made(550, "5.1.2 Domain {domain} does not exist (DNS NXDOMAIN)")
NULL_MX = _made(556, "5.1.10 Domain {domain} accepts no mail (null MX, RFC 7505)")
NO_MAIL_HOST = _made(550, "5.1.2 Domain {domain} has no MX and no A/AAAA record")
DNS_FAILED = _made(451, "4.4.3 DNS lookup of {name} failed: {reason}")
MX_UNRESOLVED = _made(451, "4.4.4 No address found for the mail hosts of {domain}")

# Connections and sessions.
CONNECT_FAILED = _made(421, "4.4.1 Cannot connect to {host}: {reason}")
TIMED_OUT = _made(421, "4.4.2 Timed out waiting for the reply to {command} from {host}")
CONNECTION_LOST = _made(421, "4.4.2 Connection to {host} lost {stage}")
TLS_FAILED = _made(421, "4.7.0 STARTTLS handshake with {host} failed: {reason}")
STOPPED = _made(421, "4.3.2 Attempt interrupted: rmail is shutting down")
READ_FAILED = _made(451, "4.3.0 Cannot read the queued message: {reason}")

# Bounces decided here.
EXPIRED = _made(554, "5.4.7 Delivery time expired after {age}; last reply: {last}")
