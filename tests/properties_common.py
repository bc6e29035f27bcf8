"""What the property-based tests (``tests/test_properties_*.py``) share.

``PROPERTY`` is the Hypothesis settings every property runs with: derandomized (the same
examples on every run and every machine), no example database, no deadline (the machine
may be busy); Hypothesis's caches go to the temporary directory, so nothing is written
into the checkout.  ``mutated`` turns a strategy for
valid input into one for almost-valid input: a few bytes inserted, removed, replaced or
repeated, the way a broken or hostile client gets a grammar slightly wrong.
"""

import os
import tempfile

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from tests.harness import USERS

# Hypothesis keeps caches (literals found in the source, Unicode tables) in ./.hypothesis
# even with no example database: keep them out of the checkout.
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "rmail-hypothesis"))

# The one user the property tests' servers need (each user costs an argon2 hash at start).
ALICE = {"alice@example.com": USERS["alice@example.com"]}


def PROPERTY(max_examples: int):  # noqa: N802 (reads like the settings object it makes)
    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# Bytes that mean something to some parser here: delimiters, quotes, escapes, line ends,
# NUL, 8-bit, and the IMAP literal and list markers.
SPECIAL_BYTES = b' \t\r\n\0"\\()<>[]{}@:;,.=*%+-/?_~#\x7f\x80\xc3\xff0123456789'

special_byte = st.sampled_from([bytes([b]) for b in SPECIAL_BYTES])
some_bytes = st.one_of(special_byte, st.binary(min_size=1, max_size=8))


@st.composite
def _mutations(draw, base: bytes) -> bytes:
    data = bytearray(base)
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(("insert", "delete", "replace", "repeat")))
        at = draw(st.integers(0, len(data)))
        if op == "insert":
            data[at:at] = draw(some_bytes)
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        elif op == "replace" and at < len(data):
            data[at:at + 1] = draw(special_byte)
        elif op == "repeat":
            end = min(len(data), at + draw(st.integers(1, 16)))
            data[at:at] = data[at:end] * draw(st.integers(1, 3))
    return bytes(data)


def mutated(valid: st.SearchStrategy) -> st.SearchStrategy:
    """The valid inputs themselves, and each with up to four small edits."""
    return valid.flatmap(_mutations)


def long_digits(low: int = 4300, high: int = 5000) -> st.SearchStrategy:
    """A run of digits longer than Python's int() accepts from text (4300 digits)."""
    return st.integers(low, high).map(lambda n: b"9" * n)
