"""IMAP command framing (rmail/imap/framing.py): ``CommandReader.feed``.

Byte 0 sets the command line limit, byte 1 the literal limit, byte 2 the APPEND limit
(small, so that every limit is reached), byte 3 how many pieces the stream arrives in,
the next bytes where it is cut; the rest is what the client sends.  The reader documents
no error (over-long lines and literals are reported through ``on_refuse``), so every
exception is a crash.  Beyond not raising, what the server sees (commands, continuation
requests, refusals) must not depend on how the stream was cut into TCP segments; a fatal
refusal closes the connection, so nothing after it is compared.
"""

import inspect

import harness

with harness.instrumented():
    from rmail.imap import framing

EXPECTED = ()

# Newer framing takes its limits as arguments; older reads the module's constants.
_LIMITS_AS_ARGUMENTS = "max_line" in inspect.signature(framing.CommandReader).parameters


def _read(stream: bytes, cuts, max_line: int, max_literal: int, append_limit: int):
    events = []
    closed = []

    def refuse(tag, why, fatal):
        # A line refused before its end is seen is tagged with the first word of what had
        # arrived (at least 16 octets, more than max_line): compare that much.
        events.append(("refuse", tag[:16], why, fatal))
        if fatal:
            closed.append(True)

    if _LIMITS_AS_ARGUMENTS:
        reader = framing.CommandReader(lambda c: events.append(("command", c)),
                                       lambda: events.append(("continue",)), refuse,
                                       append_limit, max_line=max_line, max_literal=max_literal)
    else:
        framing.MAX_LINE, framing.MAX_LITERAL = max_line, max_literal
        reader = framing.CommandReader(lambda c: events.append(("command", c)),
                                       lambda: events.append(("continue",)), refuse,
                                       append_limit)
    start = 0
    for stop in [*cuts, len(stream)]:
        if closed:
            break
        reader.feed(stream[start:stop])
        start = stop
    return events


def test_one_input(data: bytes):
    if len(data) < 4:
        return
    max_line, max_literal, append_limit = 16 + data[0], 4 * data[1], 16 * data[2]
    pieces = min(data[3] & 7, len(data) - 4)
    stream = data[4 + pieces:]
    cuts = sorted(len(stream) * b // 255 for b in data[4:4 + pieces])
    whole = _read(stream, [], max_line, max_literal, append_limit)
    cut = _read(stream, cuts, max_line, max_literal, append_limit)
    assert whole == cut, ("what the server sees depends on the cuts", cuts, whole, cut)


if __name__ == "__main__":
    harness.main(test_one_input, EXPECTED)
