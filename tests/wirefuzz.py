"""Wire-level fuzzing helpers for tests/test_wire_fuzz.py.

- ``Mutator``: seeded mutations of a stream of valid command lines (byte flips,
  truncation, duplication, huge lines, NULs, 8-bit bytes, CR/LF splits, tokens that
  parsers find interesting) and ways of cutting it into writes (pipelined, line by
  line, random chunks).
- ``Conn``: a loopback client socket (plain or TLS) from a chosen source address
  (127.x.y.z, so the fuzzer's failed logins never lock out the control clients on
  127.0.0.1), with every operation bounded in time; it reads while it writes, so a
  server that answers a long pipelined stream never deadlocks the test.
- ``ServerProcess``: rmail as a real process (tests.harness.Process) whose log is read
  by a thread as it comes (so a chatty server never blocks on a full pipe), with its
  resident memory.
"""

import itertools
import os
import re
import select
import signal
import socket
import ssl
import subprocess
import threading
import time

from tests import harness

IO_TIMEOUT = 10.0  # seconds: the bound of every socket operation of the fuzzer


class Hang(AssertionError):
    """The server neither answered nor closed within the bound."""


# -- source addresses ---------------------------------------------------------------------

_sources = itertools.count(1)


def fuzz_source() -> str:
    """A fresh loopback source address for one fuzz connection (never 127.0.0.1)."""
    n = next(_sources) % (250 * 250)
    return f"127.1.{n // 250 + 1}.{n % 250 + 1}"


# -- mutations ---------------------------------------------------------------------------------

TOKENS = [
    b"\x00", b"\xff", b"\xc3\xa9", b"\xe2\x82", b"\r", b"\n", b"\r\n", b"\n\r", b" ", b"\t",
    b"{", b"}", b"{0}", b"{1}", b"{7}", b"{99999}", b"{4294967296}", b"{18446744073709551616}",
    b"{-1}", b"{5+}", b"{0+}", b"~{3}", b'"', b'""', b"\\", b'\\"', b"(", b")", b"((((((((",
    b"))", b"[", b"]", b"<", b">", b"<>", b"<@>", b"*", b"%", b":", b"1:*", b"*:*", b"0",
    b"-1", b"4294967295", b"4294967296", b"99999999999999999999", b"=", b"==", b"+", b".",
    b"..", b"\r\n.\r\n", b"\n.\n", b"NIL", b"%00", b"%2F", b"%ZZ", b"..%2F..%2F", b"../",
    b"/", b"//", b"@", b"@@", b"AAAA", b"\x1b[2J", b"\x7f", b"\x80", b"BODY[", b"<0.4294967295>",
    b"$", b"&", b"&-", b"&AGE", b"SIZE=99999999999", b"BODY=BINARYMIME", b"FOO=bar",
    b"Content-Length: 99999\r\n", b"Transfer-Encoding: chunked\r\n", b"Expect: 100-continue\r\n",
    b"\r\n\r\n", b"null", b"[]", b"{}", b'{"a":', b"1e999", b"\"\\ud800\"", b"-0",
]

SLOW_COMMANDS = (b"LOGIN", b"AUTHENTICATE", b"AUTH PLAIN", b"AUTH LOGIN", b"/auth/login")
HUGE = [999, 1000, 1001, 1023, 2047, 2049, 4097, 12289, 65537, 102401, 200000]
MAX_STREAM = 400 * 1024  # a mutated stream is cut to this many bytes
MAX_WRITES = 64  # a stream goes in at most this many writes (the rest in one more)


class Mutator:
    def __init__(self, rng):
        self.rng = rng

    # -- building a stream ------------------------------------------------------------------

    def stream(self, corpus, n_min=1, n_max=6) -> bytes:
        """A few commands drawn from *corpus* (bytes each, CRLF-terminated), mutated."""
        rng = self.rng
        commands = [rng.choice(corpus) for _ in range(rng.randint(n_min, n_max))]
        data = b"".join(commands)
        for _ in range(rng.choice((0, 1, 1, 1, 2, 2, 3, 4))):
            data = self.mutate(data, corpus)
        return data[:MAX_STREAM]

    def mutate(self, data: bytes, corpus=()) -> bytes:
        op = self.rng.choice(self.OPS)
        return op(self, data, corpus)

    def _pos(self, data):
        return self.rng.randint(0, len(data))

    def flip(self, data, corpus):
        if not data:
            return data
        out = bytearray(data)
        for _ in range(self.rng.randint(1, 4)):
            i = self.rng.randrange(len(out))
            if self.rng.random() < 0.5:
                out[i] ^= 1 << self.rng.randrange(8)
            else:
                out[i] = self.rng.randrange(256)
        return bytes(out)

    def truncate(self, data, corpus):
        return data[:self._pos(data)]

    def _times(self, piece, choices):
        times = self.rng.choice(choices)
        # Each wrong password costs the server a deliberately slow hash (~0.5 s), by design:
        # a few logins per stream, not hundreds.
        return min(times, 3) if any(k in piece for k in SLOW_COMMANDS) else times

    def duplicate(self, data, corpus):
        if not data:
            return data
        i = self.rng.randrange(len(data))
        j = min(len(data), i + self.rng.randint(1, 200))
        piece = data[i:j] * self._times(data[i:j], (2, 3, 10, 100, 1000))
        return data[:j] + piece[:64 * 1024] + data[j:]

    def huge_line(self, data, corpus):
        n = self.rng.choice(HUGE)
        filler = self.rng.choice((b"A", b"\x00", b"\xff", b"a b ", b"(", b"{1}", b"."))
        line = (filler * (n // len(filler) + 1))[:n]
        if self.rng.random() < 0.7:
            line += b"\r\n"
        # either at a line start, or inside a line (a command with a huge argument)
        if self.rng.random() < 0.5:
            starts = [0] + [m.end() for m in re.finditer(b"\n", data)]
            i = self.rng.choice(starts)
        else:
            i = self._pos(data)
        return data[:i] + line + data[i:]

    def nuls(self, data, corpus):
        for _ in range(self.rng.randint(1, 5)):
            i = self._pos(data)
            data = data[:i] + b"\x00" * self.rng.randint(1, 3) + data[i:]
        return data

    def eight_bit(self, data, corpus):
        for _ in range(self.rng.randint(1, 5)):
            i = self._pos(data)
            data = data[:i] + bytes(self.rng.randint(0x80, 0xff)
                                    for _ in range(self.rng.randint(1, 8))) + data[i:]
        return data

    def crlf(self, data, corpus):
        rng = self.rng
        choice = rng.randrange(4)
        if choice == 0:  # every line ending becomes something else
            ending = rng.choice((b"\n", b"\r", b"\r\r\n", b"\n\r", b"\r\n\r\n"))
            return data.replace(b"\r\n", ending)
        if choice == 1:  # one line ending becomes something else
            ends = [m.start() for m in re.finditer(b"\r\n", data)]
            if not ends:
                return data
            i = rng.choice(ends)
            return data[:i] + rng.choice((b"\n", b"\r", b"", b"\r\r\n", b" \r\n")) + data[i + 2:]
        # a bare CR or LF, or a CRLF, in the middle of a line
        i = self._pos(data)
        return data[:i] + rng.choice((b"\r", b"\n", b"\r\n")) + data[i:]

    def token(self, data, corpus):
        tok = self.rng.choice(TOKENS)
        i = self._pos(data)
        if self.rng.random() < 0.5:  # replace a word
            words = [m.span() for m in re.finditer(rb"[^ \r\n]+", data)]
            if words:
                a, b = self.rng.choice(words)
                return data[:a] + tok + data[b:]
        return data[:i] + tok + data[i:]

    def lines(self, data, corpus):
        lines = data.split(b"\r\n")
        rng = self.rng
        choice = rng.randrange(4)
        if choice == 0 and len(lines) > 1:
            del lines[rng.randrange(len(lines))]
        elif choice == 1 and len(lines) > 1:
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif choice == 2:
            i = rng.randrange(len(lines))
            lines[i:i] = [lines[i]] * self._times(lines[i], range(1, 21))
        elif corpus:
            i = rng.randrange(len(lines))
            lines[i:i] = [rng.choice(corpus).rstrip(b"\r\n")]
        return b"\r\n".join(lines)

    def garbage(self, data, corpus):
        i = self._pos(data)
        junk = bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 64)))
        return data[:i] + junk + data[i:]

    OPS = [flip, flip, truncate, duplicate, huge_line, nuls, eight_bit, crlf, crlf, token,
           token, token, lines, lines, garbage]

    # -- cutting a stream into writes -------------------------------------------------------

    def writes(self, data: bytes):
        """[(bytes, pause_seconds)]: how to send *data* (pipelined, by line, by chunks)."""
        rng = self.rng
        style = rng.choice(("pipelined", "pipelined", "lines", "chunks", "bytes"))
        if style == "pipelined" or not data:
            return [(data, 0)]
        if style == "lines":
            parts = [p for p in re.split(b"(?<=\n)", data) if p]
            out = [(p, rng.choice((0, 0, 0.002, 0.01))) for p in parts[:MAX_WRITES]]
        elif style == "bytes" and len(data) <= 200:
            out = [(data[i:i + 1], 0.001) for i in range(len(data))]
        else:
            out, i = [], 0
            while i < len(data) and len(out) < MAX_WRITES:
                n = rng.choice((1, 2, 3, 7, 64, 512, 4096, 65536))
                out.append((data[i:i + n], rng.choice((0, 0, 0.001, 0.005))))
                i += n
        sent = sum(len(chunk) for chunk, _ in out)
        if sent < len(data):  # whatever is left goes in one last write
            out.append((data[sent:], 0))
        return out


# -- a bounded client connection -------------------------------------------------------------

class Conn:
    """A client socket to 127.0.0.1 with bounded, deadlock-free I/O."""

    def __init__(self, port, source="127.0.0.1", tls=False, timeout=IO_TIMEOUT):
        self.timeout = timeout
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(source, 0))
        if tls:
            self.sock = harness.client_tls().wrap_socket(self.sock)
        self.sock.setblocking(False)
        self.buf = b""
        self.mark = 0  # where expect() looks from
        self.eof = False
        self.reset = False
        self.closed_by_us = False

    # reading

    def _recv_some(self):
        while not self.eof:
            try:
                data = self.sock.recv(262144)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return
            except (ssl.SSLError, OSError):
                self.eof = self.reset = True
                return
            if not data:
                self.eof = True
                return
            self.buf += data

    def _wait(self, read=True, write=False, seconds=0.05):
        try:
            select.select([self.sock] if read else [], [self.sock] if write else [], [], seconds)
        except (OSError, ValueError):
            self.eof = True

    def wait_for(self, predicate, timeout=None, what="an answer", cap=None):
        """Read until predicate(buf) is true; Hang if neither it nor EOF comes in time.

        With *cap*, *timeout* bounds the silence instead (a server answering a long
        pipeline slowly but steadily is waited for), and *cap* the whole wait."""
        timeout = timeout or self.timeout
        start = time.monotonic()
        deadline, seen = start + timeout, len(self.buf)
        while True:
            self._recv_some()
            if predicate(self.buf):
                return True
            if self.eof:
                return False
            now = time.monotonic()
            if cap is not None and len(self.buf) > seen:
                deadline, seen = min(now + timeout, start + cap), len(self.buf)
            if now > deadline:
                raise Hang(f"no {what} within {timeout}s (in all {now - start:.0f}s); "
                           f"got {self.tail()!r}")
            self._wait()

    def expect(self, pattern, timeout=None):
        """Read until *pattern* (a regex) matches after the mark; return the match."""
        regex = re.compile(pattern, re.M)
        found = []

        def match(buf):
            m = regex.search(buf, self.mark)
            if m:
                found.append(m)
            return bool(m)
        if not self.wait_for(match, timeout, what=f"{pattern!r}"):
            raise AssertionError(f"connection closed waiting for {pattern!r}; got {self.tail()!r}")
        self.mark = found[0].end()
        return found[0]

    def wait_eof(self, timeout=None, cap=None):
        """Read to EOF (the server closed); Hang if it does not close in time."""
        self.wait_for(lambda buf: False, timeout, what="close", cap=cap)

    def settle(self, seconds):
        """Read what arrives within *seconds* (no requirement)."""
        deadline = time.monotonic() + seconds
        while not self.eof and time.monotonic() < deadline:
            self._recv_some()
            self._wait(seconds=min(0.02, max(0.0, deadline - time.monotonic())))

    def tail(self, n=300):
        return self.buf[-n:]

    # writing

    def send(self, data: bytes, timeout=None):
        """Send all of *data* (reading meanwhile); stop quietly if the server closed."""
        deadline = time.monotonic() + (timeout or self.timeout)
        view = memoryview(data)
        pos = 0
        while pos < len(data) and not self.eof:
            self._recv_some()
            if self.eof:
                break
            try:
                pos += self.sock.send(view[pos:pos + 65536])
                continue
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                pass
            except (ssl.SSLError, OSError):
                self.eof = self.reset = True
                break
            if time.monotonic() > deadline:
                raise Hang(f"the server stopped reading: {len(data) - pos} of {len(data)} "
                           f"bytes not taken in {timeout or self.timeout}s")
            self._wait(write=True)

    def send_writes(self, writes):
        for chunk, pause in writes:
            if self.eof:
                break
            self.send(chunk)
            if pause:
                time.sleep(pause)
                self._recv_some()

    def abort(self, rst=False):
        """Disconnect midway: close (with a reset if *rst*)."""
        self.closed_by_us = True
        try:
            if rst:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                     b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.sock.close()
        except OSError:
            pass

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- the server as a process ------------------------------------------------------------------

class ServerProcess(harness.Process):
    """harness.Process whose output a thread collects as it comes."""

    def __init__(self, config_path, extra_env=None):
        try:
            super().__init__(config_path, extra_env)
        except BaseException:  # it did not start in time: do not leave it running
            proc = getattr(self, "proc", None)
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(harness.TIMEOUT)
            raise
        self.log = bytearray(self.output)
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self):
        fd = self.proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self.log += chunk

    def log_text(self, settle=0.0) -> bytes:
        """The log so far; with *settle*, once no line came for that long (at most 2 s)."""
        deadline = time.monotonic() + 2
        while settle:
            with self._lock:
                before = len(self.log)
            time.sleep(settle)
            with self._lock:
                if len(self.log) == before or time.monotonic() > deadline:
                    break
        with self._lock:
            return bytes(self.log)

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def connections(self):
        """[(local port, remote address, TCP state)] of the connections the server holds
        open (listening sockets aside), from /proc."""
        inodes = set()
        fd_dir = f"/proc/{self.proc.pid}/fd"
        for fd in os.listdir(fd_dir):
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        out = []
        for table in ("tcp", "tcp6"):
            try:
                with open(f"/proc/{self.proc.pid}/net/{table}") as f:
                    rows = f.read().splitlines()[1:]
            except OSError:
                continue
            for row in rows:
                fields = row.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
                if inode in inodes and state != "0A":  # 0A: LISTEN
                    out.append((int(local.split(":")[1], 16), _address(remote),
                                TCP_STATES.get(state, state)))
        return out

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(harness.TIMEOUT * 2)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(harness.TIMEOUT)
        self._reader.join(5)


TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
              "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
              "09": "LAST_ACK", "0B": "CLOSING"}


def _address(hex_address: str) -> str:
    """'0100007F:1F90' (IPv4, little-endian) -> '127.0.0.1'; IPv6 is left in hex."""
    host, port = hex_address.split(":")
    if len(host) == 8:
        host = ".".join(str(b) for b in reversed(bytes.fromhex(host)))
    return f"{host}:{int(port, 16)}"


def problems_in_log(log: bytes):
    """Lines of the server log that show a bug: tracebacks and unhandled errors."""
    return [line for line in log.splitlines()
            if b"Traceback" in line or b"Unhandled" in line]
