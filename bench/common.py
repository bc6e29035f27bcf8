"""What the bench programs share: the loopback-only check on their targets, short text
for error lines, and reading a server's memory from /proc.

The programs run as scripts (``python3 bench/NAME.py``), so this directory is first on
their import path and ``import common`` finds this module.
"""

import ipaddress
import socket


def check_loopback(host: str) -> str:
    """Return host (brackets removed) if every address it names is loopback."""
    host = host.strip("[]")
    addrs = {host}
    if host.lower() == "localhost":
        addrs = {ai[4][0] for ai in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    try:
        if addrs and all(ipaddress.ip_address(a).is_loopback for a in addrs):
            return host
    except ValueError:
        pass
    raise ValueError(f"refusing host {host!r}: only 127.0.0.0/8, ::1 and localhost are allowed")


def short(data, n: int = 160) -> str:
    """*data* (bytes or text) as one line of at most *n* characters, for an error line."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
    text = text.rstrip("\r\n")
    return text if len(text) <= n else text[:n] + "..."


def status_kb(pid: int, key: str) -> int:
    """A kB figure of /proc/PID/status (``VmRSS:``, ``VmHWM:``); 0 when unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def pss_kb(pid: int) -> int | None:
    """The process's proportional set size in kB, where /proc allows reading it."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None
