"""What the bench programs share: the loopback-only check on their targets, short text
for error lines, and reading a server's process from /proc (memory, its stat fields,
which process listens on a port).

The programs run as scripts (``python3 bench/NAME.py``), so this directory is first on
their import path and ``import common`` finds this module.
"""

import ipaddress
import os
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


def split_target(spec: str) -> tuple[str, str, list[str]] | None:
    """A --target's NAME=HOST:REST as (name, host, REST split at ":"), or None when it is
    not of that shape.  HOST may be [::1] or ::1; the caller checks it is loopback."""
    name, eq, rest = spec.partition("=")
    if not eq or not name or not rest:
        return None
    if rest.startswith("["):
        host, _, rest = rest[1:].partition("]")
        rest = rest[1:] if rest.startswith(":") else "\0"
    elif rest.startswith("::1:"):
        host, rest = "::1", rest[4:]
    else:
        host, _, rest = rest.partition(":")
    return name, host, rest.split(":")


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


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat from "state" (field 3) on; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(")") + 2:].split()


def listener_pid(port: int) -> int | None:
    """The topmost process holding a socket listening on `port` (needs to read /proc/*/fd)."""
    inodes = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(parts[9])
        except (OSError, StopIteration, IndexError, ValueError):
            pass
    if not inodes:
        return None
    owners = set()
    targets = {f"socket:[{i}]" for i in inodes}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{entry}/fd"):
                try:
                    if os.readlink(f"/proc/{entry}/fd/{fd}") in targets:
                        owners.add(int(entry))
                        break
                except OSError:
                    pass
        except OSError:
            pass
    for p in sorted(owners):
        st = proc_stat(p)
        if st and int(st[1]) not in owners:
            return p
    return None
