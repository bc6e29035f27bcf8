"""Progress of a long operator command (migrate, import): a bar on a terminal, lines otherwise.

On a terminal the bar redraws in place at most ten times a second.  Into a pipe or a
log file a plain line is written each time another tenth is done, or after 10 seconds
of no such line, so the output stays short and greppable::

    migrate: 4500/10000 messages (45%), 120.3 MB, 1234 messages/s

The whole is counted in messages, or in bytes of the source (``by_bytes``) where the
number of messages is not known before the end (an mbox read as a stream).
"""

import sys
import time

BAR_WIDTH = 30


class Progress:
    def __init__(self, what: str, total: int, stream=None, tty=None, clock=time.monotonic,
                 by_bytes=False):
        self.what = what
        self.total = max(total, 0)
        self.by_bytes = by_bytes
        self.position = 0  # bytes of the source read, with by_bytes
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.clock = clock
        self.done = 0  # messages handled (copied, skipped or failed)
        self.worked = 0  # of those, messages actually written
        self.bytes = 0
        self.started = clock()
        self._last_draw = 0.0
        self._last_line = self.started
        self._last_tenth = 0

    def advance(self, messages: int = 1, size: int = 0, worked: bool = True, position=None):
        self.done += messages
        self.bytes += size
        if worked:
            self.worked += messages
        if position is not None:
            self.position = position
        now = self.clock()
        if self.tty:
            if now - self._last_draw >= 0.1 or self._measure() >= self.total:
                self._draw(now)
        else:
            tenth = self._measure() * 10 // self.total if self.total else 10
            if tenth > self._last_tenth or now - self._last_line >= 10:
                self._last_tenth = max(tenth, self._last_tenth)
                self._last_line = now
                self.stream.write(f"{self.what}: {self._figures(now)}\n")
                self.stream.flush()

    def rate(self, now=None) -> float:
        elapsed = (now or self.clock()) - self.started
        return self.worked / elapsed if elapsed > 0 else 0.0

    def _measure(self) -> int:
        return self.position if self.by_bytes else self.done

    def _figures(self, now) -> str:
        percent = ""
        if self.total:
            percent = f" ({min(self._measure(), self.total) * 100 // self.total}%)"
        if self.by_bytes:
            return (f"{self.done} messages, {self.position / 1e6:.1f}/{self.total / 1e6:.1f} MB"
                    f"{percent}, {self.rate(now):.0f} messages/s")
        return (f"{self.done}/{self.total} messages{percent}, {self.bytes / 1e6:.1f} MB, "
                f"{self.rate(now):.0f} messages/s")

    def _draw(self, now):
        self._last_draw = now
        measure = min(self._measure(), self.total)
        filled = BAR_WIDTH * measure // self.total if self.total else BAR_WIDTH
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        self.stream.write(f"\r{self.what} [{bar}] {self._figures(now)}  ")
        self.stream.flush()

    def finish(self):
        """End the bar's line (a terminal) so that what follows starts on a fresh one."""
        if self.tty:
            self._draw(self.clock())
            self.stream.write("\n")
            self.stream.flush()

    def elapsed(self) -> float:
        return self.clock() - self.started


def plural(n: int, noun: str) -> str:
    """``1 folder``, ``2 folders``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
