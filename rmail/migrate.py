"""``python run.py migrate``: the legacy index.json tree into shard storage.

Reads ``{mail_root}/{domain}/{local part}/{folder}/index.json`` (``rmail.store.legacy``;
``--from DIR`` reads a copy elsewhere) for every local domain and writes each user's
shard (``rmail.store.loader``), keeping each folder's UIDVALIDITY, every message's UID,
flags (keywords too) and internal date, and the folder's UIDNEXT; clients that cached
the old server's mailboxes keep their caches.  Every message file is read back once
durable and must hash as the bytes read from the legacy tree (line ends made CRLF on the
way, as the store keeps every message).  The legacy tree is only read.

Resuming, and running twice: a folder is copied in UID order and each commit moves the
shard folder's UIDNEXT past the last UID it holds.  A legacy message whose UID is below
that UIDNEXT is therefore in the shard already -- or a user expunged it since, and it
must not come back (UIDs are never reused).  So a run cut short anywhere goes on where
the last commit left off, and a run after a complete one changes nothing and says so.
Mail delivered to the shard after the migration is never touched.

A folder in which rmail has already given out UIDs (it received mail before the
migration) keeps them: they mean something to clients now.  Its legacy messages are not
copied and the folder is reported, unless ``--merge``: then they are added after
rmail's mail with new UIDs, as ``import`` adds mail, a message whose exact bytes the
folder already holds being left out (so a second run adds nothing).  Clients download
such a folder again, its UIDVALIDITY being rmail's.

A message that cannot be copied (its file missing, a flag that is no IMAP flag, a date
that is no date) stops its folder there: what comes before it is committed, the rest of
that folder waits for the next run, the other folders go on, and the exit status is 1
with the message named.  A file that does not read back as written stops everything.

For tests of the resume: with ``RMAIL_MIGRATE_FAILPOINT=N`` in the environment, the
commit that would take a user's committed messages to N or more does not happen: the
files of that batch are in place, a line on stderr says so, and the process waits (60 s
at most, then exits 99) to be killed, as a crash or a ``kill -9`` would leave it.
"""

import os
import sys
import time
from dataclasses import dataclass, field

from rmail import offline
from rmail.directory import Directory
from rmail.progress import Progress, plural
from rmail.store import legacy
from rmail.store.interfaces import FolderExists
from rmail.store.loader import ShardLoader, crlf

FAILPOINT = "RMAIL_MIGRATE_FAILPOINT"


class MigrateRefused(Exception):
    """The migration cannot start; the text says why, for people."""


@dataclass
class Tally:
    users: int = 0
    folders: int = 0
    copied: int = 0
    already: int = 0
    bytes: int = 0
    converted: int = 0  # messages whose line ends were made CRLF
    per_user: dict = field(default_factory=dict)  # address -> [folders, copied, already]
    failures: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def run(config, source=None, out=None, err=None, batch_size=1000, describe=None,
        merge=False) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    if batch_size < 1:
        raise MigrateRefused("--batch-size must be at least 1")
    if source is None and not os.path.isdir(config.mail_root_path):
        print(f"nothing to migrate: {config.mail_root_path} does not exist", file=out)
        return 0
    source = os.path.abspath(source or config.mail_root_path)
    if not os.path.isdir(source):
        raise MigrateRefused(f"--from: {source} is not a directory")
    tally = Tally()
    users = legacy.users(source, config.domains)
    for name in legacy.other_domains(source, config.domains):
        tally.notes.append(f"{os.path.join(source, name)} looks like legacy mail of a domain "
                           "that is not in \"domains\" of config.json; add it there and run "
                           "migrate again to copy it")
    if not users:
        for note in tally.notes:
            print(f"note: {note}", file=out)
        print(f"nothing to migrate: no legacy index.json folders under {source} for "
              f"{', '.join(config.domains)}", file=out)
        return 0
    plans = _plan(users, tally)
    _note_missing_accounts(config, users, tally)
    progress = Progress("migrate", sum(n for _, folders in plans for _, n in folders),
                        out)
    with offline.exclusive(config, "migrate"):
        for user, folders in plans:
            _migrate_user(config, user, folders, tally, progress, batch_size, describe, merge)
    progress.finish()
    _report(source, tally, progress, out, err)
    return 1 if tally.failures else 0


def _plan(users, tally):
    """[(user, [(folder, message count)])]: what there is, counted before any copying."""
    plans = []
    for user in users:
        try:
            folders = user.folders()
        except legacy.LegacyError as e:
            tally.failures.append(f"{user.address}: {e}")
            continue
        counted = []
        for folder in folders:
            try:
                counted.append((folder, len(folder.read_index().messages)))
            except legacy.LegacyError as e:
                tally.failures.append(f"{user.address} {folder.name}: {e}")
        plans.append((user, counted))
    return plans


def _note_missing_accounts(config, users, tally):
    directory = Directory(config.mail_root_path, config.domains)
    directory.refresh()
    for user in users:
        if directory.user(user.address) is None:
            tally.notes.append(f"{user.address} has no rmail account yet, so nobody can read "
                               f"this mail; add it with `python run.py user add {user.address}`")


def _failpoint():
    limit = os.environ.get(FAILPOINT)
    if not limit:
        return None

    def before_commit(loader):
        if loader.committed + loader.pending >= int(limit):
            print(f"migrate: {FAILPOINT}={limit}: {loader.address}: the files of "
                  f"{loader.pending} messages are in place, their commit is not; waiting "
                  "to be killed", file=sys.stderr, flush=True)
            time.sleep(60)
            os._exit(99)
    return before_commit


def _migrate_user(config, user, folders, tally, progress, batch_size, describe, merge):
    counts = tally.per_user.setdefault(user.address, [0, 0, 0])
    tally.users += 1
    loader = ShardLoader(config.mail_root_path, user.address, describe,
                         batch_messages=batch_size, before_commit=_failpoint())
    loader.open()
    try:
        for folder, listed in folders:
            tally.folders += 1
            counts[0] += 1
            copied, already = _migrate_folder(user, folder, loader, tally, progress, listed,
                                              merge)
            counts[1] += copied
            counts[2] += already
        loader.flush()
    finally:
        loader.close()


def _migrate_folder(user, folder, loader, tally, progress, listed, merge):
    """Copy one folder's messages not yet in the shard; return (copied, already there)."""
    where = f"{user.address} {folder.name}"
    merging = False
    try:
        index = folder.read_index()
        uidnext = loader.index.restore_folder(folder.name, index.uidvalidity).uidnext
    except (legacy.LegacyError, ValueError) as e:
        tally.failures.append(f"{where}: {e}")
        progress.advance(listed, worked=False)
        return 0, 0
    except FolderExists:
        if not merge:
            tally.failures.append(
                f"{where}: rmail has already given out UIDs in this folder (mail arrived "
                f"before the migration), so the legacy UIDs cannot be kept and nothing of "
                f"it was copied; run migrate --merge to add it with new UIDs")
            progress.advance(listed, worked=False)
            return 0, 0
        merging, uidnext = True, 0
    copied = already = 0
    for i, message in enumerate(index.messages):
        if message.uid < uidnext:
            already += 1
            progress.advance(worked=False)
            continue
        path = folder.message_path(message)
        label = f"{where} UID {message.uid} ({path})"
        try:
            flags = legacy.flags(message)
            when = legacy.internaldate(message, path)
            with open(path, "rb") as f:
                data = f.read()
        except (legacy.LegacyError, OSError) as e:
            tally.failures.append(f"{label}: {getattr(e, 'strerror', None) or e}")
            progress.advance(len(index.messages) - i, worked=False)
            break
        stored = crlf(data)
        if stored is not data:
            tally.converted += 1
        if not loader.add(folder.name, stored, flags, when, label=label,
                          uid=None if merging else message.uid, skip_present=merging):
            already += 1
            progress.advance(worked=False)
            continue
        copied += 1
        tally.bytes += len(stored)
        progress.advance(1, len(stored))
    else:
        if not merging:
            loader.finish_folder(folder.name, index.uidnext, not_recent=True)
    if merging and copied:
        tally.notes.append(f"{where}: {plural(copied, 'message')} merged after the mail rmail "
                           "had received, with new UIDs; clients will download this folder "
                           "again")
    tally.copied += copied
    tally.already += already
    return copied, already


def _report(source, tally, progress, out, err):
    for note in tally.notes:
        print(f"note: {note}", file=out)
    if tally.copied == 0 and not tally.failures:
        print(f"nothing to do: all {plural(tally.already, 'message')} in "
              f"{plural(tally.folders, 'folder')} of {plural(tally.users, 'user')} under {source} "
              "were already migrated", file=out)
    else:
        print(f"migrated {plural(tally.users, 'user')}, {plural(tally.folders, 'folder')} from "
              f"{source}:", file=out)
        width = max((len(a) for a in tally.per_user), default=0)
        for address, (folders, copied, already) in sorted(tally.per_user.items()):
            line = (f"  {address:<{width}}  {plural(folders, 'folder')}, "
                    f"{plural(copied, 'message')} copied")
            if already:
                line += f", {already} already there"
            print(line, file=out)
        print(f"{plural(tally.copied, 'message')} copied and verified "
              f"({tally.bytes / 1e6:.1f} MB) in {progress.elapsed():.1f} s "
              f"({progress.rate():.0f} messages/s); {tally.already} already there", file=out)
        if tally.converted:
            print(f"{plural(tally.converted, 'message')} had bare LF or CR line ends, stored "
                  "with CRLF", file=out)
    for failure in tally.failures:
        print(f"FAILED {failure}", file=err)
    if tally.failures:
        print(f"migrate: {plural(len(tally.failures), 'failure')}; everything else is copied. "
              "Fix what is named above and run migrate again: it goes on where it stopped.",
              file=err)
