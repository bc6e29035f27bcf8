"""Building the message ``POST /messages/send`` sends, as a mail client would.

From is the logged-in user, Date and Message-ID are set here (the Message-ID on the
server's hostname), the subject and addresses are header-encoded (RFC 2047) when they
are not ASCII, the text body is UTF-8 with a transfer encoding safe for 7-bit hops,
and an ``html`` body makes the message multipart/alternative (RFC 2046 section 5.1.4:
plain text first, the richer form last).  Bcc recipients receive the message but are
named in no header.  Header values never contain CR or LF (a client cannot add
headers of its own through the subject).

Pure and CPU-bound (a body may be megabytes): callers run it in the thread pool.
"""

import re
import secrets
import time
from email import policy as email_policy
from email.message import EmailMessage, MIMEPart
from email.utils import formatdate

from rmail.web.errors import bad_request

# The addresses the API sends to: a plain addr-spec, ASCII, no display name (the JSON
# list is the structure, so no RFC 5322 list parsing is needed).
_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9.-]{1,253}")

# CRLF line ends, lines folded at 78, and 8-bit text bodies made quoted-printable or
# base64 (whichever is shorter), so the message needs no 8BITMIME on any hop.
_POLICY = email_policy.SMTP.clone(cte_type="7bit")


def check_address(value: str, field: str) -> str:
    if not _ADDRESS.fullmatch(value) or ".." in value or value.startswith(".") \
            or value.endswith("."):
        raise bad_request(f"{field}: {value!r} is not an e-mail address (user@domain)")
    return value


def _part(text: str, subtype: str) -> MIMEPart:
    part = MIMEPart(policy=_POLICY)
    part.set_content(text, subtype=subtype, charset="utf-8")
    return part


def message_id(hostname: str) -> str:
    """A new Message-ID (RFC 5322 section 3.6.4): unique, and on this server's name."""
    return f"<{secrets.token_hex(16)}@{hostname}>"


def build(sender: str, to, cc, subject: str, body: str, html, message_id: str) -> bytes:
    """The message as bytes with CRLF line ends."""
    msg = EmailMessage(policy=_POLICY)
    try:
        msg["From"] = sender
        msg["To"] = ", ".join(to) if to else "undisclosed-recipients:;"
        if cc:
            msg["Cc"] = ", ".join(cc)
        msg["Subject"] = subject
    except ValueError as e:
        raise bad_request(f"a header value cannot be used: {e}")
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = message_id
    msg["MIME-Version"] = "1.0"
    if html is None:
        msg.set_content(body, subtype="plain", charset="utf-8")
    else:
        msg.make_alternative()
        msg.attach(_part(body, "plain"))
        msg.attach(_part(html, "html"))
    return msg.as_bytes(policy=_POLICY)


def trace_headers(sender: str, remote: str, hostname: str, session: str) -> bytes:
    """Return-Path and Received (RFC 5321 section 4.4) for the copies delivered."""
    return (
        f"Return-Path: <{sender}>\r\n"
        f"Received: from [{remote}] by {hostname} (rmail) with HTTP id {session};\r\n"
        f"\t{formatdate(time.time(), localtime=True)}\r\n"
    ).encode("utf-8")
