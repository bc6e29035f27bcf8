#!/usr/bin/env python3
"""IMAP benchmark for rmail (and Dovecot, for comparison), run on loopback.

Every measurement runs against each --target in turn (measurement by measurement, so
the targets see the same machine state), prints one line per measurement and target,
and for every target after the first the ratio of its figure to the first target's.

  fetch    LOGIN + SELECT + FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE) on a folder of
           --messages messages (default 10,000) on a fresh connection; messages/s.
  search   UID SEARCH SUBJECT <word> and UID SEARCH BODY <word> on that folder; ms.
  mixed    C concurrent clients (--clients, default 10,50), each looping SELECT,
           UID FETCH of a few messages' (UID ENVELOPE FLAGS), UID FETCH BODY.PEEK[] of
           one, UID STORE +/-FLAGS (\\Seen or a keyword), APPEND of a small message,
           UID STORE +FLAGS.SILENT (\\Deleted) and UID EXPUNGE of that message, for
           --duration seconds (or --ops commands in all); operations/s and p50/p99 per
           command.
  idle     The time from the SMTP 250 after DATA (a message sent to the IDLE user on the
           target's SMTP port) to "* N EXISTS" arriving in a session that IDLEs on its
           INBOX; --idle-rounds times (default 50); p50/p99 ms. An EXISTS that arrives
           before the 250 (rmail announces a delivery as soon as it is durable) counts
           as 0 ms; the line also gives the time from the final "." and how often.
  memory   --idle-connections (default 1000) connections, each LOGIN + SELECT INBOX,
           held open: the server's RSS delta (VmRSS of the target's PID plus every
           descendant process, so Dovecot's per-connection imap processes count), in MB
           and KB per connection; and "memory-pss", the same with PSS where /proc allows
           (shared pages split between the processes sharing them: summed RSS counts
           Dovecot's shared libraries once per imap process). Runs first: a one-process
           server keeps the memory it freed, so for a clean figure start it afresh.

The folder for fetch/search ("Bench<N>", --folder) is filled once with varied messages
of 1-20 KB (plain, quoted-printable, multipart/alternative, attachments, replies) by
pipelined APPENDs; a rerun finds N messages there and skips it. The mixed workload
fills a small folder ("BenchMix", --mixed-messages, default 100) for each user it uses;
it deletes the messages it appends, and idle deletes the probes it sends (unless --keep).

Targets: --target NAME=HOST:IMAPPORT:USER:PASSWORD[:SMTPPORT[:PID]], repeatable.
  HOST   127.0.0.0/8, ::1 (write [::1]) or localhost; anything else is refused.
  USER   one address, or a comma list of addresses and templates such as
         user{1..100}@bench.test. The list is the user pool: mixed-workload client i and
         memory connection i log in as pool[i % len(pool)] (Dovecot allows only
         mail_max_userip_connections, default 10, per user and IP). Entries
         bulk=ADDRESS (the fetch/search folder's owner) and idle=ADDRESS (the IDLE user)
         pick those roles; both default to the first pool address.
  SMTPPORT  where to send the IDLE probes (plain SMTP, no AUTH); without it idle is skipped.
  PID    the server process (Dovecot: its master, /run/dovecot-bench/master.pid); without
         it the program looks for the process listening on IMAPPORT (needs root) or takes
         --server-pid. Also used for server CPU seconds per measurement.

Examples:
  python3 bench/imap_fetch.py --messages 500 --idle-connections 100 \\
      --target rmail=127.0.0.1:3143:bench@example.com:pass:3525:$(cat rmail.pid)
  python3 bench/imap_fetch.py \\
      --target 'rmail=127.0.0.1:3143:bulk=bulk@example.com,idle=latency@example.com,user{1..100}@example.com:pass:3525:RMAILPID' \\
      --target 'dovecot=127.0.0.1:11143:bulk=bulk@bench.test,idle=latency@bench.test,user{1..100}@bench.test:pass:12525:'$(cat /run/dovecot-bench/master.pid)
  python3 bench/imap_fetch.py --only mixed --clients 50 --duration 30 --target ...

Every user must exist with the same PASSWORD (for a throwaway rmail: `run.py user add
user1@example.com --password pass`, and so on). Results go to stdout; progress to stderr. Every wait has a timeout (--timeout for one
command, --long-timeout for FETCH 1:* and SEARCH over the big folder), so the program
always ends by itself. Exit status 1 if any measurement failed or saw errors.
Standard library only (Python 3.11); one asyncio client, to leave the CPU to the server.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import math
import os
import quopri
import random
import re
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field

from common import check_loopback, listener_pid, proc_stat, pss_kb, short, split_target, status_kb

MEASUREMENTS = ("fetch", "search", "mixed", "idle", "memory")
SUBJECT_TOKEN, SUBJECT_EVERY = "Zebrafinch", 97  # in the Subject of messages i % 97 == 0
BODY_TOKEN, BODY_EVERY = "kumquatorchard", 89  # in the text body of messages i % 89 == 0
READ_LIMIT = 64 * 1024 * 1024  # longest line a response may have
SEED = 20240601
MAX_ERRORS_SHOWN = 5


def log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


# ======================================================================== targets
@dataclass
class Target:
    name: str
    host: str
    port: int
    pool: list[str]
    password: str
    bulk_user: str
    idle_user: str
    smtp_port: int | None = None
    pid: int | None = None


def expand_users(text: str) -> tuple[list[str], dict[str, str]]:
    """'bulk=a@x,user{1..3}@y' -> (['user1@y', 'user2@y', 'user3@y'], {'bulk': 'a@x'})."""
    pool, roles = [], {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        role, eq, value = entry.partition("=")
        if eq:
            if role not in ("bulk", "idle") or "@" not in value:
                raise ValueError(f"bad user entry {entry!r} (roles: bulk=ADDRESS, idle=ADDRESS)")
            roles[role] = value
            continue
        m = re.search(r"\{(\d+)\.\.(\d+)\}", entry)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo or hi - lo > 100000:
                raise ValueError(f"bad range in {entry!r}")
            pool += [entry[:m.start()] + str(i) + entry[m.end():] for i in range(lo, hi + 1)]
        else:
            pool.append(entry)
    for u in pool:
        if "@" not in u:
            raise ValueError(f"user {u!r} is not an address")
    return pool, roles


def parse_target(spec: str) -> Target:
    usage = f"bad --target {spec!r}; expected NAME=HOST:IMAPPORT:USER:PASSWORD[:SMTPPORT[:PID]]"
    parts = split_target(spec)
    if parts is None:
        raise argparse.ArgumentTypeError(usage)
    name, host, fields = parts
    if len(fields) < 3 or len(fields) > 5 or not fields[0].isdigit():
        raise argparse.ArgumentTypeError(usage)
    port, users, password = int(fields[0]), fields[1], fields[2]
    smtp = fields[3] if len(fields) > 3 else ""
    pid = fields[4] if len(fields) > 4 else ""
    if (smtp and not smtp.isdigit()) or (pid and not pid.isdigit()):
        raise argparse.ArgumentTypeError(usage + " (SMTPPORT and PID are numbers)")
    try:
        host = check_loopback(host)
        pool, roles = expand_users(users)
    except (ValueError, OSError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if not pool:
        pool = [roles.get("bulk") or roles.get("idle") or ""]
        if not pool[0]:
            raise argparse.ArgumentTypeError(usage + " (no user)")
    return Target(name, host, port, pool, password, roles.get("bulk", pool[0]),
                  roles.get("idle", pool[0]), int(smtp) if smtp else None,
                  int(pid) if pid else None)


# ======================================================================= messages
WORDS = """the of and to in is that for it as was with be by on not he this are or his
from at which but have an they you were her she there been one all we their has would
when if so no what up out who them some could him into its then two more these time
very first new because may other about only over after should also any most such our
well back where much before through those people just each right many under state
world report project budget meeting schedule review draft release version server
client network storage message folder account invoice payment order shipment customer
support ticket update change request approval contract agreement deadline quarter
market product feature design test build deploy monitor backup restore archive
migration database index cache latency throughput capacity planning roadmap team
office travel conference agenda minutes summary question answer issue problem solution
proposal estimate figure chart table attachment document spreadsheet presentation
please thanks regards hello morning afternoon evening tomorrow yesterday today week
month year monday friday weekend holiday lunch dinner coffee call phone email""".split()
UWORDS = "café naïve résumé Zürich Kraków smörgåsbord façade crème über Ärger Øresund".split()
FIRST = "Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory Niaj Olivia Peggy " \
        "Rupert Sybil Trent Victor Walter Yolanda Zoë Jürgen Émilie".split()
LAST = "Smith Jones Taylor Brown Williams Wilson Johnson Davies Robinson Wright Müller " \
       "Dubois Rossi Nowak Kowalski Andersson Tanaka Garcia".split()
DOMAINS = "example.org example.net mail.example.com corp.example lists.example.org".split()
ATTACH = [("application/pdf", "report-{}.pdf"), ("image/png", "chart-{}.png"),
          ("image/jpeg", "photo-{}.jpg"), ("application/zip", "logs-{}.zip"),
          ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "budget-{}.xlsx")]
MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
DAYS = "Mon Tue Wed Thu Fri Sat Sun".split()


def encode_word(text: str) -> str:
    try:
        text.encode("ascii")
        return text
    except UnicodeEncodeError:
        return "=?UTF-8?B?" + base64.b64encode(text.encode()).decode() + "?="


def person(rng: random.Random) -> str:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    local = f"{first}.{last}".lower().encode("ascii", "ignore").decode() or "someone"
    return f'"{encode_word(first + " " + last)}" <{local}@{rng.choice(DOMAINS)}>'


def wrap(words: list[str], width: int = 72) -> str:
    lines, cur = [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}" if cur else w
    if cur:
        lines.append(cur)
    return "\r\n".join(lines) + "\r\n"


_LINES: list[str] = []


def _corpus_lines() -> list[str]:
    """A fixed pool of wrapped lines of words (built once), to cut paragraphs from."""
    if not _LINES:
        rng = random.Random(SEED)
        for _ in range(400):
            words = [rng.choice(WORDS) for _ in range(rng.randint(20, 90))]
            words[0] = words[0].capitalize()
            _LINES.extend(wrap(words).split("\r\n")[:-1])
    return _LINES


def text_of(rng: random.Random, size: int, unicode: bool = False, token: str | None = None) -> str:
    """Paragraphs of about `size` characters (lines of at most 72)."""
    lines = _corpus_lines()
    paras, total = [], 0
    while total < size:
        k = rng.randrange(len(lines) - 12)
        para = lines[k:k + rng.randint(2, 10)]
        if unicode:
            para = [ln.replace(" the ", f" {rng.choice(UWORDS)} ", 1) for ln in para]
        text = "\r\n".join(para) + "\r\n"
        paras.append(text)
        total += len(text) + 2
    if token:
        paras.insert(min(1, len(paras)), wrap(["Note:", "the", "code", "word", "is", token + "."]))
    return "\r\n".join(paras)


def b64_body(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def rfc822_date(i: int) -> tuple[str, str]:
    """(Date header value, APPEND date-time) for message i: spread over two years."""
    t = time.gmtime(1704067200 + i * 6151 % (730 * 86400))
    hdr = f"{DAYS[t.tm_wday]}, {t.tm_mday:02d} {MONTHS[t.tm_mon - 1]} {t.tm_year} " \
          f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    idate = f"{t.tm_mday:02d}-{MONTHS[t.tm_mon - 1]}-{t.tm_year} " \
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    return hdr, idate


def make_message(i: int, rcpt: str) -> tuple[bytes, list[str], str]:
    """Message number i of the bulk folder: (bytes, flags, APPEND date). Deterministic."""
    rng = random.Random(SEED * 1000003 + i)
    target = int(1024 * 20 ** rng.random())  # 1 KB .. 20 KB, log-uniform
    kind = rng.choices(("plain", "qp", "alt", "attach", "mixed", "reply"),
                       (25, 10, 25, 20, 10, 10))[0]
    words = [rng.choice(WORDS) for _ in range(rng.randint(3, 8))]
    if rng.random() < 0.15:
        words.insert(1, rng.choice(UWORDS))
    if i % SUBJECT_EVERY == 0:
        words.insert(rng.randint(0, len(words)), SUBJECT_TOKEN)
    subject = " ".join(words)
    subject = subject[0].upper() + subject[1:]
    if kind == "reply":
        subject = "Re: " + subject
    date, idate = rfc822_date(i)
    hdrs = [f"Return-Path: <bounce-{i}@{rng.choice(DOMAINS)}>",
            f"Received: from mx{rng.randint(1, 9)}.{rng.choice(DOMAINS)} (mx.example [192.0.2.{i % 250 + 1}])"
            f"\r\n\tby mail.example.com with ESMTPS id {rng.getrandbits(48):012x}\r\n\tfor <{rcpt}>; {date}",
            f"From: {person(rng)}",
            f"To: {', '.join(person(rng) for _ in range(rng.choice((1, 1, 1, 2, 3))))}"]
    if rng.random() < 0.3:
        hdrs.append("Cc: " + ",\r\n\t".join(person(rng) for _ in range(rng.randint(1, 4))))
    hdrs += [f"Subject: {encode_word(subject)}", f"Date: {date}",
             f"Message-ID: <{rng.getrandbits(64):016x}.{i}@{rng.choice(DOMAINS)}>"]
    if kind == "reply":
        ref = f"<{rng.getrandbits(64):016x}@{rng.choice(DOMAINS)}>"
        hdrs += [f"In-Reply-To: {ref}", f"References: <{rng.getrandbits(60):015x}@example.org>\r\n\t{ref}"]
    hdrs += ["MIME-Version: 1.0", f"X-Mailer: imap_fetch bench {kind}"]
    token = BODY_TOKEN if i % BODY_EVERY == 0 else None
    boundary = f"=_bench_{i}_{rng.getrandbits(32):08x}"
    flags = []
    if rng.random() < 0.7:
        flags.append("\\Seen")
    if rng.random() < 0.05:
        flags.append("\\Flagged")
    if kind == "reply" and rng.random() < 0.5:
        flags.append("\\Answered")

    # the budget ignores the recipient's length, so every target gets the same bodies
    budget = max(100, target - len("\r\n".join(hdrs)) + len(rcpt) - 150)
    if kind in ("plain", "reply"):
        body = text_of(rng, budget * 2 // 3 if kind == "reply" else budget, token=token)
        if kind == "reply":
            quoted = text_of(rng, budget // 3).replace("\r\n", "\r\n> ")
            body += "\r\nOn " + date + ", someone wrote:\r\n> " + quoted + "\r\n"
        hdrs += ["Content-Type: text/plain; charset=us-ascii; format=flowed",
                 "Content-Transfer-Encoding: 7bit"]
        return "\r\n".join(hdrs).encode() + b"\r\n\r\n" + body.encode(), flags, idate
    if kind == "qp":
        body = quopri.encodestring(text_of(rng, budget * 95 // 100, True, token).encode()).replace(b"\n", b"\r\n")
        body = body.replace(b"\r\r\n", b"\r\n")
        hdrs += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable"]
        return "\r\n".join(hdrs).encode() + b"\r\n\r\n" + body, flags, idate

    def alternative(size: int, bnd: str) -> bytes:
        text = text_of(rng, size // 2, token=token)
        html = "<html><body>" + "".join(f"<p>{p}</p>" for p in text.split("\r\n\r\n")) + "</body></html>"
        html_qp = quopri.encodestring(html.encode()).replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")
        return (f"--{bnd}\r\nContent-Type: text/plain; charset=us-ascii\r\n"
                f"Content-Transfer-Encoding: 7bit\r\n\r\n{text}\r\n"
                f"--{bnd}\r\nContent-Type: text/html; charset=utf-8\r\n"
                f"Content-Transfer-Encoding: quoted-printable\r\n\r\n").encode() + html_qp + \
            f"\r\n--{bnd}--\r\n".encode()

    if kind == "alt":
        hdrs.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
        body = b"This is a multi-part message in MIME format.\r\n\r\n" + alternative(max(100, budget - 300), boundary)
        return "\r\n".join(hdrs).encode() + b"\r\n\r\n" + body, flags, idate
    # attach / mixed: multipart/mixed with one or more base64 attachments
    hdrs.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
    text_size = rng.randint(200, min(1500, budget // 4 + 200))
    inner = boundary + "_alt"
    parts = [f"--{boundary}\r\nContent-Type: multipart/alternative; boundary=\"{inner}\"\r\n\r\n".encode()
             + alternative(text_size, inner)]
    count = 1 if kind == "attach" else rng.randint(2, 3)
    room = max(300, (budget - text_size * 21 // 10 - 300 - 250 * count) * 3 // 4)
    for k in range(count):
        ctype, fname = rng.choice(ATTACH)
        fname = fname.format(i * 10 + k)
        data = rng.randbytes(max(100, room // count))
        parts.append(f"--{boundary}\r\nContent-Type: {ctype}; name=\"{fname}\"\r\n"
                     f"Content-Disposition: attachment; filename=\"{fname}\"\r\n"
                     f"Content-Transfer-Encoding: base64\r\n\r\n".encode() + b64_body(data))
    body = b"\r\n".join(parts) + f"\r\n--{boundary}--\r\n".encode()
    return "\r\n".join(hdrs).encode() + b"\r\n\r\n" + body, flags, idate


def small_message(rcpt: str, subject: str, extra: str = "", size: int = 1500) -> bytes:
    head = (f"From: Bench Sender <bench@bench.invalid>\r\nTo: <{rcpt}>\r\nSubject: {subject}\r\n"
            f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
            f"Message-ID: <{os.urandom(8).hex()}@bench.invalid>\r\n{extra}"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
    rng = random.Random(subject)
    return head.encode() + text_of(rng, max(50, size - len(head))).encode()


def expected_hits(n: int, every: int) -> int:
    return len(range(0, n, every))


# ==================================================================== IMAP client
class ImapError(Exception):
    """A command failed: NO/BAD, timeout, or the connection broke."""


def quote(s: str) -> bytes:
    return b'"' + s.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


class Imap:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float):
        self.r, self.w, self.timeout = reader, writer, timeout
        self.n = 0
        self.caps: set[bytes] = set()
        self.completed: dict[bytes, tuple[bytes, bytes]] = {}
        self.bytes_in = 0

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float) -> Imap:
        try:
            async with asyncio.timeout(timeout):
                r, w = await asyncio.open_connection(host, port, limit=READ_LIMIT)
        except TimeoutError:
            raise ImapError(f"connect: timeout after {timeout:g}s") from None
        except OSError as e:
            raise ImapError(f"connect: {e.strerror or e}") from None
        c = cls(r, w, timeout)
        try:
            async with asyncio.timeout(timeout):
                greeting = await c.read_response()
        except TimeoutError:
            c.abort()
            raise ImapError(f"no greeting within {timeout:g}s") from None
        except ImapError:
            c.abort()
            raise
        if not greeting.startswith(b"* OK"):
            c.abort()
            raise ImapError(f"greeting: {short(greeting)}")
        c.note_caps(greeting)
        return c

    def note_caps(self, line: bytes) -> None:
        m = re.search(rb"\[CAPABILITY ([^\]]*)\]", line, re.I)
        words = m.group(1) if m else (line[13:] if line[:13].upper() == b"* CAPABILITY " else None)
        if words is not None:
            self.caps = {w.upper() for w in words.split()}

    async def read_response(self) -> bytes:
        """One response: a line plus any literals it announces (ends with CRLF)."""
        try:
            line = await self.r.readline()
            if not line.endswith(b"\n"):
                raise ImapError("connection closed by server" if not line else "connection closed mid-line")
            if not line.endswith(b"}\r\n"):
                self.bytes_in += len(line)
                return line
            parts = [line]
            while line.endswith(b"}\r\n"):
                i = line.rfind(b"{")
                try:
                    size = int(line[i + 1:-3].rstrip(b"+"))
                except ValueError:
                    break
                parts.append(await self.r.readexactly(size))
                line = await self.r.readline()
                if not line.endswith(b"\n"):
                    raise ImapError("connection closed inside a response")
                parts.append(line)
            data = b"".join(parts)
            self.bytes_in += len(data)
            return data
        except asyncio.IncompleteReadError:
            raise ImapError("connection closed inside a literal") from None
        except (ValueError, asyncio.LimitOverrunError):
            raise ImapError("response line too long") from None
        except OSError as e:
            raise ImapError(f"read: {e.strerror or e}") from None

    def tag(self) -> bytes:
        self.n += 1
        return b"A%d" % self.n

    def send(self, line: bytes, literal: bytes | None = None) -> bytes:
        """Queue a command (a literal, if any, goes as LITERAL+); returns its tag."""
        tag = self.tag()
        if literal is None:
            self.w.write(tag + b" " + line + b"\r\n")
        else:
            self.w.write(tag + b" " + line + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
        return tag

    async def wait(self, tag: bytes, timeout: float | None = None, on_untagged=None,
                   what: str = "") -> tuple[bytes, bytes, list[bytes]]:
        """Read until `tag` completes: (status, text, untagged responses)."""
        untagged: list[bytes] = []
        if tag in self.completed:
            return (*self.completed.pop(tag), untagged)
        timeout = timeout or self.timeout
        try:
            async with asyncio.timeout(timeout):
                await self.w.drain()
                while True:
                    resp = await self.read_response()
                    if resp[:2] == b"* ":
                        if on_untagged is None:
                            untagged.append(resp)
                        else:
                            on_untagged(resp)
                        continue
                    if resp[:1] == b"+":
                        continue  # continuation we did not ask for (LITERAL+ is in use)
                    t, _, rest = resp.rstrip(b"\r\n").partition(b" ")
                    status, _, text = rest.partition(b" ")
                    if t == tag:
                        return status.upper(), text, untagged
                    self.completed[t] = (status.upper(), text)
        except TimeoutError:
            raise ImapError(f"{what or 'command'}: no reply within {timeout:g}s") from None
        except OSError as e:
            raise ImapError(f"{what or 'command'}: {e.strerror or e}") from None

    async def cmd(self, line: bytes, literal: bytes | None = None, timeout: float | None = None,
                  on_untagged=None, what: str | None = None) -> tuple[bytes, list[bytes]]:
        """Run one command; raise ImapError unless it ends OK. Returns (text, untagged)."""
        what = what or line.split(b" ", 1)[0].decode()
        if literal is not None and b"LITERAL+" not in self.caps:
            return await self._cmd_sync_literal(line, literal, timeout, what)
        tag = self.send(line, literal)
        status, text, untagged = await self.wait(tag, timeout, on_untagged, what)
        if status != b"OK":
            raise ImapError(f"{what}: {status.decode()} {short(text)}")
        return text, untagged

    async def _cmd_sync_literal(self, line, literal, timeout, what):
        tag = self.tag()
        timeout = timeout or self.timeout
        self.w.write(tag + b" " + line + b" {%d}\r\n" % len(literal))
        untagged = []
        try:
            async with asyncio.timeout(timeout):
                await self.w.drain()
                while True:
                    resp = await self.read_response()
                    if resp[:1] == b"+":
                        break
                    if resp[:2] == b"* ":
                        untagged.append(resp)
                        continue
                    raise ImapError(f"{what}: {short(resp)}")
                self.w.write(literal + b"\r\n")
        except TimeoutError:
            raise ImapError(f"{what}: no continuation within {timeout:g}s") from None
        status, text, more = await self.wait(tag, timeout, None, what)
        if status != b"OK":
            raise ImapError(f"{what}: {status.decode()} {short(text)}")
        return text, untagged + more

    async def login(self, user: str, password: str) -> None:
        text, untagged = await self.cmd(b"LOGIN " + quote(user) + b" " + quote(password), what="LOGIN")
        before = self.caps
        self.caps = set()
        self.note_caps(text)
        for u in untagged:
            self.note_caps(u)
        if not self.caps:
            _, untagged = await self.cmd(b"CAPABILITY")
            for u in untagged:
                self.note_caps(u)
        self.caps = self.caps or before

    async def select(self, folder: str, timeout: float | None = None) -> dict:
        _, untagged = await self.cmd(b"SELECT " + quote(folder), timeout=timeout, what="SELECT")
        info = {}
        for u in untagged:
            m = re.match(rb"\* (\d+) EXISTS", u)
            if m:
                info["exists"] = int(m.group(1))
            m = re.search(rb"\[(UIDNEXT|UIDVALIDITY) (\d+)\]", u)
            if m:
                info[m.group(1).decode().lower()] = int(m.group(2))
        return info

    async def uid_search(self, query: bytes, timeout: float | None = None) -> list[int]:
        _, untagged = await self.cmd(b"UID SEARCH " + query, timeout=timeout, what="UID SEARCH")
        out = []
        for u in untagged:
            if u[:9].upper() == b"* SEARCH ":
                out += [int(x) for x in u[9:].split() if x.isdigit()]
        return out

    async def status_messages(self, folder: str) -> int | None:
        """MESSAGES of a folder, or None if it does not exist."""
        tag = self.send(b"STATUS " + quote(folder) + b" (MESSAGES)")
        status, text, untagged = await self.wait(tag, what="STATUS")
        if status != b"OK":
            return None
        for u in untagged:
            m = re.search(rb"MESSAGES (\d+)", u)
            if m:
                return int(m.group(1))
        return None

    def abort(self) -> None:
        self.w.transport.abort()

    async def close(self, logout: bool = True) -> None:
        try:
            if logout:
                tag = self.send(b"LOGOUT")
                await self.wait(tag, timeout=min(5.0, self.timeout), what="LOGOUT")
        except ImapError:
            pass
        self.w.close()
        try:
            async with asyncio.timeout(min(5.0, self.timeout)):
                await self.w.wait_closed()
        except (OSError, TimeoutError):
            self.abort()


async def open_session(t: Target, user: str, args, folder: str | None = None) -> Imap:
    c = await Imap.connect(t.host, t.port, args.timeout)
    try:
        await c.login(user, t.password)
        if folder is not None:
            await c.select(folder)
    except BaseException:
        c.abort()
        raise
    return c


def uid_set(uids: list[int]) -> bytes:
    out, prev = [], None
    for u in sorted(uids):
        if out and prev + 1 == u:
            out[-1][1] = u
        else:
            out.append([u, u])
        prev = u
    return b",".join(b"%d" % a if a == b else b"%d:%d" % (a, b) for a, b in out)


# ===================================================================== SMTP client
class Smtp:
    def __init__(self, reader, writer, timeout):
        self.r, self.w, self.timeout = reader, writer, timeout

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float) -> Smtp:
        try:
            async with asyncio.timeout(timeout):
                s = cls(*await asyncio.open_connection(host, port), timeout)
        except TimeoutError:
            raise ImapError(f"SMTP connect: timeout after {timeout:g}s") from None
        except OSError as e:
            raise ImapError(f"SMTP connect: {e.strerror or e}") from None
        await s.cmd(None, "220", "SMTP banner")
        await s.cmd(b"EHLO localhost\r\n", "250", "EHLO")
        return s

    async def cmd(self, data: bytes | None, expect: str, what: str) -> str:
        try:
            async with asyncio.timeout(self.timeout):
                if data:
                    self.w.write(data)
                    await self.w.drain()
                while True:
                    raw = await self.r.readline()
                    if not raw:
                        raise ImapError(f"{what}: SMTP connection closed")
                    line = raw.decode("latin-1").rstrip("\r\n")
                    if len(line) < 4 or line[3] != "-":
                        break
        except TimeoutError:
            raise ImapError(f"{what}: no SMTP reply within {self.timeout:g}s") from None
        except OSError as e:
            raise ImapError(f"{what}: {e.strerror or e}") from None
        if not line.startswith(expect):
            raise ImapError(f"{what}: {line[:160]}")
        return line

    async def send(self, rcpt: str, message: bytes) -> tuple[float, float]:
        """One transaction; returns (time the final dot was sent, time of its 250)."""
        await self.cmd(b"MAIL FROM:<bench@bench.invalid>\r\n", "250", "MAIL")
        await self.cmd(f"RCPT TO:<{rcpt}>\r\n".encode(), "25", "RCPT")
        await self.cmd(b"DATA\r\n", "354", "DATA")
        data = message.replace(b"\r\n.", b"\r\n..")
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        self.w.write(data)
        t_data = time.perf_counter()
        self.w.write(b".\r\n")
        await self.cmd(None, "250", "end of DATA")
        return t_data, time.perf_counter()

    async def close(self) -> None:
        try:
            await self.cmd(b"QUIT\r\n", "221", "QUIT")
        except ImapError:
            pass
        self.w.close()
        try:
            async with asyncio.timeout(5):
                await self.w.wait_closed()
        except (OSError, TimeoutError):
            pass


# ======================================================================= /proc
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_tree(root: int) -> list[int]:
    """root and all its descendants that are alive now."""
    children = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st:
                children[int(st[1])].append(int(entry))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


@dataclass
class MemSample:
    rss_kb: int
    pss_kb: int | None
    procs: int
    by_comm: dict[str, tuple[int, int]]  # comm -> (processes, rss KB)


def mem_sample(root: int) -> MemSample:
    rss, pss, by_comm = 0, 0, collections.defaultdict(lambda: [0, 0])
    pids = proc_tree(root)
    for p in pids:
        kb = status_kb(p, "VmRSS:")
        rss += kb
        v = pss_kb(p)
        pss = None if (pss is None or v is None) else pss + v
        c = by_comm[_comm(p)]
        c[0] += 1
        c[1] += kb
    return MemSample(rss, pss, len(pids), {k: tuple(v) for k, v in by_comm.items()})


def cpu_seconds(root: int | None) -> float | None:
    """CPU time of the server: the tree's utime+stime, plus the children the root reaped."""
    if root is None:
        return None
    total = 0
    for p in proc_tree(root):
        st = proc_stat(p)
        if st:
            total += int(st[11]) + int(st[12])  # utime, stime (fields 14, 15)
            if p == root:
                total += int(st[13]) + int(st[14])  # cutime, cstime
    return total / CLK_TCK


# ===================================================================== results
@dataclass
class Row:
    measure: str
    target: str
    value: float | None  # the headline figure
    unit: str
    higher_better: bool
    detail: str = ""
    errors: dict[str, int] = field(default_factory=dict)
    failed: str | None = None  # the measurement could not run

    def headline(self) -> str:
        if self.failed:
            return f"FAILED: {self.failed}"
        if self.value is None:
            return "n/a"
        v = self.value
        fmt = f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"
        return f"{fmt} {self.unit}"


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1e3:.1f}"


class Reporter:
    def __init__(self, targets: list[Target]):
        self.width = max(len(t.name) for t in targets)
        self.first = targets[0].name
        self.rows: dict[str, list[Row]] = {}
        self.bad = False

    def add(self, row: Row) -> None:
        rows = self.rows.setdefault(row.measure, [])
        rows.append(row)
        ratio = ""
        base = rows[0]
        if row is not base and base.target == self.first and row.value is not None \
                and base.value not in (None, 0) and not row.failed and not base.failed:
            better = "higher" if row.higher_better else "lower"
            ratio = f"  ratio={row.value / base.value:.3f}x of {self.first} ({better} is better)"
        errs = ""
        if row.errors:
            self.bad = True
            errs = f"  errors={sum(row.errors.values())}"
        if row.failed:
            self.bad = True
        print(f"{row.measure:<14} {row.target:<{self.width}}  {row.headline()}"
              f"{'  ' + row.detail if row.detail and not row.failed else ''}{errs}{ratio}", flush=True)
        for text, n in list(row.errors.items())[:MAX_ERRORS_SHOWN]:
            print(f"    [{row.target} {row.measure}] {n}x {text}", flush=True)
        if len(row.errors) > MAX_ERRORS_SHOWN:
            print(f"    [{row.target} {row.measure}] ... and {len(row.errors) - MAX_ERRORS_SHOWN} "
                  "more distinct errors", flush=True)

    def summary(self) -> None:
        names = []
        for rows in self.rows.values():
            for r in rows:
                if r.target not in names:
                    names.append(r.target)
        if len(names) < 2:
            return
        print("\nsummary (ratio = target / " + self.first + ")")
        head = f"{'measurement':<14} {'unit':<8}" + "".join(f" {n:>12}" for n in names)
        print(head + "".join(f" {n + '/' + self.first:>16}" for n in names[1:]))
        for measure, rows in self.rows.items():
            by = {r.target: r for r in rows}
            unit = next((r.unit for r in rows if r.unit), "")
            line = f"{measure:<14} {unit:<8}"
            for n in names:
                r = by.get(n)
                line += f" {'-' if r is None or r.value is None or r.failed else f'{r.value:.4g}':>12}"
            base = by.get(self.first)
            for n in names[1:]:
                r = by.get(n)
                if r and base and r.value is not None and base.value and not r.failed and not base.failed:
                    line += f" {r.value / base.value:>16.3f}"
                else:
                    line += f" {'-':>16}"
            print(line)


# ================================================================== population
async def fill_folder(t: Target, user: str, folder: str, n: int, args, label: str,
                      conns: int) -> int:
    """Make `folder` hold at least n messages (APPENDing generated ones); returns its count."""
    c = await open_session(t, user, args)
    try:
        count = await c.status_messages(folder)
        if count is None:
            await c.cmd(b"CREATE " + quote(folder), what="CREATE")
            count = 0
    finally:
        await c.close()
    if count >= n:
        if args.verbose:
            log(f"[{t.name}] {label}: {user} {folder} has {count} messages (>= {n}), not filling")
        return count
    todo = list(range(count, n))
    log(f"[{t.name}] {label}: {user} {folder} has {count} messages, appending {len(todo)}")
    t0 = time.perf_counter()
    done = [0]
    errors: dict[str, int] = {}
    next_report = [time.perf_counter() + 10]

    async def worker(indices: list[int]) -> None:
        c = await open_session(t, user, args)
        try:
            window = args.append_window if b"LITERAL+" in c.caps else 1
            pending: collections.deque[bytes] = collections.deque()
            for i in indices:
                msg, flags, idate = make_message(i, user)
                line = b"APPEND " + quote(folder) + b" (" + " ".join(flags).encode() + b") " \
                    + quote(idate)
                if window == 1:
                    try:
                        await c.cmd(line, msg, what="APPEND")
                        done[0] += 1
                    except ImapError as e:
                        errors[str(e)] = errors.get(str(e), 0) + 1
                else:
                    pending.append(c.send(line, msg))
                    while len(pending) >= window:
                        await reap(c, pending)
                if sum(errors.values()) > 20:
                    raise ImapError(f"too many APPEND failures: {next(iter(errors))}")
                if time.perf_counter() > next_report[0]:
                    next_report[0] = time.perf_counter() + 10
                    el = time.perf_counter() - t0
                    log(f"[{t.name}] {label}: {done[0]}/{len(todo)} appended, {done[0] / el:.0f} msg/s")
            while pending:
                await reap(c, pending)
        finally:
            await c.close()

    async def reap(c: Imap, pending) -> None:
        tag = pending.popleft()
        status, text, _ = await c.wait(tag, what="APPEND")
        if status == b"OK":
            done[0] += 1
        else:
            msg = f"APPEND: {status.decode()} {short(text)}"
            errors[msg] = errors.get(msg, 0) + 1

    k = max(1, min(conns, len(todo) // 50 or 1))
    await asyncio.gather(*(worker(todo[j::k]) for j in range(k)))
    el = time.perf_counter() - t0
    log(f"[{t.name}] {label}: appended {done[0]} in {el:.1f}s ({done[0] / el:.0f} msg/s, "
        f"{k} connection(s){', pipelined' if args.append_window > 1 else ''})"
        + (f"; errors: {errors}" if errors else ""))
    return count + done[0]


# ================================================================= measurements
async def measure_fetch(t: Target, args, folder: str) -> Row:
    runs = []
    cpu0, ccpu0 = cpu_seconds(t.pid), time.process_time()
    count = size = 0
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        c = await Imap.connect(t.host, t.port, args.timeout)
        try:
            await c.login(t.bulk_user, t.password)
            t1 = time.perf_counter()
            info = await c.select(folder, timeout=args.long_timeout)
            t2 = time.perf_counter()
            counter = [0]

            def on_untagged(resp: bytes) -> None:
                if b" FETCH " in resp[:24]:
                    counter[0] += 1
            b0 = c.bytes_in
            await c.cmd(b"FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)", timeout=args.long_timeout,
                        on_untagged=on_untagged, what="FETCH 1:*")
            t3 = time.perf_counter()
            size = c.bytes_in - b0
        finally:
            await c.close()
        count = counter[0]
        if count != info.get("exists"):
            raise ImapError(f"FETCH 1:* returned {count} responses, SELECT said {info.get('exists')} EXISTS")
        runs.append((count / (t3 - t0), t1 - t0, t2 - t1, t3 - t2))
    med = sorted(runs)[len(runs) // 2]
    cpu1 = cpu_seconds(t.pid)
    return Row("fetch", t.name, med[0], "msg/s", True,
               f"messages={count} login={ms(med[1])}ms select={ms(med[2])}ms fetch={ms(med[3])}ms "
               f"response={size / 1024:.0f}KB runs=[{', '.join(f'{r[0]:.0f}' for r in runs)}] msg/s"
               + cpu_note(cpu0, cpu1, ccpu0, len(runs) * count, "msg"))


def cpu_note(cpu0, cpu1, ccpu0, ops, what) -> str:
    client = time.process_time() - ccpu0
    out = f" client_cpu={client:.2f}s"
    if cpu0 is not None and cpu1 is not None:
        srv = cpu1 - cpu0
        out = f" server_cpu={srv:.2f}s" + (f" ({srv / ops * 1e6:.0f}us/{what})" if ops else "") + out
    return out


async def measure_search(t: Target, args, folder: str, n: int) -> list[Row]:
    c = await open_session(t, t.bulk_user, args)
    rows = []
    try:
        await c.select(folder, timeout=args.long_timeout)
        for key, token, every in (("SUBJECT", SUBJECT_TOKEN, SUBJECT_EVERY),
                                  ("BODY", BODY_TOKEN, BODY_EVERY)):
            times, hits = [], None
            cpu0, ccpu0 = cpu_seconds(t.pid), time.process_time()
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                found = await c.uid_search(key.encode() + b" " + quote(token), timeout=args.long_timeout)
                times.append(time.perf_counter() - t0)
                hits = len(found)
            cpu1 = cpu_seconds(t.pid)
            exp = expected_hits(n, every)
            med = statistics.median(times)
            errors = {}
            if hits != exp:
                errors[f"UID SEARCH {key} {token}: {hits} hits, expected {exp} (folder holds "
                       "messages not made by this program, or the server disagrees)"] = 1
            rows.append(Row(f"search-{key.lower()}", t.name, med * 1e3, "ms", False,
                            f"hits={hits} first={ms(times[0])}ms runs=[{', '.join(ms(x) for x in times)}]ms"
                            + cpu_note(cpu0, cpu1, ccpu0, 0, ""), errors))
    finally:
        await c.close()
    return rows


MIX_COMMANDS = ("SELECT", "FETCH-ENV", "FETCH-BODY", "STORE", "APPEND", "EXPUNGE")


async def measure_mixed(t: Target, args, clients: int) -> Row:
    users = [t.pool[i % len(t.pool)] for i in range(clients)]
    distinct = list(dict.fromkeys(users))
    sem = asyncio.Semaphore(4)

    async def fill(u):
        async with sem:
            return await fill_folder(t, u, args.mixed_folder, args.mixed_messages, args,
                                     "mixed folder", 1)
    await asyncio.gather(*(fill(u) for u in distinct))

    lat: dict[str, list[float]] = {k: [] for k in MIX_COMMANDS}
    errors: dict[str, int] = {}
    ops = [0]
    start_evt = asyncio.Event()
    ready = [0]
    state = {"deadline": 0.0, "last": 0.0}
    login_sem = asyncio.Semaphore(10)
    folder = args.mixed_folder
    fq = quote(folder)

    def note(e: Exception) -> None:
        text = re.sub(r"\d+", "N", str(e)) if "no reply" not in str(e) else str(e)
        errors[text] = errors.get(text, 0) + 1

    async def client(idx: int) -> None:
        user = users[idx]
        rng = random.Random(idx * 7919 + int(time.time()))
        c = None
        try:
            async with login_sem:
                c = await open_session(t, user, args)
                await c.select(folder)
                base = await c.uid_search(b"ALL")
        except ImapError as e:
            note(e)
            if c:
                c.abort()
            return
        finally:
            ready[0] += 1
        uidplus = b"UIDPLUS" in c.caps
        await start_evt.wait()

        async def timed(label: str, line: bytes, literal: bytes | None = None):
            t0 = time.perf_counter()
            text, untagged = await c.cmd(line, literal, what=label)
            t1 = time.perf_counter()
            if t1 <= state["deadline"]:  # commands that end after the deadline do not count
                lat[label].append(t1 - t0)
                ops[0] += 1
                state["last"] = max(state["last"], t1)
            return text, untagged

        def more() -> bool:
            return time.perf_counter() < state["deadline"] and (args.ops is None or ops[0] < args.ops)

        while more():
            try:
                await timed("SELECT", b"SELECT " + fq)
                if not more():
                    break
                if base:
                    k = rng.randrange(len(base))
                    chunk = base[k:k + args.fetch_count]
                    await timed("FETCH-ENV", b"UID FETCH %d:%d (UID ENVELOPE FLAGS)" % (chunk[0], chunk[-1]))
                    await timed("FETCH-BODY", b"UID FETCH %d BODY.PEEK[]" % rng.choice(chunk))
                    op = rng.choice((b"+FLAGS", b"-FLAGS"))
                    flag = rng.choice((b"(\\Seen)", b"($BenchTag)"))
                    await timed("STORE", b"UID STORE %d %s %s" % (rng.choice(chunk), op, flag))
                if not more():
                    break
                msg = small_message(user, f"mixed workload client {idx}", size=rng.randint(800, 3000))
                text, untagged = await timed("APPEND", b"APPEND " + fq + b" (\\Seen)", msg)
                m = re.search(rb"\[APPENDUID \d+ (\d+)\]", text)
                if not m:
                    raise ImapError("APPEND: no APPENDUID in " + short(text))
                new = int(m.group(1))
                await timed("STORE", b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % new)
                await timed("EXPUNGE", b"UID EXPUNGE %d" % new if uidplus else b"EXPUNGE")
            except ImapError as e:
                note(e)
                if "no reply" in str(e) or "closed" in str(e) or "read:" in str(e):
                    c.abort()
                    if not more():
                        return
                    try:
                        c = await open_session(t, user, args)
                    except ImapError as e2:
                        note(e2)
                        return
        await c.close()

    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    give_up = time.perf_counter() + args.timeout * (2 + clients / 5)
    while ready[0] < clients and time.perf_counter() < give_up:
        await asyncio.sleep(0.05)
    cpu0, ccpu0 = cpu_seconds(t.pid), time.process_time()
    t0 = time.perf_counter()
    state["deadline"] = t0 + args.duration
    start_evt.set()
    try:
        async with asyncio.timeout(args.duration + args.timeout * 3 + 10):
            await asyncio.gather(*tasks)
    except TimeoutError:
        for task in tasks:
            task.cancel()
        errors["clients did not finish in time (cancelled)"] = 1
    elapsed = (state["deadline"] if args.ops is None else state["last"]) - t0
    cpu1 = cpu_seconds(t.pid)
    total = sum(len(v) for v in lat.values())
    parts = " ".join(f"{k}={ms(pct(v, 50))}/{ms(pct(v, 99))}" for k, v in lat.items() if v)
    return Row(f"mixed-{clients}", t.name, total / elapsed if elapsed > 0 else None, "ops/s", True,
               f"clients={clients} users={len(distinct)} ops={total} in {elapsed:.1f}s "
               f"p50/p99ms: {parts}" + cpu_note(cpu0, cpu1, ccpu0, total, "op"), errors)


async def measure_idle(t: Target, args) -> Row:
    if t.smtp_port is None:
        return Row("idle", t.name, None, "ms", False, failed="no SMTPPORT in --target")
    run_id = f"{os.getpid()}.{os.urandom(4).hex()}"
    c = await open_session(t, t.idle_user, args)
    seen: list[tuple[float, int]] = []  # (arrival time, EXISTS count)
    changed = asyncio.Event()
    smtp = None
    errors: dict[str, int] = {}
    latencies, from_data, acks = [], [], []
    reader = None
    try:
        info = await c.select("INBOX")
        exists = info.get("exists", 0)
        idle_tag = c.send(b"IDLE")
        async with asyncio.timeout(args.timeout):
            await c.w.drain()
            while True:
                resp = await c.read_response()
                if resp[:1] == b"+":
                    break
                if resp[:2] != b"* ":
                    raise ImapError(f"IDLE: {short(resp)}")
        done = asyncio.get_running_loop().create_future()

        async def read_idle() -> None:
            try:
                while True:
                    resp = await c.read_response()
                    now = time.perf_counter()
                    m = re.match(rb"\* (\d+) EXISTS", resp)
                    if m:
                        seen.append((now, int(m.group(1))))
                        changed.set()
                    elif resp.startswith(idle_tag + b" "):
                        done.set_result(resp)
                        return
            except ImapError as e:
                if not done.done():
                    done.set_exception(e)
        reader = asyncio.create_task(read_idle())
        smtp = await Smtp.connect(t.host, t.smtp_port, args.timeout)
        await asyncio.sleep(0.2)
        for k in range(args.idle_rounds):
            want = exists + 1
            msg = small_message(t.idle_user, f"idle latency probe {k + 1}", f"X-Bench-Run: {run_id}\r\n")
            try:
                t_data, t_250 = await smtp.send(t.idle_user, msg)
            except ImapError as e:
                errors[str(e)] = errors.get(str(e), 0) + 1
                smtp.w.close()
                smtp = await Smtp.connect(t.host, t.smtp_port, args.timeout)
                continue
            acks.append(t_250 - t_data)
            deadline = t_250 + args.idle_timeout
            hit = None
            while hit is None:
                hit = next((at for at, n in seen if n >= want), None)
                if hit is not None or done.done():
                    break
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                changed.clear()
                try:
                    async with asyncio.timeout(left):
                        await changed.wait()
                except TimeoutError:
                    pass
            if done.done():
                done.result()  # raises the reader's error
                raise ImapError("IDLE ended early")
            if hit is None:
                errors[f"no EXISTS within {args.idle_timeout:g}s of the 250"] = \
                    errors.get(f"no EXISTS within {args.idle_timeout:g}s of the 250", 0) + 1
                exists = max([exists] + [n for _, n in seen])
                continue
            latencies.append(hit - t_250)
            from_data.append(hit - t_data)
            exists = max(n for _, n in seen)
            seen.clear()
            await asyncio.sleep(args.idle_gap)
        c.w.write(b"DONE\r\n")
        async with asyncio.timeout(args.timeout):
            resp = await done
        if b" OK" not in resp[:len(idle_tag) + 4]:
            errors[f"IDLE DONE: {short(resp)}"] = 1
        if not args.keep:
            probes = await c.uid_search(b"HEADER X-Bench-Run " + quote(run_id))
            if probes:
                s = uid_set(probes)
                await c.cmd(b"UID STORE " + s + b" +FLAGS.SILENT (\\Deleted)")
                await c.cmd(b"UID EXPUNGE " + s if b"UIDPLUS" in c.caps else b"EXPUNGE")
    finally:
        if reader is not None and not reader.done():
            reader.cancel()
        if smtp is not None:
            await smtp.close()
        await c.close()
    # EXISTS may arrive before the 250 (rmail announces a delivery once it is durable,
    # then answers): the wait a client sees after the 250 is then 0.
    early = sum(1 for x in latencies if x < 0)
    seen_after = [max(0.0, x) for x in latencies]
    return Row("idle", t.name, pct(seen_after, 50) * 1e3 if latencies else None, "ms p50", False,
               f"p99={ms(pct(seen_after, 99))}ms max={ms(max(seen_after) if latencies else None)}ms "
               f"rounds={len(latencies)}/{args.idle_rounds} "
               f"from_final_dot p50/p99={ms(pct(from_data, 50))}/{ms(pct(from_data, 99))}ms "
               f"smtp_250 p50={ms(pct(acks, 50))}ms"
               + (f" exists_before_250={early} (by up to {ms(-min(latencies))}ms)" if early else ""),
               errors)


async def measure_memory(t: Target, args) -> Row:
    if t.pid is None:
        return Row("memory", t.name, None, "KB/conn", False,
                   failed="no server PID (give it in --target or --server-pid; or run as root)")
    if not os.path.exists(f"/proc/{t.pid}"):
        return Row("memory", t.name, None, "KB/conn", False, failed=f"no process {t.pid}")
    n = args.idle_connections
    await asyncio.sleep(args.settle)
    before = mem_sample(t.pid)
    conns: list[Imap] = []
    errors: dict[str, int] = {}
    sem = asyncio.Semaphore(args.login_concurrency)
    cpu0 = cpu_seconds(t.pid)
    t0 = time.perf_counter()
    last = [t0]

    async def one(i: int) -> None:
        async with sem:
            try:
                c = await open_session(t, t.pool[i % len(t.pool)], args, "INBOX")
                if args.memory_idle:
                    c.send(b"IDLE")
                    async with asyncio.timeout(args.timeout):
                        await c.w.drain()
                        resp = await c.read_response()
                        while resp[:2] == b"* ":
                            resp = await c.read_response()
                    if resp[:1] != b"+":
                        raise ImapError(f"IDLE: {short(resp)}")
                conns.append(c)
            except (ImapError, TimeoutError) as e:
                text = re.sub(r"user\d+", "userN", str(e))
                errors[text] = errors.get(text, 0) + 1
            if time.perf_counter() - last[0] > 10:
                last[0] = time.perf_counter()
                log(f"[{t.name}] memory: {len(conns)}/{n} connections logged in")

    await asyncio.gather(*(one(i) for i in range(n)))
    opened = time.perf_counter() - t0
    cpu1 = cpu_seconds(t.pid)
    await asyncio.sleep(args.settle)
    during = mem_sample(t.pid)
    t1 = time.perf_counter()
    sem2 = asyncio.Semaphore(50)

    async def bye(c: Imap) -> None:
        async with sem2:
            if args.memory_idle:
                c.w.write(b"DONE\r\n")
            await c.close()
    await asyncio.gather(*(bye(c) for c in conns))
    closing = time.perf_counter() - t1
    await asyncio.sleep(args.settle)
    after = mem_sample(t.pid)
    ok = len(conns)
    delta = during.rss_kb - before.rss_kb
    per = delta / ok if ok else None
    pss = ""
    if during.pss_kb is not None and before.pss_kb is not None and ok:
        pss = f" pss_delta={(during.pss_kb - before.pss_kb) / 1024:.1f}MB " \
              f"({(during.pss_kb - before.pss_kb) / ok:.0f}KB/conn)"
    grew = {k: (v[0] - before.by_comm.get(k, (0, 0))[0], v[1] - before.by_comm.get(k, (0, 0))[1])
            for k, v in during.by_comm.items()}
    top = sorted(grew.items(), key=lambda kv: -kv[1][1])[:2]
    procs = ", ".join(f"{k} {c:+d} procs {kb / 1024:+.1f}MB" for k, (c, kb) in top if c or kb)
    rows = [Row("memory", t.name, per, "KB/conn", False,
               f"connections={ok}/{n} rss_delta={delta / 1024:.1f}MB (before {before.rss_kb / 1024:.1f}MB, "
               f"{before.procs} procs; with connections {during.rss_kb / 1024:.1f}MB, {during.procs} procs; "
               f"after close {after.rss_kb / 1024:.1f}MB){pss} by process: {procs or '-'} "
               f"open+login+select={ok / opened:.0f} conn/s"
               + (f" server_cpu={cpu1 - cpu0:.1f}s" if cpu0 is not None and cpu1 is not None else "")
               + f" close={closing:.1f}s peak_rss(pid {t.pid})={status_kb(t.pid, 'VmHWM:') / 1024:.0f}MB"
               + (" NOTE: the server reused memory it had freed before; restart it and run "
                  "--only memory for a clean figure" if ok and delta < 16 * ok else ""), errors)]
    if pss and ok:
        rows.append(Row("memory-pss", t.name, (during.pss_kb - before.pss_kb) / ok, "KB/conn", False,
                        "proportional set size: shared pages split between the processes sharing them"))
    return rows


# ========================================================================== main
async def guarded(coro, measure: str, t: Target, unit: str, higher: bool):
    try:
        return await coro
    except (ImapError, TimeoutError, OSError) as e:
        return Row(measure, t.name, None, unit, higher, failed=str(e) or type(e).__name__)


async def main_async(args, targets: list[Target]) -> int:
    rep = Reporter(targets)
    only = args.only
    print(f"# imap_fetch: messages={args.messages} clients={','.join(map(str, args.clients))} "
          f"duration={args.duration:g}s idle_rounds={args.idle_rounds} "
          f"idle_connections={args.idle_connections} measurements={','.join(only)}")
    for t in targets:
        print(f"# target {t.name}: {t.host}:{t.port} users={len(t.pool)} ({t.pool[0]}..) "
              f"bulk={t.bulk_user} idle={t.idle_user} smtp={t.smtp_port or '-'} pid={t.pid or '-'}")
    sys.stdout.flush()
    folder = args.folder or f"Bench{args.messages}"
    counts: dict[str, int | None] = {}
    if "memory" in only:  # first: a one-process server's RSS only grows, and later
        for t in targets:   # measurements would leave it room to reuse
            rows = await guarded(measure_memory(t, args), "memory", t, "KB/conn", False)
            for r in rows if isinstance(rows, list) else [rows]:
                rep.add(r)
    if "fetch" in only or "search" in only:
        for t in targets:
            try:
                counts[t.name] = await fill_folder(t, t.bulk_user, folder, args.messages, args,
                                                   "bulk folder", args.append_connections)
                if counts[t.name] != args.messages:
                    log(f"[{t.name}] note: {folder} holds {counts[t.name]} messages, not {args.messages}")
            except ImapError as e:
                counts[t.name] = None
                log(f"[{t.name}] filling {folder} failed: {e}")
    if "fetch" in only:
        for t in targets:
            if counts.get(t.name) is None:
                rep.add(Row("fetch", t.name, None, "msg/s", True, failed="bulk folder not filled"))
                continue
            rep.add(await guarded(measure_fetch(t, args, folder), "fetch", t, "msg/s", True))
    if "search" in only:
        for t in targets:
            if counts.get(t.name) is None:
                rep.add(Row("search-subject", t.name, None, "ms", False, failed="bulk folder not filled"))
                continue
            rows = await guarded(measure_search(t, args, folder, counts[t.name]), "search", t, "ms", False)
            for r in rows if isinstance(rows, list) else [rows]:
                rep.add(r)
    if "mixed" in only:
        for clients in args.clients:
            for t in targets:
                rep.add(await guarded(measure_mixed(t, args, clients), f"mixed-{clients}", t, "ops/s", True))
    if "idle" in only:
        for t in targets:
            rep.add(await guarded(measure_idle(t, args), "idle", t, "ms p50", False))
    rep.summary()
    return 1 if rep.bad else 0


def raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, need + 256)
    if want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError) as e:
            log(f"warning: cannot raise RLIMIT_NOFILE to {want}: {e}")
    if soft < need + 64:
        log(f"warning: open-files limit {soft} is below {need + 64}; some connections will fail")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    add("--target", action="append", type=parse_target, default=[], required=True,
        metavar="NAME=HOST:IMAPPORT:USER:PASSWORD[:SMTPPORT[:PID]]",
        help="a server to measure; repeat to compare (ratios are to the first)")
    add("--only", default=",".join(MEASUREMENTS),
        help=f"comma list of measurements to run (default all: {','.join(MEASUREMENTS)})")
    add("--messages", type=int, default=10000, help="messages in the fetch/search folder (default 10000)")
    add("--folder", help="the fetch/search folder (default Bench<messages>)")
    add("--repeat", type=int, default=3, help="runs of the fetch and of each search; the median is "
        "reported (default 3)")
    add("--clients", default="10,50", help="mixed workload: comma list of client counts (default 10,50)")
    add("--duration", type=float, default=10.0, help="mixed workload: seconds per run (default 10)")
    add("--ops", type=int, help="mixed workload: stop after this many commands in all "
        "(still bounded by --duration)")
    add("--mixed-folder", default="BenchMix", help="mixed workload folder, one per user (default BenchMix)")
    add("--mixed-messages", type=int, default=100, help="messages in each mixed folder (default 100)")
    add("--fetch-count", type=int, default=10, help="mixed workload: messages per ENVELOPE fetch (default 10)")
    add("--idle-rounds", type=int, default=50, help="IDLE latency: messages sent (default 50)")
    add("--idle-timeout", type=float, default=10.0, help="IDLE latency: seconds to wait for EXISTS (default 10)")
    add("--idle-gap", type=float, default=0.05, help="IDLE latency: pause between rounds, s (default 0.05)")
    add("--idle-connections", type=int, default=1000, help="memory: connections to hold (default 1000)")
    add("--memory-idle", action="store_true", help="memory: also put each connection into IDLE")
    add("--login-concurrency", type=int, default=10, help="memory: logins in flight at once (default 10)")
    add("--settle", type=float, default=2.0, help="memory: seconds to wait before each RSS reading (default 2)")
    add("--server-pid", action="append", default=[], metavar="[NAME=]PID",
        help="server PID for a target (instead of the 6th --target field); NAME= may be left "
        "out when there is one target")
    add("--append-connections", type=int, default=4, help="connections that fill the bulk folder (default 4)")
    add("--append-window", type=int, default=16, help="APPENDs in flight per connection when the "
        "server has LITERAL+ (default 16; 1 = one at a time)")
    add("--timeout", type=float, default=30.0, help="seconds to wait for one command (default 30)")
    add("--long-timeout", type=float, default=900.0, help="seconds for SELECT/FETCH 1:*/SEARCH on the "
        "big folder (default 900)")
    add("--keep", action="store_true", help="keep the IDLE probe messages")
    add("--verbose", action="store_true", help="more progress on stderr")
    args = p.parse_args()
    args.only = [m.strip() for m in args.only.split(",") if m.strip()]
    bad = [m for m in args.only if m not in MEASUREMENTS]
    if bad:
        p.error(f"unknown measurement(s) {', '.join(bad)}; choose from {', '.join(MEASUREMENTS)}")
    try:
        args.clients = [int(x) for x in args.clients.split(",") if x.strip()]
    except ValueError:
        p.error("--clients takes a comma list of numbers")
    for name in ("messages", "repeat", "idle_rounds", "idle_connections", "login_concurrency",
                 "append_connections", "append_window", "mixed_messages", "fetch_count"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if not args.clients or min(args.clients) < 1 or args.duration <= 0 or args.timeout <= 0:
        p.error("--clients, --duration and --timeout must be positive")
    targets: list[Target] = args.target
    if len({t.name for t in targets}) != len(targets):
        p.error("target names must differ")
    for spec in args.server_pid:
        name, eq, pid = spec.rpartition("=")
        if not pid.isdigit():
            p.error(f"bad --server-pid {spec!r}")
        if not eq:
            if len(targets) != 1:
                p.error("--server-pid without NAME= needs exactly one --target")
            targets[0].pid = int(pid)
            continue
        match = [t for t in targets if t.name == name]
        if not match:
            p.error(f"--server-pid {spec!r}: no target named {name!r}")
        match[0].pid = int(pid)
    for t in targets:
        if t.pid is None:
            t.pid = listener_pid(t.port)
            if t.pid:
                log(f"[{t.name}] server pid {t.pid} (the process listening on port {t.port})")
    raise_nofile(args.idle_connections + max(args.clients) + 16)
    sys.exit(asyncio.run(main_async(args, targets)))


if __name__ == "__main__":
    main()
