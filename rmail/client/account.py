"""Which server and mailbox the client talks to: command line over config file over defaults.

The config file (``~/.config/rmail/client.json``, or ``$XDG_CONFIG_HOME/rmail/``) holds
the same keys as the long options, so a user types ``python -m rmail.client`` and
nothing else.  The password is never stored there: it comes from ``RMAIL_PASSWORD``
(for scripts and tests) or is asked for without echo.
"""

import argparse
import getpass
import json
import os
from dataclasses import dataclass, fields

PASSWORD_VARIABLE = "RMAIL_PASSWORD"
TLS_MODES = ("starttls", "tls", "none")

# Well-known ports for each way of securing the connection (RFC 8314 and RFC 3501).
IMAP_PORTS = {"starttls": 143, "tls": 993, "none": 143}
SMTP_PORTS = {"starttls": 587, "tls": 465, "none": 587}


class AccountError(Exception):
    """A bad option or config file value: one sentence for the user."""


@dataclass
class Account:
    host: str = "localhost"
    user: str = ""
    tls: str = "starttls"
    imap_port: int | None = None
    smtp_port: int | None = None
    smtp_host: str | None = None
    insecure: bool = False
    cafile: str | None = None
    name: str = ""
    forward: str = "inline"
    editor: str | None = None

    @property
    def imap_address(self):
        return self.host, self.imap_port or IMAP_PORTS[self.tls]

    @property
    def smtp_address(self):
        return self.smtp_host or self.host, self.smtp_port or SMTP_PORTS[self.tls]

    @property
    def my_addresses(self) -> set:
        """Whom reply-all leaves out."""
        return {self.user.lower()} if self.user else set()


_TYPES = {"host": str, "user": str, "tls": str, "imap_port": int, "smtp_port": int,
          "smtp_host": str, "insecure": bool, "cafile": str, "name": str, "forward": str,
          "editor": str}


def config_path() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "rmail", "client.json")


def read_config(path: str, required: bool = False) -> dict:
    """The config file's values, checked: an unknown key or a wrong type is refused."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        if required:
            raise AccountError(f"{path}: no such file.")
        return {}
    except (OSError, ValueError) as e:
        raise AccountError(f"{path}: cannot be read as JSON ({e}).")
    if not isinstance(data, dict):
        raise AccountError(f"{path}: expected a JSON object of settings.")
    for key, value in data.items():
        expected = _TYPES.get(key)
        if expected is None:
            raise AccountError(f"{path}: unknown key {key!r}; known keys are "
                               + ", ".join(sorted(_TYPES)) + ".")
        if value is not None and (type(value) is not expected):
            raise AccountError(f"{path}: {key} should be a {expected.__name__}.")
    return data


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rmail.client",
        description="A terminal mail client: read over IMAP, send over SMTP submission.",
        epilog=f"Defaults come from {config_path()} when present. The password is "
               f"taken from ${PASSWORD_VARIABLE} when set, otherwise asked for.")
    p.add_argument("--config", help=f"settings file (default: {config_path()})")
    p.add_argument("--host", help="mail server name (default: localhost)")
    p.add_argument("--imap-port", type=int, help="IMAP port (default: 143, or 993 with --tls tls)")
    p.add_argument("--smtp-port", type=int,
                   help="submission port (default: 587, or 465 with --tls tls)")
    p.add_argument("--smtp-host", help="submission server when not the IMAP host")
    p.add_argument("--user", help="login, the full address (alice@example.com)")
    p.add_argument("--tls", choices=TLS_MODES,
                   help="STARTTLS on the plain ports, TLS from the first byte, or none")
    p.add_argument("--insecure", action="store_true", default=None,
                   help="do not check the server certificate (self-signed test servers)")
    p.add_argument("--cafile", help="trust the certificates in this PEM file")
    return p


def from_arguments(argv=None) -> Account:
    """The account from the command line and the config file, checked."""
    args = parser().parse_args(argv)
    values = read_config(args.config or config_path(), required=args.config is not None)
    for key in _TYPES:
        given = getattr(args, key, None)
        if given is not None:
            values[key] = given
    known = {f.name for f in fields(Account)}
    account = Account(**{k: v for k, v in values.items() if k in known and v is not None})
    if account.tls not in TLS_MODES:
        raise AccountError(f"tls must be one of {', '.join(TLS_MODES)}, not {account.tls!r}.")
    if account.forward not in ("inline", "attachment"):
        raise AccountError("forward must be \"inline\" or \"attachment\".")
    if not account.user:
        raise AccountError("no user: give --user alice@example.com or set \"user\" in "
                           + config_path() + ".")
    return account


def password(account: Account) -> str:
    """The password: from the environment when set, otherwise typed without echo."""
    given = os.environ.get(PASSWORD_VARIABLE)
    if given is not None:
        return given
    host, port = account.imap_address
    return getpass.getpass(f"Password for {account.user} at {host}: ")
