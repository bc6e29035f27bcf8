"""The legacy index.json storage, read only: what ``python run.py migrate`` copies from.

Layout (SPEC, "Storage")::

    {root}/{domain}/{local part}/{folder}/index.json
    {root}/{domain}/{local part}/{folder}/{message files named in index.json}

    index.json = {"uidvalidity": N, "uidnext": N,
                  "messages": [{"uid": N, "file": "NAME", "flags": [...],
                                "internaldate": "RFC 3339"}]}

Folder directories nest for sub-folders (``Archive/2024/index.json`` is the folder
``Archive/2024``); a directory is a folder when it holds an index.json.  Nothing here
writes: the tree is left exactly as it was.

Everything wrong with the tree is a LegacyError whose text names the file and what is
wrong, for the operator to read.
"""

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone

from rmail.store import names
from rmail.store.interfaces import StoreError

INDEX = "index.json"


class LegacyError(Exception):
    pass


@dataclass(frozen=True)
class LegacyMessage:
    uid: int
    file: str
    flags: tuple
    internaldate: object  # the RFC 3339 text as found (or None)


@dataclass(frozen=True)
class LegacyFolderIndex:
    uidvalidity: int
    uidnext: int  # at least the highest UID + 1, whatever the file said
    messages: list  # LegacyMessage in ascending UID order


@dataclass(frozen=True)
class LegacyFolder:
    name: str  # the store's folder name ("INBOX", "Archive/2024")
    path: str  # its directory

    def read_index(self) -> LegacyFolderIndex:
        return read_index(os.path.join(self.path, INDEX))

    def message_path(self, message: LegacyMessage) -> str:
        return os.path.join(self.path, message.file)


@dataclass(frozen=True)
class LegacyUser:
    address: str
    path: str

    def folders(self) -> list:
        """Every folder of this user, parents before their sub-folders."""
        found = []
        for directory, subdirs, files in os.walk(self.path):
            subdirs.sort()
            if INDEX not in files:
                continue
            relative = os.path.relpath(directory, self.path)
            if relative == ".":
                raise LegacyError(f"{os.path.join(directory, INDEX)}: an index.json directly "
                                  "in a user's directory belongs to no folder")
            try:
                name = names.folder_name(relative.replace(os.sep, names.SEPARATOR))
            except StoreError as e:
                raise LegacyError(f"{directory}: cannot be a folder name: {e}")
            found.append(LegacyFolder(name, directory))
        return sorted(found, key=lambda f: (f.name != names.INBOX, f.name))


def users(root: str, domains) -> list:
    """The users with legacy mail under *root* in the given domains, sorted by address."""
    found = []
    for domain in sorted({d.lower() for d in domains}):
        domain_dir = _child(root, domain)
        if domain_dir is None:
            continue
        for local in sorted(os.listdir(domain_dir)):
            path = os.path.join(domain_dir, local)
            if os.path.isdir(path) and _holds_index(path):
                found.append(LegacyUser(f"{local.lower()}@{domain}", path))
    return found


def other_domains(root: str, domains) -> list:
    """Directories of *root* laid out like legacy domains but not among *domains*."""
    wanted = {d.lower() for d in domains}
    found = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if name.lower() in wanted or "." not in name or not os.path.isdir(path):
            continue
        if any(os.path.isdir(os.path.join(path, u)) and _holds_index(os.path.join(path, u))
               for u in os.listdir(path)):
            found.append(name)
    return found


def _child(root, name):
    """The directory *name* in *root*, whatever its case, or None."""
    try:
        entries = os.listdir(root)
    except FileNotFoundError:
        return None
    for entry in entries:
        if entry.lower() == name and os.path.isdir(os.path.join(root, entry)):
            return os.path.join(root, entry)
    return None


def _holds_index(path) -> bool:
    return any(INDEX in files for _, _, files in os.walk(path))


def read_index(path: str) -> LegacyFolderIndex:
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise LegacyError(f"{path}: cannot be read: {e}")
    if not isinstance(data, dict):
        raise LegacyError(f"{path}: expected a JSON object")
    uidvalidity = _number(data.get("uidvalidity"), path, "uidvalidity")
    uidnext = _number(data.get("uidnext", 1), path, "uidnext")
    entries = data.get("messages", [])
    if not isinstance(entries, list):
        raise LegacyError(f"{path}: \"messages\" must be a list")
    messages, seen = [], set()
    for i, entry in enumerate(entries):
        where = f"{path}: messages[{i}]"
        if not isinstance(entry, dict):
            raise LegacyError(f"{where}: expected an object")
        uid = _number(entry.get("uid"), where, "uid")
        if uid in seen:
            raise LegacyError(f"{where}: UID {uid} appears twice")
        seen.add(uid)
        file = entry.get("file")
        if (not isinstance(file, str) or not file or file in (".", "..", INDEX)
                or "/" in file or os.sep in file or "\0" in file):
            raise LegacyError(f"{where}: \"file\" must name a file in the folder's directory")
        flags = entry.get("flags", [])
        if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
            raise LegacyError(f"{where}: \"flags\" must be a list of strings")
        messages.append(LegacyMessage(uid, file, tuple(flags), entry.get("internaldate")))
    messages.sort(key=lambda m: m.uid)
    if messages:
        uidnext = max(uidnext, messages[-1].uid + 1)
    return LegacyFolderIndex(uidvalidity, uidnext, messages)


def _number(value, where, key) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2 ** 32:
        raise LegacyError(f"{where}: \"{key}\" must be a whole number from 1 to 4294967295, "
                          f"not {json.dumps(value)}")
    return value


def flags(message: LegacyMessage) -> frozenset:
    """The stored flags: system flags in their canonical spelling, keywords kept,
    ``\\Recent`` left out (a session property, never stored)."""
    try:
        return names.flags(f for f in message.flags if f.lower() != "\\recent")
    except StoreError as e:
        raise LegacyError(str(e))


def internaldate(message: LegacyMessage, path: str) -> float:
    """Seconds since the epoch from the RFC 3339 text; without one, the file's mtime."""
    text = message.internaldate
    if text is None:
        return os.stat(path).st_mtime
    if not isinstance(text, str):
        raise LegacyError(f"internaldate {json.dumps(text)} is not RFC 3339 text")
    try:
        when = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise LegacyError(f"internaldate {text!r} is not an RFC 3339 date")
    if when.tzinfo is None:  # RFC 3339 requires an offset; take a missing one as UTC
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()
