#!/usr/bin/env python3
"""Import benchmark: a generated Maildir and a generated mbox into a throwaway rmail.

Generates, in a temporary directory, a Maildir of N messages (default 100,000; most in
cur/ with flags, some in new/, a tenth in Maildir++ sub-folders; mostly text of 0.3 to
12 KB, 6% with attachments of 65 to 200 KB, one in a thousand of 2.6 MB) and an mbox of
about S bytes (default 2 GB; the same kinds of message, some with ">From " lines), then runs the
real CLI -- ``python run.py import maildir ...`` and ``import mbox ...`` -- against a
fresh config and mail_root in that directory, one process each, and prints for each
import: messages, MB, seconds, messages/s, MB/s and the importing process's peak RSS
(its ru_maxrss, from wait4).  Everything is removed afterwards unless --keep.

The memory claim to check: peak RSS does not grow with the mailbox.  Run it at two sizes
(e.g. --messages 20000 --mbox-size 200M, then the defaults) and compare.

Examples:
  python3 bench/import.py                                   # 100,000 messages, 2 GB
  python3 bench/import.py --messages 20000 --mbox-size 200M
  python3 bench/import.py --skip-mbox --messages 5000 --keep
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADDRESS = "bench@example.com"
WORDS = ("mail server import benchmark maildir mbox message folder flag seen answered "
         "flagged draft deleted keyword archive sent junk trash inbox header body line "
         "shard index commit batch fsync rename durable stream memory").split()


def size_arg(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower().rstrip("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


class Messages:
    """Plausible messages, cheaply: a few pre-built bodies, varied headers."""

    def __init__(self, seed=7):
        self.rng = random.Random(seed)
        self.text = [self._text(n) for n in (300, 1500, 4000, 12000)]
        blob = bytes(self.rng.getrandbits(8) for _ in range(48 * 1024))
        import base64
        self.attachment = base64.encodebytes(blob)  # 76-column lines, LF ends

    def _text(self, size):
        words, out = self.rng.choices(WORDS, k=size // 6), []
        line = []
        for word in words:
            line.append(word)
            if len(line) == 12:
                out.append(" ".join(line))
                line = []
        return ("\n".join(out) + "\n").encode()

    def one(self, n: int, mbox=False) -> bytes:
        rng = self.rng
        head = (f"From: Sender {n % 97} <sender{n % 97}@example.net>\n"
                f"To: {ADDRESS}\nSubject: Message {n} about {rng.choice(WORDS)}\n"
                f"Date: Mon, {1 + n % 28} Jan 2024 {n % 24:02d}:{n % 60:02d}:00 +0000\n"
                f"Message-ID: <{n}.{rng.getrandbits(32)}@example.net>\n").encode()
        kind = rng.random()
        if kind < 0.94:
            body = head + b"Content-Type: text/plain; charset=utf-8\n\n" + rng.choice(self.text)
            if mbox and rng.random() < 0.05:
                body += b">From the archive, a quoted line\n"
            return body
        parts = 1 + int((kind - 0.94) * 50)  # 1..3 attachment parts of 48 KB
        big = kind > 0.999  # one in a thousand of about 2.6 MB
        out = [head, b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n",
               b"--b\nContent-Type: text/plain\n\n", self.text[0]]
        for _ in range(40 if big else max(parts, 1)):
            out += [b"--b\nContent-Type: application/octet-stream\n"
                    b"Content-Transfer-Encoding: base64\n\n", self.attachment]
        out.append(b"--b--\n")
        return b"".join(out)


def make_maildir(path: str, count: int, gen: Messages) -> int:
    folders = ["", ".Archive", ".Archive.2023", ".Sent", ".Lists.python"]
    for folder in folders:
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(path, folder, sub), exist_ok=True)
    with open(os.path.join(path, "dovecot-keywords"), "w") as f:
        f.write("0 $Junk\n1 NonJunk\n")
    total = 0
    start = 1600000000
    for n in range(count):
        rng = gen.rng
        folder = "" if rng.random() < 0.9 else rng.choice(folders[1:])
        if rng.random() < 0.1:
            sub, info = "new", ""
        else:
            sub, info = "cur", ":2," + "".join(sorted(rng.sample("SRFa", rng.randint(0, 3))))
        name = f"{start + n}.M{n}P{os.getpid()}.bench{info}"
        data = gen.one(n)
        file = os.path.join(path, folder, sub, name)
        with open(file, "wb") as f:
            f.write(data)
        os.utime(file, (start + n, start + n))
        total += len(data)
    return total


def make_mbox(path: str, size: int, gen: Messages) -> int:
    count = 0
    with open(path, "wb", buffering=1 << 20) as f:
        while f.tell() < size:
            when = time.gmtime(1500000000 + count * 60)
            f.write(time.strftime("From sender@example.net %a %b %e %H:%M:%S %Y\n", when)
                    .encode())
            if count % 3 == 0:
                f.write(b"Status: RO\n")
            f.write(gen.one(count, mbox=True))
            f.write(b"\n")
            count += 1
    return count


def run_import(args, label, count, size):
    argv = [sys.executable, os.path.join(ROOT, "run.py"), "import", *args]
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    summary = [line for line in output.decode(errors="replace").splitlines()
               if line.startswith(("imported", "nothing", "FAILED", "error"))]
    if proc.returncode != 0:
        print(output.decode(errors="replace"), file=sys.stderr)
        raise SystemExit(f"{label}: import exited with {proc.returncode}")
    print(f"{label:8} {count:>8} messages {size / 1e6:>9.1f} MB {elapsed:>8.1f} s "
          f"{count / elapsed:>9.0f} messages/s {size / 1e6 / elapsed:>7.1f} MB/s "
          f"peak RSS {usage.ru_maxrss / 1024:>6.1f} MB")
    for line in summary:
        print(f"         {line}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--messages", type=int, default=100_000, help="Maildir messages (100000)")
    p.add_argument("--mbox-size", type=size_arg, default=2 << 30, help="mbox bytes (2G)")
    p.add_argument("--skip-maildir", action="store_true")
    p.add_argument("--skip-mbox", action="store_true")
    p.add_argument("--dir", help="where to make the temporary directory (default: $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the generated files")
    args = p.parse_args()

    work = tempfile.mkdtemp(prefix="rmail-bench-import-", dir=args.dir)
    try:
        config = os.path.join(work, "config.json")
        with open(config, "w") as f:  # no listeners: nothing to probe, nothing to bind
            json.dump({"hostname": "bench.example.com", "domains": ["example.com"],
                       "mail_root": "data",
                       "listen": {k: None for k in ("smtp", "submission", "submissions",
                                                    "imap", "imaps", "http")},
                       "http": {"jwt_secret": "bench-" + "x" * 40}}, f)
        subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), "user", "add", ADDRESS,
                        "--password", "bench", "--config", config], check=True,
                       stdout=subprocess.DEVNULL)
        gen = Messages()
        print(f"work directory: {work}")
        if not args.skip_maildir:
            t = time.monotonic()
            maildir = os.path.join(work, "Maildir")
            size = make_maildir(maildir, args.messages, gen)
            print(f"generated a Maildir of {args.messages} messages ({size / 1e6:.1f} MB) in "
                  f"{time.monotonic() - t:.1f} s")
            run_import(["maildir", maildir, ADDRESS, "--config", config], "maildir",
                       args.messages, size)
        if not args.skip_mbox:
            t = time.monotonic()
            mbox = os.path.join(work, "mail.mbox")
            count = make_mbox(mbox, args.mbox_size, gen)
            size = os.path.getsize(mbox)
            print(f"generated an mbox of {count} messages ({size / 1e6:.1f} MB) in "
                  f"{time.monotonic() - t:.1f} s")
            run_import(["mbox", mbox, ADDRESS, "--folder", "mbox", "--config", config], "mbox",
                       count, size)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
