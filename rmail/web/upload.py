"""Request bodies on their way in: a raw message streams to the spool, JSON stays small.

``POST /folders/{folder}/messages`` carries a whole message, up to
``smtp.max_message_size``.  Its body is not collected in memory nor in a temporary
file written from the reactor thread: as the bytes arrive they go to a store
``MessageWriter`` (which writes from the thread pool), and the connection stops being
read while the disk is behind (``HIGH_WATER``/``LOW_WATER``), as SMTP DATA does.

Line ends are normalised on the way (bare LF or CR become CRLF, as SMTP delivery
does), so IMAP serves every stored message with the line ends RFC 5322 requires, even
when a client uploads a file with Unix line ends.
"""

import re

from rmail.web.errors import bad_request

HIGH_WATER = 4 * 1024 * 1024  # stop reading the connection with this much not yet on disk
LOW_WATER = 1024 * 1024  # and read again once the backlog is down to this

_LINE_END = re.compile(rb"\r\n|\r|\n")


class LineEnds:
    """Streaming CRLF normalisation; a CR at the end of a chunk waits for the next one."""

    def __init__(self):
        self._cr = False

    def feed(self, data: bytes) -> bytes:
        if self._cr:
            data = b"\r" + data
            self._cr = False
        if data.endswith(b"\r"):
            data = data[:-1]
            self._cr = True
        if b"\r" not in data:
            return data.replace(b"\n", b"\r\n")
        if data.count(b"\r\n") == data.count(b"\r") == data.count(b"\n"):
            return data
        return _LINE_END.sub(b"\r\n", data)

    def end(self) -> bytes:
        return b"\r\n" if self._cr else b""


class MessageUpload:
    """The body of a message upload: what Twisted's request sees as ``content``.

    The route takes the writer with ``take()``; if nobody does (the request failed, the
    client went away), ``close()``, which Twisted calls when the request ends, discards
    the spooled bytes so that nothing of the message stays anywhere.
    """

    def __init__(self, writer):
        self.writer = writer
        self.size = 0
        self._lines = LineEnds()
        self._taken = False
        self._discarded = False

    def write(self, data: bytes) -> None:
        if self._discarded:
            return
        self.size += len(data)
        self.writer.write(self._lines.feed(data))

    def take(self):
        """The writer, with every byte received written to it; the caller owns it now."""
        if self._discarded:  # the client went away, and its upload with it: store nothing
            raise bad_request("the client went away before its upload was stored")
        self._taken = True
        tail = self._lines.end()
        if tail:
            self.writer.write(tail)
        return self.writer

    def discard(self) -> None:
        if not self._taken and not self._discarded:
            self._discarded = True
            self.writer.discard()

    # What twisted.web's Request expects of ``content``: the body is not readable here.
    def seek(self, offset, whence=0):
        return 0

    def tell(self):
        return 0

    def read(self, size=-1):
        return b""

    def close(self):
        self.discard()
