"""The queue on disk: the one home of its layout, and every blocking operation on it.

Layout::

    {mail_root}/queue/
        lock                  flock()ed by the running server for its whole life
        messages/{id}         the message, once (a hard link to the received spool file)
        entries/{id}.json     its QueueEntry: sender, recipients and their state
        quarantine/           damaged entries and their messages, with {id}.reason
        commands/             requests from `python run.py queue ...` and their answers

Durability: a message is linked (or copied and fsynced) into ``messages/`` and that
directory fsynced, and only then is its entry written with ``durable.write_atomic``;
the entry's existence is the acknowledgement (SMTP's ``250`` waits for it).  Every
state change rewrites the entry atomically.  Leaving the queue removes the entry first.
Hence at start:

- a message without an entry was never acknowledged, or had finished: removed;
- an entry that does not parse, or whose message is missing or of the wrong size, is
  damaged (a disk fault, a hand edit): moved to ``quarantine/`` with the reason, and
  the rest of the queue goes on;
- ``.*.tmp`` files are writes a crash interrupted: removed.

Threads: everything here blocks on the disk.  The server calls it through
``deferToThread``; the CLI, which has no reactor, calls it directly.
"""

import errno
import fcntl
import os
import secrets
import shutil
import time

from rmail import crashpoint, durable
from rmail.relay.entry import DamagedEntry, QueueEntry


class QueueLocked(Exception):
    """Another process (a running server) holds the queue."""


def new_id(now=None) -> str:
    """A queue ID: milliseconds since the epoch in hex (so IDs sort by age) plus randomness."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"{ms:011x}{secrets.token_hex(3)[:5]}"


def valid_id(queue_id: str) -> bool:
    return 8 <= len(queue_id) <= 32 and all(c in "0123456789abcdef" for c in queue_id)


class QueueDir:
    def __init__(self, mail_root: str):
        self.root = os.path.join(mail_root, "queue")
        self.messages_dir = os.path.join(self.root, "messages")
        self.entries_dir = os.path.join(self.root, "entries")
        self.quarantine_dir = os.path.join(self.root, "quarantine")
        self.commands_dir = os.path.join(self.root, "commands")
        self.lock_path = os.path.join(self.root, "lock")
        self._lock_fd = None

    def message_path(self, queue_id: str) -> str:
        return os.path.join(self.messages_dir, queue_id)

    def entry_path(self, queue_id: str) -> str:
        return os.path.join(self.entries_dir, queue_id + ".json")

    def exists(self) -> bool:
        return os.path.isdir(self.entries_dir)

    def prepare(self) -> None:
        for path in (self.messages_dir, self.entries_dir, self.quarantine_dir,
                     self.commands_dir):
            durable.make_dirs(path)

    # -- the lock: one process works on the queue ------------------------------------

    def lock(self) -> None:
        """Take the queue for this process; QueueLocked when another holds it."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise QueueLocked(self.lock_path)
            raise
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    # -- adding, saving, removing ---------------------------------------------------------

    def add(self, queue_id: str, sender: str, recipients, source_path: str) -> QueueEntry:
        """Queue the finished (fsynced) file at *source_path*; durable on return."""
        dest = self.message_path(queue_id)
        _link_or_copy(source_path, dest)
        try:
            durable.fsync_dir(self.messages_dir)
            crashpoint.reach("queue.linked")
            entry = QueueEntry.new(queue_id, sender, recipients, os.stat(dest).st_size)
            durable.write_atomic(self.entry_path(queue_id), entry.to_json())
            crashpoint.reach("queue.written")
        except BaseException:
            _unlink(dest)
            raise
        return entry

    def save(self, entry: QueueEntry) -> None:
        durable.write_atomic(self.entry_path(entry.id), entry.to_json())

    def remove(self, *queue_ids: str) -> None:
        """The entries first (they are what makes a message queued; one directory fsync
        for them all), then the messages."""
        for queue_id in queue_ids:
            _unlink(self.entry_path(queue_id))
        durable.fsync_dir(self.entries_dir)
        for queue_id in queue_ids:
            _unlink(self.message_path(queue_id))

    def read_header(self, queue_id: str, limit: int = 65536) -> bytes:
        """The message's header block (up to the empty line), at most *limit* bytes."""
        with open(self.message_path(queue_id), "rb") as f:
            data = f.read(limit)
        for sep in (b"\r\n\r\n", b"\n\n"):
            end = data.find(sep)
            if end >= 0:
                return data[:end + len(sep) // 2]
        return data

    # -- reading, repairing ------------------------------------------------------------------

    def read(self, queue_id: str) -> QueueEntry:
        """One entry, checked against its message; DamagedEntry when it does not hold up."""
        try:
            with open(self.entry_path(queue_id), "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raise KeyError(queue_id)
        entry = QueueEntry.from_json(raw, queue_id)
        try:
            size = os.stat(self.message_path(queue_id)).st_size
        except FileNotFoundError:
            raise DamagedEntry("its message file is missing")
        if size != entry.size:
            raise DamagedEntry(f"its message file has {size} bytes, the entry says {entry.size}")
        return entry

    def ids(self) -> list[str]:
        return sorted(name[:-5] for name in _listdir(self.entries_dir)
                      if name.endswith(".json") and not name.startswith("."))

    def load(self) -> tuple[list[QueueEntry], list[str]]:
        """Every sound entry, after repairing what a crash can leave; and one line per repair."""
        notes = []
        for directory in (self.entries_dir, self.messages_dir):
            for name in _listdir(directory):
                if name.startswith(".") and name.endswith(".tmp"):
                    _unlink(os.path.join(directory, name))
                    notes.append(f"removed {name}, a write interrupted by a crash")
        entries = []
        for queue_id in self.ids():
            try:
                entries.append(self.read(queue_id))
            except DamagedEntry as e:
                self.quarantine(queue_id, str(e))
                notes.append(f"queue entry {queue_id} is damaged ({e}); moved it and its "
                             f"message to {self.quarantine_dir}")
        known = {e.id for e in entries}
        for name in _listdir(self.messages_dir):
            if name not in known and not name.startswith("."):
                _unlink(os.path.join(self.messages_dir, name))
                notes.append(f"removed message {name}: it has no queue entry (never "
                             "acknowledged, or already finished)")
        return entries, notes

    def quarantine(self, queue_id: str, reason: str) -> None:
        """Move an entry and its message out of the queue, keeping them for a person."""
        durable.make_dirs(self.quarantine_dir)
        with open(os.path.join(self.quarantine_dir, queue_id + ".reason"), "w") as f:
            f.write(reason + "\n")
        for src in (self.message_path(queue_id), self.entry_path(queue_id)):
            if os.path.exists(src):
                os.replace(src, os.path.join(self.quarantine_dir, os.path.basename(src)))
        durable.fsync_dir(self.quarantine_dir)
        durable.fsync_dir(self.messages_dir)
        durable.fsync_dir(self.entries_dir)


def _listdir(path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def _unlink(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _link_or_copy(src: str, dest: str) -> None:
    """A second name for the received file; a fsynced copy where links are not possible."""
    try:
        os.link(src, dest)
        return
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
    tmp = os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}.tmp")
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1024 * 1024)
        fout.flush()
        os.fsync(fout.fileno())
    os.replace(tmp, dest)
