"""The change hub: committed store changes, announced to whoever listens.

Listeners (IMAP sessions for IDLE and unsolicited responses) subscribe to one user's
folder and receive ``Change`` events on the reactor thread, in commit order, after the
change is durable.  A listener that raises is logged and kept; one that goes away
must unsubscribe (sessions do it in ``connectionLost``).
"""

from dataclasses import dataclass, field

from twisted.logger import Logger

log = Logger(namespace="rmail.store.hub")

ADDED = "added"
FLAGS = "flags"
EXPUNGED = "expunged"
FOLDERS = "folders"  # a folder was created, deleted or renamed


@dataclass(frozen=True)
class Change:
    kind: str
    address: str
    folder: str
    uids: tuple = ()
    flags: dict = field(default_factory=dict)  # FLAGS and ADDED: uid -> frozenset
    # ADDED: the new UIDs no session has taken as \Recent yet.  The first session with
    # the folder selected read-write to hear the change takes them (and empties it).
    unclaimed_recent: set = field(default_factory=set)


class ChangeHub:
    def __init__(self):
        self._listeners: dict[tuple, list] = {}

    def subscribe(self, address: str, folder: str, listener) -> None:
        self._listeners.setdefault((address, folder), []).append(listener)

    def unsubscribe(self, address: str, folder: str, listener) -> None:
        listeners = self._listeners.get((address, folder), [])
        if listener in listeners:
            listeners.remove(listener)
        if not listeners:
            self._listeners.pop((address, folder), None)

    def listener_count(self, address: str, folder: str) -> int:
        return len(self._listeners.get((address, folder), ()))

    def publish(self, change: Change) -> None:
        for listener in list(self._listeners.get((change.address, change.folder), ())):
            try:
                listener(change)
            except Exception:
                log.failure("change listener failed for {change}", change=change)
