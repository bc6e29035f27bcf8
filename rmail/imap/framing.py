"""Cutting the IMAP byte stream into whole commands, literals included (RFC 3501 4.3, RFC 7888).

Twisted's server reads a line, then asks for a literal from inside its argument
parsers; a ``{N+}`` literal is then read as a command and an APPEND literal has no size
limit (TWISTED.md items 20, 23).  Here a command is gathered whole before anything
parses it: each ``{N}`` or ``{N+}`` at the end of a line is checked against the limit
for that command, a continuation request is sent for synchronizing literals only, and
the literal's bytes are kept inline, so the command reaches the parser as
``tag APPEND INBOX {5}\\r\\nhello`` (the ``+`` removed).

Limits: a command line is at most ``max_line`` octets; a literal at most the APPEND
limit for APPEND and ``max_literal`` for anything else (``imap.max_command_line``,
``imap.max_literal`` and ``smtp.max_message_size`` in config.json; the defaults below).
"""

import re

MAX_LINE = 64 * 1024
MAX_LITERAL = 100 * 1024

_LITERAL = re.compile(rb"\{(\d{1,20})(\+?)\}$")
_COMMAND = re.compile(rb"^\S+ +(?:UID +)?(\S+)", re.IGNORECASE)


class CommandReader:
    """Feed bytes in; get ``on_command(bytes)`` once per whole command.

    ``on_continue()`` asks the client for a synchronizing literal; ``on_refuse(tag, why,
    fatal)`` reports a line or literal over its limit (fatal: the connection cannot be
    resynchronized and must close).
    """

    def __init__(self, on_command, on_continue, on_refuse, append_limit,
                 max_line=MAX_LINE, max_literal=MAX_LITERAL):
        self.on_command = on_command
        self.on_continue = on_continue
        self.on_refuse = on_refuse
        self.append_limit = append_limit
        self.max_line = max_line
        self.max_literal = max_literal
        self.buffer = b""
        self._parts = []  # the command so far
        self._literal = 0  # octets of literal still to read
        self._skipping = False  # discarding the rest of an over-long line

    @property
    def in_literal(self) -> bool:
        return self._literal > 0

    def feed(self, data: bytes, ready=lambda: True):
        """Consume what forms whole commands, while ``ready()`` (one command at a time)."""
        self.buffer += data
        while self.buffer and ready():
            if self._literal:
                chunk, self.buffer = self.buffer[:self._literal], self.buffer[self._literal:]
                self._parts.append(chunk)
                self._literal -= len(chunk)
                continue
            newline = self.buffer.find(b"\n")
            if newline < 0:
                # A CR at the end may be the first half of the line's CRLF: not counted.
                if len(self.buffer) - self.buffer.endswith(b"\r") > self.max_line:
                    first = self._parts[0] if self._parts else self.buffer
                    self.buffer = b""
                    if not self._skipping:
                        self._skipping = True
                        self._parts = []
                        self.on_refuse(first.split(b" ", 1)[0][:64], "command line too long", False)
                return
            line, self.buffer = self.buffer[:newline], self.buffer[newline + 1:]
            if line.endswith(b"\r"):
                line = line[:-1]
            if self._skipping:
                self._skipping = False
                continue
            if len(line) > self.max_line:
                first = self._parts[0] if self._parts else line
                self._parts = []
                self.on_refuse(first.split(b" ", 1)[0], "command line too long", False)
                continue
            self._line(line)

    def _line(self, line: bytes):
        m = _LITERAL.search(line)
        if m is None:
            self._parts.append(line)
            command, self._parts = b"".join(self._parts), []
            self.on_command(command)
            return
        size, plus = int(m.group(1)), bool(m.group(2))
        first = self._parts[0] if self._parts else line
        tag = first.split(b" ", 1)[0]
        verb = _COMMAND.match(first)
        is_append = verb is not None and verb.group(1).upper() == b"APPEND"
        limit = self.append_limit if is_append else self.max_literal
        if size > limit:
            self._parts = []
            if plus:
                # The client sends the bytes without waiting: the stream is lost.
                self.on_refuse(tag, f"literal of {size} octets is over the limit of {limit}", True)
                self.buffer = b""
            else:
                self.on_refuse(tag, f"literal of {size} octets is over the limit of {limit}", False)
            return
        self._parts.append(line[:m.start()] + b"{%d}\r\n" % size)
        self._literal = size
        if not plus:
            self.on_continue()
        if size == 0:
            self._literal = 0
