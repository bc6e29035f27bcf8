"""What every fuzz target shares: run one under atheris (libFuzzer), or replay files.

A target module defines ``test_one_input(data: bytes)`` and ``EXPECTED``, the exception
types its parser documents for bad input; any other exception is a crash.  Run it as

    .venv/bin/python fuzz/TARGET.py [libFuzzer flags] [corpus dirs or files]

(``fuzz/run.py`` does that for each target); a file argument replays that input, which
is how a crash artifact is reproduced.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import atheris  # noqa: E402

# Let atheris see through str.startswith/endswith, so that it finds keywords sooner.
# (Its "RegEx" hook breaks json: its pattern proxy takes no start position.)
atheris.enabled_hooks.add("str")


def instrumented(*extra):
    """Import the parsers inside ``with instrumented():`` so that atheris sees their coverage."""
    return atheris.instrument_imports(include=["rmail", *extra])


def main(test_one_input, expected=()):
    expected = tuple(expected)

    def one(data: bytes):
        try:
            test_one_input(data)
        except expected:
            pass

    atheris.Setup(sys.argv, one)
    atheris.Fuzz()
