"""Log output: one line per event, cheap enough for one line per SMTP transaction.

Twisted's stock text observer re-formats the timestamp of every event; under load that
is a noticeable share of the reactor thread.  This observer formats each second once.
"""

import time

from twisted.logger import FileLogObserver, formatEvent


class _SecondCache:
    def __init__(self, render):
        self.render = render
        self.second = None
        self.text = ""

    def __call__(self, when: float) -> str:
        second = int(when)
        if second != self.second:
            self.second, self.text = second, self.render(second)
        return self.text


_timestamp = _SecondCache(lambda s: time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(s)))


def _format(event) -> str:
    text = formatEvent(event)
    failure = event.get("log_failure")
    if failure is not None:
        text += "\n" + failure.getTraceback()
    namespace = event.get("log_namespace", "-")
    return f"{_timestamp(event.get('log_time') or time.time())} [{namespace}] {text}\n"


def text_observer(stream):
    """A log observer writing ``2026-01-02T03:04:05+0000 [rmail.smtp] text`` lines."""
    return FileLogObserver(stream, _format)


def cached_per_second(render):
    """``render(second)`` computed once per second: for Date-like header values."""
    return _SecondCache(render)
