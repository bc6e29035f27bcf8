#!/usr/bin/env python3
"""Load and resource benchmark for rmail: what connections, churn, big messages, a big
FETCH and a bad-login storm cost the server, each measurement against a bar.

By default it starts its own rmail (``run.py``, a separate process) in a temporary
directory on free 127.0.0.1 ports, a fresh server for each phase so that one phase's
memory does not hide in the next one's baseline, and removes everything afterwards
(SIGTERM to that server's PID, then the directory).  With --target it measures a server
that is already running instead (see below).  Phases, in this order (--only picks some):

  idle    N (--connections, default 1,000) IMAP connections, each LOGIN + SELECT INBOX,
          held open: the server's RSS per connection (VmRSS of /proc/PID/status, and Pss
          of /proc/PID/smaps_rollup where readable; the baseline is taken just before
          connecting, after one warm-up login per user).  Bar: <= 100 KiB per plain
          connection.  Then all N IDLE and one message (to every user of the pool) is
          delivered over SMTP: the time from the SMTP 250 to "* n EXISTS" on each
          connection, p50/p99/max (an EXISTS that arrives before the 250 counts as 0;
          the time from the final dot of DATA is printed too).  Bar: p99 <= 1 s.  Done
          over the plain port, then over the implicit-TLS (993-style) port
          (--idle-transports), each with a fresh server; the TLS RSS carries no bar.
  churn   10,000 connect/close cycles on SMTP and 10,000 on IMAP (--cycles; a third each
          close at once, after the greeting, or after QUIT/LOGOUT), then 2,000 IMAP
          LOGIN-then-drop cycles (--login-cycles; every other one also SELECTs INBOX;
          the socket is closed without LOGOUT).  After each: the server's open file
          descriptors (entries of /proc/PID/fd) and RSS against those before it, after a
          short settle.  Bars: fds back to the baseline; RSS within 5 MB of it.
  big     50 clients (--big-clients) each send one 50 MiB message (--big-size) over SMTP
          at once, slowly: 64 KiB writes paced so that each takes about --big-duration
          seconds (default 90), each to a mailbox of its own (--big-recipients; 1 puts
          them all into one).  The server's RSS sampled every 100 ms.  Bars: peak RSS
          < 200 MB; every client gets 250.  The self-started server gets
          smtp.max_message_size = --big-size + 1 MiB.
  fetch   A folder of 50,000 messages (--messages) is filled (self-started: ``run.py
          import mbox`` of a generated mbox while that server is stopped; --target:
          pipelined APPENDs with LITERAL+ unless the folder already holds enough), then
          LOGIN + SELECT + ``FETCH 1:* (ENVELOPE)``, twice.  Prints the time and msgs/s
          of each; bar: the server's RSS growth (RSS sampled every 100 ms during SELECT
          and FETCH, peak minus the figure before SELECT) < 100 MB.
  storm   50 clients (--storm-clients) send IMAP LOGIN with a wrong password, each on its
          own connection, again and again, for --storm-seconds (10), while one client
          IDLEs on INBOX (a message is delivered over SMTP every 2 s; bar: EXISTS within
          1 s of the final dot of DATA, worst case: this includes any delay of the 250
          itself, and the time from the 250 is printed too) and one sends NOOP after NOOP
          (bar: p99 < 100 ms).  A LOGIN still unanswered when the time is up is dropped
          with its connection.  The self-started server runs it twice (--storm-lockout):
          with limits.login_failures = 1,000,000, so that every attempt costs a real
          password check (what many addresses at once cost), then with the default 10,
          so that 127.0.0.1 is locked out after ten failures.  Against a --target server
          the lockout may keep 127.0.0.1 from logging in for limits.login_lockout
          seconds afterwards: this phase runs last.

Output: one line per measurement on stdout, the bar and PASS/MISS beside it (or
"info"); progress on stderr.  Exit status 1 when a bar is missed or a measurement
failed.  Every wait has a timeout, counts are bounded, and traffic goes to 127.0.0.1
(or another loopback address given with --target) only.

File descriptors: N idle connections cost the server N descriptors (plus its own
files, 3 per mailbox opened since it started) and this client N.  The server needs
``ulimit -n`` >= 2,200 for the default 1,000: the self-started server gets its soft
RLIMIT_NOFILE raised to max(4096, 2N + 1000) (up to the hard limit) before it
executes; a --target server must be started with it (``ulimit -n 4096``; systemd:
LimitNOFILE=, which ``run.py install`` sets).  This client raises its own soft limit.

Against a running server (it must have the users, with one password, and its limits
must exempt 127.0.0.1 from connections_per_address/per_minute, as by default):
  python3 bench/load.py --target imap=127.0.0.1:1143 --target imaps=127.0.0.1:1993 \\
      --target smtp=127.0.0.1:2525 --user 'user{1..10}@example.com' --password pw \\
      --bulk-user bulk@example.com [--pid PID]
The PID (for /proc) defaults to the process listening on the IMAP port, which is found
through /proc when it runs as this user.  A phase whose port is not given is skipped.

Examples:
  .venv/bin/python bench/load.py                      # everything, full size (~12 min)
  .venv/bin/python bench/load.py --quick              # everything, scaled down (~3 min)
  .venv/bin/python bench/load.py --only idle,churn --connections 500
  .venv/bin/python bench/load.py --only big --big-clients 10 --big-size 5M --big-duration 20

Standard library only (Python 3.11); one asyncio client process, to leave the CPU to the
server.  The self-started server is run with the checkout's .venv/bin/python when there
is one (else this interpreter).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import random
import re
import resource
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

from common import check_loopback, listener_pid, pss_kb, short, status_kb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHASES = ("idle", "churn", "big", "fetch", "storm")
DOMAIN = "example.com"
PASSWORD = "load-bench-pw"
BULK_FOLDER = "Bulk"
READ_LIMIT = 1 << 20  # longest response line read
SAMPLE_INTERVAL = 0.1

# The bars.
IDLE_RSS_BAR_KIB = 100
EXISTS_P99_BAR_S = 1.0
CHURN_RSS_BAR_MB = 5
BIG_PEAK_BAR_MB = 200
FETCH_GROWTH_BAR_MB = 100
STORM_EXISTS_BAR_S = 1.0
NOOP_P99_BAR_S = 0.100

QUICK = dict(connections=100, cycles=1000, login_cycles=200, big_clients=5, big_size=5 << 20,
             big_duration=10.0, messages=5000, storm_clients=10, storm_seconds=5.0)


def log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)] if s else None


def ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1e3:.1f}ms"


def mb(kb: float) -> str:
    return f"{kb / 1024:.1f}MB"


# ================================================================ results
class Report:
    def __init__(self):
        self.rows: list[tuple[str, bool | None]] = []

    def line(self, name: str, value: str, bar: str | None = None, ok: bool | None = None):
        """One measurement: name, value, and the bar with PASS/MISS (or info)."""
        tail = f"bar {bar}: {'PASS' if ok else 'MISS'}" if bar else "info"
        print(f"{name:<26} {value}  [{tail}]", flush=True)
        if bar:
            self.rows.append((name, ok))

    def failed(self, name: str, why: str):
        print(f"{name:<26} FAILED: {why}", flush=True)
        self.rows.append((name, False))

    @property
    def bad(self) -> int:
        return sum(1 for _, ok in self.rows if not ok)


# ================================================================ /proc
@dataclass
class Mem:
    rss_kb: int
    pss_kb: int | None
    hwm_kb: int
    fds: int


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def mem(pid: int) -> Mem:
    return Mem(status_kb(pid, "VmRSS:"), pss_kb(pid), status_kb(pid, "VmHWM:"), fd_count(pid))


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def nofile_limit(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    v = line.split()[3]
                    return None if v == "unlimited" else int(v)
    except (OSError, ValueError, IndexError):
        pass
    return None


class Sampler:
    """The server's VmRSS every SAMPLE_INTERVAL seconds while running; keeps the peak."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak_kb = 0
        self.samples = 0
        self._task = None

    async def _run(self):
        while True:
            rss = status_kb(self.pid, "VmRSS:")
            self.peak_kb = max(self.peak_kb, rss)
            self.samples += 1
            await asyncio.sleep(SAMPLE_INTERVAL)

    def start(self) -> Sampler:
        self.peak_kb = status_kb(self.pid, "VmRSS:")
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def stop(self) -> int:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self.peak_kb = max(self.peak_kb, status_kb(self.pid, "VmRSS:"))
        return self.peak_kb


def raise_nofile(want: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards *want* (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


# ================================================================ IMAP client
class ProtoError(Exception):
    """A step failed: unexpected answer, timeout, closed connection or I/O error."""


LITERAL = re.compile(rb"\{(\d+)\+?\}\r?\n$")
EXISTS = re.compile(rb"^\* (\d+) EXISTS")


def imap_quote(s: str) -> bytes:
    return b'"' + s.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


_TLS: ssl.SSLContext | None = None


def client_tls() -> ssl.SSLContext:
    """One client context for every connection (building one costs ~0.1 s of CPU)."""
    global _TLS
    if _TLS is None:
        _TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        _TLS.check_hostname = False
        _TLS.verify_mode = ssl.CERT_NONE  # the throwaway server's self-signed certificate
    return _TLS


class Imap:
    def __init__(self, reader, writer, timeout):
        self.r, self.w, self.timeout = reader, writer, timeout
        self.n = 0

    @classmethod
    async def connect(cls, host: str, port: int, tls: ssl.SSLContext | None,
                      timeout: float) -> Imap:
        try:
            async with asyncio.timeout(timeout):
                r, w = await asyncio.open_connection(
                    host, port, ssl=tls, limit=READ_LIMIT,
                    server_hostname="mail.example.com" if tls else None)
                c = cls(r, w, timeout)
                greeting = await c.read_response()
        except TimeoutError:
            raise ProtoError("connect: timeout") from None
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError) as e:
            raise ProtoError(f"connect: {getattr(e, 'strerror', None) or e}") from None
        if not greeting.startswith(b"* OK"):
            c.abort()
            raise ProtoError(f"greeting: {short(greeting)}")
        return c

    async def read_response(self) -> bytes:
        """One response, literals included."""
        try:
            line = await self.r.readline()
            if not line.endswith(b"\n"):
                raise ProtoError("connection closed by server")
            parts = [line]
            while (m := LITERAL.search(line)) is not None:
                parts.append(await self.r.readexactly(int(m.group(1))))
                line = await self.r.readline()
                if not line.endswith(b"\n"):
                    raise ProtoError("connection closed by server")
                parts.append(line)
        except asyncio.IncompleteReadError:
            raise ProtoError("connection closed by server") from None
        except (ValueError, asyncio.LimitOverrunError):
            raise ProtoError("response line too long") from None
        except OSError as e:
            raise ProtoError(f"read: {e.strerror or e}") from None
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def send(self, command: bytes) -> bytes:
        self.n += 1
        tag = b"a%d" % self.n
        self.w.write(tag + b" " + command + b"\r\n")
        return tag

    async def wait(self, tag: bytes, what: str, timeout: float | None = None,
                   on_untagged=None) -> tuple[bytes, list[bytes]]:
        untagged = []
        try:
            async with asyncio.timeout(timeout or self.timeout):
                while True:
                    resp = await self.read_response()
                    if resp.startswith(tag + b" "):
                        break
                    if on_untagged is not None:
                        on_untagged(resp)
                    else:
                        untagged.append(resp)
        except TimeoutError:
            raise ProtoError(f"{what}: no answer within {timeout or self.timeout:g}s") from None
        return resp[len(tag) + 1:], untagged

    async def ok(self, command: bytes, what: str, timeout: float | None = None,
                 on_untagged=None) -> list[bytes]:
        status, untagged = await self.wait(self.send(command), what, timeout, on_untagged)
        if not status.startswith(b"OK"):
            raise ProtoError(f"{what}: {short(status)}")
        return untagged

    async def login(self, user: str, password: str) -> None:
        await self.ok(b"LOGIN " + imap_quote(user) + b" " + imap_quote(password), "LOGIN")

    async def select(self, folder: str, timeout: float | None = None) -> int:
        exists = -1
        for u in await self.ok(b"SELECT " + imap_quote(folder), "SELECT", timeout):
            if (m := EXISTS.match(u)):
                exists = int(m.group(1))
        return exists

    async def idle(self) -> None:
        """Send IDLE and wait for the continuation."""
        self.send(b"IDLE")
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    resp = await self.read_response()
                    if resp.startswith(b"+"):
                        return
                    if not resp.startswith(b"* "):
                        raise ProtoError(f"IDLE: {short(resp)}")
        except TimeoutError:
            raise ProtoError("IDLE: no continuation") from None

    async def wait_exists(self, timeout: float) -> float:
        """perf_counter() when the next '* n EXISTS' arrives."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if EXISTS.match(await self.read_response()):
                        return time.perf_counter()
        except TimeoutError:
            raise ProtoError(f"no EXISTS within {timeout:g}s") from None

    def abort(self) -> None:
        try:
            self.w.transport.abort()
        except Exception:
            pass

    async def close(self) -> None:
        self.w.close()
        try:
            async with asyncio.timeout(5):
                await self.w.wait_closed()
        except (OSError, TimeoutError, ssl.SSLError):
            pass

    async def logout(self) -> None:
        try:
            await self.ok(b"LOGOUT", "LOGOUT", timeout=10)
        except ProtoError:
            pass
        await self.close()


# ================================================================ SMTP client
class Smtp:
    def __init__(self, reader, writer, timeout):
        self.r, self.w, self.timeout = reader, writer, timeout

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float) -> Smtp:
        try:
            async with asyncio.timeout(timeout):
                c = cls(*await asyncio.open_connection(host, port, limit=READ_LIMIT), timeout)
        except TimeoutError:
            raise ProtoError("SMTP connect: timeout") from None
        except OSError as e:
            raise ProtoError(f"SMTP connect: {e.strerror or e}") from None
        await c.cmd(None, "220", "SMTP banner")
        return c

    async def reply(self) -> tuple[str, list[str]]:
        lines = []
        while True:
            raw = await self.r.readline()
            if not raw.endswith(b"\n"):
                raise ProtoError("SMTP: connection closed by server")
            line = raw.decode("latin-1").rstrip("\r\n")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return line[:3], lines

    async def cmd(self, data: bytes | None, expect: str, what: str,
                  timeout: float | None = None) -> list[str]:
        try:
            async with asyncio.timeout(timeout or self.timeout):
                if data:
                    self.w.write(data)
                    await self.w.drain()
                code, lines = await self.reply()
        except TimeoutError:
            raise ProtoError(f"{what}: no reply within {timeout or self.timeout:g}s") from None
        except (OSError, ValueError) as e:
            raise ProtoError(f"{what}: {getattr(e, 'strerror', None) or e}") from None
        if not code.startswith(expect):
            raise ProtoError(f"{what}: {short(lines[-1])}")
        return lines

    async def deliver(self, rcpts: list[str], message: bytes,
                      on_data=None) -> tuple[float, float]:
        """One transaction; (perf_counter at the final dot, at the 250)."""
        await self.cmd(b"MAIL FROM:<load@bench.invalid>\r\n", "250", "MAIL")
        for rcpt in rcpts:
            await self.cmd(f"RCPT TO:<{rcpt}>\r\n".encode(), "25", "RCPT")
        await self.cmd(b"DATA\r\n", "354", "DATA")
        if on_data is not None:
            on_data()
        self.w.write(message + b".\r\n")
        t_dot = time.perf_counter()
        await self.cmd(None, "250", "end of DATA", timeout=60)
        return t_dot, time.perf_counter()

    def abort(self) -> None:
        try:
            self.w.transport.abort()
        except Exception:
            pass

    async def quit(self) -> None:
        try:
            await self.cmd(b"QUIT\r\n", "221", "QUIT", timeout=10)
        except ProtoError:
            pass
        self.w.close()
        try:
            async with asyncio.timeout(5):
                await self.w.wait_closed()
        except (OSError, TimeoutError):
            pass


_probe_seq = 0


def probe_message(rcpts: list[str], what: str) -> bytes:
    global _probe_seq
    _probe_seq += 1
    return (f"From: <load@bench.invalid>\r\nTo: {', '.join(f'<{r}>' for r in rcpts)}\r\n"
            f"Subject: load {what} probe {_probe_seq}\r\n"
            f"Message-ID: <{time.time():.6f}.{_probe_seq}@bench.invalid>\r\n\r\n"
            f"A probe of bench/load.py ({what}).\r\n").encode()


# ================================================================ the server
@dataclass
class Env:
    """Where the phases send their traffic, and the server's PID for /proc."""
    host: str
    imap: int | None
    imaps: int | None
    smtp: int | None
    pid: int
    users: list[str]
    password: str
    bulk_user: str
    big_rcpts: list[str]
    bulk_folder: str = BULK_FOLDER
    log_path: str | None = None
    log_start: int = 0


def venv_python() -> str:
    p = os.path.join(ROOT, ".venv", "bin", "python")
    return p if os.access(p, os.X_OK) else sys.executable


class Server:
    """A throwaway rmail in a temporary directory: users, config, one process at a time."""

    def __init__(self, work: str, args):
        self.work, self.args = work, args
        self.config = os.path.join(work, "config.json")
        self.log_path = os.path.join(work, "rmail.log")
        self.python = venv_python()
        self.proc: subprocess.Popen | None = None
        self.users = [f"user{i}@{DOMAIN}" for i in range(1, args.users + 1)]
        self.bulk_user = f"bulk@{DOMAIN}"
        self.big_rcpts = [f"big{i}@{DOMAIN}" for i in range(1, args.big_recipients + 1)]
        self.nofile = max(4096, 2 * args.connections + 1000)

    def cli(self, *argv, timeout=600) -> subprocess.CompletedProcess:
        return subprocess.run([self.python, os.path.join(ROOT, "run.py"), *argv,
                               "--config", self.config], capture_output=True, text=True,
                              timeout=timeout, check=True)

    def prepare(self) -> None:
        """config.json, certificate and users (one argon2 hash shared by all of them)."""
        self.cli("init", "--dev", "--hostname", "mail.example.com", "--domain", DOMAIN)
        self.cli("user", "add", self.users[0], "--password", PASSWORD)
        path = os.path.join(self.work, "data", "domains", DOMAIN, "users.json")
        with open(path) as f:
            data = json.load(f)
        entry = data["users"][self.users[0].split("@")[0]]
        for address in self.users[1:] + [self.bulk_user] + self.big_rcpts:
            data["users"][address.split("@")[0]] = dict(entry)
        with open(path + ".tmp", "w") as f:
            json.dump(data, f, indent=2)
        os.replace(path + ".tmp", path)

    def write_config(self, login_failures: int | None) -> None:
        with open(self.config) as f:
            cfg = json.load(f)
        cfg["listen"] = {"address": "127.0.0.1", "smtp": 0, "submission": None,
                         "submissions": None, "imap": 0, "imaps": 0, "http": None}
        cfg["smtp"]["max_message_size"] = max(52428800, self.args.big_size + (1 << 20))
        cfg["relay"]["enabled"] = False
        cfg["limits"]["login_failures"] = login_failures if login_failures else 10
        with open(self.config, "w") as f:
            json.dump(cfg, f, indent=2)

    def start(self, login_failures: int | None = 1_000_000) -> Env:
        self.write_config(login_failures)
        nofile = self.nofile

        def limits():
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            want = nofile if hard == resource.RLIM_INFINITY else min(nofile, hard)
            if soft != resource.RLIM_INFINITY and soft < want:
                resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

        logf = open(self.log_path, "ab")
        log_start = logf.tell()
        self.proc = subprocess.Popen([self.python, os.path.join(ROOT, "run.py"), self.config],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"),
                                     preexec_fn=limits, cwd=self.work)
        out, deadline, ports = b"", time.monotonic() + 60, {}
        fd = self.proc.stdout.fileno()
        while time.monotonic() < deadline and b"rmail: serving" not in out:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            out += chunk
        logf.write(out)
        logf.flush()
        for label, port in re.findall(rb"(SMTP|IMAP \((?:STARTTLS|TLS)\)) 127\.0\.0\.1:(\d+)", out):
            ports[label.decode()] = int(port)
        if len(ports) < 3:
            self.stop()
            raise SystemExit("rmail did not start:\n" + out.decode(errors="replace"))

        def drain():
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                logf.write(chunk)
                logf.flush()
            logf.close()
        threading.Thread(target=drain, daemon=True).start()
        return Env("127.0.0.1", ports["IMAP (STARTTLS)"], ports["IMAP (TLS)"], ports["SMTP"],
                   self.proc.pid, self.users, PASSWORD, self.bulk_user, self.big_rcpts,
                   log_path=self.log_path, log_start=log_start)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # this server's PID only
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            log(f"rmail (pid {proc.pid}) did not stop within 60 s of SIGTERM; SIGKILL")
            proc.kill()
            proc.wait(10)


def server_errors(env: Env) -> str:
    """Tracebacks and unhandled errors in the self-started server's log since its start."""
    if not env.log_path:
        return ""
    try:
        with open(env.log_path, "rb") as f:
            f.seek(env.log_start)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    bad = [ln for ln in text.splitlines() if "Traceback" in ln or "Unhandled" in ln
           or "SERVERBUG" in ln or " CRITICAL" in ln]
    return f"{len(bad)} error lines in the server log, first: {short(bad[0], 200)}" if bad else ""


# ================================================================ helpers
async def open_session(env: Env, user: str, tls: bool, timeout: float,
                       folder: str | None = "INBOX") -> Imap:
    c = await Imap.connect(env.host, env.imaps if tls else env.imap,
                           client_tls() if tls else None, timeout)
    try:
        await c.login(user, env.password)
        if folder:
            await c.select(folder)
    except BaseException:
        c.abort()
        raise
    return c


def bump(errors: dict, e: Exception) -> None:
    text = re.sub(r"\d+", "N", str(e))
    errors[text] = errors.get(text, 0) + 1


def error_text(errors: dict) -> str:
    return "; ".join(f"{n}x {t}" for t, n in list(errors.items())[:3])


async def settle(pid: int, seconds: float, fds_target: int | None = None,
                 limit: float = 15.0) -> Mem:
    """Wait *seconds* (and, with fds_target, until the fd count is back to it or *limit*)."""
    await asyncio.sleep(seconds)
    deadline = time.monotonic() + limit
    while fds_target is not None and fd_count(pid) > fds_target and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return mem(pid)


async def gather_bounded(coros, limit: int):
    sem = asyncio.Semaphore(limit)

    async def one(c):
        async with sem:
            return await c
    return await asyncio.gather(*(one(c) for c in coros))


# ================================================================ phase 1: idle
async def phase_idle(env: Env, args, rep: Report, tls: bool) -> None:
    kind = "tls" if tls else "plain"
    name = f"idle-{kind}"
    if (env.imaps if tls else env.imap) is None or env.smtp is None:
        rep.failed(name, "needs the IMAP" + ("S" if tls else "") + " and SMTP ports")
        return
    n, pid = args.connections, env.pid
    # Warm-up: one login per user (fills the server's verified-password cache: argon2
    # once per user, not per connection) and the thread pool, before the baseline.
    for user in env.users:
        c = await open_session(env, user, tls, args.timeout)
        await c.logout()
    before = await settle(pid, 2.0)
    conns: list[Imap] = []
    errors: dict[str, int] = {}
    t0 = time.perf_counter()

    async def one(i):
        try:
            conns.append(await open_session(env, env.users[i % len(env.users)], tls, args.timeout))
        except ProtoError as e:
            bump(errors, e)
    await gather_bounded((one(i) for i in range(n)), 50)
    opened = time.perf_counter() - t0
    log(f"[{name}] {len(conns)}/{n} connections logged in and selected in {opened:.1f}s")
    try:
        during = await settle(pid, 2.0)
        ok = len(conns)
        if not ok:
            rep.failed(name, f"no connection: {error_text(errors)}")
            return
        per = (during.rss_kb - before.rss_kb) / ok
        pss = ""
        if during.pss_kb is not None and before.pss_kb is not None:
            pss = f", Pss {(during.pss_kb - before.pss_kb) / ok:.1f} KiB/conn"
        value = (f"{per:.1f} KiB/conn RSS{pss} ({ok}/{n} conns LOGIN+SELECT in {opened:.1f}s; "
                 f"VmRSS {mb(before.rss_kb)} -> {mb(during.rss_kb)}, fds {before.fds} -> "
                 f"{during.fds})" + (f"; errors: {error_text(errors)}" if errors else ""))
        if tls:
            rep.line(f"{name} rss/conn", value)
        else:
            rep.line(f"{name} rss/conn", value, f"<= {IDLE_RSS_BAR_KIB} KiB/conn and all "
                     f"{n} connected", per <= IDLE_RSS_BAR_KIB and ok == n)

        # All IDLE, then one delivery to every user of the pool.
        idle_errors: dict[str, int] = {}
        idlers: list[Imap] = []

        async def start_idle(c):
            try:
                await c.idle()
                idlers.append(c)
            except ProtoError as e:
                bump(idle_errors, e)
        await gather_bounded((start_idle(c) for c in conns), 200)
        idling = await settle(pid, 1.0)
        log(f"[{name}] {len(idlers)} connections IDLE; VmRSS {mb(idling.rss_kb)}")
        smtp = await Smtp.connect(env.host, env.smtp, args.timeout)
        await smtp.cmd(b"EHLO load.bench.invalid\r\n", "250", "EHLO")
        waits = [asyncio.ensure_future(c.wait_exists(args.exists_timeout)) for c in idlers]
        t_dot, t_250 = await smtp.deliver(env.users, probe_message(env.users, name))
        await smtp.quit()
        arrivals = await asyncio.gather(*waits, return_exceptions=True)
        got = [a for a in arrivals if isinstance(a, float)]
        for a in arrivals:
            if isinstance(a, ProtoError):
                bump(idle_errors, a)
        lat = [max(0.0, a - t_250) for a in got]
        early = sum(1 for a in got if a < t_250)
        from_dot = [a - t_dot for a in got]
        p50, p99 = pct(lat, 50), pct(lat, 99)
        value = (f"p50 {ms(p50)} p99 {ms(p99)} max {ms(max(lat) if lat else None)} from the 250 "
                 f"({len(got)}/{n} saw EXISTS, {early} before the 250 arrived = 0; from the "
                 f"final dot p50 {ms(pct(from_dot, 50))} "
                 f"max {ms(max(from_dot) if from_dot else None)}; "
                 f"250 came {ms(t_250 - t_dot)} after the dot; VmRSS while IDLE "
                 f"{mb(idling.rss_kb)})" +
                 (f"; errors: {error_text(idle_errors)}" if idle_errors else ""))
        rep.line(f"{name} idle->EXISTS", value, f"p99 <= {EXISTS_P99_BAR_S:g}s, all {n} saw it",
                 p99 is not None and p99 <= EXISTS_P99_BAR_S and len(got) == n)
        for c in idlers:
            c.w.write(b"DONE\r\n")
    finally:
        await gather_bounded((c.logout() for c in conns), 100)
    after = await settle(pid, 2.0)
    log(f"[{name}] closed; VmRSS {mb(after.rss_kb)}, fds {after.fds}")
    if (err := server_errors(env)):
        rep.line(f"{name} server log", err)


# ================================================================ phase 2: churn
async def _connect_cycle(port: int, env: Env, timeout: float, talk) -> None:
    """Connect, ``await talk(reader, writer)``, close; a timeout or socket error is a
    failed cycle (ProtoError), a reset at close is not."""
    try:
        async with asyncio.timeout(timeout):
            r, w = await asyncio.open_connection(env.host, port)
            try:
                await talk(r, w)
            finally:
                w.close()
                try:
                    await w.wait_closed()
                except OSError:  # a reset at close is not a failed cycle
                    pass
    except TimeoutError:
        raise ProtoError("timeout") from None
    except OSError as e:
        raise ProtoError(str(e.strerror or e)) from None


async def smtp_cycle(env: Env, i: int, timeout: float) -> None:
    async def talk(r, w):
        if i % 3:
            line = await r.readline()
            if not line.startswith(b"220"):
                raise ProtoError(f"banner: {short(line)}")
            if i % 3 == 2:
                w.write(b"QUIT\r\n")
                line = await r.readline()
                if not line.startswith(b"221"):
                    raise ProtoError(f"QUIT: {short(line)}")
    await _connect_cycle(env.smtp, env, timeout, talk)


async def imap_cycle(env: Env, i: int, timeout: float) -> None:
    async def talk(r, w):
        if i % 3:
            line = await r.readline()
            if not line.startswith(b"* OK"):
                raise ProtoError(f"greeting: {short(line)}")
            if i % 3 == 2:
                w.write(b"a1 LOGOUT\r\n")
                while (line := await r.readline()) and not line.startswith(b"a1 "):
                    pass
                if not line.startswith(b"a1 OK"):
                    raise ProtoError(f"LOGOUT: {short(line)}")
    await _connect_cycle(env.imap, env, timeout, talk)


async def login_drop_cycle(env: Env, i: int, timeout: float) -> None:
    c = await Imap.connect(env.host, env.imap, None, timeout)
    try:
        await c.login(env.users[i % len(env.users)], env.password)
        if i % 2:
            await c.select("INBOX")
    finally:
        await c.close()  # no LOGOUT


async def phase_churn(env: Env, args, rep: Report) -> None:
    pid = env.pid
    runs = [("smtp connect/close", "smtp", smtp_cycle, args.cycles),
            ("imap connect/close", "imap", imap_cycle, args.cycles),
            ("imap login-drop", "imap", login_drop_cycle, args.login_cycles)]
    for label, port, cycle, count in runs:
        name = "churn " + label.split()[0] + (" login-drop" if "drop" in label else "")
        if getattr(env, port) is None:
            rep.failed(name, f"no {port} port")
            continue
        # Warm-up (a few of each kind), then the baseline.
        await gather_bounded((cycle(env, i, args.timeout) for i in range(30)), 10)
        before = await settle(pid, 2.0)
        errors: dict[str, int] = {}
        done = 0
        t0 = time.perf_counter()

        async def one(i):
            nonlocal done
            try:
                await cycle(env, i, args.timeout)
                done += 1
            except (ProtoError, OSError) as e:
                bump(errors, e)
        await gather_bounded((one(i) for i in range(count)), args.churn_concurrency)
        took = time.perf_counter() - t0
        peak_fds = fd_count(pid)
        after = await settle(pid, 2.0, fds_target=before.fds)
        extra = f"; errors: {error_text(errors)}" if errors else ""
        rep.line(f"{name} fds", f"{before.fds} -> {after.fds} after {count} cycles "
                 f"({done} ok, {count / took:.0f}/s, {took:.1f}s; {peak_fds} right after){extra}",
                 "back to the baseline", after.fds <= before.fds and not errors)
        grow = after.rss_kb - before.rss_kb
        pss = ("" if after.pss_kb is None or before.pss_kb is None
               else f", Pss {(after.pss_kb - before.pss_kb) / 1024:+.1f}MB")
        rep.line(f"{name} rss", f"{mb(before.rss_kb)} -> {mb(after.rss_kb)} ({grow / 1024:+.1f}MB"
                 f"{pss})",
                 f"within {CHURN_RSS_BAR_MB} MB", grow <= CHURN_RSS_BAR_MB * 1024)
    if (err := server_errors(env)):
        rep.line("churn server log", err)


# ================================================================ phase 3: big
def big_chunk() -> bytes:
    """About 64 KiB of 76-character lines (no line starts with a dot)."""
    chars = "".join(chr(c) for c in range(48, 123) if chr(c).isalnum())
    lines = [(chars[k % len(chars):] + chars * 2)[:76] + "\r\n" for k in range(840)]
    return "".join(lines).encode()


async def phase_big(env: Env, args, rep: Report) -> None:
    name = "big"
    if env.smtp is None:
        rep.failed(name, "no SMTP port")
        return
    size, clients, pid = args.big_size, args.big_clients, env.pid
    chunk = big_chunk()
    head = b"From: <load@bench.invalid>\r\nTo: <%s>\r\nSubject: load big message\r\n\r\n" % (
        env.big_rcpts[0].encode())
    full, rest = divmod(size - len(head), len(chunk))
    tail = chunk[:rest - rest % 78] if rest >= 78 else b""
    total = len(head) + full * len(chunk) + len(tail)
    probe = await Smtp.connect(env.host, env.smtp, args.timeout)
    ehlo = await probe.cmd(b"EHLO load.bench.invalid\r\n", "250", "EHLO")
    await probe.quit()
    limit = next((int(l[9:].split()[0]) for l in ehlo if l[4:].upper().startswith("SIZE ")
                  and l[9:].split()[:1] and l[9:].split()[0].isdigit()), None)
    if limit and limit < total:
        rep.failed(name, f"the server's SIZE limit is {limit} bytes, below --big-size ({total}); "
                   "raise smtp.max_message_size or lower --big-size")
        return
    rate = total / args.big_duration  # bytes/s per client
    before = mem(pid)
    cpu0 = cpu_seconds(pid)
    sampler = Sampler(pid).start()
    results: list[str] = []
    accepted = []

    async def client(k):
        await asyncio.sleep(k * min(1.0, args.big_duration / 20) / clients)  # stagger
        s = None
        try:
            s = await Smtp.connect(env.host, env.smtp, args.timeout)
            await s.cmd(b"EHLO load.bench.invalid\r\n", "250", "EHLO")
            await s.cmd(b"MAIL FROM:<load@bench.invalid> SIZE=%d\r\n" % total, "250", "MAIL")
            rcpt = env.big_rcpts[k % len(env.big_rcpts)]
            await s.cmd(f"RCPT TO:<{rcpt}>\r\n".encode(), "25", "RCPT")
            await s.cmd(b"DATA\r\n", "354", "DATA")
            t0, sent = time.perf_counter(), 0
            s.w.write(head)
            for j in range(full):
                s.w.write(chunk)
                sent += len(chunk)
                await s.w.drain()
                ahead = t0 + sent / rate - time.perf_counter()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            s.w.write(tail + b".\r\n")
            await s.cmd(None, "250", "end of DATA", timeout=args.timeout + 60)
            accepted.append(time.perf_counter() - t0)
            results.append("250")
            await s.quit()
        except ProtoError as e:
            results.append(str(e))
            if s:
                s.abort()
        except OSError as e:
            results.append(f"I/O: {e.strerror or e}")
            if s:
                s.abort()

    t0 = time.perf_counter()
    bound = args.big_duration * 2 + 120
    tasks = [asyncio.ensure_future(client(k)) for k in range(clients)]
    done, pending = await asyncio.wait(tasks, timeout=bound)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    took = time.perf_counter() - t0
    peak = await sampler.stop()
    after = mem(pid)
    cpu = cpu_seconds(pid) - cpu0
    ok = results.count("250")
    errs: dict[str, int] = {}
    for r in results:
        if r != "250":
            errs[r] = errs.get(r, 0) + 1
    if pending:
        errs[f"still sending after {bound:.0f}s (aborted)"] = len(pending)
    nrcpt = min(clients, len(env.big_rcpts))
    rep.line(f"{name} 250s", f"{ok}/{clients} messages of {total / 1048576:.1f} MiB to {nrcpt} "
             f"mailbox{'es' if nrcpt > 1 else ''} accepted in {took:.1f}s "
             f"({ok * total / 1048576 / took:.1f} MiB/s in all, paced for {args.big_duration:g}s; "
             f"slowest 250 {max(accepted) if accepted else 0:.1f}s after its first byte; "
             f"server CPU {cpu:.0f}s)"
             + (f"; failures: {error_text(errs)}" if errs else ""),
             f"all {clients} got 250", ok == clients)
    rep.line(f"{name} peak rss", f"{mb(peak)} (VmRSS sampled every {SAMPLE_INTERVAL * 1e3:.0f}ms, "
             f"{sampler.samples} samples; before {mb(before.rss_kb)}, after {mb(after.rss_kb)}; "
             f"VmHWM {mb(after.hwm_kb)}; fds {before.fds} -> {after.fds})",
             f"< {BIG_PEAK_BAR_MB} MB", peak < BIG_PEAK_BAR_MB * 1024)
    if (err := server_errors(env)):
        rep.line(f"{name} server log", err)


# ================================================================ phase 4: fetch
FIRST = "Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory Niaj Olivia Peggy " \
        "Rupert Sybil Trent Victor Walter Yolanda".split()
LAST = "Smith Jones Taylor Brown Williams Wilson Johnson Davies Robinson Wright Müller " \
       "Dubois Rossi Nowak Kowalski Andersson Tanaka Garcia".split()
HOSTS = "example.org example.net mail.example.com corp.example lists.example.org".split()
WORDS = ("report project budget meeting schedule review draft release version server client "
         "network storage message folder account invoice payment order shipment customer "
         "support ticket update change request approval contract deadline quarter market "
         "product feature design test build deploy monitor backup restore archive migration "
         "database index cache latency capacity planning roadmap team office travel agenda "
         "minutes summary question answer issue problem solution proposal estimate").split()
MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
DAYS = "Mon Tue Wed Thu Fri Sat Sun".split()


def enc(text: str) -> str:
    try:
        text.encode("ascii")
        return text
    except UnicodeEncodeError:
        return "=?UTF-8?B?" + base64.b64encode(text.encode()).decode() + "?="


class BulkMessages:
    """Varied small messages (LF line ends): the headers ENVELOPE reads, bodies of 0.3-3 KB."""

    def __init__(self, seed: int = 20240601):
        self.rng = random.Random(seed)
        rng = self.rng
        self.paras = []
        for _ in range(64):
            words = [rng.choice(WORDS) for _ in range(rng.randint(30, 120))]
            lines, cur = [], ""
            for w in words:
                if len(cur) + len(w) + 1 > 72:
                    lines.append(cur)
                    cur = w
                else:
                    cur = f"{cur} {w}" if cur else w
            lines.append(cur)
            self.paras.append("\n".join(lines).capitalize() + "\n")

    def person(self) -> tuple[str, str]:
        first, last = self.rng.choice(FIRST), self.rng.choice(LAST)
        addr = f"{first}.{last}".lower().encode("ascii", "ignore").decode() + \
            f"@{self.rng.choice(HOSTS)}"
        return f'"{enc(first + " " + last)}" <{addr}>', addr

    def make(self, i: int) -> tuple[str, bytes]:
        rng = self.rng
        t = time.gmtime(1704067200 + i * 613 % (730 * 86400))
        date = (f"{DAYS[t.tm_wday]}, {t.tm_mday:02d} {MONTHS[t.tm_mon - 1]} {t.tm_year} "
                f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000")
        asctime = (f"{DAYS[t.tm_wday]} {MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} "
                   f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {t.tm_year}")
        sender, sender_addr = self.person()
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 9))]
        subject = " ".join(words).capitalize()
        r = rng.random()
        if r < 0.1:
            subject = f'Re: "{subject}" ({i})'
        elif r < 0.25:
            subject = enc(subject + " – Zürich café")
        hdrs = [f"From: {sender}",
                "To: " + ", ".join(self.person()[0] for _ in range(rng.choice((1, 1, 2, 3)))),
                f"Subject: {subject}", f"Date: {date}",
                f"Message-ID: <{rng.getrandbits(64):016x}.{i}@{rng.choice(HOSTS)}>"]
        if rng.random() < 0.3:
            hdrs.append("Cc: " + ",\n\t".join(self.person()[0] for _ in range(rng.randint(1, 4))))
        if rng.random() < 0.2:
            hdrs.append(f"In-Reply-To: <{rng.getrandbits(64):016x}@{rng.choice(HOSTS)}>")
        if rng.random() < 0.1:
            hdrs.append(f"Reply-To: {self.person()[0]}")
        if rng.random() < 0.5:
            hdrs.append("Status: RO")
        hdrs.append("MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8")
        body = "\n".join(rng.choice(self.paras) for _ in range(rng.randint(1, 4)))
        return (f"From {sender_addr} {asctime}",
                ("\n".join(hdrs) + "\n\n" + body).encode())


def write_mbox(path: str, count: int) -> int:
    gen = BulkMessages()
    size = 0
    with open(path, "wb", buffering=1 << 20) as f:
        for i in range(count):
            from_line, msg = gen.make(i)
            data = from_line.encode() + b"\n" + msg + b"\n"
            f.write(data)
            size += len(data)
    return size


async def fill_by_append(env: Env, args, have: int) -> float:
    """Pipelined APPENDs (LITERAL+) until the bulk folder holds --messages; seconds taken."""
    c = await open_session(env, env.bulk_user, False, args.timeout, folder=None)
    try:
        try:
            await c.ok(b"CREATE " + imap_quote(env.bulk_folder), "CREATE")
        except ProtoError:
            pass  # exists
        gen, window, inflight = BulkMessages(), 200, []
        t0 = time.perf_counter()
        for i in range(have, args.messages):
            msg = gen.make(i)[1].replace(b"\n", b"\r\n")
            c.n += 1
            tag = b"a%d" % c.n
            c.w.write(tag + b" APPEND " + imap_quote(env.bulk_folder) + b" (\\Seen) {%d+}\r\n"
                      % len(msg) + msg + b"\r\n")
            inflight.append(tag)
            if len(inflight) >= window:
                await c.w.drain()
                status, _ = await c.wait(inflight.pop(0), "APPEND", 120)
                if not status.startswith(b"OK"):
                    raise ProtoError(f"APPEND: {short(status)}")
            if i % 5000 == 0 and i > have:
                log(f"[fetch] appended {i - have}/{args.messages - have}")
        for tag in inflight:
            status, _ = await c.wait(tag, "APPEND", 120)
            if not status.startswith(b"OK"):
                raise ProtoError(f"APPEND: {short(status)}")
        return time.perf_counter() - t0
    finally:
        await c.logout()


async def phase_fetch(env: Env, args, rep: Report, fill_note: str) -> None:
    name = "fetch"
    if env.imap is None:
        rep.failed(name, "no IMAP port")
        return
    pid = env.pid
    c = await open_session(env, env.bulk_user, False, args.timeout, folder=None)
    try:
        status = await c.ok(b"STATUS " + imap_quote(env.bulk_folder) + b" (MESSAGES)", "STATUS",
                            timeout=args.long_timeout)
        have = int(re.search(rb"MESSAGES (\d+)", b" ".join(status)).group(1))
    except (ProtoError, AttributeError):
        have = 0
    if have < args.messages:
        await c.logout()
        log(f"[fetch] {env.bulk_folder} holds {have}; APPENDing {args.messages - have}")
        took = await fill_by_append(env, args, have)
        fill_note = (f"filled by pipelined APPEND in {took:.1f}s "
                     f"({(args.messages - have) / took:.0f} msgs/s)")
        c = await open_session(env, env.bulk_user, False, args.timeout, folder=None)
    if fill_note:
        rep.line(f"{name} fill", fill_note)
    try:
        for run in (1, 2):
            await asyncio.sleep(1.0)
            before = mem(pid)
            cpu0 = cpu_seconds(pid)
            sampler = Sampler(pid).start()
            t0 = time.perf_counter()
            exists = await c.select(env.bulk_folder, timeout=args.long_timeout)
            t_sel = time.perf_counter() - t0
            after_select = mem(pid)
            count = 0

            def seen(resp):
                nonlocal count
                if b" FETCH (" in resp[:40]:
                    count += 1
            t1 = time.perf_counter()
            await c.ok(b"FETCH 1:* (ENVELOPE)", "FETCH", timeout=args.long_timeout,
                       on_untagged=seen)
            took = time.perf_counter() - t1
            peak = await sampler.stop()
            cpu = cpu_seconds(pid) - cpu0
            growth = peak - before.rss_kb
            rep.line(f"{name} #{run} time", f"{took:.2f}s, {count / took:.0f} msgs/s for FETCH 1:* "
                     f"(ENVELOPE): {count} FETCH responses for {exists} messages "
                     f"(SELECT {t_sel:.2f}s; "
                     f"server CPU {cpu:.1f}s for both)",
                     None if count == exists else "a FETCH response per message",
                     count == exists if count != exists else None)
            rep.line(f"{name} #{run} rss growth",
                     f"{growth / 1024:+.1f}MB (peak {mb(peak)}; before "
                     f"SELECT {mb(before.rss_kb)}, after SELECT {mb(after_select.rss_kb)}, "
                     f"after FETCH {mb(mem(pid).rss_kb)})",
                     f"< {FETCH_GROWTH_BAR_MB} MB", growth < FETCH_GROWTH_BAR_MB * 1024)
            await c.ok(b"UNSELECT", "UNSELECT")
    finally:
        await c.logout()
    if (err := server_errors(env)):
        rep.line(f"{name} server log", err)


# ================================================================ phase 5: storm
async def phase_storm(env: Env, args, rep: Report, label: str = "storm") -> None:
    name = label
    if env.imap is None or env.smtp is None:
        rep.failed(name, "needs the IMAP and SMTP ports")
        return
    pid, user = env.pid, env.users[0]
    idler = await open_session(env, user, False, args.timeout)
    nooper = await open_session(env, user, False, args.timeout)
    await idler.idle()
    smtp = await Smtp.connect(env.host, env.smtp, args.timeout)
    await smtp.cmd(b"EHLO load.bench.invalid\r\n", "250", "EHLO")
    before = mem(pid)
    cpu0 = cpu_seconds(pid)
    sampler = Sampler(pid).start()
    loop = asyncio.get_running_loop()
    end = loop.time() + args.storm_seconds  # nothing new starts after this
    outcomes: dict[str, int] = {}
    login_lat: list[float] = []
    noop_lat: list[float] = []
    from_250: list[float] = []  # 250 -> EXISTS (0 when EXISTS came first)
    from_dot: list[float] = []  # final dot -> EXISTS: the delivery as the user sees it
    dot_250: list[float] = []
    probe_errors: dict[str, int] = {}
    stop = asyncio.Event()

    def count(what):
        outcomes[what] = outcomes.get(what, 0) + 1

    async def attacker(k):
        await asyncio.sleep(k * 0.01)
        c = None
        try:
            async with asyncio.timeout_at(end):
                while True:
                    try:
                        if c is None:
                            c = await Imap.connect(env.host, env.imap, None, args.timeout)
                        t0 = time.perf_counter()
                        status, _ = await c.wait(c.send(
                            b"LOGIN " + imap_quote(user) + b' "wrong-%d"' % k), "LOGIN",
                            timeout=args.storm_seconds + 60)
                        login_lat.append(time.perf_counter() - t0)
                        if status.startswith(b"OK"):
                            count("OK (!)")
                            c.abort()
                            c = None
                        else:
                            m = re.match(rb"(NO|BAD)( \[[A-Z-]+\])?", status)
                            count(m.group(0).decode() if m else short(status, 40))
                    except ProtoError as e:
                        count(f"error: {re.sub(r'[0-9]+', 'N', str(e))}")
                        if c is not None:
                            c.abort()
                        c = None
                        await asyncio.sleep(0.1)
        except TimeoutError:
            if c is not None:
                count("unanswered at the end (connection aborted)")
        if c is not None:
            c.abort()

    async def noops():
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                await nooper.ok(b"NOOP", "NOOP", timeout=30)
            except ProtoError as e:
                bump(probe_errors, e)
                return
            noop_lat.append(time.perf_counter() - t0)

    async def deliveries():
        await asyncio.sleep(1.0)
        while loop.time() < end - 0.5:
            try:
                wait = asyncio.ensure_future(idler.wait_exists(args.exists_timeout))
                t_dot, t_250 = await smtp.deliver([user], probe_message([user], "storm"))
                arrived = await wait
            except ProtoError as e:
                bump(probe_errors, e)
                return
            from_250.append(max(0.0, arrived - t_250))
            from_dot.append(arrived - t_dot)
            dot_250.append(t_250 - t_dot)
            await asyncio.sleep(max(0.0, min(2.0, end - loop.time() - 0.5)))

    t0 = time.perf_counter()
    noop_task = asyncio.ensure_future(noops())
    try:
        await asyncio.wait_for(asyncio.gather(deliveries(), *(attacker(k) for k in
                                                               range(args.storm_clients))),
                               args.storm_seconds + args.exists_timeout + 60)
    except TimeoutError:
        count("phase timed out")
    stop.set()
    await asyncio.wait_for(noop_task, 35)
    took = time.perf_counter() - t0
    peak = await sampler.stop()
    cpu = cpu_seconds(pid) - cpu0
    await smtp.quit()
    idler.w.write(b"DONE\r\n")
    await idler.logout()
    await nooper.logout()
    answered = len(login_lat)
    rep.line(f"{name} bad logins", f"{answered} answered in {took:.1f}s by {args.storm_clients} "
             f"clients ({answered / took:.1f}/s; LOGIN answer p50 {ms(pct(login_lat, 50))} "
             f"max {ms(max(login_lat) if login_lat else None)}): "
             + ", ".join(f"{n}x {k}" for k, n in sorted(outcomes.items(), key=lambda kv: -kv[1]))
             + f"; server VmRSS peak {mb(peak)} (before {mb(before.rss_kb)}), CPU {cpu:.1f}s")
    worst = max(from_dot) if from_dot else None
    rep.line(f"{name} idle->EXISTS", f"max {ms(worst)} p50 {ms(pct(from_dot, 50))} from the final "
             f"dot over {len(from_dot)} deliveries during the storm (from the 250: max "
             f"{ms(max(from_250) if from_250 else None)}; the 250 came p50 {ms(pct(dot_250, 50))} "
             f"max {ms(max(dot_250) if dot_250 else None)} after the dot)"
             + (f"; errors: {error_text(probe_errors)}" if probe_errors else ""),
             f"<= {STORM_EXISTS_BAR_S:g}s each (from the dot, which includes the 250's delay)",
             worst is not None and worst <= STORM_EXISTS_BAR_S and not probe_errors)
    p99 = pct(noop_lat, 99)
    rep.line(f"{name} NOOP", f"p50 {ms(pct(noop_lat, 50))} p99 {ms(p99)} max "
             f"{ms(max(noop_lat) if noop_lat else None)} over {len(noop_lat)} NOOPs",
             f"p99 < {NOOP_P99_BAR_S * 1e3:.0f}ms", p99 is not None and p99 < NOOP_P99_BAR_S)
    if (err := server_errors(env)):
        rep.line(f"{name} server log", err)


# ================================================================ main
def parse_target(spec: str) -> tuple[str, str, int]:
    kind, eq, rest = spec.partition("=")
    host, _, port = rest.rpartition(":")
    if not eq or kind not in ("imap", "imaps", "smtp") or not port.isdigit() or not host:
        raise argparse.ArgumentTypeError(
            f"bad --target {spec!r}; expected imap|imaps|smtp=HOST:PORT")
    try:
        return kind, check_loopback(host), int(port)
    except (ValueError, OSError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def expand_users(text: str) -> list[str]:
    out = []
    for entry in filter(None, (e.strip() for e in text.split(","))):
        m = re.search(r"\{(\d+)\.\.(\d+)\}", entry)
        if m:
            out += [entry[:m.start()] + str(i) + entry[m.end():]
                    for i in range(int(m.group(1)), int(m.group(2)) + 1)]
        else:
            out.append(entry)
    return out


def parse_size(text: str) -> int:
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(text[-1:].lower(), 1)
    try:
        return int(float(text[:-1] if mult > 1 else text) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 50M, 512k)") from None


def parse_args():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    add("--only", default=",".join(PHASES),
        help=f"comma list of phases to run, of {', '.join(PHASES)} (default: all, in that order)")
    add("--quick", action="store_true",
        help="scaled down: " + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items())
        + " (flags given explicitly win)")
    add("--connections", type=int, help="idle: connections (default 1000)")
    add("--idle-transports", default="plain,tls", help="idle: plain, tls or both (default)")
    add("--users", type=int, default=10,
        help="self-started server: users the idle connections log in as, in turn (default 10)")
    add("--exists-timeout", type=float, default=30.0, help="seconds to wait for EXISTS (30)")
    add("--cycles", type=int, help="churn: connect/close cycles per protocol (default 10000)")
    add("--login-cycles", type=int, help="churn: IMAP login-then-drop cycles (default 2000)")
    add("--churn-concurrency", type=int, default=20, help="churn: cycles at once (20)")
    add("--big-clients", type=int, help="big: clients (default 50)")
    add("--big-size", type=parse_size, help="big: bytes per message, k/M suffix (default 50M)")
    add("--big-duration", type=float, help="big: seconds each message's sending is paced "
        "over (default 90; the phase is cut off at twice that plus 120)")
    add("--big-recipients", type=int,
        help="big, self-started server: distinct recipients (users big1..bigN), client k "
        "sends to big(k mod N + 1) (default: one each, as many as --big-clients; 1 puts "
        "every message into one mailbox)")
    add("--messages", type=int, help="fetch: messages in the folder (default 50000)")
    add("--storm-clients", type=int, help="storm: clients sending bad logins (default 50)")
    add("--storm-seconds", type=float, help="storm: how long (default 10)")
    add("--storm-lockout", choices=("off", "on", "both"), default="both",
        help="storm, self-started server: 'off' sets limits.login_failures to 1,000,000 "
        "(every attempt is a real password check), 'on' keeps the default 10; 'both' "
        "(default) runs the phase once each way, each on a fresh server")
    add("--timeout", type=float, default=30.0, help="seconds for one command or connect (30)")
    add("--long-timeout", type=float, default=600.0,
        help="seconds for SELECT/FETCH of the big folder (600)")
    add("--target", action="append", type=parse_target, default=[], metavar="KIND=HOST:PORT",
        help="measure a running server: imap=, imaps=, smtp= (repeat); no server is started")
    add("--pid", type=int, help="--target: the server's PID (default: found from the IMAP port)")
    add("--user", default="", help="--target: users, comma list; 'user{1..10}@example.com' expands")
    add("--password", default="", help="--target: the users' password")
    add("--bulk-user", help="--target: owner of the fetch folder (default: the first user)")
    add("--bulk-folder", default=BULK_FOLDER, help=f"fetch folder (default {BULK_FOLDER})")
    add("--big-rcpt", help="--target: recipients of the big messages, comma list or "
        "template, client k sends to entry k mod their number (default: the first user)")
    add("--keep", action="store_true", help="keep the temporary directory (and rmail.log)")
    args = p.parse_args()
    defaults = dict(connections=1000, cycles=10000, login_cycles=2000, big_clients=50,
                    big_size=50 << 20, big_duration=90.0, messages=50000, storm_clients=50,
                    storm_seconds=10.0)
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, QUICK[k] if args.quick else v)
    if args.big_recipients is None:
        args.big_recipients = args.big_clients
    args.phases = [x.strip() for x in args.only.split(",") if x.strip()]
    for ph in args.phases:
        if ph not in PHASES:
            p.error(f"unknown phase {ph!r} (phases: {', '.join(PHASES)})")
    args.transports = [t.strip() for t in args.idle_transports.split(",") if t.strip()]
    if not set(args.transports) <= {"plain", "tls"}:
        p.error("--idle-transports takes plain, tls or plain,tls")
    for k in ("connections", "cycles", "login_cycles", "big_clients", "big_size", "messages",
              "storm_clients", "users", "big_recipients"):
        if getattr(args, k) < 1:
            p.error(f"--{k.replace('_', '-')} must be positive")
    if args.big_size < 4096:
        p.error("--big-size must be at least 4k")
    if args.target:
        args.users_list = expand_users(args.user)
        if not args.users_list or not args.password:
            p.error("--target needs --user and --password")
    return args


async def run_target(args, rep: Report) -> None:
    ports = {kind: (host, port) for kind, host, port in args.target}
    hosts = {h for h, _ in ports.values()}
    if len(hosts) > 1:
        raise SystemExit("all --target entries must name the same host")
    pid = args.pid or (listener_pid(ports["imap"][1]) if "imap" in ports else None) or \
        (listener_pid(ports["smtp"][1]) if "smtp" in ports else None)
    if pid is None or not os.path.exists(f"/proc/{pid}"):
        raise SystemExit("no server PID: give --pid (the process must be readable in /proc)")
    limit = nofile_limit(pid)
    print(f"# target {hosts.pop()}: {', '.join(f'{k} {p}' for k, (_, p) in ports.items())}; "
          f"pid {pid}; its open-files limit {limit}")
    if limit is not None and limit < 2 * args.connections + 200:
        log(f"warning: the server's open-files limit is {limit}; {args.connections} idle "
            f"connections need about {2 * args.connections + 200} (ulimit -n)")
    users = args.users_list
    env = Env(next(iter(ports.values()))[0], ports.get("imap", (0, None))[1],
              ports.get("imaps", (0, None))[1], ports.get("smtp", (0, None))[1], pid, users,
              args.password, args.bulk_user or users[0],
              expand_users(args.big_rcpt) if args.big_rcpt else users[:1],
              args.bulk_folder)
    for ph in PHASES:
        if ph not in args.phases:
            continue
        print(f"# phase {ph}", flush=True)
        await run_phase(ph, env, args, rep, "")


async def run_phase(ph, env, args, rep, fill_note="", variant=None) -> None:
    try:
        if ph == "idle":
            for transport in ([variant] if variant else args.transports):
                await phase_idle(env, args, rep, transport == "tls")
        elif ph == "churn":
            await phase_churn(env, args, rep)
        elif ph == "big":
            await phase_big(env, args, rep)
        elif ph == "fetch":
            await phase_fetch(env, args, rep, fill_note)
        elif ph == "storm":
            await phase_storm(env, args, rep, "storm-lockout" if variant == "on" else "storm")
    except ProtoError as e:
        rep.failed(ph + (f"-{variant}" if variant else ""), str(e))


def run_self(args, rep: Report) -> None:
    work = tempfile.mkdtemp(prefix="rmail-load-")
    server = Server(work, args)
    try:
        log(f"preparing a throwaway rmail in {work}")
        server.prepare()
        for ph in PHASES:
            if ph not in args.phases:
                continue
            if ph == "idle":
                variants = args.transports
            elif ph == "storm":
                variants = ["off", "on"] if args.storm_lockout == "both" else [args.storm_lockout]
            else:
                variants = [None]
            for variant in variants:
                fill_note = ""
                if ph == "fetch":
                    mbox = os.path.join(work, "bulk.mbox")
                    t0 = time.perf_counter()
                    size = write_mbox(mbox, args.messages)
                    t1 = time.perf_counter()
                    log(f"[fetch] wrote an mbox of {args.messages} messages "
                        f"({size / 1048576:.0f} MB) "
                        f"in {t1 - t0:.1f}s; importing")
                    server.cli("import", "mbox", mbox, server.bulk_user, "--folder",
                               BULK_FOLDER, timeout=1800)
                    took = time.perf_counter() - t1
                    os.unlink(mbox)
                    fill_note = (f"{args.messages} messages ({size / 1048576:.0f} MB mbox) filled "
                                 f"by `run.py import mbox` in {took:.1f}s "
                                 f"({args.messages / took:.0f} msgs/s)")
                env = server.start(login_failures=10 if (ph == "storm" and variant == "on")
                                   else 1_000_000)
                label = ph + {None: "", "plain": " (plain)", "tls": " (tls)",
                              "off": " (limits.login_failures 1000000)",
                              "on": " (limits.login_failures 10, the default)"}[variant]
                print(f"# phase {label}: rmail pid {env.pid}, IMAP {env.imap}, IMAPS {env.imaps}, "
                      f"SMTP {env.smtp}, open-files limit {nofile_limit(env.pid)}", flush=True)
                try:
                    asyncio.run(run_phase(ph, env, args, rep, fill_note, variant))
                finally:
                    server.stop()
    finally:
        server.stop()
        if args.keep:
            log(f"kept {work} (rmail's log: {work}/rmail.log)")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    args = parse_args()
    soft = raise_nofile(2 * args.connections + 1000)
    if soft < args.connections + 100:
        log(f"warning: this client may open only {soft} files; lower --connections")

    def terminate(signum, frame):
        raise SystemExit(f"stopped by signal {signum}")
    signal.signal(signal.SIGTERM, terminate)
    rep = Report()
    started = time.monotonic()
    print(f"# bench/load.py {' '.join(sys.argv[1:])}", flush=True)
    if args.target:
        asyncio.run(run_target(args, rep))
    else:
        run_self(args, rep)
    missed = [n for n, ok in rep.rows if not ok]
    print(f"# {len(rep.rows) - len(missed)}/{len(rep.rows)} bars met in "
          f"{time.monotonic() - started:.0f}s"
          + (f"; MISSED: {', '.join(missed)}" if missed else ""))
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
