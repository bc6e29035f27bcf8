"""Log output: one line per event, cheap enough for one line per SMTP transaction.

Twisted's stock text observer re-formats the timestamp of every event; under load that
is a noticeable share of the reactor thread.  This observer formats each second once.

``--log-format json`` writes the same events as one JSON object per line for machines:
the time, level, namespace and text, and every field the event was logged with
(``session``, ``client``, ``sender``, ``result`` ... as the text shows them).
"""

import json
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


_JSON_SCALARS = (str, int, float, bool, type(None))


def _format_json(event) -> str:
    record = {"time": _timestamp(event.get("log_time") or time.time()),
              "level": getattr(event.get("log_level"), "name", "info"),
              "namespace": event.get("log_namespace", "-"),
              "text": formatEvent(event)}
    for key, value in event.items():
        if not key.startswith("log_") and key not in record:
            record[key] = value if isinstance(value, _JSON_SCALARS) else str(value)
    failure = event.get("log_failure")
    if failure is not None:
        record["traceback"] = failure.getTraceback()
    return json.dumps(record, ensure_ascii=False) + "\n"


def json_observer(stream):
    """A log observer writing one JSON object per event and line."""
    return FileLogObserver(stream, _format_json)


OBSERVERS = {"text": text_observer, "json": json_observer}


def cached_per_second(render):
    """``render(second)`` computed once per second: for Date-like header values."""
    return _SecondCache(render)
