"""A shard's index: folders, UIDs, flags, sizes and dates in SQLite.

Blocking, and not thread-safe on its own: the Shard calls it from one thread at a time
under its lock.  Every method that changes something runs in one transaction, so a
crash leaves the index as before or after the change, never between.  WAL mode with
``synchronous=FULL``: a commit that adds or copies messages is on disk when ``commit``
returns.  Flag changes, expunges, subscriptions and \\Recent marks commit without an
fsync of their own (as Dovecot's default ``mail_fsync=optimized``): a crash of the
process loses none of them (they are in the WAL), a power failure may lose the last
few, never a message; the next durable commit writes them out with itself.

UIDs (RFC 3501 section 2.3.1.1): each folder's ``uidnext`` only grows, so a UID is
never reused in a folder; a folder created again under an old name gets a new
UIDVALIDITY, drawn from a shard-wide counter that only grows too.
"""

import contextlib
import errno
import sqlite3
import time

from rmail.store import names
from rmail.store.interfaces import (
    FolderExists, FolderInfo, FolderNotDeletable, NoSuchFolder,
)

# 2: summaries (ENVELOPE/BODY/BODYSTRUCTURE computed at delivery); 3: header blocks, for
# SEARCH on header keys without opening message files; 4: folders.recent_mark, so
# \\Recent survives restarts; 5: headers.preview, the opening words of the text for the
# API's message list; 6: texts, what SEARCH compares of SUBJECT/FROM/TO/CC/BCC.
SCHEMA_VERSION = 6

SCHEMA = """
CREATE TABLE IF NOT EXISTS folders (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL DEFAULT 1,
    special_use TEXT,
    subscribed INTEGER NOT NULL DEFAULT 1,
    recent_mark INTEGER NOT NULL DEFAULT 0  -- the highest UID a session has seen as \\Recent
);
CREATE TABLE IF NOT EXISTS messages (
    folder_id INTEGER NOT NULL REFERENCES folders(id),
    uid INTEGER NOT NULL,
    file TEXT NOT NULL,
    size INTEGER NOT NULL,
    internaldate REAL NOT NULL,
    flags TEXT NOT NULL DEFAULT '',
    seen INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (folder_id, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_file ON messages(file);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS summaries (
    file TEXT PRIMARY KEY,
    envelope BLOB,
    body BLOB,
    bodystructure BLOB
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS headers (file TEXT PRIMARY KEY, header BLOB, preview TEXT)
    WITHOUT ROWID;
-- Each column: the texts of every such field joined by NUL, NULL when there is none.  A
-- table of its own, of short rows: a SEARCH reads it for the whole folder.
CREATE TABLE IF NOT EXISTS texts (file TEXT PRIMARY KEY, subject TEXT, from_addr TEXT,
    to_addr TEXT, cc_addr TEXT, bcc_addr TEXT) WITHOUT ROWID;
"""


_FOLDER_COLUMNS = "id, name, uidvalidity, uidnext, special_use, subscribed, recent_mark"
_TEXT_COLUMNS = ("t.subject", "t.from_addr", "t.to_addr", "t.cc_addr", "t.bcc_addr")


class ShardIndex:
    def __init__(self, path: str):
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # name -> folder id, asked by nearly every operation.  Only this connection
        # writes the index while the server runs (the offline loader aside), and ids
        # change only when folders are created, renamed or deleted: those forget it.
        self._ids: dict[str, int] = {}
        try:
            self._prepare()
        except BaseException:
            self.db.close()  # a damaged file: the caller may try again, leaking nothing
            raise

    def _prepare(self):
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        with self.transaction():
            for statement in SCHEMA.strip().split(";"):
                if statement.strip():
                    self.db.execute(statement)
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(folders)")}
            if "recent_mark" not in columns:  # an index written before schema 4
                self.db.execute("ALTER TABLE folders ADD COLUMN recent_mark INTEGER NOT NULL "
                                "DEFAULT 0")
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(headers)")}
            if "preview" not in columns:  # before schema 5: those messages have none
                self.db.execute("ALTER TABLE headers ADD COLUMN preview TEXT")
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            # The default folders on first use only: a user may rename or delete them
            # later (all but INBOX, which always exists).
            fresh = self.db.execute("SELECT count(*) FROM folders").fetchone()[0] == 0
            for name, special_use in names.DEFAULT_FOLDERS:
                if (fresh or name == names.INBOX) and self._folder_row(name) is None:
                    self._insert_folder(name, special_use)

    def close(self):
        self.db.close()

    def transaction(self, durable=True):
        return _Transaction(self.db, durable)

    # -- folders --------------------------------------------------------------

    def _folder_row(self, name):
        return self.db.execute(
            f"SELECT {_FOLDER_COLUMNS} FROM folders WHERE name = ?", (name,)).fetchone()

    def folder_id(self, name: str) -> int:
        folder_id = self._ids.get(name)
        if folder_id is None:
            row = self._folder_row(name)
            if row is None:
                raise NoSuchFolder(f"no folder named {name!r}")
            folder_id = self._ids[name] = row[0]
        return folder_id

    @contextlib.contextmanager
    def _folders_change(self):
        """The transaction of a CREATE, RENAME or DELETE: the kept ids are forgotten
        after it, committed or rolled back."""
        try:
            with self.transaction():
                yield
        finally:
            self._ids.clear()

    def _next_uidvalidity(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'uidvalidity'").fetchone()
        value = max(int(time.time()), (row[0] + 1) if row else 0)
        self.db.execute(
            "INSERT INTO meta(key, value) VALUES ('uidvalidity', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (value,))
        return value

    def _insert_folder(self, name, special_use=None):
        self.db.execute(
            "INSERT INTO folders(name, uidvalidity, special_use) VALUES (?, ?, ?)",
            (name, self._next_uidvalidity(), special_use))

    def _info(self, row) -> FolderInfo:
        folder_id, name, uidvalidity, uidnext, special_use, subscribed, recent_mark = row
        count, seen, recent = self.db.execute(
            "SELECT count(*), coalesce(sum(seen), 0), coalesce(sum(uid > ?), 0) FROM messages "
            "WHERE folder_id = ?", (recent_mark, folder_id)).fetchone()
        return FolderInfo(name, special_use, bool(subscribed), uidvalidity, uidnext,
                          count, count - seen, recent)

    def folders(self) -> list[FolderInfo]:
        rows = self.db.execute(f"SELECT {_FOLDER_COLUMNS} FROM folders").fetchall()
        infos = [self._info(row) for row in rows]
        return sorted(infos, key=lambda f: (f.name != names.INBOX, f.name))

    def status(self, name: str) -> FolderInfo:
        row = self._folder_row(name)
        if row is None:
            raise NoSuchFolder(f"no folder named {name!r}")
        return self._info(row)

    def claim_recent(self, name: str, highest_uid: int) -> int:
        """RFC 3501 2.3.2: a message is \\Recent for the first session that sees it.  Move
        the folder's mark up to *highest_uid*; return the mark as it was before."""
        row = self._folder_row(name)
        if row is None:
            raise NoSuchFolder(f"no folder named {name!r}")
        if highest_uid > row[6]:
            with self.transaction(durable=False):
                self.db.execute("UPDATE folders SET recent_mark = max(recent_mark, ?) "
                                "WHERE id = ?", (highest_uid, row[0]))
        return row[6]

    def create_folder(self, name: str) -> None:
        with self._folders_change():
            if self._folder_row(name) is not None:
                raise FolderExists(f"a folder named {name!r} already exists")
            for parent in names.parents(name):
                if self._folder_row(parent) is None:
                    self._insert_folder(parent)
            self._insert_folder(name)

    def children(self, name: str) -> list[str]:
        prefix = name + names.SEPARATOR
        rows = self.db.execute(
            "SELECT name FROM folders WHERE substr(name, 1, ?) = ?", (len(prefix), prefix))
        return [r[0] for r in rows]

    def delete_folder(self, name: str) -> list[str]:
        """Delete; return the files no longer referenced (to unlink after commit)."""
        if name == names.INBOX:
            raise FolderNotDeletable("INBOX cannot be deleted")
        with self._folders_change():
            folder_id = self.folder_id(name)
            if self.children(name):
                raise FolderNotDeletable(f"{name!r} has sub-folders; delete them first")
            files = [r[0] for r in self.db.execute(
                "SELECT file FROM messages WHERE folder_id = ?", (folder_id,))]
            self.db.execute("DELETE FROM messages WHERE folder_id = ?", (folder_id,))
            self.db.execute("DELETE FROM folders WHERE id = ?", (folder_id,))
            return self.unreferenced(files)

    def rename_folder(self, old: str, new: str) -> None:
        with self._folders_change():
            old_id = self.folder_id(old)
            if self._folder_row(new) is not None:
                raise FolderExists(f"a folder named {new!r} already exists")
            if names.is_inside(new, old):
                raise FolderExists(f"{old!r} cannot be moved inside itself")
            for parent in names.parents(new):
                if self._folder_row(parent) is None:
                    self._insert_folder(parent)
            if old == names.INBOX:
                # RFC 3501 6.3.5: INBOX's messages move to the new name; INBOX stays.
                self._insert_folder(new)
                new_id = self.folder_id(new)
                uids = [r[0] for r in self.db.execute(
                    "SELECT uid FROM messages WHERE folder_id = ? ORDER BY uid", (old_id,))]
                self._copy_rows(old_id, uids, new_id)
                self.db.execute("DELETE FROM messages WHERE folder_id = ?", (old_id,))
                return
            for child in self.children(old):
                self.db.execute("UPDATE folders SET name = ? WHERE name = ?",
                                (new + child[len(old):], child))
            self.db.execute("UPDATE folders SET name = ? WHERE id = ?", (new, old_id))

    def subscribe(self, name: str, subscribed: bool) -> None:
        with self.transaction(durable=False):
            folder_id = self.folder_id(name)
            self.db.execute("UPDATE folders SET subscribed = ? WHERE id = ?",
                            (int(subscribed), folder_id))

    # -- messages -------------------------------------------------------------

    def add(self, entries) -> list[int]:
        """Index new files: entries of (folder, file, size, flags, internaldate, summary);
        one UID each.  *summary* is (envelope, body, bodystructure, header, preview,
        texts) or None; *texts* is (subject, from, to, cc, bcc) or None.

        The caller wraps this in a transaction together with the rest of its batch.
        """
        uids = []
        for folder, file, size, flags, internaldate, summary in entries:
            folder_id, uid = self._take_uid(folder)
            self._keep_summary(file, summary)
            self.db.execute(
                "INSERT INTO messages(folder_id, uid, file, size, internaldate, flags, seen) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (folder_id, uid, file, size, internaldate, names.flags_text(flags),
                 int(names.SEEN in flags)))
            uids.append(uid)
        return uids

    def _keep_summary(self, file: str, summary) -> None:
        if summary is not None:
            self.db.execute("INSERT OR REPLACE INTO summaries(file, envelope, body, "
                            "bodystructure) VALUES (?, ?, ?, ?)", (file, *summary[:3]))
            self.db.execute("INSERT OR REPLACE INTO headers(file, header, preview) "
                            "VALUES (?, ?, ?)", (file, *summary[3:5]))
            if len(summary) > 5 and summary[5] is not None:
                self.db.execute("INSERT OR REPLACE INTO texts VALUES (?, ?, ?, ?, ?, ?)",
                                (file, *summary[5]))

    def _take_uid(self, folder: str) -> tuple[int, int]:
        row = self._folder_row(folder)
        if row is None:
            raise NoSuchFolder(f"no folder named {folder!r}")
        self.db.execute("UPDATE folders SET uidnext = uidnext + 1 WHERE id = ?", (row[0],))
        return row[0], row[3]

    def messages(self, folder: str, uids=None, summaries=True, headers=False,
                 texts=False, containing=()) -> list[tuple]:
        """Rows (uid, flags text, size, internaldate, file, envelope, body, bodystructure,
        header, preview, texts) in UID order; the last six are None when not computed or
        not asked for.  *texts* is the 5-tuple ``_keep_summary`` stored.  With *texts* but
        not *headers*, the header comes only for the messages without texts (indexed before
        schema 6), for SEARCH to read instead.

        *containing*, with *texts*: (column of the 5-tuple, string) pairs; only messages
        whose kept text holds every string are read, and those without kept texts.  SQLite
        tests that in its scan, so a SEARCH SUBJECT of a large folder turns only its few
        candidates into Python rows."""
        folder_id = self.folder_id(folder)
        columns = ["m.uid", "m.flags", "m.size", "m.internaldate", "m.file"]
        columns += ["s.envelope", "s.body", "s.bodystructure"] if summaries else ["NULL"] * 3
        if headers:
            columns += ["h.header", "h.preview"]
        elif texts:  # the header only where there are no texts
            columns += ["CASE WHEN t.file IS NULL THEN "
                        "(SELECT header FROM headers h WHERE h.file = m.file) END", "NULL"]
        else:
            columns += ["NULL", "NULL"]
        columns += ["t.file IS NOT NULL", *_TEXT_COLUMNS] if texts else ["0"] + ["NULL"] * 5
        query = "SELECT " + ", ".join(columns) + " FROM messages m"
        if summaries:
            query += " LEFT JOIN summaries s ON s.file = m.file"
        if headers:
            query += " LEFT JOIN headers h ON h.file = m.file"
        if texts:
            query += " LEFT JOIN texts t ON t.file = m.file"
        query += " WHERE m.folder_id = ?"
        args = [folder_id]
        if texts and containing:
            query += " AND (t.file IS NULL OR " + " AND ".join(
                f"instr({_TEXT_COLUMNS[column]}, ?) > 0" for column, _ in containing) + ")"
            args += [text for _, text in containing]
        query += " ORDER BY m.uid"
        if uids is None:
            return self.db.execute(query, args).fetchall()
        wanted = sorted(set(uids))
        if len(wanted) <= 500:  # a few messages of a big folder: look them up by key
            query = query.replace(" ORDER BY", f" AND m.uid IN ({','.join('?' * len(wanted))})"
                                  " ORDER BY")
            return self.db.execute(query, (*args, *wanted)).fetchall()
        wanted = set(wanted)
        return [r for r in self.db.execute(query, args) if r[0] in wanted]

    def uids(self, folder: str) -> list[int]:
        return [row[0] for row in self.db.execute(
            "SELECT uid FROM messages WHERE folder_id = ? ORDER BY uid",
            (self.folder_id(folder),))]

    def flags(self, folder: str) -> list[tuple[int, str]]:
        """(uid, flags text) of every message in UID order: all a session needs to select."""
        return self.db.execute("SELECT uid, flags FROM messages WHERE folder_id = ? "
                               "ORDER BY uid", (self.folder_id(folder),)).fetchall()

    def set_flags(self, folder: str, uids, flags: frozenset, mode: str) -> dict:
        changed = {}
        with self.transaction(durable=False):
            folder_id = self.folder_id(folder)
            for uid, text, *_ in self.messages(folder, uids, summaries=False):
                old = names.parse_flags_text(text)
                new = flags if mode == "replace" else old | flags if mode == "add" else old - flags
                changed[uid] = new
                if new != old:
                    self.db.execute(
                        "UPDATE messages SET flags = ?, seen = ? WHERE folder_id = ? AND uid = ?",
                        (names.flags_text(new), int(names.SEEN in new), folder_id, uid))
        return changed

    def remove(self, folder: str, uids, only_deleted: bool) -> tuple[list[int], list[str]]:
        """Remove messages; return (UIDs removed, files no longer referenced)."""
        with self.transaction(durable=False):
            folder_id = self.folder_id(folder)
            rows = self.messages(folder, uids, summaries=False)
            if only_deleted:
                rows = [r for r in rows if names.DELETED in names.parse_flags_text(r[1])]
            self.db.executemany("DELETE FROM messages WHERE folder_id = ? AND uid = ?",
                                [(folder_id, r[0]) for r in rows])
            return [r[0] for r in rows], self.unreferenced([r[4] for r in rows])

    def _copy_rows(self, source_id: int, uids, target_id: int) -> list[tuple[int, int, str]]:
        """Copy rows; (old UID, new UID, flags text) of each copied."""
        copied = []
        for uid in uids:
            row = self.db.execute(
                "SELECT file, size, internaldate, flags, seen FROM messages "
                "WHERE folder_id = ? AND uid = ?", (source_id, uid)).fetchone()
            if row is None:
                continue
            new_uid = self.db.execute(
                "SELECT uidnext FROM folders WHERE id = ?", (target_id,)).fetchone()[0]
            self.db.execute("UPDATE folders SET uidnext = uidnext + 1 WHERE id = ?", (target_id,))
            self.db.execute(
                "INSERT INTO messages(folder_id, uid, file, size, internaldate, flags, seen) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", (target_id, new_uid, *row))
            copied.append((uid, new_uid, row[3]))
        return copied

    def copy(self, source: str, uids, target: str, move: bool) -> list[tuple[int, int, str]]:
        """(old UID, new UID, flags text) of each message copied (or moved)."""
        with self.transaction():
            source_id, target_id = self.folder_id(source), self.folder_id(target)
            copied = self._copy_rows(source_id, sorted(set(uids)), target_id)
            if move:
                self.db.executemany("DELETE FROM messages WHERE folder_id = ? AND uid = ?",
                                    [(source_id, old) for old, _, _ in copied])
            return copied

    def unreferenced(self, files) -> list[str]:
        """The files no row names any more (their summaries go too): to unlink after commit."""
        gone = [f for f in set(files) if self.db.execute(
            "SELECT 1 FROM messages WHERE file = ? LIMIT 1", (f,)).fetchone() is None]
        self.db.executemany("DELETE FROM summaries WHERE file = ?", [(f,) for f in gone])
        self.db.executemany("DELETE FROM headers WHERE file = ?", [(f,) for f in gone])
        self.db.executemany("DELETE FROM texts WHERE file = ?", [(f,) for f in gone])
        return gone

    def files(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT DISTINCT file FROM messages")}

    def drop_file_rows(self, file: str) -> list[tuple[str, int]]:
        """Forget every row naming *file* (a message file lost from disk); return (folder, uid)."""
        with self.transaction():
            rows = self.db.execute(
                "SELECT f.name, m.uid FROM messages m JOIN folders f ON f.id = m.folder_id "
                "WHERE m.file = ?", (file,)).fetchall()
            self.db.execute("DELETE FROM messages WHERE file = ?", (file,))
            self.db.execute("DELETE FROM summaries WHERE file = ?", (file,))
            self.db.execute("DELETE FROM headers WHERE file = ?", (file,))
            self.db.execute("DELETE FROM texts WHERE file = ?", (file,))
            return rows

    # -- bulk loading: `run.py migrate` and `run.py import` (rmail.store.loader) ---------

    def restore_folder(self, name: str, uidvalidity: int) -> FolderInfo:
        """Give *name* the UIDVALIDITY another server gave it, so clients keep their caches.

        Creates the folder (and missing parents) when absent.  An existing folder takes
        the value only while it has never held a message (uidnext 1): one that has keeps
        its UIDVALIDITY and FolderExists is raised, since its UIDs already mean something.
        The shard's counter moves past *uidvalidity*, so no folder created later repeats it.
        """
        if not 0 < uidvalidity < 2 ** 32:
            raise ValueError(f"UIDVALIDITY {uidvalidity} is not a 32-bit number above 0")
        with self._folders_change():
            row = self._folder_row(name)
            if row is None:
                for parent in names.parents(name):
                    if self._folder_row(parent) is None:
                        self._insert_folder(parent)
                self._insert_folder(name)
                row = self._folder_row(name)
            if row[2] != uidvalidity:
                if row[3] != 1:
                    raise FolderExists(f"UIDs have been given out in {name!r} already "
                                       f"(UIDVALIDITY {row[2]}, UIDNEXT {row[3]})")
                self.db.execute("UPDATE folders SET uidvalidity = ? WHERE id = ?",
                                (uidvalidity, row[0]))
            self.db.execute(
                "INSERT INTO meta(key, value) VALUES ('uidvalidity', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
                (uidvalidity,))
            return self.status(name)

    def insert_rows(self, folder: str, rows) -> None:
        """Index files under the UIDs another server gave them: rows of (uid, file, size,
        flags, internaldate, summary) in ascending UID order.

        A UID below the folder's uidnext may have been used already, so it is refused
        (ValueError) and nothing is written; uidnext becomes the last UID + 1.  The
        caller wraps this in a transaction together with the rest of its batch.
        """
        with self.transaction():
            row = self._folder_row(folder)
            if row is None:
                raise NoSuchFolder(f"no folder named {folder!r}")
            folder_id, uidnext = row[0], row[3]
            for uid, file, size, flags, internaldate, summary in rows:
                if not uidnext <= uid < 2 ** 32:
                    raise ValueError(f"UID {uid} in {folder!r} is not above the UIDs "
                                     f"already given out (UIDNEXT {uidnext})")
                self._keep_summary(file, summary)
                self.db.execute(
                    "INSERT INTO messages(folder_id, uid, file, size, internaldate, flags, "
                    "seen) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (folder_id, uid, file, size, internaldate, names.flags_text(flags),
                     int(names.SEEN in flags)))
                uidnext = uid + 1
            self.db.execute("UPDATE folders SET uidnext = max(uidnext, ?) WHERE id = ?",
                            (uidnext, folder_id))

    def raise_uidnext(self, folder: str, uidnext: int) -> None:
        """Move the folder's uidnext up to *uidnext* (never down: UIDs are not reused)."""
        with self.transaction():
            self.db.execute("UPDATE folders SET uidnext = max(uidnext, ?) WHERE id = ?",
                            (uidnext, self.folder_id(folder)))

    def holds_file(self, folder: str, file: str) -> bool:
        """Does a message of *folder* use *file*?  (The loader names files after their
        bytes, so this tells it the message is in the folder already.)"""
        return self.db.execute(
            "SELECT 1 FROM messages WHERE file = ? AND folder_id = ? LIMIT 1",
            (file, self.folder_id(folder))).fetchone() is not None

    def uses_file(self, file: str) -> bool:
        """Does any message of the shard use *file*?"""
        return self.db.execute("SELECT 1 FROM messages WHERE file = ? LIMIT 1",
                               (file,)).fetchone() is not None


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on an exception; nests as a no-op.  Not
    *durable*: the commit is not fsynced (``synchronous=NORMAL`` for it alone)."""

    def __init__(self, db, durable=True):
        self.db = db
        self.durable = durable
        self.outer = False

    def __enter__(self):
        if not self.db.in_transaction:
            if not self.durable:
                self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("BEGIN IMMEDIATE")
            self.outer = True
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.outer:
            try:
                if exc_type is None:
                    self.db.execute("COMMIT")
                elif self.db.in_transaction:  # SQLite may have rolled back by itself
                    self.db.execute("ROLLBACK")
            except sqlite3.Error as e:
                if self.db.in_transaction:
                    try:
                        self.db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # the connection rolls back when it can
                raise _as_os_error(e) from e
            finally:
                if not self.durable:
                    self.db.execute("PRAGMA synchronous=FULL")
        if isinstance(exc, sqlite3.Error) and _as_os_error(exc) is not exc:
            raise _as_os_error(exc) from exc
        return False


def _as_os_error(e: sqlite3.Error) -> Exception:
    """SQLite's disk-full and I/O errors as the OSError every protocol answers "try again
    later" to (452 4.3.1, NO [OVERQUOTA], 507); any other error as it is."""
    primary = (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF
    if primary == sqlite3.SQLITE_FULL:
        return OSError(errno.ENOSPC, f"the index is out of disk space ({e})")
    if primary == sqlite3.SQLITE_IOERR:
        return OSError(errno.EIO, f"the index cannot be written ({e})")
    return e
