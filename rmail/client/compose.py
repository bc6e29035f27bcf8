"""Writing mail: new messages, replies, reply-all and forwards, as drafts the user edits.

A ``Draft`` is what the user is writing.  It is edited as plain text (``draft_text`` /
``read_draft``) — a few header lines, a blank line, the body — in $EDITOR or in the
built-in editor, and becomes an ``EmailMessage`` with ``build``.

Replies follow RFC 5322 section 3.6.4: In-Reply-To is the original's Message-ID, and
References is the original's References (or In-Reply-To) followed by that Message-ID,
so every client threads the answer under its message.  "Re: " is added once, never
stacked.  Reply-all answers the sender and copies everyone else the message went to,
except the user.
"""

import email.utils
import mimetypes
import os
import re
from dataclasses import dataclass, field, replace
from email.message import EmailMessage

from rmail.client.reading import attachment_parts, body_text, header_value, human_size, parse

EDITABLE_HEADERS = ("From", "To", "Cc", "Bcc", "Subject")
_REPLY_PREFIX = re.compile(r"^\s*re\s*(\[\d+\])?\s*:", re.IGNORECASE)
_FORWARD_PREFIX = re.compile(r"^\s*(fwd?)\s*:", re.IGNORECASE)


class DraftError(Exception):
    """The edited draft cannot be sent as it stands; str() says what to fix."""


@dataclass(frozen=True)
class Outgoing:
    """A file going out with the message."""

    name: str
    content_type: str
    data: bytes

    def label(self) -> str:
        return f"{self.name} ({human_size(len(self.data))})"


@dataclass
class Draft:
    sender: str
    to: str = ""
    cc: str = ""
    bcc: str = ""
    subject: str = ""
    body: str = ""
    in_reply_to: str = ""
    references: str = ""
    attachments: list = field(default_factory=list)
    answers: tuple | None = None  # (folder, uid) to mark \Answered once sent


# --- starting a draft ------------------------------------------------------------------

def new_message(sender: str, to: str = "") -> Draft:
    return Draft(sender=sender, to=to)


def reply_subject(subject: str) -> str:
    subject = subject.strip()
    return subject if _REPLY_PREFIX.match(subject) else f"Re: {subject}"


def forward_subject(subject: str) -> str:
    subject = subject.strip()
    return subject if _FORWARD_PREFIX.match(subject) else f"Fwd: {subject}"


def quote(text: str) -> str:
    """Every line prefixed: "> text", ">> text" for lines already quoted, ">" for blank."""
    lines = text.replace("\r\n", "\n").rstrip("\n").split("\n")
    return "\n".join(">" + line if line.startswith(">") else "> " + line if line else ">"
                     for line in lines)


def _addresses(message, *names) -> list:
    values = []
    for name in names:
        value = header_value(message, name)
        if value:
            values.append(value)
    return [(n, a) for n, a in email.utils.getaddresses(values) if a]


def _join(pairs) -> str:
    return ", ".join(email.utils.formataddr(pair) for pair in pairs)


def _unique(pairs, leave_out=()) -> list:
    seen = {a.lower() for a in leave_out}
    out = []
    for name, address in pairs:
        if address.lower() not in seen:
            seen.add(address.lower())
            out.append((name, address))
    return out


def attribution(message) -> str:
    sender = _addresses(message, "From")
    who = (sender[0][0] or sender[0][1]) if sender else "someone"
    date = header_value(message, "Date")
    return f"On {date}, {who} wrote:" if date else f"{who} wrote:"


def reply(message, sender: str, me=frozenset(), everyone=False, answers=None) -> Draft:
    """A reply to *message* (an EmailMessage) from *sender*; *me* are the user's
    addresses (lower case), never copied on reply-all."""
    me = {a.lower() for a in me} | {email.utils.parseaddr(sender)[1].lower()}
    authors = _addresses(message, "Reply-To") or _addresses(message, "From")
    if authors and all(a.lower() in me for _, a in authors):
        # answering one's own message (from Sent): it goes to the same people again
        authors = _addresses(message, "To") or authors
    to = _unique(authors)
    cc = []
    if everyone:
        cc = _unique(_addresses(message, "To", "Cc"), leave_out=me | {a for _, a in to})
    message_id = header_value(message, "Message-ID").strip()
    earlier = header_value(message, "References").split() or \
        header_value(message, "In-Reply-To").split()[:1]
    references = " ".join(earlier + ([message_id] if message_id else []))
    body = "\n\n" + attribution(message) + "\n" + quote(body_text(message)) + "\n"
    return Draft(sender=sender, to=_join(to), cc=_join(cc),
                 subject=reply_subject(header_value(message, "Subject")), body=body,
                 in_reply_to=message_id, references=references, answers=answers)


def forward(message, raw: bytes, sender: str, as_attachment=False) -> Draft:
    """A forward: the original's text inlined under its headers, its attachments carried
    along; or (*as_attachment*) the whole original attached as message/rfc822."""
    subject = header_value(message, "Subject")
    if as_attachment:
        name = (subject or "message").replace("/", "-") + ".eml"
        return Draft(sender=sender, subject=forward_subject(subject), body="\n",
                     attachments=[Outgoing(name, "message/rfc822", raw)])
    lines = ["", "", "---------- Forwarded message ----------"]
    for name in ("From", "Date", "Subject", "To", "Cc"):
        value = header_value(message, name)
        if value:
            lines.append(f"{name}: {value}")
    lines += ["", body_text(message).rstrip("\n"), ""]
    carried = []
    for part, listed in attachment_parts(message):
        data = part.get_payload(decode=True)
        if data is None and part.get_content_type() == "message/rfc822":
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) else inner
            data = inner.as_bytes()
        carried.append(Outgoing(listed.name, listed.content_type, data or b""))
    return Draft(sender=sender, subject=forward_subject(subject), body="\n".join(lines),
                 attachments=carried)


# --- editing as text -------------------------------------------------------------------

def draft_text(draft: Draft) -> str:
    """The draft as the user edits it: header lines, a blank line, the body."""
    lines = [f"From: {draft.sender}", f"To: {draft.to}", f"Cc: {draft.cc}",
             f"Bcc: {draft.bcc}", f"Subject: {draft.subject}"]
    lines += [f"Attach: {a.label()}" for a in draft.attachments]
    return "\n".join(lines) + "\n\n" + draft.body


def body_line(text: str) -> int:
    """The line number where the body starts (where the cursor goes for a reply)."""
    lines = text.split("\n")
    return lines.index("") + 1 if "" in lines else len(lines)


def read_draft(text: str, draft: Draft) -> Draft:
    """The edited text back as a Draft (threading and carried files kept from *draft*).

    ``Attach:`` lines name a carried attachment (as listed) or a file to add."""
    head, _, body = text.replace("\r\n", "\n").partition("\n\n")
    fields, attach = {}, []
    for raw_line in head.split("\n"):
        if not raw_line.strip():
            continue
        if raw_line[:1] in (" ", "\t") and fields:
            last = list(fields)[-1]
            fields[last] += " " + raw_line.strip()
            continue
        name, colon, value = raw_line.partition(":")
        name = name.strip().title()
        if not colon or name not in EDITABLE_HEADERS + ("Attach",):
            raise DraftError(f"the line {raw_line.strip()!r} is not one of the headers "
                             f"{', '.join(EDITABLE_HEADERS)} or Attach; put a blank line "
                             "before the text")
        if name == "Attach":
            attach.append(value.strip())
        else:
            fields[name] = value.strip()
    for name in ("To", "Cc", "Bcc", "From"):
        for display, address in email.utils.getaddresses([fields.get(name, "")]):
            if (display or address) and "@" not in address:
                raise DraftError(f"{name}: {(display or address)!r} is not a mail address")
    if not any(email.utils.getaddresses([fields.get(n, "")])[0][1]
               for n in ("To", "Cc", "Bcc") if fields.get(n)):
        raise DraftError("no recipient: fill in To")
    carried = {a.label(): a for a in draft.attachments}
    files = []
    for value in attach:
        if value in carried:
            files.append(carried[value])
        elif value:
            files.append(_read_file(value))
    return replace(draft, sender=fields.get("From") or draft.sender, to=fields.get("To", ""),
                   cc=fields.get("Cc", ""), bcc=fields.get("Bcc", ""),
                   subject=fields.get("Subject", ""), body=body, attachments=files)


def _read_file(path: str) -> Outgoing:
    full = os.path.expanduser(path)
    try:
        with open(full, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DraftError(f"Attach: {path}: {e.strerror or e}")
    kind = mimetypes.guess_type(full)[0] or "application/octet-stream"
    return Outgoing(os.path.basename(full), kind, data)


# --- the message that goes out ---------------------------------------------------------

def build(draft: Draft) -> EmailMessage:
    """The message to submit (and to store in Sent)."""
    message = EmailMessage()
    message["From"] = draft.sender
    for name, value in (("To", draft.to), ("Cc", draft.cc), ("Bcc", draft.bcc)):
        if value.strip():
            message[name] = value
    message["Subject"] = draft.subject
    message["Date"] = email.utils.formatdate(localtime=True)
    domain = email.utils.parseaddr(draft.sender)[1].rpartition("@")[2] or None
    message["Message-ID"] = email.utils.make_msgid(domain=domain)
    if draft.in_reply_to:
        message["In-Reply-To"] = draft.in_reply_to
    if draft.references:
        message["References"] = draft.references
    body = draft.body if draft.body.endswith("\n") else draft.body + "\n"
    message.set_content(body)
    for item in draft.attachments:
        if item.content_type == "message/rfc822":
            message.add_attachment(parse(item.data), filename=item.name)
        else:
            maintype, _, subtype = item.content_type.partition("/")
            message.add_attachment(item.data, maintype=maintype, subtype=subtype or "octet-stream",
                                   filename=item.name)
    return message
