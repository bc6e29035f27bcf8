"""One queued message and the state of each of its recipients.

The message bytes are stored once (``queue.QueueDir`` keeps them); this is everything
else, kept per recipient because one message can be delivered to one domain, refused
by a second and waiting for a third:

- ``pending``: not delivered yet; ``next_attempt`` says when to try again;
- ``delivered``: a destination accepted it (``last_reply`` is its 2yz reply);
- ``failed``: refused for good, or expired; ``reported`` turns true once the DSN to
  the sender has been handed on (delivered locally or queued), so a crash between the
  two sends the bounce again rather than never.

An entry is finished, and leaves the queue, once no recipient is pending and every
failure has been reported.  Entries are JSON on disk; ``from_json`` refuses anything it
did not write, so a damaged file is quarantined instead of half-read.
"""

import json
import time
from dataclasses import asdict, dataclass, field

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
STATES = (PENDING, DELIVERED, FAILED)
FORMAT = 1


class DamagedEntry(Exception):
    """An entry file that is not a complete entry this version wrote."""


@dataclass
class Recipient:
    address: str
    status: str = PENDING
    attempts: int = 0
    next_attempt: float = 0.0
    last_attempt: float = 0.0
    last_reply: str = ""  # "250 2.0.0 OK", as RemoteReply's str()
    last_host: str = ""  # "mx.example.net[192.0.2.1]" that gave last_reply
    reported: bool = False

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2].lower()


@dataclass
class QueueEntry:
    id: str
    sender: str  # "" (the null reverse-path) for a bounce
    created: float
    size: int
    recipients: list[Recipient] = field(default_factory=list)

    @classmethod
    def new(cls, queue_id: str, sender: str, recipients, size: int, now=None) -> "QueueEntry":
        now = time.time() if now is None else now
        unique = list(dict.fromkeys(recipients))
        return cls(queue_id, sender, now, size, [Recipient(a, next_attempt=now) for a in unique])

    def pending(self) -> list[Recipient]:
        return [r for r in self.recipients if r.status == PENDING]

    def due(self):
        """When the next recipient is due, or None when none is pending."""
        times = [r.next_attempt for r in self.recipients if r.status == PENDING]
        return min(times) if times else None

    def unreported(self) -> list[Recipient]:
        return [r for r in self.recipients if r.status == FAILED and not r.reported]

    @property
    def finished(self) -> bool:
        return all(r.status == DELIVERED or (r.status == FAILED and r.reported)
                   for r in self.recipients)

    @property
    def attempts(self) -> int:
        return max((r.attempts for r in self.recipients), default=0)

    # -- on disk -----------------------------------------------------------------------

    def to_json(self) -> bytes:
        data = {"format": FORMAT, **asdict(self)}
        return (json.dumps(data, indent=1) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes, queue_id: str) -> "QueueEntry":
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DamagedEntry(f"not complete JSON ({e})")
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DamagedEntry(f"not a format-{FORMAT} queue entry")
        try:
            recipients = [_recipient(r) for r in data["recipients"]]
            entry = cls(_typed(data["id"], str), _typed(data["sender"], str),
                        float(_typed(data["created"], (int, float))),
                        _typed(data["size"], int), recipients)
        except (KeyError, TypeError, ValueError) as e:
            raise DamagedEntry(f"a field is missing or of the wrong type ({e})")
        if entry.id != queue_id:
            raise DamagedEntry(f"names queue ID {entry.id!r}, not {queue_id!r}")
        if not recipients:
            raise DamagedEntry("has no recipients")
        return entry


def _typed(value, types):
    if isinstance(value, bool) or not isinstance(value, types):
        raise TypeError(f"{value!r}")
    return value


def _recipient(data) -> Recipient:
    if not isinstance(data, dict):
        raise TypeError("recipient is not an object")
    r = Recipient(
        address=_typed(data["address"], str), status=_typed(data["status"], str),
        attempts=_typed(data["attempts"], int),
        next_attempt=float(_typed(data["next_attempt"], (int, float))),
        last_attempt=float(_typed(data["last_attempt"], (int, float))),
        last_reply=_typed(data["last_reply"], str), last_host=_typed(data["last_host"], str),
        reported=data["reported"] is True)
    if r.status not in STATES or "@" not in r.address:
        raise ValueError(f"recipient {r.address!r} in state {r.status!r}")
    return r
