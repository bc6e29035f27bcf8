"""Coverage-guided fuzzing of rmail's parsers with atheris (libFuzzer): ``make fuzz``.

Runs each target (one module beside this file) in its own subprocess, one after the
other, for ``--runs`` inputs or ``--time`` seconds (whichever comes first when both are
given), then prints one line per target (inputs run, seconds, inputs a second, and
``ok`` or what crashed) and a summary line; exits 1 if any target crashed.

    .venv/bin/python fuzz/run.py [--runs N] [--time SECONDS] [--fresh] [TARGET ...]

Each target's working corpus (what libFuzzer found interesting, kept between runs),
its log and any crash input are in ``build/fuzz/TARGET/``; the seeds in
``fuzz/corpus/TARGET/`` are read, never written.  A crash input replays with
``.venv/bin/python fuzz/TARGET.py build/fuzz/TARGET/crash-...``.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "build", "fuzz")

# name: (largest input in octets, what it fuzzes)
TARGETS = {
    "smtp_command": (4096, "SMTP session: command framing, verbs, MAIL/RCPT paths, AUTH"),
    "smtp_data": (4096, "SMTP DATA stream reader"),
    "imap_framing": (4096, "IMAP command framing and literals"),
    "imap_arguments": (4096, "IMAP argument parsers, sequence sets, SEARCH, FETCH items"),
    "mime_describe": (16384, "ENVELOPE/BODY/BODYSTRUCTURE of a delivered message"),
    "web_inputs": (8192, "HTTP API: JSON bodies, fields, path segments, query numbers"),
    "config_load": (8192, "config.json loading"),
    "alias_pattern": (4096, "alias regular expressions and aliases.json"),
}

_STAT_UNITS = re.compile(rb"stat::number_of_executed_units:\s*(\d+)")
_DONE = re.compile(rb"Done (\d+) runs in")
_PROGRESS = re.compile(rb"^#(\d+)\s", re.MULTILINE)
_ARTIFACT = re.compile(rb"Test unit written to (\S+)")
_LIBFUZZER_ERROR = re.compile(rb"ERROR: libFuzzer: ([^\n]+)")


def run_target(name: str, runs: int | None, seconds: int | None, fresh: bool) -> dict:
    max_len, _ = TARGETS[name]
    work = os.path.join(OUT, name)
    corpus = os.path.join(work, "corpus")
    if fresh:
        shutil.rmtree(corpus, ignore_errors=True)
    os.makedirs(corpus, exist_ok=True)
    seeds = os.path.join(HERE, "corpus", name)
    command = [
        sys.executable, os.path.join(HERE, name + ".py"),
        f"-runs={runs if runs is not None else -1}",
        f"-max_len={max_len}",
        "-timeout=30",  # seconds for one input: longer is a hang, reported as a crash
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
        f"-artifact_prefix={work}/",
        corpus,
    ]
    if seconds is not None:
        command.insert(3, f"-max_total_time={seconds}")
    if os.path.isdir(seeds):
        command.append(seeds)
    log_path = os.path.join(work, "log.txt")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=work, env=env)
        try:
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    elapsed = time.monotonic() - started
    with open(log_path, "rb") as f:
        text = f.read()
    return {"name": name, "code": code, "seconds": elapsed, "log": log_path,
            "inputs": _inputs(text), **_crash(text, code)}


def _inputs(text: bytes) -> int:
    for pattern in (_STAT_UNITS, _DONE):
        found = pattern.findall(text)
        if found:
            return int(found[-1])
    found = _PROGRESS.findall(text)
    return int(found[-1]) if found else 0


def _crash(text: bytes, code: int) -> dict:
    """What went wrong, if anything: the exception (or libFuzzer's reason) and the input."""
    error = _LIBFUZZER_ERROR.search(text)
    artifact = _ARTIFACT.search(text)
    if code == 0 and error is None and artifact is None:
        return {"crashed": False, "why": "ok", "artifact": None}
    why = error.group(1).decode("utf-8", "replace") if error else f"exit status {code}"
    marker = text.find(b"=== Uncaught Python exception: ===")
    if marker >= 0:  # the last line of the traceback: "SomeError: message"
        lines = [line for line in text[marker:].split(b"\n")[1:] if line.strip()]
        for i, line in enumerate(lines):
            if line.startswith(b"==") or line.startswith(b"MS:"):
                lines = lines[:i]
                break
        if lines:
            why = lines[-1].decode("utf-8", "replace").strip()
    elif error is None and b"Traceback (most recent call last)" in text:
        # The target failed before fuzzing began (an import, its setup).
        lines = [line for line in text.split(b"\n") if line.strip()]
        why = "did not start: " + lines[-1].decode("utf-8", "replace").strip()
    return {"crashed": True, "why": why[:200],
            "artifact": artifact.group(1).decode() if artifact else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", metavar="TARGET",
                        help="targets to run (default: all): " + ", ".join(TARGETS))
    parser.add_argument("--runs", type=int, default=None,
                        help="inputs per target (default 1000000, or no limit with --time)")
    parser.add_argument("--time", type=int, default=None, metavar="SECONDS",
                        help="seconds per target")
    parser.add_argument("--fresh", action="store_true",
                        help="forget the working corpora in build/fuzz (start from the seeds)")
    args = parser.parse_args(argv)
    runs = args.runs if args.runs is not None else (None if args.time else 1_000_000)
    names = args.targets or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown target {unknown[0]!r} (targets: {', '.join(TARGETS)})")

    limit = " and ".join(x for x in (f"{runs} inputs" if runs is not None else "",
                                      f"{args.time} s" if args.time else "") if x)
    print(f"fuzz: {len(names)} target(s), at most {limit} each; work in {os.path.relpath(OUT)}",
          flush=True)
    results = []
    for name in names:
        r = run_target(name, runs, args.time, args.fresh)
        results.append(r)
        rate = r["inputs"] / r["seconds"] if r["seconds"] > 0 else 0.0
        status = "ok"
        if r["crashed"]:
            status = f"CRASH: {r['why']}"
            if r["artifact"]:
                status += f" (input: {os.path.relpath(r['artifact'])}; replay: " \
                          f"{os.path.relpath(sys.executable)} fuzz/{name}.py " \
                          f"{os.path.relpath(r['artifact'])})"
            else:
                status += f" (log: {os.path.relpath(r['log'])})"
        print(f"{name:<15} {r['inputs']:>9} inputs {r['seconds']:>8.1f} s {rate:>8.0f}/s  {status}",
              flush=True)
    crashed = [r["name"] for r in results if r["crashed"]]
    total = sum(r["inputs"] for r in results)
    print(f"fuzz: {len(results)} targets, {total} inputs, {len(crashed)} crashed"
          + (f" ({', '.join(crashed)})" if crashed else ""), flush=True)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
