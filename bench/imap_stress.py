#!/usr/bin/env python3
"""IMAP stress load in the shape of Dovecot's imaptest default profile, for rmail and Dovecot.

imaptest (github.com/dovecot/imaptest) is the load Dovecot is usually measured with, but
it is a C program built against Dovecot's libraries. This program sends the same command
mix, so rmail and Dovecot can be compared with it on one machine without building it.

Each of C clients (--clients, default 10,50; one run per value) loops for --duration
seconds: connect, LOGIN as user%d (%d random in 1..--users), then LIST "" * (50 %) and
STATUS INBOX (MESSAGES UNSEEN RECENT) (50 %) pipelined with SELECT INBOX (100 %, with
CONDSTORE where offered), then pipelined on the selected INBOX:
  FETCH    of min(INBOX size, 100) random picks of messages, 1-4 items of UID FLAGS ENVELOPE
           INTERNALDATE BODY BODYSTRUCTURE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (...)]  100 %
  FETCH2   one message's (UID BODY.PEEK[] / [HEADER] / [TEXT] / [1] / RFC822.HEADER)
                                                              100 %, again 30 %
  STORE    +FLAGS, -FLAGS or FLAGS (.SILENT half the time) of random system flags and
           $Label1-5 keywords on 0-5 random messages (of 30)                     50 %
  DELETE   STORE +FLAGS \\Deleted on one random message, half the time (more when the
           INBOX holds over --messages + 5)                                      100 %
  EXPUNGE                                                                        100 %
  APPEND   a message from --mbox, or a generated one; skipped while the INBOX holds
           --messages (default 30) or more, less an eighth       100 %, again 5 %
then LOGOUT, and a new connection. The appends and deletes keep each INBOX near --messages
messages, and every cycle pays a connection and a login, as imaptest's does: it measures
sessions, not one long-lived connection's commands (bench/imap_fetch.py's mixed does that).

As imaptest does, a client keeps up to 10 commands in flight but waits for LOGIN, for
SELECT, and for everything before LOGOUT; with MULTIAPPEND a repeated APPEND joins the same
command. APPEND waits for the server's "+" before the message, as a client without
LITERAL+ does (--literal-plus sends it at once where offered, as imaptest does).

The figure is commands/s: tagged OK responses that arrived within --duration (LOGOUT
included), over --duration, which is what imaptest's Totals line divided by its secs=
gives. A NO to FETCH/STORE of messages another session expunged (EXPUNGEISSUED, "no longer
exist"...) is no error (imaptest tolerates them) and not counted (no_expunged=). BAD, any
other NO and broken connections are errors, printed once per kind; BAD closes the
connection, as in imaptest. After --duration, clients finish the commands in flight and
log out. The line also gives each command's count and p50/p99 time from sending it to its
tagged response (pipelined commands include their wait behind the earlier ones), the time
from connect to greeting, and the INBOX sizes SELECT saw.

Targets: --target NAME=HOST:PORT:USERTEMPLATE:PASSWORD[:PID], repeatable; each run goes
to every target in turn (so they see the same machine state) and every target after the
first gets a ratio line. HOST: 127.0.0.0/8, ::1 (write [::1]) or localhost. USERTEMPLATE
holds one %d. PID: the server process (Dovecot: its master); its CPU seconds over the run,
with every descendant process's (Dovecot forks an imap process per connection), are
reported. Without it the process listening on PORT is looked for (needs root).

Examples:
  python3 bench/imap_stress.py --clients 10 --duration 20 \\
      --target rmail=127.0.0.1:3143:user%d@example.com:pass:$(cat rmail.pid) \\
      --target dovecot=127.0.0.1:11143:user%d@bench.test:pass:$(cat /run/dovecot-bench/master.pid)
  python3 bench/imap_stress.py --mbox ~/mail/dovecot-crlf --target ...

The users must exist with PASSWORD; their INBOXes are changed (messages appended,
flagged, expunged). Standard library only (Python 3.11); one asyncio client. Exit status 1
if any run saw errors.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import random
import re
import sys
import time
from dataclasses import dataclass, field

import common
import imap_fetch
from imap_fetch import ImapError

# imaptest's default profile: (command, probability %, probability % of the same command
# again right after), in the order imaptest walks its states. States its defaults leave at
# 0 % (AUTHENTICATE, SEARCH, SORT, THREAD, NOOP, IDLE, COPY without copybox=...) are left out.
AUTH_PLAN = (("LIST", 50, 0), ("STATUS", 50, 0), ("SELECT", 100, 0))
SELECTED_PLAN = (("FETCH", 100, 0), ("FETCH2", 100, 30), ("STORE", 50, 0), ("DELETE", 100, 0),
                 ("EXPUNGE", 100, 0), ("APPEND", 100, 5))
COMMANDS = ("LOGIN",) + tuple(c for c, _, _ in AUTH_PLAN + SELECTED_PLAN) + ("LOGOUT",)
PROBABILITY = {c: p for c, p, _ in AUTH_PLAN + SELECTED_PLAN}
NEEDS_MESSAGES = {"FETCH", "FETCH2", "STORE", "DELETE", "EXPUNGE"}  # skipped in an empty INBOX
MAX_IN_FLIGHT = 10  # imaptest's MAX_COMMAND_QUEUE_LEN

FETCH_ITEMS = ("UID", "FLAGS", "ENVELOPE", "INTERNALDATE", "BODY", "BODYSTRUCTURE", "RFC822.SIZE")
FETCH_HEADERS = ("From", "To", "Cc", "Subject", "References", "In-Reply-To", "Message-ID")
FETCH2_ITEMS = ("BODY.PEEK[HEADER]", "RFC822.HEADER", "BODY.PEEK[]", "BODY.PEEK[1]", "BODY.PEEK[TEXT]")
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")  # \Deleted: DELETE's
KEYWORDS = ("$Label1", "$Label2", "$Label3", "$Label4", "$Label5")
# texts of a NO to FETCH/STORE of messages another session expunged (imaptest's list), lower case
EXPUNGED_NO = (b"[expungeissued]", b"no longer exist", b"no matching messages", b"have been expunged",
               b"cannot store on expunged messages", b"have been deleted")
MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
MAX_ERROR_KINDS = 10

log = imap_fetch.log


# ======================================================================== targets
@dataclass
class Target:
    name: str
    host: str
    port: int
    user: str  # template with one %d
    password: str
    pid: int | None = None


def parse_target(spec: str) -> Target:
    usage = f"bad --target {spec!r}; expected NAME=HOST:PORT:USERTEMPLATE:PASSWORD[:PID]"
    parts = common.split_target(spec)
    if parts is None:
        raise argparse.ArgumentTypeError(usage)
    name, host, fields = parts
    if len(fields) not in (3, 4) or not fields[0].isdigit() or (len(fields) == 4 and not fields[3].isdigit()):
        raise argparse.ArgumentTypeError(usage)
    if fields[1].count("%d") != 1 or "%" in fields[1].replace("%d", ""):
        raise argparse.ArgumentTypeError(f"bad --target {spec!r}: USERTEMPLATE needs one %d and no other %")
    try:
        host = common.check_loopback(host)
    except (ValueError, OSError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return Target(name, host, int(fields[0]), fields[1], fields[2],
                  int(fields[3]) if len(fields) == 4 else None)


# ======================================================================= messages
def imap_date(t: time.struct_time) -> str:
    return f"{t.tm_mday:02d}-{MONTHS[t.tm_mon - 1]}-{t.tm_year} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"


def read_mbox(path: str) -> list[tuple[bytes, str]]:
    """The messages of an mbox file, with CRLF line ends, and the date of each From_ line,
    as imaptest appends them (lines as they are: no >From unquoting)."""
    from_line = re.compile(rb"From \S+ +(\w{3} \w{3} +\d{1,2} \d{1,2}:\d\d:\d\d \d{4})")
    out, lines, date = [], None, ""

    def flush() -> None:
        if lines:
            out.append((b"\r\n".join(lines) + b"\r\n", date))
    with open(path, "rb") as f:
        for raw in f:
            line = raw.rstrip(b"\r\n")
            m = from_line.match(line)
            if m:
                flush()
                lines = []
                try:
                    date = imap_date(time.strptime(m.group(1).decode(), "%a %b %d %H:%M:%S %Y"))
                except ValueError:
                    date = ""
            elif lines is not None:
                lines.append(line)
    flush()
    return out


def generated_messages(seed: int, count: int = 300) -> list[tuple[bytes, str]]:
    """count plain-text messages of 1-5 KB (about 2.6 KB on average, like a mailing-list
    mbox), a third of them replies; deterministic for a seed."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        words = [rng.choice(imap_fetch.WORDS) for _ in range(rng.randint(3, 8))]
        subject = " ".join(words).capitalize()
        date, idate = imap_fetch.rfc822_date(rng.randrange(100000))
        hdrs = [f"From: {imap_fetch.person(rng)}",
                f"To: {', '.join(imap_fetch.person(rng) for _ in range(rng.choice((1, 1, 2, 3))))}"]
        if rng.random() < 0.25:
            hdrs.append(f"Cc: {imap_fetch.person(rng)}")
        reply = rng.random() < 0.33
        hdrs += [f"Subject: {'Re: ' if reply else ''}{subject}", f"Date: {date}",
                 f"Message-ID: <{rng.getrandbits(64):016x}.{i}@stress.example>"]
        if reply:
            ref = f"<{rng.getrandbits(64):016x}@stress.example>"
            hdrs += [f"In-Reply-To: {ref}", f"References: {ref}"]
        hdrs += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=us-ascii",
                 "Content-Transfer-Encoding: 7bit"]
        body = imap_fetch.text_of(rng, int(700 * 6 ** rng.random()))
        out.append((("\r\n".join(hdrs) + "\r\n\r\n" + body).encode(), idate))
    return out


# =================================================================== one session
class Abort(Exception):
    """Close the connection now (the server sent BAD, or something it should not have)."""


@dataclass
class Run:
    """One target at one client count: the shared settings and what was measured."""
    target: Target
    args: argparse.Namespace
    source: list[tuple[bytes, str]]
    deadline: float = 0.0
    next_message: int = 0
    counts: collections.Counter = field(default_factory=collections.Counter)
    latency: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    connect: list[float] = field(default_factory=list)  # TCP connect to greeting, s
    errors: dict[str, int] = field(default_factory=dict)
    tolerated: int = 0
    selected_sizes: list[int] = field(default_factory=list)

    def stopping(self) -> bool:
        return time.perf_counter() >= self.deadline

    def error(self, text: str) -> None:
        text = common.short(re.sub(r"\d+", "N", text) if "within" not in text else text)
        self.errors[text] = self.errors.get(text, 0) + 1

    def message(self) -> tuple[bytes, str]:
        """The source's messages in turn, shared by all clients (as imaptest reads its mbox)."""
        msg = self.source[self.next_message % len(self.source)]
        self.next_message += 1
        return msg


class Session:
    """One connection: sends imaptest's commands and keeps its view of the INBOX."""

    def __init__(self, run: Run, conn: imap_fetch.Imap, rng: random.Random, user: str):
        self.run, self.c, self.rng, self.user = run, conn, rng, user
        self.exists = 0
        self.keywords: set[bytes] = set()  # lower-cased, from FLAGS
        self.can_create = False  # PERMANENTFLAGS has \*
        self.seen_bye = False

    # ------------------------------------------------------------------ commands
    def seq_set(self, count: int) -> bytes:
        return imap_fetch.uid_set(list({self.rng.randrange(self.exists) + 1 for _ in range(count)}))

    def random_flags(self) -> str:
        rng = self.rng
        out = [f for f in SYSTEM_FLAGS if rng.randrange(2) == 0 and f != "\\Deleted"]
        if self.can_create or self.keywords:
            out += [k for k in KEYWORDS if rng.randrange(4) == 0
                    and (self.can_create or k.lower().encode() in self.keywords)]
        return " ".join(out)

    def build(self, name: str, todo: collections.deque) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
        """The command line (no tag) and, for APPEND, its (arguments, message) pairs; None
        when imaptest would skip the command."""
        rng, msgs = self.rng, self.exists
        if name in NEEDS_MESSAGES and msgs == 0:
            return None
        if name == "LOGIN":
            return b"LOGIN " + imap_fetch.quote(self.user) + b" " + imap_fetch.quote(self.run.target.password), []
        if name == "CAPABILITY":
            return b"CAPABILITY", []
        if name == "LIST":
            return b'LIST "" *', []
        if name == "STATUS":
            return b'STATUS "INBOX" (MESSAGES UNSEEN RECENT)', []
        if name == "SELECT":
            return b'SELECT "INBOX"' + (b" (CONDSTORE)" if b"CONDSTORE" in self.c.caps else b""), []
        if name == "FETCH":
            items = []
            for _ in range(rng.randrange(4) + 1):
                if rng.randrange(4):
                    items.append(rng.choice(FETCH_ITEMS))
                else:
                    fields = " ".join(rng.choice(FETCH_HEADERS) for _ in range(rng.randrange(4) + 1))
                    items.append(f"BODY.PEEK[HEADER.FIELDS ({fields})]")
            return b"FETCH %s (%s)" % (self.seq_set(min(msgs, 100)), " ".join(items).encode()), []
        if name == "FETCH2":
            return b"FETCH %d (UID %s)" % (rng.randrange(msgs) + 1, rng.choice(FETCH2_ITEMS).encode()), []
        if name == "STORE":
            n = rng.randrange(msgs if msgs < 10 else min(msgs // 5, 50))
            if n == 0:
                return None
            sign = ("+", "-", "")[rng.randrange(3)]
            silent = ".SILENT" if rng.randrange(2) == 0 else ""
            return b"STORE %s %sFLAGS%s (%s)" % (self.seq_set(n), sign.encode(), silent.encode(),
                                                 self.random_flags().encode()), []
        if name == "DELETE":
            # imaptest balances deletes against appends, and deletes more in a big INBOX
            bound = 1 + (PROBABILITY["APPEND"] + PROBABILITY["DELETE"] // 2) // PROBABILITY["DELETE"]
            if msgs > self.run.args.messages + 5:
                bound += msgs - self.run.args.messages
            n = min(rng.randrange(bound), 1000)
            if n == 0:
                return None
            silent = b".SILENT" if rng.randrange(2) == 0 else b""
            return b"STORE %s +FLAGS%s \\Deleted" % (self.seq_set(n), silent), []
        if name == "EXPUNGE":
            return b"EXPUNGE", []
        if name == "APPEND":
            messages = []
            while True:
                if msgs - (msgs >> 3) >= self.run.args.messages:
                    break
                text, date = self.run.message()
                flags = f" ({self.random_flags()})" if rng.randrange(2) == 0 else ""
                when = f' "{date}"' if date and rng.randrange(2) == 0 else ""
                messages.append(((flags + when).encode(), text))
                # a repeated APPEND joins this command where the server has MULTIAPPEND
                if not (todo and todo[0] == "APPEND" and b"MULTIAPPEND" in self.c.caps):
                    break
                todo.popleft()
            return (b'APPEND "INBOX"', messages) if messages else None
        if name == "LOGOUT":
            return b"LOGOUT", []
        raise ValueError(name)

    # -------------------------------------------------------------- responses
    def untagged(self, resp: bytes) -> None:
        parts = resp.split(b" ", 3)
        if len(parts) < 3:
            if resp[2:5].upper() == b"BYE":
                self.seen_bye = True
            return
        word = parts[1]
        if word.isdigit():
            kind = parts[2].rstrip(b"\r\n").upper()
            if kind == b"EXISTS":
                self.exists = int(word)
            elif kind == b"EXPUNGE":
                self.exists = max(0, self.exists - 1)
            return
        word = word.upper()
        if word == b"FLAGS":
            self.keywords = {w.lower() for w in re.findall(rb"[^\s()]+", resp[8:]) if w[:1] != b"\\"}
        elif word == b"OK" and resp[5:20].upper() == b"[PERMANENTFLAGS":
            self.can_create = b"\\*" in resp
        elif word == b"BYE":
            self.seen_bye = True
        elif word == b"CAPABILITY":
            self.c.note_caps(resp)

    def finished(self, name: str, sent: float, status: bytes, text: bytes) -> None:
        run = self.run
        now = time.perf_counter()
        if status == b"OK":
            if name == "LOGIN":
                self.c.note_caps(text)
            if name in COMMANDS and now <= run.deadline:
                run.counts[name] += 1
                run.latency[name].append(now - sent)
            return
        line = f"{name}: {status.decode(errors='replace')} {text.decode(errors='replace')}"
        if status == b"NO" and name in ("FETCH", "FETCH2", "STORE", "DELETE") \
                and any(t in text.lower() for t in EXPUNGED_NO):
            run.tolerated += 1
            return
        run.error(line)
        if status != b"NO":
            raise Abort()

    async def group(self, names: list[str]) -> dict[str, bytes]:
        """Send `names` pipelined (up to MAX_IN_FLIGHT at once), read until all are
        answered; returns each command's last status."""
        c, run = self.c, self.run
        literal_plus = run.args.literal_plus and b"LITERAL+" in c.caps
        todo = collections.deque(names)
        pending: dict[bytes, tuple[str, float]] = {}
        status_of: dict[str, bytes] = {}
        waiting = None  # (tag, [(arguments, message), ...]) of an APPEND waiting for "+"
        async with asyncio.timeout(run.args.timeout):
            while todo or pending:
                out = []
                while todo and waiting is None and len(pending) < MAX_IN_FLIGHT:
                    if run.stopping() and todo[0] != "LOGOUT":
                        todo.clear()
                        break
                    name = todo.popleft()
                    built = self.build(name, todo)
                    if built is None:
                        continue
                    line, appends = built
                    tag = c.tag()
                    if not appends:
                        out.append(tag + b" " + line + b"\r\n")
                    elif literal_plus:
                        out += [tag, b" ", line]
                        for arguments, msg in appends:
                            out += [arguments, b" {%d+}\r\n" % len(msg), msg]
                        out.append(b"\r\n")
                    else:
                        out.append(tag + b" " + line + appends[0][0] + b" {%d}\r\n" % len(appends[0][1]))
                        waiting = (tag, appends)
                    pending[tag] = (name, time.perf_counter())
                if out:
                    c.w.write(b"".join(out))
                if not pending:
                    break
                await c.w.drain()
                try:
                    resp = await c.read_response()
                except ImapError:
                    if self.seen_bye and all(n == "LOGOUT" for n, _ in pending.values()):
                        for name, sent in pending.values():  # closed after its BYE
                            self.finished(name, sent, b"OK", b"")
                        return {"LOGOUT": b"OK"}
                    raise
                if resp[:2] == b"* ":
                    self.untagged(resp)
                    continue
                if resp[:1] == b"+":
                    if waiting is None:
                        run.error(f"unexpected continuation: {common.short(resp)}")
                        raise Abort()
                    tag, appends = waiting
                    msg, rest = appends[0][1], appends[1:]
                    if rest:
                        c.w.write(msg + rest[0][0] + b" {%d}\r\n" % len(rest[0][1]))
                        waiting = (tag, rest)
                    else:
                        c.w.write(msg + b"\r\n")
                        waiting = None
                    continue
                tag, _, rest = resp.rstrip(b"\r\n").partition(b" ")
                status, _, text = rest.partition(b" ")
                if tag not in pending:
                    run.error(f"response to no command: {common.short(resp)}")
                    raise Abort()
                if waiting is not None and waiting[0] == tag:
                    waiting = None  # refused instead of "+"
                name, sent = pending.pop(tag)
                status_of[name] = status.upper()
                self.finished(name, sent, status.upper(), text)
        return status_of


# ==================================================================== the load
def plan(rng: random.Random, table) -> list[str]:
    """The commands one pass over `table` picks (each with its probability, then again
    with its repeat probability while that hits)."""
    out = []
    for name, p, again in table:
        if rng.randrange(100) < p:
            out.append(name)
            while again and rng.randrange(100) < again:
                out.append(name)
    return out


async def cycle(run: Run, rng: random.Random, user: str) -> bool:
    """One connection: LOGIN ... LOGOUT. False if it broke off before LOGOUT (the next
    cycle then logs in as the same user, as imaptest reconnects)."""
    t, args = run.target, run.args
    t0 = time.perf_counter()
    try:
        conn = await imap_fetch.Imap.connect(t.host, t.port, args.timeout)
    except ImapError as e:
        run.error(str(e))
        await asyncio.sleep(0.1)  # no busy loop while the server refuses
        return False
    if not run.stopping():
        run.connect.append(time.perf_counter() - t0)
    s = Session(run, conn, rng, user)
    try:
        if not conn.caps:  # imaptest asks when the greeting has none
            await s.group(["CAPABILITY"])
        if (await s.group(["LOGIN"])).get("LOGIN") != b"OK":
            conn.abort()
            await asyncio.sleep(0.05)
            return True  # imaptest would retry this user forever; take another
        if not run.stopping():
            if (await s.group(plan(rng, AUTH_PLAN))).get("SELECT") == b"OK":
                run.selected_sizes.append(s.exists)
                if not run.stopping():
                    await s.group(plan(rng, SELECTED_PLAN))
        await s.group(["LOGOUT"])
    except Abort:
        conn.abort()
        return False
    except (ImapError, OSError) as e:
        run.error(str(e))
        conn.abort()
        return False
    except TimeoutError:
        run.error(f"no reply within {args.timeout:g}s")
        conn.abort()
        return False
    await conn.close(logout=False)
    return True


async def client(run: Run, idx: int) -> None:
    rng = random.Random(f"{run.args.seed}:{idx}")
    user = None
    while not run.stopping():
        if user is None:
            user = run.target.user.replace("%d", str(rng.randrange(run.args.users) + 1))
        if await cycle(run, rng, user):
            user = None


@dataclass
class Result:
    run: Run
    clients: int
    elapsed: float
    cpu: float | None
    client_cpu: float
    unfinished: bool


async def measure(t: Target, args, clients: int, source) -> Result:
    run = Run(t, args, source)
    log(f"[{t.name}] stress-{clients}: {clients} clients for {args.duration:g}s")
    if t.pid is not None and common.proc_stat(t.pid) is None:
        log(f"[{t.name}] no process {t.pid}: no server CPU figure")
    cpu0, ccpu0 = imap_fetch.cpu_seconds(t.pid), time.process_time()
    t0 = time.perf_counter()
    run.deadline = t0 + args.duration
    tasks = [asyncio.create_task(client(run, i)) for i in range(clients)]
    await asyncio.sleep(max(0.0, run.deadline - time.perf_counter()))
    cpu1, ccpu1 = imap_fetch.cpu_seconds(t.pid), time.process_time()
    elapsed = time.perf_counter() - t0
    unfinished = False
    try:
        async with asyncio.timeout(args.timeout * 3 + 10):  # the commands in flight, LOGOUT
            await asyncio.gather(*tasks)
    except TimeoutError:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        run.error("clients did not finish in time (cancelled)")
        unfinished = True
    return Result(run, clients, elapsed, None if cpu0 is None or cpu1 is None else cpu1 - cpu0,
                  ccpu1 - ccpu0, unfinished)


# ===================================================================== output
def report(res: Result, width: int, first: Result | None) -> None:
    run = res.run
    total = sum(run.counts.values())
    rate = total / run.args.duration
    measure = f"stress-{res.clients}"
    counts = " ".join(f"{c}={run.counts[c]}" for c in COMMANDS)
    lat = " ".join(f"{c}={imap_fetch.ms(imap_fetch.pct(v, 50))}/{imap_fetch.ms(imap_fetch.pct(v, 99))}"
                   for c, v in [("connect", run.connect)] + [(c, run.latency[c]) for c in COMMANDS] if v)
    sizes = sorted(run.selected_sizes)
    inbox = f"{sizes[0]}/{sizes[len(sizes) // 2]}/{sizes[-1]}" if sizes else "-"
    cpu = ""
    if run.target.pid is not None and common.proc_stat(run.target.pid) is None:
        cpu = f" server_cpu=- (no process {run.target.pid})"
    elif res.cpu is not None:
        cpu = f" server_cpu={res.cpu:.2f}s" + (f" ({res.cpu / total * 1e6:.0f}us/command)" if total else "")
    print(f"{measure:<14} {run.target.name:<{width}}  {rate:.0f} commands/s  clients={res.clients} "
          f"cycles={run.counts['LOGOUT']} commands={total} in {res.elapsed:.1f}s  per command: {counts}  "
          f"p50/p99 ms: {lat or '-'}  inbox_at_select min/p50/max={inbox} no_expunged={run.tolerated} "
          f"errors={sum(run.errors.values())}{cpu} client_cpu={res.client_cpu:.2f}s", flush=True)
    for text, n in sorted(run.errors.items(), key=lambda kv: -kv[1])[:MAX_ERROR_KINDS]:
        print(f"    [{run.target.name} {measure}] {n}x {text}", flush=True)
    if len(run.errors) > MAX_ERROR_KINDS:
        print(f"    [{run.target.name} {measure}] ... and {len(run.errors) - MAX_ERROR_KINDS} "
              "more kinds of error", flush=True)
    if first is not None:
        base = sum(first.run.counts.values()) / first.run.args.duration
        ratio = f"ratio={rate / base:.3f}x of {first.run.target.name} (higher is better)" if base else "ratio=-"
        print(f"{measure:<14} {run.target.name:<{width}}  {ratio}", flush=True)


async def main_async(args, targets: list[Target], source, source_name: str) -> int:
    print(f"# imap_stress: imaptest default profile, clients={','.join(map(str, args.clients))} "
          f"duration={args.duration:g}s users={args.users} messages={args.messages} "
          f"source={source_name} ({len(source)} messages, "
          f"{sum(len(m) for m, _ in source) / len(source) / 1024:.1f} KB average) "
          f"append={'LITERAL+ where offered' if args.literal_plus else 'waits for +'}")
    for t in targets:
        print(f"# target {t.name}: {t.host}:{t.port} user={t.user} (1..{args.users}) pid={t.pid or '-'}")
    sys.stdout.flush()
    width = max(len(t.name) for t in targets)
    bad = False
    for clients in args.clients:
        first = None
        for t in targets:
            res = await measure(t, args, clients, source)
            report(res, width, first)
            first = first or res
            bad = bad or bool(res.run.errors) or res.unfinished
    return 1 if bad else 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    add("--target", action="append", type=parse_target, required=True,
        metavar="NAME=HOST:PORT:USERTEMPLATE:PASSWORD[:PID]",
        help="a server to load; repeat to compare (ratios are to the first)")
    add("--users", type=int, default=50, help="users the template's %%d ranges over, 1..N (default 50)")
    add("--clients", default="10,50", help="comma list of client counts, one run each (default 10,50)")
    add("--duration", type=float, default=20.0, help="seconds per run (default 20)")
    add("--messages", type=int, default=30, help="INBOX size the appends and deletes keep near "
        "(imaptest's msgs=, default 30)")
    add("--mbox", help="mbox file whose messages are appended in turn (default: generated messages)")
    add("--seed", type=int, default=1, help="seed of the generated messages and of the clients' "
        "choices (default 1)")
    add("--timeout", type=float, default=30.0, help="seconds a connection may wait for a reply "
        "(default 30)")
    add("--literal-plus", action="store_true", help="send APPEND's message without waiting for "
        "\"+\" where the server offers LITERAL+ (as imaptest does)")
    args = p.parse_args()
    try:
        args.clients = [int(x) for x in args.clients.split(",") if x.strip()]
    except ValueError:
        p.error("--clients takes a comma list of numbers")
    if not args.clients or min(args.clients) < 1 or args.users < 1 or args.duration <= 0 \
            or args.timeout <= 0 or args.messages < 0:
        p.error("--clients, --users, --duration and --timeout must be positive, --messages at least 0")
    targets: list[Target] = args.target
    if len({t.name for t in targets}) != len(targets):
        p.error("target names must differ")
    for t in targets:
        if t.pid is None:
            t.pid = common.listener_pid(t.port)
            if t.pid:
                log(f"[{t.name}] server pid {t.pid} (the process listening on port {t.port})")
    if args.mbox:
        try:
            source = read_mbox(args.mbox)
        except OSError as e:
            p.error(f"--mbox: {e}")
        if not source:
            p.error(f"--mbox: no messages in {args.mbox}")
        source_name = args.mbox
    else:
        source, source_name = generated_messages(args.seed), f"generated (seed {args.seed})"
    sys.exit(asyncio.run(main_async(args, targets, source, source_name)))


if __name__ == "__main__":
    main()
