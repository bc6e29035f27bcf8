"""Named crash points: proving that no acknowledged message is lost at any instant.

With ``RMAIL_CRASHPOINT=<name>[:<n>]`` in the environment when rmail starts, the
process kills itself with SIGKILL the n-th time (default: the first) it reaches the
point called *name*.  The crash tests and ``bench/crashloop.py`` use it to stop the
server between two steps of a write and then check, after a restart, that every
message a client was told was stored is there exactly once.

Unset, ``reach`` is one comparison against None: nothing measurable.

Points that sit in the store or the spool are shared by every protocol, so an APPEND
over IMAP or a POST over HTTP crosses the same ``spool.*`` and ``store.*`` points as
SMTP DATA.  The ``*.after-*`` points fire once the success reply has left rmail's
buffers for the socket (``after_flush``): a kill there is a crash just after the client
was told "stored".
"""

import os
import signal
import sys
import threading

# The one list of points, in the order a message crosses them.
POINTS = {
    "spool.written": "the received message is written to its spool file, not yet fsynced",
    "spool.fsynced": "the spool file is fsynced",
    "store.placed": "the file is renamed or linked into messages/, directory not yet fsynced",
    "store.committed": "the index rows are committed",
    "smtp.before-250": "just before the 250 after DATA is written",
    "smtp.after-250": "just after the 250 after DATA left for the client",
    "imap.before-ok": "just before the OK to APPEND is written",
    "imap.after-ok": "just after the OK to APPEND left for the client",
    "http.before-201": "just before the 201 to a message upload is written",
    "http.after-201": "just after the 201 to a message upload left for the client",
    "queue.linked": "an outbound message's file is in the queue, its entry not yet written",
    "queue.written": "an outbound message's queue entry is written",
    "relay.accepted": "a destination answered 250, the queue entry not yet updated",
}


class UnknownCrashPoint(ValueError):
    """RMAIL_CRASHPOINT names no point of POINTS, or a count that is not a number."""


def _parse(value):
    if not value:
        return None
    name, _, count = value.partition(":")
    if name not in POINTS:
        raise UnknownCrashPoint(f"RMAIL_CRASHPOINT: no crash point {name!r} "
                                f"(known: {', '.join(POINTS)})")
    try:
        count = int(count) if count else 1
    except ValueError:
        raise UnknownCrashPoint(f"RMAIL_CRASHPOINT: {count!r} is not a count") from None
    if count < 1:
        raise UnknownCrashPoint("RMAIL_CRASHPOINT: the count starts at 1")
    return name, count


_armed = None
_reached = 0
_lock = threading.Lock()


def arm(value):
    """Take the setting (``name[:n]``, or None to disarm); ``service.build`` passes the
    environment's, so a misspelt point stops the start instead of silently never firing."""
    global _armed, _reached
    _armed = _parse(value)
    _reached = 0


def armed(name: str) -> bool:
    return _armed is not None and _armed[0] == name


def reach(name: str) -> None:
    """Called at the point *name*, from any thread; kills the process when it is armed."""
    if _armed is None or _armed[0] != name:
        return
    global _reached
    with _lock:
        _reached += 1
        if _reached < _armed[1]:
            return
    os.write(sys.stderr.fileno(), f"rmail: crash point {name} reached: SIGKILL\n".encode())
    os.kill(os.getpid(), signal.SIGKILL)


def after_flush(transport, name: str) -> None:
    """Reach *name* once *transport* has handed everything written so far to its socket."""
    if not armed(name):
        return
    from twisted.internet import reactor

    def check():
        if getattr(transport, "dataBuffer", b"") or getattr(transport, "_tempDataBuffer", None):
            reactor.callLater(0.001, check)
        else:
            reach(name)
    reactor.callLater(0, check)

