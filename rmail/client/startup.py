"""``python -m rmail.client``: settings, password, login, then the screen; and the way out.

The terminal is always given back: curses.wrapper restores it on any exception and on
Ctrl-C (KeyboardInterrupt), and SIGTERM / SIGHUP are turned into SystemExit so they
take the same path.  Problems the user can fix (a bad option, a refused login, an
unreachable server) are one line on stderr and exit status 1 or 2; anything else is one
line naming the log file that holds the details.
"""

import curses
import locale
import logging
import os
import signal
import sys

from rmail.client import account as settings
from rmail.client.app import MailClient
from rmail.client.session import ConnectionLost, ServerRefused

log = logging.getLogger("rmail.client")


def log_path() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                            "state")
    return os.path.join(base, "rmail", "client.log")


def _start_log():
    """Log to a file (the screen belongs to curses); None when no file can be written."""
    path = log_path()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:
        log.addHandler(logging.NullHandler())
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return path


def _exit_on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    try:
        account = settings.from_arguments(argv)
    except settings.AccountError as e:
        print(f"rmail client: {e}", file=sys.stderr)
        return 2
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("rmail client: needs a terminal (run it in one, not with input or output "
              "redirected).", file=sys.stderr)
        return 2
    path = _start_log()
    try:
        password = settings.password(account)
    except (KeyboardInterrupt, EOFError):
        print(file=sys.stderr)
        return 130
    client = MailClient(account, password, log_path=path)
    try:
        client.start()
    except (ConnectionLost, ServerRefused) as e:
        print(f"rmail client: {e}", file=sys.stderr)
        client.close()
        return 1
    except KeyboardInterrupt:
        client.close()
        return 130
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    locale.setlocale(locale.LC_ALL, "")
    os.environ.setdefault("ESCDELAY", "25")  # Esc answers at once, not after a second
    # curses takes exported LINES/COLUMNS over the terminal's real size, even after a
    # resize; programs using readline export them, often stale.  The real size wins.
    for name in ("LINES", "COLUMNS"):
        os.environ.pop(name, None)
    try:
        curses.wrapper(client.run)
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        log.exception("the client stopped")
        where = f" (details in {path})" if path else ""
        print(f"rmail client stopped by an unexpected error: {e}{where}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0
