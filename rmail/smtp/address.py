"""Parsing ``MAIL FROM:<path> params`` and ``RCPT TO:<path> params`` (RFC 5321 4.1.2).

Lenient where real clients differ harmlessly (a space after the colon, a path without
angle brackets, a source route, which is ignored as 4.1.1.3 says), strict where it
matters: one address of at most 64 octets of local part and 255 of domain, ASCII only
(SMTPUTF8 is not offered), ``KEY=VALUE`` parameters.
"""

import re

from rmail.smtp import limits, replies


class PathError(Exception):
    def __init__(self, reply: replies.Reply):
        super().__init__(reply.text)
        self.reply = reply


_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATOM}(?:\.{_ATOM})*"
_QUOTED = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"'
_LOCAL = re.compile(rf"(?:{_DOT_ATOM}|{_QUOTED})")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?|\[[\x21-\x5a\x5e-\x7e]+\]")
_PARAM = re.compile(rb"([A-Za-z0-9][A-Za-z0-9-]*)(?:=([\x21-\x3c\x3e-\x7e]+))?")


def parse(rest: bytes, keyword: bytes, bad_syntax: replies.Reply, allow_null: bool):
    """Split ``FROM:<a@b> SIZE=10`` into ("a@b", {"SIZE": "10"}); PathError when malformed.

    The null path ``<>`` gives "" (only where *allow_null*).
    """
    head, colon, tail = rest.partition(b":")
    if not colon or head.strip().upper() != keyword:
        raise PathError(replies.BAD_ARGUMENTS.format(f"{keyword.decode()}:<address>"))
    tail = tail.lstrip(b" ")
    if tail.startswith(b"<"):
        end = _closing_bracket(tail)
        if end < 0:
            raise PathError(bad_syntax)
        path, params = tail[1:end], tail[end + 1:]
        if params and not params.startswith(b" "):
            raise PathError(bad_syntax)
    else:
        path, _, params = tail.partition(b" ")
    if len(path) > limits.PATH - 2:
        raise PathError(replies.PATH_TOO_LONG)
    try:
        text = path.decode("ascii")
    except UnicodeDecodeError:
        raise PathError(bad_syntax)
    if text.startswith("@"):  # source route: "@a,@b:user@domain"
        _, _, text = text.partition(":")
    if text == "":
        if not allow_null or path.startswith(b"@"):
            raise PathError(bad_syntax)
        address = ""
    else:
        address = _check_address(text, bad_syntax)
    return address, _parse_params(params.strip())


def _closing_bracket(tail: bytes) -> int:
    """Where the ``>`` that closes ``<path>`` is: not one inside a quoted local part."""
    quoted, i = False, 1
    while i < len(tail):
        c = tail[i:i + 1]
        if quoted and c == b"\\":
            i += 2
            continue
        if c == b'"':
            quoted = not quoted
        elif c == b">" and not quoted:
            return i
        i += 1
    return -1


def _check_address(text: str, bad_syntax) -> str:
    local, at, domain = text.rpartition("@")
    if not at or not _LOCAL.fullmatch(local) or not _DOMAIN.fullmatch(domain):
        raise PathError(bad_syntax)
    if len(local) > limits.LOCAL_PART or len(domain) > limits.DOMAIN:
        raise PathError(replies.PATH_TOO_LONG)
    return f"{local}@{domain.rstrip('.')}"


def _parse_params(text: bytes) -> dict:
    params = {}
    for word in text.split():
        m = _PARAM.fullmatch(word)
        if not m:
            raise PathError(replies.BAD_ARGUMENTS.format("bad parameter " + word.decode("ascii", "replace")))
        params[m.group(1).decode().upper()] = m.group(2).decode() if m.group(2) is not None else None
    return params
