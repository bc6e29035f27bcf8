"""Sending a message file as a response body without reading it on the reactor thread.

The file is opened and read in the thread pool, one chunk at a time; the next chunk is
read only when the client has taken the previous one (the request is registered as a
streaming producer's consumer, so a slow reader pauses the reads).  Message files are
immutable, so the size taken at open is the Content-Length; a file expunged after the
index lookup is simply not found.
"""

import os

from twisted.internet import defer, threads
from zope.interface import implementer
from twisted.internet.interfaces import IPushProducer

CHUNK = 256 * 1024


def _open(path):
    f = open(path, "rb")
    try:
        return f, os.fstat(f.fileno()).st_size
    except BaseException:
        f.close()
        raise


def open_message(path):
    """Deferred (file, size); FileNotFoundError when the file is gone."""
    return threads.deferToThread(_open, path)


@implementer(IPushProducer)
class FileStream:
    def __init__(self, request, f):
        self.request = request
        self.file = f
        self._paused = None  # a Deferred while the consumer asked us to wait
        self._stopped = False

    def pauseProducing(self):
        if self._paused is None:
            self._paused = defer.Deferred()

    def resumeProducing(self):
        paused, self._paused = self._paused, None
        if paused is not None:
            paused.callback(None)

    def stopProducing(self):
        self._stopped = True
        self.resumeProducing()

    @defer.inlineCallbacks
    def run(self):
        """Write the whole file to the request; fires when done (the caller finishes)."""
        if getattr(self.request, "channel", None) is None:  # the client left while it opened
            yield threads.deferToThread(self.file.close)
            return
        self.request.registerProducer(self, True)
        try:
            while not self._stopped:
                if self._paused is not None:
                    yield self._paused
                    continue
                chunk = yield threads.deferToThread(self.file.read, CHUNK)
                if not chunk or self._stopped:
                    break
                self.request.write(chunk)
        finally:
            if not self._stopped and getattr(self.request, "channel", None) is not None:
                self.request.unregisterProducer()
            yield threads.deferToThread(self.file.close)
