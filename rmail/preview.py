"""A message's preview: the opening words of its text, computed once at delivery.

The API's message list shows it next to the subject, as webmail and phone clients do;
the store keeps it in the index with the header block, so listing a page never opens
a message file.  The text is the first text/plain part that is not an attachment (or,
failing that, the first text/html one with its markup taken out), decoded from its
transfer encoding and charset as SEARCH decodes it, whitespace collapsed, cut at
``LENGTH`` characters.  Only the start of the part is decoded, so a huge message
costs no more than a small one.
"""

import html
import re

from rmail.imap.searchtext import part_text
from rmail.mimeparts import parse as parse_parts

LENGTH = 200
_READ = 16 * 1024  # octets of a part's body decoded at most (base64 quanta stay whole)

_SPACE = re.compile(r"\s+")
_INVISIBLE = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")


def preview(raw: bytes, root=None) -> str:
    """The first LENGTH characters of the message's text ("" when it has none); *root*
    is the part tree (``rmail.mimeparts``) when the caller has parsed it already."""
    plain = markup = None
    stack = [root or parse_parts(raw)]
    while stack and plain is None:
        part = stack.pop()
        if (part.disposition or b"").lower() == b"attachment":
            continue  # an attached message's text is not this one's
        if part.children:
            stack.extend(reversed(part.children))
            continue
        subtype = (part.subtype or b"plain").lower() if part.ctype is None or \
            part.ctype.lower() == b"text" else None
        if subtype == b"plain":
            plain = part
        elif subtype == b"html" and markup is None:
            markup = part
    part = plain or markup
    if part is None:
        return ""
    text = part_text(raw, part, _READ)
    if text is None:
        return ""
    if part is markup:
        text = html.unescape(_TAG.sub(" ", _INVISIBLE.sub(" ", text)))
    return _SPACE.sub(" ", text).strip()[:LENGTH].rstrip()
