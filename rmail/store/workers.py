"""The threads that run the store's short blocking calls: SQLite statements, renames,
fsyncs, spool writes, message file reads.

Twisted's reactor pool hands each call through a coordinator (``twisted._threads``: a
lock worker, a Queue and a Condition per hand-off) and wraps it in the caller's log
context; measured on IMAP ``UID STORE``, that hand-off held the reactor thread as long
as the SQLite work took in its thread.  A call here is one ``SimpleQueue.put``, and its
result comes back through a queue and a pipe (``_Handback``).  Ordering is the caller's
business: a shard runs one operation at a time (``InOrder``), a spool file one write at a
time.

Few threads (``storage.threads``, 2 by default): each call is mostly Python code between
SQLite statements, and every thread more is one more contender for the interpreter lock
with the reactor thread.  On 2 cores the IMAP mixed workload of ``bench/imap_fetch.py``
(10 clients) ran 945 operations/s with 2 threads, 812 with 4 and 671 with 20; SMTP
acceptance was the same with 2 as with 20.  A slow disk, where a thread waits
milliseconds in fsync, is the case for more.

Threads start on first use and stop when the reactor shuts down, after finishing the
calls already queued (a commit in flight completes).
"""

import collections
import os
import queue
import threading

from twisted.internet import defer, reactor as default_reactor
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

log = Logger(namespace="rmail.store")

SIZE = 2  # the default of storage.threads


class Workers:
    def __init__(self, size: int = SIZE, name: str = "rmail-store", reactor=default_reactor):
        self.size = size
        self.name = name
        self.reactor = reactor
        self._calls = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for a call
        self._lock = threading.Lock()
        self._handback = None  # made on the reactor thread at the first call

    def run(self, fn, *args):
        """Deferred result of fn(*args), called in one of the threads."""
        d = defer.Deferred()
        self.submit(d.callback, fn, *args)
        return d

    def submit(self, deliver, fn, *args):
        """Call fn(*args) in one of the threads, then deliver(its result, or a Failure) on
        the reactor thread."""
        if self._handback is None:
            self._handback = _Handback(self.reactor)
        self._calls.put((deliver, fn, args))
        if self._idle == 0 and len(self._threads) < self.size:
            self._start_one()

    def _start_one(self):
        with self._lock:
            if not self._threads:
                self.reactor.addSystemEventTrigger("during", "shutdown", self.stop)
            thread = threading.Thread(target=self._work, daemon=True,
                                      name=f"{self.name}-{len(self._threads)}")
            self._threads.append(thread)
        thread.start()

    def _work(self):
        call_back = self._handback.put
        while True:
            with self._lock:
                self._idle += 1
            item = self._calls.get()
            with self._lock:
                self._idle -= 1
            if item is None:
                return
            deliver, fn, args = item
            try:
                result = fn(*args)
            except BaseException:
                result = Failure()
            call_back(deliver, result)  # a Deferred's callback runs its errbacks on a Failure

    def stop(self):
        """Finish the queued calls, then end every thread (the reactor is shutting down)."""
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._calls.put(None)
        for thread in threads:
            thread.join()
        if self._handback is not None:
            self._handback.close()  # delivers what the last calls returned
            self._handback = None


@implementer(IReadDescriptor)
class _Handback:
    """Results on their way back to the reactor thread: a queue, and a pipe the reactor
    watches.  A thread writes to the pipe only when no wake-up is pending already, so a
    burst of results costs one.  (``callFromThread`` wakes the reactor for each, through
    a waker that resolves a deprecated module attribute on every call: a tenth of these
    threads' time in the IMAP mixed workload.)"""

    def __init__(self, reactor):
        self.reactor = reactor
        self._results = collections.deque()
        self._pending = False
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        reactor.addReader(self)

    def put(self, deliver, result):
        """In a thread."""
        self._results.append((deliver, result))
        if not self._pending:
            self._pending = True
            try:
                os.write(self._w, b"x")
            except BlockingIOError:  # the pipe is full of wake-ups already
                pass

    def doRead(self):
        try:
            os.read(self._r, 4096)
        except BlockingIOError:
            pass
        # After reading the wake-ups and before draining: a result put from here on wakes
        # the reactor again (reset before the read, a wake-up written in between would be
        # read here while the flag stayed set, and the next result would wait forever).
        self._pending = False
        results = self._results
        while results:
            deliver, result = results.popleft()
            try:
                deliver(result)
            except Exception:
                log.failure("store: delivering a result failed")

    def fileno(self):
        return self._r

    def logPrefix(self):
        return "rmail-store"

    def connectionLost(self, reason):
        pass

    def close(self):
        self.reactor.removeReader(self)
        self.doRead()
        os.close(self._r)
        os.close(self._w)


_default = None


def default() -> Workers:
    """The server's one pool for store work."""
    global _default
    if _default is None:
        _default = Workers()
    return _default


def configure(size: int) -> None:
    """Set the pool's size (``storage.threads``) before it is used."""
    default().size = size


def run(fn, *args):
    """Deferred result of fn(*args) in the store's threads (as ``deferToThread``)."""
    return default().run(fn, *args)


class InOrder:
    """Calls run in the store's threads one at a time, in the order they were made: the
    next starts once the previous result is back on the reactor thread, and before that
    result's callbacks run, so they see the calls complete in order.  (A DeferredLock
    does the same with five Deferreds more per call.)"""

    def __init__(self):
        self._calls = collections.deque()  # (Deferred, fn, args); the first is running

    def run(self, fn, *args):
        d = defer.Deferred()
        self._calls.append((d, fn, args))
        if len(self._calls) == 1:
            self._start()
        return d

    def _start(self):
        _, fn, args = self._calls[0]
        default().submit(self._done, fn, *args)

    def _done(self, result):
        d, _, _ = self._calls.popleft()
        if self._calls:
            self._start()
        d.callback(result)
