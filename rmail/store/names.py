"""Folder names and message flags: what the store accepts, in one place.

Folder names are any Unicode text with ``/`` as the hierarchy separator.  Refused:
empty names and empty segments (``a//b``, a leading or trailing ``/``), the segments
``.`` and ``..``, control characters, and over-long names.  ``INBOX`` is
case-insensitive (RFC 3501 section 5.1) and always spelled ``INBOX``.

Flags (RFC 3501 section 2.3.2): the system flags are case-insensitive and kept in
their canonical spelling; keywords are atoms.  ``\\Recent`` is a session property,
never stored.
"""

from rmail.store.interfaces import InvalidFolderName, InvalidFlag

SEPARATOR = "/"
INBOX = "INBOX"
MAX_SEGMENT = 255
MAX_NAME = 1024

# The folders every user has, with their RFC 6154 SPECIAL-USE attribute.
DEFAULT_FOLDERS = (
    (INBOX, None),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)

SYSTEM_FLAGS = {f.lower(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")}
SEEN = "\\Seen"
DELETED = "\\Deleted"
_ATOM_SPECIALS = set('(){ %*"\\]')


def folder_name(name: str) -> str:
    """The canonical form of *name*; InvalidFolderName with the reason when refused."""
    if not isinstance(name, str) or not name:
        raise InvalidFolderName("a folder name must not be empty")
    if len(name) > MAX_NAME:
        raise InvalidFolderName(f"a folder name is at most {MAX_NAME} characters")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in name):
        raise InvalidFolderName("a folder name must not contain control characters")
    segments = name.split(SEPARATOR)
    for segment in segments:
        if not segment:
            raise InvalidFolderName(f"{name!r} has an empty part between '/' separators")
        if segment in (".", ".."):
            raise InvalidFolderName(f"{name!r}: '.' and '..' are not folder names")
        if len(segment) > MAX_SEGMENT:
            raise InvalidFolderName(f"each part of a folder name is at most {MAX_SEGMENT} characters")
    if segments[0].upper() == INBOX:
        segments[0] = INBOX
    return SEPARATOR.join(segments)


def parents(name: str) -> list[str]:
    """``a/b/c`` -> ``["a", "a/b"]``."""
    segments = name.split(SEPARATOR)
    return [SEPARATOR.join(segments[:i]) for i in range(1, len(segments))]


def is_inside(name: str, parent: str) -> bool:
    return name.startswith(parent + SEPARATOR)


def flag(value: str) -> str:
    """One flag in canonical spelling; InvalidFlag when it is not a flag."""
    system = SYSTEM_FLAGS.get(value.lower())
    if system:
        return system
    if value.lower() == "\\recent":
        raise InvalidFlag("\\Recent cannot be stored")
    body = value[1:] if value.startswith("\\") else value
    if value.startswith("\\") or not body or any(
            c in _ATOM_SPECIALS or ord(c) <= 0x20 or ord(c) >= 0x7F for c in body):
        raise InvalidFlag(f"{value!r} is not a valid flag or keyword")
    return value


def flags(values) -> frozenset:
    return frozenset(flag(v) for v in values)


def flags_text(values) -> str:
    """The stored form: canonical flags, sorted, space-separated."""
    return " ".join(sorted(values))


def parse_flags_text(text: str) -> frozenset:
    return frozenset(text.split()) if text else frozenset()
