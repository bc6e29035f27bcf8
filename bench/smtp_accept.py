#!/usr/bin/env python3
"""SMTP accept-rate benchmark for rmail (and Postfix, for comparison).

Sends S concurrent sessions x M messages of B bytes (headers + body, before
dot-stuffing) to an SMTP server on loopback. Prints msg/s and the p50/p99 latency
of one transaction: from sending MAIL FROM to the 250 after the final ".".
A small asyncio client keeps the load generator cheap, since it shares CPU with the server.

By default each message gets its own connection (connect, EHLO, one transaction,
QUIT), and conn= reports the mean connect-to-QUIT time. With --reuse, each session
sends all M messages on one connection. Every reply code is checked. A failed
transaction counts as failed, never as ok; the first distinct failures are printed
and the exit status becomes 1. Only 127.0.0.0/8, ::1 and localhost are accepted.

Examples:
  python3 bench/smtp_accept.py --port 2525
  python3 bench/smtp_accept.py --port 2525 --sessions 50 --messages 20 --size 100k --reuse
  python3 bench/smtp_accept.py --target postfix=127.0.0.1:12525:smtpbench@bench.test \\
      --target rmail=127.0.0.1:2525:alice@example.com          # prints "rmail/postfix = ..."
  python3 bench/smtp_accept.py --matrix --messages 20 --target ... --target ...

Each --target gets the same load in turn. Each target's rate is then compared with the
first's, in both directions. --matrix runs sessions (1, 10, 50) x sizes (2k, 100k),
switching between targets in every cell, and prints one table row per target and cell.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import sys
import time
from collections import namedtuple
from dataclasses import dataclass, field
from email.utils import formatdate

from common import check_loopback

MATRIX_SESSIONS = (1, 10, 50)
MATRIX_SIZES = (2048, 100 * 1024)
MAX_FAILURES_SHOWN = 5
SEQ = itertools.count(1)  # message numbers, unique within this process


class SmtpError(Exception):
    """A step failed: unexpected reply code, timeout or I/O error."""


Target = namedtuple("Target", "name host port rcpt")


@dataclass
class Result:
    target: str
    sessions: int
    size: int
    mode: str
    ok: int = 0
    failed: int = 0
    quit_errors: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    conn_times: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)  # failure text -> count

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    def pct_ms(self, p: float) -> str:
        """Nearest-rank percentile of the transaction latencies, in ms."""
        s = sorted(self.latencies)
        return f"{s[max(0, math.ceil(p / 100 * len(s)) - 1)] * 1e3:.1f}" if s else "-"

    def conn_ms(self) -> str:
        return f"{sum(self.conn_times) / len(self.conn_times) * 1e3:.1f}" if self.conn_times else "-"


# ---------------------------------------------------------------- messages
def pad_lines(count: int) -> bytes:
    """`count` lines of 76 printable ASCII chars + CRLF; some begin with '.'."""
    chars = "".join(map(chr, range(33, 127)))
    lines = []
    for k in range(count):
        line = (chars[k % 94:] + chars)[:76]
        if k % 7 == 3:
            line = "." + line[1:]
        elif k % 13 == 5:
            line = ".." + line[2:]
        lines.append(line + "\r\n")
    return "".join(lines).encode("ascii")


def dot_stuff(data: bytes) -> bytes:
    data = data.replace(b"\r\n.", b"\r\n..")
    return b"." + data if data.startswith(b".") else data


class Messages:
    """Builds RFC 5322 messages of exactly `size` bytes (before dot-stuffing)."""

    INTRO = b".\r\n..two leading dots\r\n.one leading dot\r\n"

    def __init__(self, sender: str, rcpt: str, size: int, tag: str):
        self.sender, self.rcpt, self.size, self.tag = sender, rcpt, size, tag
        self.domain = sender.rpartition("@")[2] or "bench.invalid"
        self.run_id = f"{int(time.time())}.{os.getpid()}.{os.urandom(4).hex()}"
        self.pad = pad_lines(size // 78 + 2)

    def filler(self, n: int) -> bytes:
        """Exactly n >= 2 bytes of CRLF-terminated lines of at most 76 chars."""
        full, rem = divmod(n, 78)
        if rem == 1:  # a 1-byte line is impossible: drop a full line, add 40 + 39 bytes
            return self.pad[:(full - 1) * 78] + b"z" * 38 + b"\r\n" + b"z" * 37 + b"\r\n"
        return self.pad[:full * 78] + (b"z" * (rem - 2) + b"\r\n" if rem else b"")

    def build(self) -> bytes:
        n = next(SEQ)
        head = (f"From: <{self.sender}>\r\nTo: <{self.rcpt}>\r\n"
                f"Subject: smtp_accept {self.tag} message {n}\r\n"
                f"Date: {formatdate(localtime=True)}\r\n"
                f"Message-ID: <{self.run_id}.{n}@{self.domain}>\r\n\r\n").encode()
        need = self.size - len(head) - len(self.INTRO)
        return dot_stuff(head + self.INTRO + (self.filler(need) if need >= 2 else b""))


# ------------------------------------------------------------------ client
class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float):
        self.reader, self.writer, self.timeout = reader, writer, timeout

    @classmethod
    async def open(cls, host: str, port: int, timeout: float) -> Client:
        try:
            async with asyncio.timeout(timeout):
                return cls(*await asyncio.open_connection(host, port), timeout)
        except TimeoutError:
            raise SmtpError(f"connect: timeout after {timeout:g}s") from None
        except OSError as e:
            raise SmtpError(f"connect: {e.strerror or e}") from None

    async def cmd(self, data: bytes | None, expect: tuple[str, ...], what: str) -> str:
        """Send `data` (if any), read one possibly multi-line reply, check its code."""
        try:
            async with asyncio.timeout(self.timeout):
                if data:
                    self.writer.write(data)
                    await self.writer.drain()
                while True:
                    raw = await self.reader.readline()
                    if not raw:
                        raise SmtpError(f"{what}: connection closed by server")
                    line = raw.decode("latin-1").rstrip("\r\n")
                    if len(line) < 4 or line[3] != "-":
                        break
        except TimeoutError:
            raise SmtpError(f"{what}: no reply within {self.timeout:g}s") from None
        except OSError as e:
            raise SmtpError(f"{what}: {e.strerror or e}") from None
        if not line.startswith(expect):
            raise SmtpError(f"{what}: {line[:160]}")
        return line

    async def transaction(self, sender: str, rcpt: str, message: bytes) -> float:
        t0 = time.perf_counter()
        await self.cmd(f"MAIL FROM:<{sender}>\r\n".encode(), ("250",), "MAIL")
        await self.cmd(f"RCPT TO:<{rcpt}>\r\n".encode(), ("250", "251"), "RCPT")
        await self.cmd(b"DATA\r\n", ("354",), "DATA")
        await self.cmd(message + b".\r\n", ("250",), "end of DATA")
        return time.perf_counter() - t0

    async def quit(self, res: Result) -> None:
        try:
            await self.cmd(b"QUIT\r\n", ("221",), "QUIT")
        except SmtpError:
            res.quit_errors += 1
        await self.close()

    async def close(self) -> None:
        self.writer.close()
        try:
            async with asyncio.timeout(self.timeout):
                await self.writer.wait_closed()
        except OSError:  # includes TimeoutError
            pass


# -------------------------------------------------------------------- load
async def session(t: Target, args: argparse.Namespace, msgs: Messages, res: Result) -> None:
    client: Client | None = None
    for _ in range(args.messages):
        message = msgs.build()
        t0 = time.perf_counter()
        try:
            if client is None:
                client = await Client.open(t.host, t.port, args.timeout)
                await client.cmd(None, ("220",), "banner")
                await client.cmd(b"EHLO localhost\r\n", ("250",), "EHLO")
            res.latencies.append(await client.transaction(args.sender, t.rcpt, message))
            res.ok += 1
        except SmtpError as e:
            res.failed += 1
            res.errors[str(e)] = res.errors.get(str(e), 0) + 1
            if client is not None:  # session state unknown: continue on a new connection
                await client.close()
                client = None
            continue
        if not args.reuse:
            await client.quit(res)
            res.conn_times.append(time.perf_counter() - t0)
            client = None
    if client is not None:
        await client.quit(res)


async def run_load(t: Target, sessions: int, size: int, args: argparse.Namespace) -> Result:
    res = Result(t.name, sessions, size, "reuse" if args.reuse else "new-connection")
    msgs = Messages(args.sender, t.rcpt, size, args.label or t.name)
    start = time.perf_counter()
    await asyncio.gather(*(session(t, args, msgs, res) for _ in range(sessions)))
    res.elapsed = time.perf_counter() - start
    return res


# ------------------------------------------------------------------ output
def run_line(r: Result, width: int) -> str:
    def ms(v: str) -> str:
        return v if v == "-" else v + "ms"
    line = (f"{r.target:<{width}}  sessions={r.sessions} size={r.size} mode={r.mode} "
            f"messages={r.ok + r.failed} ok={r.ok} failed={r.failed} "
            f"rate={r.rate:.1f} msg/s p50={ms(r.pct_ms(50))} p99={ms(r.pct_ms(99))}")
    return line + (f" conn={ms(r.conn_ms())}" if r.mode == "new-connection" else "")


def failure_lines(r: Result) -> list[str]:
    out = [f"  [{r.target} sessions={r.sessions} size={r.size}] {n}x {err}"
           for err, n in list(r.errors.items())[:MAX_FAILURES_SHOWN]]
    if len(r.errors) > MAX_FAILURES_SHOWN:
        out.append(f"  ... and {len(r.errors) - MAX_FAILURES_SHOWN} more distinct failures")
    if r.quit_errors:
        out.append(f"  [{r.target}] {r.quit_errors} QUIT replies were not 221 (not counted as failures)")
    return out


def ratio(a: Result, b: Result) -> str:
    return f"{a.rate / b.rate:.2f}" if b.rate > 0 else "n/a"


async def main_async(args: argparse.Namespace, targets: list[Target]) -> int:
    """Run everything; return the number of failed transactions."""
    width, multi, failed = max(len(t.name) for t in targets), len(targets) > 1, 0
    if args.label:
        print(f"# {args.label}")
    if not args.matrix:
        results = []
        for t in targets:
            results.append(r := await run_load(t, args.sessions, args.size, args))
            failed += r.failed
            print("\n".join([run_line(r, width)] + failure_lines(r)), flush=True)
        for r in results[1:]:
            a, b = r.target, results[0].target
            print(f"{a}/{b} = {ratio(r, results[0])} ({b}/{a} = {ratio(results[0], r)})")
        return failed
    print(f"{'target':<{width}} {'sessions':>8} {'size':>7} {'mode':<14} {'messages':>8} {'ok':>6} "
          f"{'failed':>6} {'msgs/s':>8} {'p50 ms':>8} {'p99 ms':>8}" + (" ratio" if multi else ""))
    notes: list[str] = []
    for sessions, size in itertools.product(MATRIX_SESSIONS, MATRIX_SIZES):
        cell = [await run_load(t, sessions, size, args) for t in targets]  # interleaved per cell
        for r in cell:
            failed += r.failed
            notes += failure_lines(r)
            print(f"{r.target:<{width}} {sessions:>8} {size:>7} {r.mode:<14} {r.ok + r.failed:>8} "
                  f"{r.ok:>6} {r.failed:>6} {r.rate:>8.1f} {r.pct_ms(50):>8} {r.pct_ms(99):>8}"
                  + (f" {ratio(r, cell[0]):>5}" if multi else ""), flush=True)
    if notes:
        print("failures:", *notes, sep="\n")
    return failed


# --------------------------------------------------------------------- cli
def parse_size(text: str) -> int:
    mult = {"k": 1024, "m": 1024 * 1024}.get(text[-1:].lower(), 1)
    try:
        value = int(float(text[:-1] if mult > 1 else text) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (use e.g. 2048, 2k, 100k)") from None
    if value < 512:
        raise argparse.ArgumentTypeError("size must be at least 512 bytes (room for the headers)")
    return value


def parse_target(spec: str) -> Target:
    name, _, rest = spec.partition("=")
    host, port, rcpt = ([""] * 3 + rest.rsplit(":", 2))[-3:]  # rsplit keeps "::1" whole
    if not name or not host or not port.isdigit() or "@" not in rcpt:
        raise argparse.ArgumentTypeError(f"bad --target {spec!r}; expected NAME=HOST:PORT:RCPT")
    try:
        return Target(name, check_loopback(host), int(port), rcpt)
    except (ValueError, OSError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    add("--host", default="127.0.0.1", help="server host, loopback only (default 127.0.0.1)")
    add("--port", type=int, help="server port (required unless --target is given)")
    add("--to", default="alice@example.com", help="recipient (default alice@example.com)")
    add("--from", dest="sender", default="bench@bench.invalid", help="sender (default bench@bench.invalid)")
    add("--target", action="append", type=parse_target, default=[], metavar="NAME=HOST:PORT:RCPT",
        help="server to benchmark instead of --host/--port/--to; repeat to compare servers")
    add("--sessions", type=int, default=10, help="concurrent sessions S (default 10)")
    add("--messages", type=int, default=50, help="messages per session M (default 50)")
    add("--size", type=parse_size, default=2048,
        help="bytes per message incl. headers, suffix k or m allowed (default 2048)")
    add("--reuse", action="store_true", help="each session sends all its messages on one connection")
    add("--timeout", type=float, default=30.0, help="seconds to wait for each reply (default 30)")
    add("--label", default="", help="free text printed as a '# label' header line and put in the "
        "Subject; also names the server when --target is not used")
    add("--matrix", action="store_true",
        help="run sessions (1, 10, 50) x sizes (2k, 100k); --sessions and --size are ignored")
    args = p.parse_args()
    if args.sessions < 1 or args.messages < 1 or args.timeout <= 0:
        p.error("--sessions, --messages and --timeout must be positive")
    targets = args.target
    if not targets:
        if args.port is None:
            p.error("--port is required unless --target is given")
        try:
            targets = [Target(args.label or f"{args.host}:{args.port}",
                              check_loopback(args.host), args.port, args.to)]
        except (ValueError, OSError) as e:
            p.error(str(e))
    sys.exit(1 if asyncio.run(main_async(args, targets)) else 0)


if __name__ == "__main__":
    main()
