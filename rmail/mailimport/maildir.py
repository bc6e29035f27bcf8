"""Reading a Maildir and its Maildir++ sub-folders, as Dovecot and Courier keep them.

- A Maildir is a directory with ``cur/`` and ``new/`` (``tmp/`` holds deliveries in
  progress and is not read).  Sub-folders are sibling directories of ``cur/`` named
  ``.Folder`` and ``.Folder.Sub`` (Maildir++), with names in IMAP's modified UTF-7
  (``.Entw&APw-rfe`` is "Entwürfe"), as Dovecot writes them.
- Flags are the letters after ``:2,`` in a file's name: ``D`` \\Draft, ``F`` \\Flagged,
  ``P`` $Forwarded (passed on), ``R`` \\Answered, ``S`` \\Seen, ``T`` \\Deleted.  The
  lower-case letters are Dovecot keywords, named in the folder's ``dovecot-keywords``
  file (``0 $Junk`` makes ``a`` mean $Junk); a letter the file does not name is left out.
  Messages still in ``new/`` have no flags.
- The internal date is the file's modification time, which is when the message arrived
  for Dovecot and Courier.
- Order: by the delivery time that begins each file name, so the new UIDs follow the
  order the mail arrived in.
"""

import base64
import os
from dataclasses import dataclass, field

from rmail.store import names
from rmail.store.interfaces import StoreError

_LETTERS = {"D": "\\Draft", "F": "\\Flagged", "P": "$Forwarded", "R": "\\Answered",
            "S": "\\Seen", "T": "\\Deleted"}


class MaildirError(Exception):
    pass


@dataclass(frozen=True)
class MaildirFolder:
    name: str  # below the Maildir's root: "" for the root itself, "Archive/2024"
    path: str
    keywords: dict = field(default_factory=dict)  # letter -> keyword

    def count(self) -> int:
        """How many messages (for the progress bar), without keeping their names."""
        total = 0
        for sub in ("new", "cur"):
            try:
                with os.scandir(os.path.join(self.path, sub)) as entries:
                    total += sum(1 for e in entries if not e.name.startswith("."))
            except FileNotFoundError:
                continue
        return total

    def files(self) -> list:
        """``sub/name`` of every message, in delivery order: only the names of one folder
        are held (about 100 bytes a message), never its messages."""
        found = []
        for sub in ("new", "cur"):
            try:
                entries = os.listdir(os.path.join(self.path, sub))
            except FileNotFoundError:
                continue
            found.extend(f"{sub}/{name}" for name in entries if not name.startswith("."))
        found.sort(key=lambda entry: (_arrival(entry[4:]), entry[4:]))
        return found

    def message(self, entry: str) -> tuple:
        """(path, flags) of one entry of ``files``."""
        sub, name = entry[:3], entry[4:]
        return (os.path.join(self.path, sub, name),
                flags(name, self.keywords) if sub == "cur" else frozenset())


def is_maildir(path: str) -> bool:
    return any(os.path.isdir(os.path.join(path, sub)) for sub in ("cur", "new"))


def folders(root: str) -> list:
    """The root and every Maildir++ sub-folder, parents first; MaildirError for a
    directory that is no Maildir, or a sub-folder name the store cannot take."""
    if not os.path.isdir(root):
        raise MaildirError(f"{root} is not a directory")
    if not is_maildir(root):
        raise MaildirError(f"{root} is not a Maildir (it has neither cur/ nor new/)")
    found = [MaildirFolder("", root, _keywords(root))]
    for entry in sorted(os.listdir(root)):
        path = os.path.join(root, entry)
        if not entry.startswith(".") or entry in (".", "..") or not is_maildir(path):
            continue
        try:
            name = names.folder_name(names.SEPARATOR.join(
                decode_modified_utf7(part) for part in entry[1:].split(".")))
        except StoreError as e:
            raise MaildirError(f"{path}: cannot be a folder name: {e}")
        found.append(MaildirFolder(name, path, _keywords(path)))
    return sorted(found, key=lambda f: f.name)


def flags(file_name: str, keywords: dict) -> frozenset:
    """The flags a Maildir file name carries in its ``:2,`` info."""
    _, colon, info = file_name.rpartition(":")
    if not colon or not info.startswith("2,"):
        return frozenset()
    found = set()
    for letter in info[2:]:
        if letter in _LETTERS:
            found.add(_LETTERS[letter])
        elif letter in keywords:
            found.add(keywords[letter])
    return frozenset(found)


def _arrival(name: str) -> int:
    """The delivery time a Maildir file name starts with (seconds), or 0."""
    digits = name.split(".", 1)[0]
    return int(digits) if digits.isdigit() else 0


def _keywords(path: str) -> dict:
    """Dovecot's ``dovecot-keywords``: lines ``N keyword``; letter ``a`` + N names it."""
    try:
        with open(os.path.join(path, "dovecot-keywords"), encoding="utf-8",
                  errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return {}
    keywords = {}
    for line in lines:
        number, _, keyword = line.strip().partition(" ")
        if not number.isdigit() or int(number) >= 26:
            continue
        try:
            keywords[chr(ord("a") + int(number))] = names.flag(keyword.strip())
        except StoreError:
            continue  # not an IMAP keyword (atom): nothing a client could show
    return keywords


def decode_modified_utf7(text: str) -> str:
    """RFC 3501 5.1.3: ``&AOk-`` is "é", ``&-`` is "&"; text that is not valid stays as it is."""
    if "&" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        if text[i] != "&":
            out.append(text[i])
            i += 1
            continue
        end = text.find("-", i)
        if end < 0:
            return text
        chunk = text[i + 1:end]
        if not chunk:
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            try:
                out.append(base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
                           .decode("utf-16-be"))
            except (ValueError, UnicodeDecodeError):
                return text
        i = end + 1
    return "".join(out)
