"""Reading one message: which text to show, which attachments it carries, which headers.

The text is the first inline text/plain part, else text made from the first text/html
part (``htmltext``), else a note that there is no text.  Everything else with a file
name, or marked as an attachment, is listed by name and decoded size; an attached
message (message/rfc822) is listed under its subject.
"""

import email
import email.policy
import textwrap
from dataclasses import dataclass

from rmail.client.htmltext import html_to_text
from rmail.client.wire import printable

SHORT_HEADERS = ("From", "To", "Cc", "Date", "Subject")


@dataclass(frozen=True)
class Attachment:
    name: str
    content_type: str
    size: int

    def label(self) -> str:
        return f"{self.name} ({human_size(self.size)}, {self.content_type})"


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if size >= 10 else f"{size:.1f} {unit}"
    return ""


def parse(raw: bytes):
    """An email.message.EmailMessage, for reading and for composing replies."""
    return email.message_from_bytes(raw, policy=email.policy.default)


def part_text(part) -> str:
    """A text part's content as str, whatever its charset claims."""
    try:
        return part.get_content()
    except (LookupError, UnicodeError, ValueError, AssertionError):
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", "replace")


def _is_attachment(part) -> bool:
    disposition = (part.get_content_disposition() or "").lower()
    return disposition == "attachment" or (disposition != "inline" and bool(part.get_filename()))


def _walk(message):
    """Leaf parts, not descending into attached messages (they are attachments)."""
    if message.is_multipart():
        for sub in message.iter_parts():
            yield from _walk(sub)
    else:
        yield message


def body_text(message) -> str:
    """The text to show (see the module docstring)."""
    plain = html = None
    for part in _walk(message):
        if _is_attachment(part):
            continue
        kind = part.get_content_type()
        if kind == "text/plain" and plain is None:
            plain = part
        elif kind == "text/html" and html is None:
            html = part
    if plain is not None:
        return part_text(plain)
    if html is not None:
        return html_to_text(part_text(html))
    return ""


def attachment_parts(message):
    """(part, Attachment) for every attachment, in the message's order."""
    for part in _walk(message):
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            subject = header_value(inner, "Subject") if hasattr(inner, "get_all") else ""
            size = len(inner.as_bytes()) if hasattr(inner, "as_bytes") else 0
            name = part.get_filename() or f"{subject or 'message'}.eml"
            yield part, Attachment(printable(name), kind, size)
        elif _is_attachment(part) or not (kind.startswith("text/") or part.is_multipart()):
            payload = part.get_payload(decode=True) or b""
            yield part, Attachment(printable(part.get_filename() or "(unnamed)"), kind, len(payload))


def attachments(message) -> list:
    return [attachment for _part, attachment in attachment_parts(message)]


def header_value(message, name) -> str:
    """A header decoded; as it stands in the message when it does not parse."""
    try:
        return printable(", ".join(str(v) for v in message.get_all(name, [])))
    except Exception:  # the email package's parsers raise assorted errors on junk
        return printable(", ".join(str(v) for k, v in message.raw_items()
                                   if k.lower() == name.lower()))


class Reading:
    """The message view pane's model: one opened message, wrapped to the pane's width."""

    def __init__(self, uid, raw: bytes, folder=None):
        self.uid = uid
        self.folder = folder
        self.raw = raw
        self.message = parse(raw)
        self.text = body_text(self.message)
        self.attachments = attachments(self.message)
        self.top = 0
        self.full_headers = False
        self._wrapped = {}  # (width, full_headers) -> lines; the pane redraws often

    @property
    def subject(self) -> str:
        return header_value(self.message, "Subject")

    def header_lines(self) -> list:
        if self.full_headers:
            return [printable(f"{k}: {v}") for k, v in self.message.raw_items()]
        return [f"{name}: {header_value(self.message, name)}" for name in SHORT_HEADERS
                if self.message.get(name) is not None]

    def lines(self, width: int) -> list:
        """Every line of the pane: headers, attachments, a blank line, the wrapped text."""
        width = max(10, width)
        key = (width, self.full_headers)
        if key not in self._wrapped:
            self._wrapped = {key: self._wrap(width)}
        return self._wrapped[key]

    def _wrap(self, width: int) -> list:
        out = []
        for header in self.header_lines():
            out.extend(textwrap.wrap(header, width, subsequent_indent="    ") or [""])
        for attachment in self.attachments:
            out.extend(textwrap.wrap("Attachment: " + attachment.label(), width,
                                     subsequent_indent="    "))
        out.append("")
        for line in (self.text or "(this message has no text)").splitlines():
            line = printable(line.expandtabs(8).rstrip())
            out.extend(textwrap.wrap(line, width, drop_whitespace=True,
                                     break_on_hyphens=False) or [""])
        return out

    def scroll(self, delta: int, width: int, height: int):
        most = max(0, len(self.lines(width)) - height)
        self.top = max(0, min(most, self.top + delta))

    def toggle_headers(self):
        self.full_headers = not self.full_headers
        self.top = 0
