"""The message as it goes out in DATA (RFC 5321 sections 4.1.1.4 and 4.5.2).

Twisted's sender dot-stuffs each 16 KiB chunk on its own, so a dot at the start of a
chunk's first line goes out unstuffed and a lone "." there ends DATA early (TWISTED.md
item 9).  ``BodyEncoder`` only ever cuts its input after a line feed, so every block it
encodes starts at the start of a line: stuffing is right whatever the chunk size.
It also makes every line end CRLF, and drops a leading ``Return-Path:`` header, which
rmail adds on receipt and a relaying MTA must not pass on (RFC 5321 section 4.4).
"""


class BodyEncoder:
    def __init__(self):
        self._carry = b""  # the start of a line whose end has not been read yet
        self._at_start = True  # the first header has not been looked at yet

    def feed(self, data: bytes) -> bytes:
        data = self._carry + data
        if self._at_start:
            skip = _return_path_end(data)
            if skip is None:  # cannot tell yet
                self._carry = data
                return b""
            self._at_start = False
            data = data[skip:]
        cut = data.rfind(b"\n") + 1
        block, self._carry = data[:cut], data[cut:]
        return _encode(block)

    def finish(self) -> bytes:
        """The rest (a last line without a line end gets CRLF) and the final dot."""
        rest, self._carry = self._carry, b""
        if self._at_start and _is_return_path(rest):
            rest = rest[_return_path_end(rest) or len(rest):]
        return (_encode(rest + b"\n") if rest else b"") + b".\r\n"


def _is_return_path(data: bytes) -> bool:
    return data[:12].lower() == b"return-path:"


def _return_path_end(data: bytes):
    """Where the message starts once a leading Return-Path header (with any folded
    continuation lines) is left out: 0 when there is none; None when *data* is too
    short to tell."""
    if len(data) < 12 and b"return-path:".startswith(data.lower()):
        return None
    if not _is_return_path(data):
        return 0
    pos = data.find(b"\n") + 1
    while pos:
        if pos >= len(data):
            return None  # is the next line a continuation? not known yet
        if data[pos:pos + 1] not in (b" ", b"\t"):
            return pos
        pos = data.find(b"\n", pos) + 1
    return None


def _encode(block: bytes) -> bytes:
    """Whole lines (ending in LF) -> CRLF line ends, leading dots doubled."""
    if block.count(b"\r") != block.count(b"\r\n") or block.count(b"\n") != block.count(b"\r\n"):
        block = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if block.startswith(b"."):
        block = b"." + block
    return block.replace(b"\r\n.", b"\r\n..")
