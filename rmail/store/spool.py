"""Messages on their way in: written to ``{mail_root}/spool`` in chunks, then fsynced.

A protocol receiving a message (SMTP DATA, an IMAP APPEND literal, an HTTP body)
writes it here as it arrives, so a 50 MB message never sits in memory: bytes are
buffered up to ``CHUNK`` and then written by a thread, one write at a time, in order.
``finish`` fsyncs; only then may the store link the file into mailboxes.  A message
still all in memory (an IMAP APPEND) may instead be taken whole (``take``): the store then
writes and fsyncs it in its commit's own turn, before linking it.

Spool files are never visible to users.  One left behind by a crash was never
acknowledged (or was already linked into every mailbox), so the store deletes
spool leftovers at start.
"""

import os
import secrets
import time

from twisted.internet import defer
from zope.interface import implementer

from rmail import crashpoint
from rmail.store import workers
from rmail.store.interfaces import IMessageWriter

CHUNK = 256 * 1024


def unique_name() -> str:
    """A file name unique across processes and time, Maildir-style."""
    return f"{time.time_ns()}.{os.getpid()}.{secrets.token_hex(4)}"


@implementer(IMessageWriter)
class MessageWriter:
    def __init__(self, spool_dir: str):
        self.path = os.path.join(spool_dir, unique_name())
        self.name = os.path.basename(self.path)
        self.size = 0
        self.backlog = 0
        self._buffer = []
        self._fd = None
        self._chain = defer.succeed(None)
        self._finished = False
        self._flushed = False  # some of it was handed to the disk thread
        self._drain_waiters = []

    def write(self, data: bytes) -> None:
        if self._finished:
            raise RuntimeError("write after finish")
        self._buffer.append(data)
        self.size += len(data)
        self.backlog += len(data)
        if self.backlog >= CHUNK:
            self._flush()

    def _flush(self, sync=False):
        self._flushed = True
        chunk = b"".join(self._buffer)
        self._buffer = []

        def write_in_thread(_):
            return workers.run(self._write, chunk, sync)

        def written(result):
            self.backlog -= len(chunk)
            waiters, self._drain_waiters = self._drain_waiters, []
            for limit, d in waiters:
                if self.backlog <= limit or result is not None:  # a failure releases all
                    d.callback(None)
                else:
                    self._drain_waiters.append((limit, d))
            return result
        self._chain.addCallback(write_in_thread).addBoth(written)

    def _write(self, chunk: bytes, sync: bool) -> None:
        # Runs in a thread, one at a time (the Deferred chain serialises them).
        if self._fd is None:
            self._fd = _create(self.path)
        _write_all(self._fd, chunk)
        if sync:
            _fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    def take(self):
        """The whole message, if none of it has gone to the disk yet (an IMAP APPEND of a
        few KB); the writer is then finished, and the taker writes the bytes to ``path``
        with ``write_taken`` (the store does it in its commit's own turn, saving a trip
        to the disk thread).  None otherwise: then ``finish`` as usual."""
        if self._finished or self._flushed:
            return None
        self._finished = True
        data, self._buffer, self.backlog = b"".join(self._buffer), [], 0
        return data

    def when_below(self, limit: int):
        """Deferred firing once at most *limit* bytes wait for the disk (back-pressure)."""
        if self.backlog <= limit:
            return defer.succeed(None)
        d = defer.Deferred()
        self._drain_waiters.append((limit, d))
        return d

    @property
    def finished(self) -> bool:
        return self._finished

    def finish(self):
        """Write what is buffered and fsync; the Deferred fires with self."""
        self._finished = True
        self._flush(sync=True)
        d = defer.Deferred()
        self._chain.addCallbacks(lambda _: d.callback(self), d.errback)
        return d

    def discard(self):
        self._finished = True
        self._buffer = []

        def remove(_):
            def unlink():
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
            return workers.run(unlink)
        d = defer.Deferred()
        self._chain.addBoth(remove).addBoth(d.callback)
        return d


def write_taken(path: str, data: bytes) -> None:
    """In a thread: a message from ``MessageWriter.take``, written and fsynced as
    ``finish`` would have."""
    fd = _create(path)
    try:
        _write_all(fd, data)
        _fsync(fd)
    finally:
        os.close(fd)


def _create(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync(fd: int) -> None:
    crashpoint.reach("spool.written")
    os.fsync(fd)
    crashpoint.reach("spool.fsynced")
