"""``python run.py import maildir|mbox PATH ADDRESS [--folder F]``: mail from elsewhere.

For people arriving from Dovecot, Courier or any program that keeps an mbox: the
messages go into the user's shard after the mail already there (new UIDs, in the order
the source holds them), with their flags and internal dates (see ``maildir`` and
``mbox`` for how each format says them), line ends made CRLF as the store keeps every
message, and the same per-message summaries the server computes at delivery, so IMAP
list views and SEARCH treat imported mail like any other.

Where the mail goes: a Maildir's root into INBOX and each Maildir++ sub-folder into the
folder of the same name (``.Archive.2024`` into ``Archive/2024``); an mbox into INBOX.
``--folder F`` puts the root (or the mbox) into F instead, and sub-folders below it.
Missing folders are created.

Run again on the same source, import adds nothing: a message whose exact bytes are
already in its folder is left out (so identical copies within one source folder are
imported once), whatever its flags are now on either side.  Only what is new since is
added.

Like ``migrate``, it runs while the server is stopped (see ``rmail.offline``), and a
run cut short leaves nothing half-done: the next run cleans up after it.
"""

import os
import sys

from rmail import offline
from rmail.directory import Directory
from rmail.mailimport import maildir, mbox
from rmail.progress import Progress, plural
from rmail.store import names
from rmail.store.interfaces import FolderExists, StoreError
from rmail.store.loader import ShardLoader


class ImportRefused(Exception):
    """The import cannot start; the text says why, for people."""


class Tally:
    def __init__(self):
        self.new = {}  # folder -> messages added
        self.already = {}  # folder -> messages left out, already there
        self.bytes = 0
        self.failures = []

    def count(self, folder, added, size):
        bucket = self.new if added else self.already
        bucket[folder] = bucket.get(folder, 0) + 1
        if added:
            self.bytes += size


def run(config, kind, path, address, folder=None, out=None, err=None, batch_size=1000,
        describe=None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    if batch_size < 1:
        raise ImportRefused("--batch-size must be at least 1")
    address = address.lower()
    directory = Directory(config.mail_root_path, config.domains)
    directory.refresh()
    if directory.user(address) is None:
        raise ImportRefused(f"no such user: {address}; add it first with "
                            f"`python run.py user add {address}`")
    try:
        base = names.folder_name(folder) if folder else None
    except StoreError as e:
        raise ImportRefused(f"--folder: {e}")
    path = os.path.abspath(path)
    if kind == "maildir":
        try:
            sources = maildir.folders(path)
        except (maildir.MaildirError, OSError) as e:
            raise ImportRefused(str(e))
    elif not os.path.isfile(path):
        raise ImportRefused(f"{path} is not a file")
    else:
        with open(path, "rb") as f:
            start = f.read(65536).lstrip(b"\r\n")
        if start and not start.startswith(b"From "):
            raise ImportRefused(f"{path} does not start with a \"From \" line, so it is "
                                "not an mbox")
    tally = Tally()
    with offline.exclusive(config, "import"):
        loader = ShardLoader(config.mail_root_path, address, describe,
                             batch_messages=batch_size).open()
        try:
            if kind == "maildir":
                progress = _from_maildir(loader, sources, base, tally, out)
            else:
                progress = _from_mbox(loader, path, base or names.INBOX, tally, out)
            loader.flush()
        finally:
            loader.close()
    progress.finish()
    _report(address, path, tally, progress, out, err)
    return 1 if tally.failures else 0


def _ensure_folder(loader, name):
    try:
        loader.index.create_folder(name)
    except FolderExists:
        pass


def _from_maildir(loader, sources, base, tally, out) -> Progress:
    progress = Progress("import", sum(source.count() for source in sources), out)
    for source in sources:
        target = _target(source.name, base)
        _ensure_folder(loader, target)
        for entry in source.files():
            path, flags = source.message(entry)
            try:
                with open(path, "rb") as f:
                    data = f.read()
                    when = os.fstat(f.fileno()).st_mtime
            except OSError as e:
                tally.failures.append(f"{path}: {e.strerror or e}")
                progress.advance(worked=False)
                continue
            added = loader.add(target, data, flags, when, label=path, skip_present=True)
            tally.count(target, added, len(data))
            progress.advance(1, len(data), worked=added)
    return progress


def _from_mbox(loader, path, target, tally, out) -> Progress:
    _ensure_folder(loader, target)
    with open(path, "rb") as f:
        stat = os.fstat(f.fileno())
        progress = Progress("import", stat.st_size, out, by_bytes=True)
        try:
            for n, message in enumerate(mbox.messages(f), 1):
                data, flags, when = message.parse()
                label = f"{path} message {n} (at byte {message.offset})"
                added = loader.add(target, data, flags, stat.st_mtime if when is None else when,
                                   label=label, skip_present=True)
                tally.count(target, added, len(data))
                progress.advance(1, len(data), worked=added, position=message.end)
        except mbox.MboxError as e:
            raise ImportRefused(f"{path}: {e}")
    return progress


def _target(name, base):
    if not name:
        return base or names.INBOX
    return f"{base}{names.SEPARATOR}{name}" if base else name


def _report(address, path, tally, progress, out, err):
    added = sum(tally.new.values())
    already = sum(tally.already.values())
    if added == 0 and not tally.failures:
        print(f"nothing new: all {plural(already, 'message')} of {path} are already in "
              f"{address}'s folders", file=out)
    else:
        print(f"imported {plural(added, 'message')} ({tally.bytes / 1e6:.1f} MB) from {path} "
              f"into {address} in {progress.elapsed():.1f} s ({progress.rate():.0f} messages/s)",
              file=out)
        for folder in sorted(set(tally.new) | set(tally.already)):
            line = f"  {folder}: {tally.new.get(folder, 0)} new"
            if tally.already.get(folder):
                line += f", {tally.already[folder]} already there"
            print(line, file=out)
    for failure in tally.failures:
        print(f"FAILED {failure}", file=err)
    if tally.failures:
        print(f"import: {plural(len(tally.failures), 'message')} could not be read; everything "
              "else is imported. Fix them and run import again: it adds only what is missing.",
              file=err)
