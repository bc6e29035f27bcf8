"""New mail shown live: a second IMAP connection that sits in IDLE on the open folder.

Why a second connection: the UI's own connection must answer key presses at once, and a
connection in IDLE can do nothing else until DONE.  The watch runs in a daemon thread,
reports what it sees as ``MailEvent`` objects on a queue the UI polls between key
presses, and never touches the UI's state itself.

Events: ``watching`` (EXAMINE done; detail is (messages, uidnext), so the UI can tell
whether something arrived between its own SELECT and this one), ``changed`` (EXISTS,
EXPUNGE or FETCH arrived: the folder changed), ``lost`` (detail is a sentence; the
watch retries by itself with growing pauses).

IDLE is RFC 2177: the command is renewed every 25 minutes, under the 29 the RFC allows
servers to time out.  A server without IDLE is polled with NOOP.
"""

import logging
import os
import queue
import re
import select
import threading
import time
from dataclasses import dataclass

from rmail.client import session, wire

log = logging.getLogger("rmail.client")

RENEW_SECONDS = 25 * 60
POLL_SECONDS = 30
RETRY_SECONDS = (1, 2, 5, 10, 30)

_CHANGE = re.compile(rb"^\* \d+ (EXISTS|EXPUNGE|FETCH)\b", re.IGNORECASE)
_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")


@dataclass(frozen=True)
class MailEvent:
    kind: str  # "watching", "changed" or "lost"
    folder: str
    detail: object = None


class _Stopped(Exception):
    pass


class NewMailWatch:
    """Watches one folder until stop(); see the module docstring."""

    def __init__(self, account, password, folder, events: queue.Queue,
                 retry=RETRY_SECONDS, renew=RENEW_SECONDS, poll=POLL_SECONDS):
        self.account = account
        self._password = password
        self.folder = folder
        self.events = events
        self.retry = retry
        self.renew = renew
        self.poll = poll
        self._stopped = threading.Event()
        self._wake_lock = threading.Lock()  # the pipe is never written after it is closed
        self._wake_read, self._wake_write = os.pipe()
        self.thread = threading.Thread(target=self._run, name=f"watch {folder}", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        """Ask the thread to finish (DONE, LOGOUT); returns at once."""
        with self._wake_lock:
            if not self._stopped.is_set():
                self._stopped.set()
                os.write(self._wake_write, b"!")

    def _post(self, kind, detail=None):
        if not self._stopped.is_set():
            self.events.put(MailEvent(kind, self.folder, detail))

    def _pause(self, seconds) -> bool:
        """Wait, unless stopped first; True when stopped."""
        if self._stopped.is_set():
            return True
        select.select([self._wake_read], [], [], seconds)
        return self._stopped.is_set()

    def _run(self):
        attempt = 0
        try:
            while not self._stopped.is_set():
                conn = None
                try:
                    conn = session.open_connection(self.account, self._password)
                    typ, data = conn.select(wire.folder_argument(self.folder), readonly=True)
                    if typ != "OK":
                        raise session.ServerRefused(f"cannot watch {self.folder}")
                    messages = int(data[0]) if data and data[0] and data[0].isdigit() else 0
                    uidnext = conn.untagged_responses.get("UIDNEXT", [b""])[-1]
                    conn.untagged_responses.clear()
                    self._post("watching", (messages, int(uidnext) if uidnext.isdigit() else None))
                    attempt = 0
                    if "IDLE" in conn.capabilities:
                        self._idle(conn)
                    else:
                        self._poll(conn)
                except _Stopped:
                    break
                except Exception as e:  # network, refusal or surprise: report and retry
                    if self._stopped.is_set():
                        break
                    log.info("new-mail watch on %s lost: %s", self.folder, e,
                             exc_info=not isinstance(e, (session.ConnectionLost, OSError,
                                                      session.imaplib.IMAP4.abort)))
                    self._post("lost", f"new mail watch: {e}")
                    pause = self.retry[min(attempt, len(self.retry) - 1)]
                    attempt += 1
                    if self._pause(pause):
                        break
                finally:
                    if conn is not None:
                        self._close(conn)
        finally:
            with self._wake_lock:
                self._stopped.set()
                os.close(self._wake_read)
                os.close(self._wake_write)

    def _close(self, conn):
        try:
            conn.logout()
        except Exception:  # the connection is being thrown away either way
            try:
                conn.shutdown()
            except OSError:
                pass

    def _response(self, conn) -> bytes:
        """One whole response, literals included (a FETCH may carry one)."""
        line = conn.readline()
        if not line:
            raise session.ConnectionLost("the server closed the connection")
        while True:
            m = _LITERAL.search(line)
            if not m:
                return line
            line += conn.read(int(m.group(1))) + conn.readline()

    def _wait(self, conn, seconds) -> str:
        """'data' when a response is waiting, 'stop' when stopped, 'time' on timeout."""
        if conn.waiting():
            return "data"
        ready, _, _ = select.select([conn.sock, self._wake_read], [], [], max(seconds, 0))
        if self._stopped.is_set():
            return "stop"
        return "data" if ready else "time"

    def _idle(self, conn):
        while True:
            tag = conn._new_tag()
            conn.tagged_commands.pop(tag, None)
            conn.send(tag + b" IDLE\r\n")
            changed = False
            while True:
                line = self._response(conn)
                if line.startswith(b"+"):
                    break
                if line.startswith(tag + b" "):
                    raise session.ServerRefused("the server refused IDLE: "
                                                + line.decode("utf-8", "replace").strip())
                changed |= bool(_CHANGE.match(line))
            renew_at = time.monotonic() + self.renew
            outcome = "data"
            while True:
                if changed and not conn.waiting():
                    self._post("changed")
                    changed = False
                outcome = self._wait(conn, renew_at - time.monotonic())
                if outcome != "data":
                    break
                changed |= bool(_CHANGE.match(self._response(conn)))
            conn.send(b"DONE\r\n")
            while True:
                line = self._response(conn)
                if line.startswith(tag + b" "):
                    break
                changed |= bool(_CHANGE.match(line))
            if changed:
                self._post("changed")
            if outcome == "stop":
                raise _Stopped()

    def _poll(self, conn):
        while True:
            if self._pause(self.poll):
                raise _Stopped()
            typ, _ = conn.noop()
            untagged = conn.untagged_responses
            if any(k in untagged for k in ("EXISTS", "EXPUNGE", "FETCH")):
                self._post("changed")
            untagged.clear()
