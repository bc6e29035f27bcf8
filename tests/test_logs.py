"""The log line format: timestamp, namespace, text, and tracebacks for failures."""

import io
import re

from twisted.logger import Logger, LogPublisher

from rmail.logs import text_observer


def _logger():
    out = io.StringIO()
    publisher = LogPublisher(text_observer(out))
    return Logger(namespace="rmail.test", observer=publisher), out


def test_one_line_per_event_with_namespace_and_text():
    log, out = _logger()
    log.info("smtp: session={session} result={result}", session="ab12", result="250 2.0.0")
    line = out.getvalue()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \[rmail\.test\] "
                        r"smtp: session=ab12 result=250 2\.0\.0\n", line)


def test_failures_carry_their_traceback():
    log, out = _logger()
    try:
        1 / 0
    except ZeroDivisionError:
        log.failure("store: write failed")
    text = out.getvalue()
    assert "store: write failed" in text and "ZeroDivisionError" in text
