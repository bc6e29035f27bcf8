"""Reading the DATA stream (RFC 5321 4.1.1.4, 4.5.2), safely and without holding it in memory.

Only ``<CRLF>.<CRLF>`` ends the data; a bare LF or CR anywhere else is normalised to
CRLF, so a lenient next hop cannot be tricked into seeing a different end of data (the
SMTP smuggling class, CVE-2023-51764).  Leading dots are unstuffed.  Bytes go to the
sink as they arrive; once the message is over ``max_size`` or a line is over
``limits.DATA_LINE``, nothing more is written, but reading goes on to the final dot so
that the rest of the body is never taken for commands.
"""

from rmail.smtp import limits

CRLF = b"\r\n"


class DataReader:
    def __init__(self, write, max_size: int):
        self.write = write
        self.max_size = max_size
        self.size = 0
        self.too_big = False
        self.line_too_long = False
        self.normalised = 0  # lines that held a bare CR or LF
        self._partial = b""

    @property
    def rejected(self) -> bool:
        return self.too_big or self.line_too_long

    def feed(self, data: bytes):
        """Consume *data*; return None if it all belonged to the message, else the number
        of bytes of *data* up to and including the final ``.<CRLF>`` (the rest is commands)."""
        carried = len(self._partial)
        lines = (self._partial + data).split(CRLF)
        self._partial = lines.pop()
        end = None
        try:
            last = lines.index(b".")
        except ValueError:
            pass
        else:
            end = sum(map(len, lines[:last])) + 2 * (last + 1) + 1 - carried
            del lines[last:]
            self._partial = b""
        if len(self._partial) > limits.DATA_LINE:
            # A line with no end in sight: drop it, keeping a CR that may start the CRLF,
            # or else one byte that is not a dot, so that what follows is neither taken
            # for the start of a line nor for the final dot.
            self.line_too_long = True
            self._partial = b"\r" if self._partial.endswith(b"\r") else b"-"
        if lines:
            self._take(lines)
        return end

    def _take(self, lines):
        """Unstuff, check and write complete lines (each starts at the start of a line)."""
        text = CRLF + CRLF.join(lines) + CRLF
        if max(map(len, lines)) <= limits.DATA_LINE - 2 and \
                text.count(b"\r") == text.count(b"\n") == text.count(CRLF):
            # The common case, at C speed: no long line, no bare CR or LF.
            chunk = text.replace(b"\r\n.", CRLF)[2:]
        else:
            out = []
            for line in lines:
                if line[:1] == b".":
                    line = line[1:]
                if len(line) > limits.DATA_LINE - 2:
                    self.line_too_long = True
                if b"\r" in line or b"\n" in line:
                    self.normalised += 1
                    line = line.replace(b"\r", b"\n").replace(b"\n", CRLF)
                out.append(line)
            chunk = CRLF.join(out) + CRLF
        self.size += len(chunk)
        if self.size > self.max_size:
            self.too_big = True
        if not self.rejected:
            self.write(chunk)
