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
        buf = self._partial + data
        lines = buf.split(CRLF)
        self._partial = lines.pop()
        out = []
        pos = 0
        end = None
        for line in lines:
            pos += len(line) + 2
            if line == b".":
                end = pos - carried
                self._partial = b""
                break
            if line[:1] == b".":
                line = line[1:]
            if len(line) > limits.DATA_LINE - 2:
                self.line_too_long = True
            if b"\r" in line or b"\n" in line:
                self.normalised += 1
                line = line.replace(b"\r", b"\n").replace(b"\n", CRLF)
            out.append(line)
        if len(self._partial) > limits.DATA_LINE:
            # A line with no end in sight: drop it, keeping a CR that may start the CRLF,
            # or else one byte that is not a dot, so that what follows is neither taken
            # for the start of a line nor for the final dot.
            self.line_too_long = True
            self._partial = b"\r" if self._partial.endswith(b"\r") else b"-"
        if out and not self.rejected:
            chunk = CRLF.join(out) + CRLF
            self.size += len(chunk)
            if self.size > self.max_size:
                self.too_big = True
            else:
                self.write(chunk)
        elif out:
            self.size += sum(len(line) + 2 for line in out)
        return end
