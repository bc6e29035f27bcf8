"""Loading many messages into one shard from outside the server: `migrate` and `import`.

The server adds messages one protocol transaction at a time (``Shard.append``); a move
from another server brings 100,000 at once.  The loader keeps the server's durability
order -- file written in the spool and synced, renamed into ``messages/``, the directory
fsynced, then the index row committed -- but spends it per batch (``batch_messages`` or
``batch_bytes``, whichever comes first): a pool of threads writes the files while the
next messages are read and described, then one sync of the file system (``syncfs``;
an fsync per file where there is none), the renames, one directory fsync and one index
transaction cover the whole batch.  An fsync per message would cost more than all the
rest together.  Memory is bounded by a batch, never by the mailbox.

A message file is named after the SHA-256 of its bytes (``sha256-<hex>``):

- every file is read back once durable and must hash to its own name (the check that a
  copy is intact);
- identical messages share one file, as the store's copies do;
- a run killed before a commit leaves files no row names: the next run (``open``)
  removes those leftovers of its own before it starts, and rewrites what it needs.

Only while no server has the shard open: the server's crash repair (``Shard._reconcile``)
would take a file placed before its commit for a stray.  The commands that use this check
that first (``rmail.offline``).

Blocking, single-threaded from the caller's side: the CLI calls it without a reactor.
"""

import ctypes
import hashlib
import os
import secrets
from concurrent.futures import ThreadPoolExecutor

from rmail import durable
from rmail.store.index import ShardIndex
from rmail.store.shardstore import ShardStore

PREFIX = "sha256-"


class LoadError(Exception):
    """A message file could not be written, or did not read back as written."""


def crlf(data: bytes) -> bytes:
    """Line ends as the store keeps them (RFC 5322 2.1): bare LF and bare CR become CRLF.

    Returns *data* itself when it has nothing to convert."""
    crlfs = data.count(b"\r\n")
    if data.count(b"\n") == crlfs and data.count(b"\r") == crlfs:
        return data
    # Three passes in C: every line end to LF, then LF to CRLF.
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def file_name(data: bytes) -> str:
    return PREFIX + hashlib.sha256(data).hexdigest()


class _Row:
    __slots__ = ("folder", "uid", "name", "size", "flags", "internaldate", "summary")

    def __init__(self, folder, uid, name, size, flags, internaldate, summary):
        self.folder, self.uid, self.name, self.size = folder, uid, name, size
        self.flags, self.internaldate, self.summary = flags, internaldate, summary


class ShardLoader:
    """One user's shard, open for bulk loading.  ``open``, ``add``..., ``flush``, ``close``."""

    def __init__(self, mail_root: str, address: str, describe=None, batch_messages=1000,
                 batch_bytes=64 << 20, writers=4, before_commit=None):
        store = ShardStore(mail_root)  # the layout's one home; nothing is opened here
        shard = store.user(address)
        self.address = shard.address
        self.root = shard.root
        self.messages_dir = shard.messages_dir
        self.spool_dir = store.spool_dir
        self.describe = describe
        self.batch_messages = batch_messages
        self.batch_bytes = batch_bytes
        self.before_commit = before_commit  # called with the loader just before each commit
        self._writers = writers
        self.index = None
        self._pool = None
        self.leftovers = 0  # files of an interrupted run removed by open()
        self.committed = 0  # rows committed so far
        self._reset_batch()

    def _reset_batch(self):
        self._rows: list[_Row] = []
        self._writes: dict[str, tuple] = {}  # file name -> (future, label)
        self._in_batch: set = set()  # (folder, file name) of this batch's rows
        self._bytes = 0
        self._uidnexts: dict[str, int] = {}
        self._recent_marks: dict[str, int] = {}

    # -- opening and closing ----------------------------------------------------------

    def open(self) -> "ShardLoader":
        for path in (self.messages_dir, os.path.join(self.root, "quarantine"), self.spool_dir):
            durable.make_dirs(path)
        self.index = ShardIndex(os.path.join(self.root, "index.sqlite"))
        self._remove_leftovers()
        self._pool = ThreadPoolExecutor(self._writers, thread_name_prefix="loader")
        return self

    def _remove_leftovers(self):
        """Files an interrupted run placed but never committed (never acknowledged)."""
        indexed = self.index.files()
        for name in os.listdir(self.messages_dir):
            if name.startswith(PREFIX) and name not in indexed:
                os.unlink(os.path.join(self.messages_dir, name))
                self.leftovers += 1
        if self.leftovers:
            durable.fsync_dir(self.messages_dir)
        for name in os.listdir(self.spool_dir):
            if name.startswith(PREFIX) and name.endswith(".tmp"):
                os.unlink(os.path.join(self.spool_dir, name))

    def close(self):
        """Release the shard; whatever was added since the last ``flush`` is dropped."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self.index is not None:
            self.index.close()
            self.index = None

    # -- adding -------------------------------------------------------------------------

    def add(self, folder: str, data: bytes, flags=frozenset(), internaldate=0.0, uid=None,
            label="", skip_present=False) -> bool:
        """Queue one message for *folder* (which must exist by the time of ``flush``).

        *uid*: the UID another server gave it (ascending per folder; see
        ``ShardIndex.insert_rows``); None appends after the folder's mail.  With
        *skip_present*, a message whose exact bytes *folder* already holds is left out
        and False returned.  *label* names the message in errors.
        """
        data = crlf(data)
        name = file_name(data)
        if skip_present and ((folder, name) in self._in_batch
                             or self.index.holds_file(folder, name)):
            return False
        summary = None
        if name not in self._writes and not self._stored(name):
            self._writes[name] = (self._pool.submit(self._write, name, data), label)
            self._bytes += len(data)
            summary = self._summary(data)
        self._rows.append(_Row(folder, uid, name, len(data), flags, internaldate, summary))
        self._in_batch.add((folder, name))
        if len(self._rows) >= self.batch_messages or self._bytes >= self.batch_bytes:
            self.flush()
        return True

    @property
    def pending(self) -> int:
        """Messages added since the last commit."""
        return len(self._rows)

    def finish_folder(self, folder: str, uidnext: int, not_recent=False):
        """With the next commit: *folder*'s uidnext at least *uidnext*; with *not_recent*,
        its messages so far are no longer \\Recent (they were seen on the old server)."""
        self._uidnexts[folder] = max(uidnext, self._uidnexts.get(folder, 0))
        if not_recent:
            self._recent_marks[folder] = uidnext - 1

    def _stored(self, name: str) -> bool:
        """Is this file already in the shard, committed (so neither written nor described)?"""
        return self.index.uses_file(name) and os.path.exists(os.path.join(self.messages_dir, name))

    def _summary(self, data: bytes):
        if self.describe is None:
            return None
        try:
            return self.describe(data)
        except Exception:  # the protocols compute it from the file when it is missing
            return None

    def _write(self, name: str, data: bytes):
        """In a writer thread: the bytes into a spool file, not yet synced; its path, or
        None when ``messages/`` already holds an intact copy (an uncommitted earlier run's)."""
        target = os.path.join(self.messages_dir, name)
        if os.path.exists(target) and _intact(target, name, len(data)):
            return None
        tmp = os.path.join(self.spool_dir, f"{name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        return tmp

    def _sync(self, tmps):
        if _SYNCFS is not None:
            fd = os.open(self.spool_dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                _SYNCFS(fd)
            finally:
                os.close(fd)
            return

        def fsync(path):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        list(self._pool.map(fsync, tmps))

    # -- committing ---------------------------------------------------------------------

    def flush(self) -> int:
        """Make the batch's files durable and checked, then commit its rows; return how many.

        The order of ``durable``, spent per batch: every spool file synced (one
        ``syncfs`` of the file system where Linux has it, else an fsync per file), each
        renamed to its name in ``messages/``, the directory fsynced; every file read back
        and hashed against its name; only then the index commit.  LoadError names the
        message whose file failed, and nothing of the batch is committed (its files are
        leftovers the next ``open`` removes)."""
        if not (self._rows or self._uidnexts or self._recent_marks):
            return 0
        placed = []  # (name, spool file, label)
        tmps = []
        for name, (future, label) in self._writes.items():
            try:
                tmp = future.result()
            except OSError as e:
                raise LoadError(f"{label}: cannot write it into {self.spool_dir}: {e}")
            if tmp is not None:
                tmps.append(tmp)
                placed.append((name, tmp, label))
        if placed:
            self._sync(tmps)
            for name, tmp, _ in placed:
                os.rename(tmp, os.path.join(self.messages_dir, name))
            durable.fsync_dir(self.messages_dir)
            sizes = {r.name: r.size for r in self._rows}
            checks = [(self._pool.submit(_intact, os.path.join(self.messages_dir, name), name,
                                         sizes[name]), label) for name, _, label in placed]
            for check, label in checks:
                if not check.result():
                    raise LoadError(f"{label}: the copy in {self.messages_dir} does not read "
                                    "back as written")
        if self.before_commit is not None:
            self.before_commit(self)
        index = self.index
        with index.transaction():
            appended = [r for r in self._rows if r.uid is None]
            if appended:
                index.add([(r.folder, r.name, r.size, r.flags, r.internaldate, r.summary)
                           for r in appended])
            by_folder: dict[str, list] = {}
            for r in self._rows:
                if r.uid is not None:
                    by_folder.setdefault(r.folder, []).append(
                        (r.uid, r.name, r.size, r.flags, r.internaldate, r.summary))
            for folder, rows in by_folder.items():
                index.insert_rows(folder, rows)
            for folder, uidnext in self._uidnexts.items():
                index.raise_uidnext(folder, uidnext)
            for folder, mark in self._recent_marks.items():
                index.claim_recent(folder, mark)
        count = len(self._rows)
        self.committed += count
        self._reset_batch()
        return count


def _syncfs():
    """Linux's syncfs(2), or None: one call makes every file of a file system durable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.syncfs
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int]

    def syncfs(fd):
        if call(fd) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))
    return syncfs


_SYNCFS = _syncfs()


def _intact(path: str, name: str, size: int) -> bool:
    """Does the file hold *size* bytes whose SHA-256 is the one its name carries?"""
    if os.path.getsize(path) != size:
        return False
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return PREFIX + digest.hexdigest() == name
