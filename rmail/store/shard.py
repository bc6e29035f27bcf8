"""The shard backend: each user one directory, message files plus a SQLite index.

Layout (the one home of it)::

    {mail_root}/spool/                             messages being received (see spool.py)
    {mail_root}/domains/{domain}/mailboxes/{user}/
        index.sqlite                               folders, UIDs, flags (see index.py)
        messages/{name}                            one immutable file per message
        quarantine/{name}                          files a crash left without an index row

Durability: a message file is written and fsynced in the spool, then linked (or
renamed) into ``messages/``, the directory is fsynced, and only then is the index row
committed.  A Deferred from ``append`` fires after that commit.  Appends to one shard
are group-committed: while one batch commits, the next ones queue, and then commit
together with one directory fsync and one index transaction.

Crash repair, when a shard opens: a file in ``messages/`` without an index row was
never acknowledged (the commit is the acknowledgement) or was deleted just before the
crash; it moves to ``quarantine/``.  A row whose file is missing cannot be served and
is dropped.  Each repair is logged.  An index that cannot be opened fails that user's
operations alone (``ShardUnavailable``, with one log line), and the next one tries
again.  At start the spool is emptied by the process that holds its flock, never by a
second one started on a live mail_root.

Threads: all disk and SQLite work runs in the store's threads (``rmail.store.workers``),
one operation at a time per shard and in call order (``_turn``); results and change events
come back on the reactor thread in the order the changes were committed.

``ShardStore`` (``rmail.store.shardstore``) holds the shards, the spool and delivery.
"""

import collections
import contextlib
import os
import sqlite3
import threading
import time

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from rmail import crashpoint, durable
from rmail.store import hub as changes, names, spool, workers
from rmail.store.index import ShardIndex
from rmail.store.interfaces import IUserStore, MessageInfo, StoreError

log = Logger(namespace="rmail.store")


# Messages above this size are described (read whole, parsed) one at a time.
LARGE_MESSAGE = 4 * 1024 * 1024
_large = threading.Lock()


def _describing(size: int):
    return _large if size > LARGE_MESSAGE else contextlib.nullcontext()


class ShardUnavailable(OSError):
    """A shard whose index cannot be opened (damaged, unreadable).  An OSError, so each
    protocol answers with its temporary storage error ("try again later": SMTP 452, IMAP
    NO, HTTP 5xx) for this user alone, while every other shard is served."""


class _Entry:
    """One message waiting for its shard's next group commit."""

    __slots__ = ("folder", "path", "consume", "size", "flags", "internaldate", "data", "deferred")

    def __init__(self, folder, path, consume, size, flags, internaldate, data=None):
        self.folder = folder
        self.path = path
        self.consume = consume  # rename the spool file in, rather than link it
        self.size = size
        self.flags = flags
        self.internaldate = internaldate
        self.data = data  # the message's bytes, when the commit writes its spool file
        self.deferred = defer.Deferred()


def _newest_first(uids: list, offset: int, limit: int) -> tuple[int, list[int]]:
    """(how many, the page of *uids* (ascending) *offset* places from the newest)."""
    end = len(uids) - offset
    return len(uids), uids[max(0, end - limit):end][::-1] if end > 0 else []


@implementer(IUserStore)
class Shard:
    def __init__(self, root: str, address: str, hub: changes.ChangeHub, describe=None):
        self.root = root
        self.describe = describe
        self.address = address
        self.hub = hub
        self.messages_dir = os.path.join(root, "messages")
        self.quarantine_dir = os.path.join(root, "quarantine")
        self._lock = threading.Lock()
        self._turn = workers.InOrder()
        self._index = None
        self._pending: list[_Entry] = []
        self._committing = False
        self._idle_waiters: list[defer.Deferred] = []
        self._listing = None  # folders() as last read, until a change (_changed)
        self._generation = 0  # changes so far: a listing read across one is not kept
        self._paged = None  # (folder, generation, its UIDs): the folder page() read last
        self._validities = {}  # folder -> UIDVALIDITY, until folders are created, renamed, deleted
        self._folder_changes = 0  # those so far: a value read across one is not kept
        self._unavailable = None  # why the index last failed to open, for one log line
        self._claims = collections.deque()  # (folder, UID) \\Recent marks to write

    # -- running work off the reactor ------------------------------------------

    def _run(self, fn, *args):
        # One operation of this shard at a time, in call order; the next starts only once
        # the previous result is back on the reactor thread, so change events are
        # published in commit order.
        return self._turn.run(self._locked, fn, *args)

    def _locked(self, fn, *args):
        with self._lock:
            if self._index is None:
                self._open()
            self._write_claims()  # before anything that reads \\Recent counts
            return fn(*args)

    def _write_claims(self):
        while self._claims:
            try:
                self._index.claim_recent(*self._claims.popleft())
            except StoreError:  # the folder went meanwhile
                pass

    def _open(self):
        durable.make_dirs(self.messages_dir)
        durable.make_dirs(self.quarantine_dir)
        path = os.path.join(self.root, "index.sqlite")
        try:
            index = ShardIndex(path)
        except sqlite3.Error as e:
            # Tried again at the next operation; logged once per cause, not per command.
            if self._unavailable != str(e):
                log.error("store: {address}: cannot open {path} ({error}); this user gets "
                          "temporary errors until it is repaired or restored from a backup",
                          address=self.address, path=path, error=e)
            self._unavailable = str(e)
            raise ShardUnavailable(f"{self.address}: cannot open its index ({e})") from e
        # Served only once repaired: a failed repair (an I/O error) is tried again next time.
        self._index = index
        try:
            self._reconcile()
        except BaseException:
            self._index = None
            index.close()
            raise
        if self._unavailable is not None:
            log.info("store: {address}: {path} opens again", address=self.address, path=path)
            self._unavailable = None

    def ready(self):
        """Deferred firing once the shard is open (and repaired); ShardUnavailable if not."""
        return self._run(lambda: None)

    @property
    def is_open(self) -> bool:
        return self._index is not None

    def _reconcile(self):
        on_disk = set(os.listdir(self.messages_dir))
        indexed = self._index.files()
        for name in sorted(on_disk - indexed):
            os.rename(os.path.join(self.messages_dir, name), os.path.join(self.quarantine_dir, name))
            log.warn("store: {address}: message file {name} had no index entry; "
                     "moved to {dir}", address=self.address, name=name, dir=self.quarantine_dir)
        for name in sorted(indexed - on_disk):
            for folder, uid in self._index.drop_file_rows(name):
                log.error("store: {address}: message file {name} is missing; dropped {folder} "
                          "UID {uid} from the index", address=self.address, name=name,
                          folder=folder, uid=uid)
        if on_disk - indexed:
            durable.fsync_dir(self.messages_dir)
            durable.fsync_dir(self.quarantine_dir)

    @staticmethod
    def _check(fn, *args):
        """Validate on the reactor thread: a bad name fails before any disk work."""
        try:
            return defer.succeed(fn(*args))
        except StoreError as e:
            return defer.fail(e)

    def _publish(self, kind, folder, uids=(), flags=None):
        self._changed()
        if kind == changes.FOLDERS:
            self._validities.clear()
            self._folder_changes += 1
        recent = set(uids) if kind == changes.ADDED else set()
        self.hub.publish(changes.Change(kind, self.address, folder, tuple(uids), flags or {},
                                        recent))

    def _changed(self):
        """Counts, flags, folders or \\Recent marks changed: the kept listing is stale."""
        self._listing = None
        self._generation += 1

    def _unlink(self, files):
        """Remove message files the index no longer names (in the thread, after commit).

        Not fsynced: a file whose removal a power failure undoes has no index row, and
        the next start moves it to quarantine/ like any other stray file."""
        for name in files:
            try:
                os.unlink(os.path.join(self.messages_dir, name))
            except FileNotFoundError:
                pass

    # -- folders ----------------------------------------------------------------

    def folders(self):
        """Every folder's FolderInfo.  The answer is kept until the next change, so a
        client polling its folder list (the API's GET /folders, IMAP STATUS) costs no
        disk or thread work while nothing arrives."""
        if self._listing is not None:
            return defer.succeed(list(self._listing))
        generation = self._generation

        def keep(infos):
            if generation == self._generation:  # nothing changed while it was read
                self._listing = infos
            return list(infos)
        return self._run(lambda: self._index.folders()).addCallback(keep)

    def status(self, folder):
        def lookup(name):
            for info in self._listing or ():
                if info.name == name:
                    return info
            return self._run(lambda: self._index.status(name))
        return self._check(names.folder_name, folder).addCallback(lookup)

    def uidvalidity(self, folder):
        """Kept from the first status read until a folder is created, renamed or deleted:
        APPENDUID and COPYUID need it, and a read behind the APPEND's own commit would
        cost a second turn of the shard's thread."""
        def lookup(name):
            kept = self._validities.get(name)
            if kept is not None:
                return kept
            changes_then = self._folder_changes

            def keep(info):
                if changes_then == self._folder_changes:
                    self._validities[name] = info.uidvalidity
                return info.uidvalidity
            return self.status(name).addCallback(keep)
        return self._check(names.folder_name, folder).addCallback(lookup)

    def create_folder(self, folder):
        def create(name):
            d = self._run(lambda: self._index.create_folder(name))
            return d.addCallback(lambda _: self._publish(changes.FOLDERS, name))
        return self._check(names.folder_name, folder).addCallback(create)

    def delete_folder(self, folder):
        def delete(name):
            def in_thread():
                self._unlink(self._index.delete_folder(name))
            d = self._run(in_thread)
            return d.addCallback(lambda _: self._publish(changes.FOLDERS, name))
        return self._check(names.folder_name, folder).addCallback(delete)

    def rename_folder(self, old, new):
        def rename(pair):
            d = self._run(lambda: self._index.rename_folder(*pair))

            def done(_):
                self._publish(changes.FOLDERS, pair[0])
                self._publish(changes.FOLDERS, pair[1])
            return d.addCallback(done)
        d = self._check(lambda: (names.folder_name(old), names.folder_name(new)))
        return d.addCallback(rename)

    def subscribe(self, folder, subscribed):
        def change(name):
            self._changed()
            return self._run(lambda: self._index.subscribe(name, subscribed))
        return self._check(names.folder_name, folder).addCallback(change)

    # -- adding messages (group commit) -------------------------------------------

    def append(self, folder, message, flags=(), internaldate=None):
        """Add a MessageWriter's message (its spool file moves into this shard).  One not
        finished yet is finished here; if it is all still in memory, the commit writes
        and fsyncs it in its own turn."""
        data = message.take()
        if data is None and not message.finished:
            return message.finish().addCallback(
                lambda _: self.append(folder, message, flags, internaldate))
        return self.add_file(folder, message.path, message.size, flags, internaldate,
                             consume=True, data=data)

    def add_file(self, folder, path, size, flags=(), internaldate=None, consume=False,
                 data=None):
        try:
            folder = names.folder_name(folder)
            flags = names.flags(flags)
        except StoreError as e:
            return defer.fail(e)
        entry = _Entry(folder, path, consume, size, flags,
                       time.time() if internaldate is None else internaldate, data)
        self._pending.append(entry)
        self._commit_next()
        return entry.deferred

    def _commit_next(self):
        if self._committing:
            return
        if not self._pending:
            waiters, self._idle_waiters = self._idle_waiters, []
            for d in waiters:
                d.callback(None)
            return
        batch, self._pending = self._pending, []
        self._committing = True
        d = self._run(self._commit_batch, batch)
        d.addBoth(self._batch_done, batch)

    def _commit_batch(self, batch):
        """In the thread: place the files, fsync the directory once, index them in one commit."""
        results = [None] * len(batch)
        placed = []
        for i, e in enumerate(batch):
            target = os.path.join(self.messages_dir, os.path.basename(e.path))
            try:
                if e.data is not None:
                    spool.write_taken(e.path, e.data)
                (os.rename if e.consume else os.link)(e.path, target)
            except OSError as err:
                results[i] = err
                continue
            placed.append(i)
        summaries = {i: self._summary(batch[i]) for i in placed}
        try:
            if placed:
                crashpoint.reach("store.placed")
                durable.fsync_dir(self.messages_dir)
            with self._index.transaction():
                for i in placed:
                    e = batch[i]
                    try:
                        (uid,) = self._index.add(
                            [(e.folder, os.path.basename(e.path), e.size, e.flags,
                              e.internaldate, summaries[i])])
                        results[i] = uid
                    except StoreError as err:
                        results[i] = err
            crashpoint.reach("store.committed")
        except Exception as err:
            for i in placed:
                results[i] = err
        # Files whose entry failed have no row: take them out again.
        self._unlink([os.path.basename(batch[i].path) for i in placed
                      if isinstance(results[i], Exception)])
        return results

    def _summary(self, entry):
        """What the describer computes once for a new message (None without one, or on error).

        It reads the whole message: large ones are described one at a time across all
        shards, so fifty 50 MB messages committing at once hold one in memory, not fifty."""
        if self.describe is None:
            return None
        try:
            if entry.data is not None:
                return self.describe(entry.data)
            with _describing(entry.size), \
                    open(os.path.join(self.messages_dir, os.path.basename(entry.path)), "rb") as f:
                return self.describe(f.read())
        except Exception:
            log.failure("store: {address}: cannot describe {name}", address=self.address,
                        name=os.path.basename(entry.path))
            return None

    def _batch_done(self, results, batch):
        self._committing = False
        if not isinstance(results, list):  # the whole batch failed
            results = [results.value] * len(batch)
        added = {}  # folder -> {uid: flags}
        for entry, result in zip(batch, results):
            if not isinstance(result, Exception):
                added.setdefault(entry.folder, {})[result] = entry.flags
        for folder, flags in added.items():
            self._publish(changes.ADDED, folder, flags, flags)
        for entry, result in zip(batch, results):
            if isinstance(result, Exception):
                entry.deferred.errback(result)
            else:
                entry.deferred.callback(result)
        self._commit_next()

    def flush(self):
        """Deferred firing when no append is pending or committing."""
        if not self._committing and not self._pending:
            return defer.succeed(None)
        d = defer.Deferred()
        self._idle_waiters.append(d)
        return d

    # -- messages -------------------------------------------------------------------

    def _infos(self, rows) -> list:
        prefix = self.messages_dir + os.sep
        flag_sets = {}
        infos = []
        for uid, flags, size, date, file, envelope, body, structure, header, preview, \
                has_texts, *texts in rows:
            parsed = flag_sets.get(flags)
            if parsed is None:
                parsed = flag_sets[flags] = names.parse_flags_text(flags)
            infos.append(MessageInfo(uid, parsed, size, date, prefix + file, envelope, body,
                                     structure, header, preview, texts if has_texts else None))
        return infos

    def messages(self, folder, uids=None, summaries=True, headers=False, texts=False,
                 containing=()):
        def read(name):
            return self._infos(self._index.messages(name, uids, summaries, headers, texts,
                                                    containing))
        d = self._check(names.folder_name, folder)
        return d.addCallback(lambda name: self._run(read, name))

    def page(self, folder, offset, limit):
        """The UIDs of the folder paged last are kept until the shard's next change: a
        client paging through a folder then costs one slice of a list per page, the same
        at any depth (SQLite's OFFSET steps over every row it skips)."""
        def read(name):
            kept = self._paged
            if kept is not None and kept[:2] == (name, self._generation):
                return _newest_first(kept[2], offset, limit)
            generation = self._generation

            def keep(uids):
                if generation == self._generation:  # nothing changed while it was read
                    self._paged = (name, generation, uids)
                return _newest_first(uids, offset, limit)
            # self._index is read in the thread: it is None until the shard's first operation
            return self._run(lambda: self._index.uids(name)).addCallback(keep)
        return self._check(names.folder_name, folder).addCallback(read)

    def select(self, folder, claim_recent=True):
        def read(name):
            status = self._index.status(name)
            flag_sets = {}  # most messages share a few flag combinations
            messages = []
            for uid, text in self._index.flags(name):
                parsed = flag_sets.get(text)
                if parsed is None:
                    parsed = flag_sets[text] = names.parse_flags_text(text)
                messages.append((uid, parsed))
            highest = messages[-1][0] if claim_recent and messages else 0
            mark = self._index.claim_recent(name, highest)
            recent = [uid for uid, _ in messages if uid > mark]
            return status, messages, recent

        def claim(name):
            if claim_recent:
                self._changed()  # the \Recent counts are about to change
            return self._run(read, name)
        return self._check(names.folder_name, folder).addCallback(claim)

    def claim_recent(self, folder, uid):
        """Noted at once, written before the shard's next operation: no turn of its own
        (a session hears of each APPEND it makes to its selected folder).  Lost in a
        crash before then, which only lets a later session see those as \\Recent too."""
        self._claims.append((names.folder_name(folder), uid))
        self._changed()  # the \\Recent counts change

    def set_flags(self, folder, uids, flags, mode="replace"):
        if mode not in ("replace", "add", "remove"):
            return defer.fail(ValueError(f"bad flag mode {mode!r}"))

        def change(args):
            name, new = args
            d = self._run(lambda: self._index.set_flags(name, uids, new, mode))

            def done(changed):
                self._publish(changes.FLAGS, name, sorted(changed), changed)
                return changed
            return d.addCallback(done)
        d = self._check(lambda: (names.folder_name(folder), names.flags(flags)))
        return d.addCallback(change)

    def _remove(self, folder, uids, only_deleted):
        def remove(name):
            def in_thread():
                removed, files = self._index.remove(name, uids, only_deleted)
                self._unlink(files)
                return removed
            d = self._run(in_thread)

            def done(removed):
                if removed:
                    self._publish(changes.EXPUNGED, name, removed)
                return removed
            return d.addCallback(done)
        return self._check(names.folder_name, folder).addCallback(remove)

    def expunge(self, folder, uids=None):
        return self._remove(folder, uids, only_deleted=True)

    def remove(self, folder, uids):
        return self._remove(folder, uids, only_deleted=False)

    def _copy(self, source, uids, target, move):
        def copy(pair):
            src, dst = pair
            d = self._run(lambda: self._index.copy(src, uids, dst, move))

            def done(copied):
                if copied:
                    flags = {new: names.parse_flags_text(text) for _, new, text in copied}
                    self._publish(changes.ADDED, dst, flags, flags)
                    if move:
                        self._publish(changes.EXPUNGED, src, [old for old, _, _ in copied])
                return [(old, new) for old, new, _ in copied]
            return d.addCallback(done)
        d = self._check(lambda: (names.folder_name(source), names.folder_name(target)))
        return d.addCallback(copy)

    def copy(self, source, uids, target):
        return self._copy(source, uids, target, move=False)

    def move(self, source, uids, target):
        return self._copy(source, uids, target, move=True)

    def close(self):
        def close_index():
            with self._lock:
                if self._index is not None:
                    self._write_claims()
                    self._index.close()
                    self._index = None
        return self.flush().addCallback(
            lambda _: self._turn.run(close_index))
