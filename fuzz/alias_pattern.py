"""Alias patterns (rmail/directory.py): ``compile_pattern``, which ``alias add`` (the CLI and
``POST /aliases``) calls on the pattern it is given, and the reading of an aliases.json
(``_read_json`` and ``_parse_aliases``, which ``Directory.refresh`` calls).

Both document ``DirectoryError`` ("a refused change or lookup; the message is one
sentence for people") for a pattern or file they cannot use; the CLI and the HTTP API
catch only that, so any other exception is a crash.  The input is read as the pattern
(UTF-8, undecodable bytes kept as surrogates, as in a command line argument), and
written as the aliases file.
"""

import atexit
import os
import shutil
import tempfile

import harness

with harness.instrumented():
    from rmail import directory

EXPECTED = (directory.DirectoryError,)

_DIR = tempfile.mkdtemp(prefix="rmail-fuzz-aliases-",
                        dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
atexit.register(shutil.rmtree, _DIR, True)
PATH = os.path.join(_DIR, "aliases.json")


def _refused(call, *args):
    try:
        return call(*args)
    except directory.DirectoryError:
        return None


def test_one_input(data: bytes):
    _refused(directory.compile_pattern, data.decode("utf-8", "surrogateescape"))
    with open(PATH, "wb") as f:
        f.write(data)
    aliases = directory._parse_aliases(directory._read_json(PATH, []), PATH)
    for alias in aliases:
        alias.to_json()


if __name__ == "__main__":
    harness.main(test_one_input, EXPECTED)
