"""Folder names on the wire: modified UTF-7 (RFC 3501 5.1.3) and LIST patterns (6.3.8).

The store keeps names as Unicode with ``/`` between levels; clients see them in
modified UTF-7.  LIST's ``*`` matches across levels, ``%`` within one.
"""

import re

from twisted.mail import imap4

from rmail.store import names

SEPARATOR = names.SEPARATOR.encode()


class BadName(Exception):
    pass


def decode(wire: bytes) -> str:
    """A mailbox name from the client, as the store's canonical name."""
    try:
        text, _ = imap4.decoder(wire)
    except (UnicodeDecodeError, ValueError):
        raise BadName("the mailbox name is not valid modified UTF-7")
    try:
        return names.folder_name(text)
    except Exception as e:
        raise BadName(str(e))


def encode(name: str) -> bytes:
    return imap4.encoder(name)[0]


def quoted(name: str) -> bytes:
    wire = encode(name)
    return b'"' + wire.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def pattern(reference: bytes, mailbox: bytes) -> re.Pattern:
    """The regex that LIST ``reference mailbox`` selects (on wire-encoded names)."""
    full = reference + mailbox if not mailbox.startswith(SEPARATOR) else mailbox
    out = []
    for c in full.decode("latin-1"):
        if c == "*":
            out.append(".*")
        elif c == "%":
            out.append("[^/]*")
        else:
            out.append(re.escape(c))
    regex = "".join(out)
    if full[:5].upper() == b"INBOX":  # INBOX is case-insensitive
        regex = "(?i:" + re.escape("INBOX") + ")" + "".join(out[5:])
    return re.compile(regex, re.DOTALL)
