"""The SMTP DATA stream (rmail/smtp/data.py): ``DataReader.feed``.

Byte 0 sets the size limit, byte 1 how many pieces the stream arrives in, and the next
bytes where it is cut; the rest is the stream after ``354``.  ``feed`` documents no
error for any input, so every exception is a crash.  Beyond not raising, the reader must
not depend on how the stream was cut into TCP segments: the end of data is found at the
same offset, the message is refused (too big, line too long) or not alike, and a
message not refused is written with the same bytes (CRLF throughout), whether the stream comes in one piece or
in several.
"""

import harness

with harness.instrumented():
    from rmail.smtp.data import DataReader

EXPECTED = ()


def _read(stream: bytes, cuts, max_size: int):
    """Feed *stream* cut at *cuts*; (bytes written, end offset in stream or None, reader)."""
    out = []
    reader = DataReader(out.append, max_size)
    start, end = 0, None
    for stop in [*cuts, len(stream)]:
        piece = stream[start:stop]
        if piece:
            found = reader.feed(piece)
            if found is not None:
                assert 0 < found <= len(piece), (found, len(piece))
                end = start + found
                break
        start = stop
    return b"".join(out), end, reader


def test_one_input(data: bytes):
    if len(data) < 2:
        return
    max_size = 1 << (data[0] & 15)
    pieces = min(data[1] & 7, len(data) - 2)
    stream = data[2 + pieces:]
    cuts = sorted(len(stream) * b // 255 for b in data[2:2 + pieces])

    whole, whole_end, whole_reader = _read(stream, [], max_size)
    cut, cut_end, cut_reader = _read(stream, cuts, max_size)
    assert whole_end == cut_end, ("end of data depends on the cuts", whole_end, cut_end, cuts)
    assert whole_reader.rejected == cut_reader.rejected, (
        "refusal depends on the cuts", whole_reader.too_big, whole_reader.line_too_long,
        cut_reader.too_big, cut_reader.line_too_long, cuts)
    if not whole_reader.rejected:
        assert whole == cut, ("written bytes depend on the cuts", cuts)
        assert whole_reader.size == len(whole)
        assert whole.count(b"\r") == whole.count(b"\n") == whole.count(b"\r\n"), \
            "bare CR or LF written"


if __name__ == "__main__":
    harness.main(test_one_input, EXPECTED)
