"""Argument parsers for rmail's IMAP commands, on whole commands with inline literals.

``rmail.imap.framing`` delivers each command with its literals inline
(``{5}\r\nhello``); Twisted's parsers expect to ask for literals themselves and strip
the rest of the line, which cuts a following literal's CRLF.  These replace the ones
that meet literals; the others (sequence sets, flag lists, search keys) stay Twisted's.
"""

from twisted.mail import imap4

from rmail.imap import fetch as fetching, seqset as seqsets


def _syntax_errors(parse, flat=False):
    """Twisted's *parse*, raising its errors for unbalanced parentheses or quotes and
    malformed literals (``parseNestedParens``) as the IllegalClientResponse that the
    server answers BAD, not as internal errors; *flat*: a list of strings only (no
    nested list, no NIL), as STATUS items and APPEND flags must be."""
    def parser(self, line):
        try:
            value, rest = parse(self, line)
        except imap4.MismatchedNesting:
            raise imap4.IllegalClientResponse("Mismatched parentheses")
        except imap4.MismatchedQuoting:
            raise imap4.IllegalClientResponse("Unmatched quotes")
        except ValueError:  # "{x}": parseNestedParens' int() of a literal's size
            raise imap4.IllegalClientResponse("Malformed literal")
        except RecursionError:  # "((((...": collapseStrings recurses once per level
            raise imap4.IllegalClientResponse("Parentheses nested too deeply")
        if flat and value is not None and not all(isinstance(v, bytes) for v in value):
            raise imap4.IllegalClientResponse("Expected a list of atoms")
        return value, rest
    return parser


def _required(parse):
    """*parse* for an argument that must be there: a command that ends before it gives
    the parser None (Twisted's parsers then raise AttributeError or TypeError)."""
    def parser(self, line):
        if not line:
            raise imap4.IllegalClientResponse("Missing argument")
        return parse(self, line)
    return parser


def _seqset(self, line):
    first, _, rest = line.partition(b" ")
    try:
        return seqsets.parse(first), rest
    except seqsets.BadSet as e:
        raise imap4.IllegalClientResponse(
            f"Bad message number {first[:40].decode('ascii', 'replace')}: {e}")


def _opt_charset(self, line):
    return imap4.IMAP4Server.opt_charset(self, line or b"")  # "SEARCH" alone: None


seqset = _required(_seqset)
atom = imap4.IMAP4Server.arg_atom
plist = _syntax_errors(imap4.IMAP4Server.arg_plist, flat=True)
opt_plist = _syntax_errors(imap4.IMAP4Server.opt_plist, flat=True)
opt_datetime = imap4.IMAP4Server.opt_datetime
opt_charset = _opt_charset
flaglist = _required(imap4.IMAP4Server.arg_flaglist)
searchkeys = _syntax_errors(imap4.IMAP4Server.arg_searchkeys)


class Arguments:
    def _inline_literal(self, line):
        head, _, rest = line.partition(b"}\r\n")
        try:
            size = int(head[1:])
        except ValueError:
            raise imap4.IllegalClientResponse("Malformed literal")
        data, rest = rest[:size], rest[size:]
        if len(data) != size:
            raise imap4.IllegalClientResponse("Short literal")
        return data, rest[1:] if rest.startswith(b" ") else rest

    def arg_astring(self, line, final=False):
        """An atom, quoted string or literal; the rest of the line is left as it is
        (Twisted's version strips it, which cuts the CRLF off a following literal)."""
        line = (line or b"").lstrip(b" ")
        if not line:
            raise imap4.IllegalClientResponse("Missing argument")
        if line[:1] == b"{":
            return self._inline_literal(line)
        if line[:1] == b'"':
            out, i = bytearray(), 1
            while i < len(line):
                c = line[i:i + 1]
                if c == b"\\" and i + 1 < len(line):
                    out += line[i + 1:i + 2]
                    i += 2
                    continue
                if c == b'"':
                    rest = line[i + 1:]
                    return bytes(out), rest[1:] if rest.startswith(b" ") else rest
                out += c
                i += 1
            raise imap4.IllegalClientResponse("Unmatched quotes")
        arg, _, rest = line.partition(b" ")
        return arg, rest

    def arg_literal(self, line):
        if not line or line[:1] != b"{":
            raise imap4.IllegalClientResponse("Missing literal")
        return self._inline_literal(line)

    def finalastring(self, line):
        return self.arg_astring(line, final=True)

    def arg_fetchatt(self, line):
        try:
            return fetching.parse(line or b""), b""
        except fetching.FetchError as e:
            raise imap4.IllegalClientResponse(str(e))

    def optional_seqset(self, line):
        if line:
            return seqset(self, line)
        return None, b""

    def rest(self, line):
        return line or b"", b""

    def list_args(self, line):
        """``[(selection)] reference (pattern | (patterns)) [RETURN (options)]``."""
        line = (line or b"").lstrip(b" ")
        select = ()
        if line.startswith(b"("):
            close = line.find(b")")
            if close < 0:
                raise imap4.IllegalClientResponse("Mismatched parenthesis")
            select, line = tuple(line[1:close].upper().split()), line[close + 1:]
        reference, line = self.arg_astring(line)
        line = line.lstrip(b" ")
        if line.startswith(b"("):
            close = line.find(b")")
            if close < 0:
                raise imap4.IllegalClientResponse("Mismatched parenthesis")
            patterns, rest = [], line[1:close]
            while rest.strip():
                pattern, rest = self.arg_astring(rest)
                patterns.append(pattern)
            line = line[close + 1:]
        else:
            pattern, line = self.arg_astring(line)
            patterns = [pattern]
        returns = ()
        line = line.strip()
        if line[:6].upper() == b"RETURN":
            options = line[6:].strip()
            if not (options.startswith(b"(") and options.endswith(b")")):
                raise imap4.IllegalClientResponse("RETURN needs a list of options")
            returns, line = tuple(options[1:-1].upper().split()), b""
        if line:
            raise imap4.IllegalClientResponse("Too many arguments")
        return (select, reference, patterns, returns), b""
