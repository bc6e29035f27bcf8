"""Durable file writes: the one place rmail turns bytes into files that survive a crash.

A file is durable when its data is fsynced, it has been renamed to its final name,
and the directory holding that name is fsynced.  Every writer in rmail (message
files, users.json, aliases.json, config.json, queue entries) goes through here, so
the order tmp -> fsync -> rename -> fsync(dir) is written once.

Blocking: every function here does disk I/O; call them from a thread, never from the
reactor thread (the CLI, which has no reactor, may call them directly).
"""

import os
import secrets


def fsync_dir(path: str) -> None:
    """fsync a directory so that names created or removed in it are on disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    """Replace *path* with *data*: readers see the old file or the new one, never a mix.

    The new file keeps the old one's owner, so `sudo python run.py user add` leaves
    users.json readable by the service's own user."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            _keep_owner(fd, path)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(directory)


def _keep_owner(fd: int, path: str) -> None:
    try:
        old = os.stat(path)
    except FileNotFoundError:
        return
    if os.geteuid() == 0 and (old.st_uid, old.st_gid) != (0, 0):
        os.fchown(fd, old.st_uid, old.st_gid)


def make_dirs(path: str, mode: int = 0o700) -> None:
    """Create *path* and its parents; fsync each parent that gained an entry."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    make_dirs(parent, mode)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        return
    fsync_dir(parent)
