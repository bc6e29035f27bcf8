"""The bounce: one RFC 3464 delivery status notification per failure report.

A ``multipart/report; report-type=delivery-status`` message (RFC 6522) in three parts:
a few lines for people, the ``message/delivery-status`` fields for programs (one
per-recipient block per failed recipient, with the remote host and its reply), and
the original message's header as ``text/rfc822-headers`` (not the body: a bounce
must not re-send what may be large or unwanted).

It is sent from the null reverse-path (``MAIL FROM:<>``), so a bounce that itself
fails is never bounced (RFC 5321 section 4.5.5); ``rmail.relay.service`` enforces that.
"""

import secrets
from email.utils import formatdate

from rmail.relay.results import RemoteReply

SUBJECT = "Undelivered Mail Returned to Sender"


def _ascii(text: str, limit: int = 900) -> str:
    clean = "".join(c if 32 <= ord(c) < 127 else "?" for c in text)
    return clean[:limit]


def _remote_mta(last_host: str) -> str:
    """``mx.example.net[192.0.2.1]:25`` -> ``mx.example.net``; "" when nobody answered."""
    name = last_host.partition("[")[0]
    return name or last_host.rpartition(":")[0]


def build(hostname: str, entry, failed, original_header: bytes, now: float) -> bytes:
    """The DSN for *failed* (Recipients of *entry*) as CRLF bytes."""
    boundary = f"rmail-{secrets.token_hex(12)}"
    human = [
        f"This is the mail system at {hostname}.",
        "",
        "Your message could not be delivered to one or more recipients.",
        "Its header is attached below; the reasons follow.",
        "",
    ]
    per_recipient = []
    for r in failed:
        reply = RemoteReply.parse(r.last_reply) if r.last_reply else RemoteReply(554, "5.0.0")
        where = f"{r.last_host} said" if r.last_host else "the mail system said"
        human.append(f"<{_ascii(r.address)}>: {where}: {_ascii(str(reply), 600)}")
        fields = [f"Final-Recipient: rfc822; {_ascii(r.address)}", "Action: failed",
                  f"Status: {reply.status if reply.permanent else '5.4.7'}"]
        mta = _remote_mta(r.last_host)
        if mta:
            fields.append(f"Remote-MTA: dns; {_ascii(mta)}")
        fields.append(f"Diagnostic-Code: smtp; {_ascii(str(reply))}")
        if r.last_attempt:
            fields.append(f"Last-Attempt-Date: {formatdate(r.last_attempt, localtime=True)}")
        per_recipient.append("\r\n".join(fields))
    human += ["", f"Queue ID: {entry.id}", ""]
    status = "\r\n\r\n".join(
        [f"Reporting-MTA: dns; {hostname}\r\n"
         f"Arrival-Date: {formatdate(entry.created, localtime=True)}"] + per_recipient)
    header = original_header.rstrip(b"\r\n").replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    head = "\r\n".join([
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>",
        f"To: <{entry.sender}>",
        f"Subject: {SUBJECT}",
        f"Date: {formatdate(now, localtime=True)}",
        f"Message-ID: <{secrets.token_hex(16)}@{hostname}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="{boundary}"',
        "",
        "This is a MIME-encapsulated delivery status notification.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "Content-Description: Notification",
        "",
        "\r\n".join(human),
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "Content-Description: Delivery report",
        "",
        status,
        "",
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        "Content-Description: Undelivered message header",
        "",
    ])
    return (head.encode("ascii") + b"\r\n" + header + b"\r\n\r\n"
            + f"--{boundary}--\r\n".encode("ascii"))
