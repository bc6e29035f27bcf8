"""Commands that write shards from outside the server (migrate, import) run while it is stopped.

Why: the server repairs a shard when it first opens it -- a file in ``messages/`` with
no index row is moved to ``quarantine/``, a row without its file is dropped -- and a
second process adding messages places each file a moment before committing its row.
A server opening the shard in that moment would take the new file for a crash leftover.
So these commands refuse to start while an rmail answers on the ports config.json
names (its SMTP and IMAP greetings say "rmail"; another server on those ports, such as
the one being moved away from, does not count), and hold an exclusive lock on mail_root
so that two of them never write at once.  Run as root on a mail_root that belongs to
another user (the one ``install`` runs rmail as), they refuse too: the files they wrote
would be root's, and unreadable to the server.
"""

import fcntl
import os
import pwd
import socket
from contextlib import contextmanager

PROBE_TIMEOUT = 2.0  # seconds per port: a local connect answers or is refused at once
_PROBED = (("smtp", "SMTP"), ("submission", "submission"), ("imap", "IMAP"))


class NotOffline(Exception):
    """The command cannot run now; the text says why and what to do."""


def running_server(config):
    """``"SMTP on 127.0.0.1:25"`` when an rmail answers on a configured port, else None."""
    host = config.listen.address
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    for key, label in _PROBED:
        port = getattr(config.listen, key)
        if not port:
            continue
        try:
            with socket.create_connection((host, port), timeout=PROBE_TIMEOUT) as sock:
                greeting = sock.recv(512)
        except OSError:
            continue
        if b"rmail" in greeting:
            return f"{label} on {host}:{port}"
    return None


@contextmanager
def exclusive(config, command: str):
    """Hold mail_root for *command*: NotOffline while a server runs or another holds it."""
    where = running_server(config)
    if where is not None:
        raise NotOffline(f"rmail is running ({where}); stop it first (e.g. systemctl stop "
                         f"rmail), run {command}, then start it again")
    root = config.mail_root_path
    os.makedirs(root, mode=0o700, exist_ok=True)
    owner = os.stat(root).st_uid
    if os.geteuid() == 0 and owner != 0:
        # Files written as root would be unreadable to the server, which runs as the owner.
        name = _user_name(owner)
        raise NotOffline(f"{root} belongs to {name}, the user rmail runs as; run {command} "
                         f"as that user (sudo -u {name} python run.py {command} ...)")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NotOffline(f"another migrate or import is writing to {root}; wait for it "
                             "to finish")
        yield
    finally:
        os.close(fd)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
