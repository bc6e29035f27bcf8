"""Sequence sets (RFC 3501 section 9: ``2,4:7,9:*``), read the same way wherever a command
names messages: FETCH, STORE, COPY, MOVE, UID EXPUNGE and SEARCH's set keys.

A set is kept as the ranges written, ``*`` as None until a folder says what it stands
for.  (Twisted's ``parseIdList`` builds a MessageSet that sorts and merges its ranges at
every step; a command names its messages once, through ``SelectedFolder.resolve``.)
``*:*`` means ``*``, and ``a:b`` holds everything between a and b in either order.
"""

import bisect
import re

_SET = re.compile(rb"(?:[1-9][0-9]*|\*)(?::(?:[1-9][0-9]*|\*))?"
                  rb"(?:,(?:[1-9][0-9]*|\*)(?::(?:[1-9][0-9]*|\*))?)*")
LIMIT = 2 ** 32  # "number" is a 32-bit unsigned integer
DIGITS = 10  # more digits are over the limit (and over what int() reads from text)


class BadSet(ValueError):
    """Not a sequence set; the text says why, for the client."""


class SequenceSet:
    __slots__ = ("ranges", "highest", "_star", "_starts", "_ends")

    def __init__(self, ranges: list[tuple[int | None, int | None]]):
        self.ranges = ranges  # (low, high) as written; None stands for "*"
        self.highest = max((n for span in ranges for n in span if n is not None), default=0)
        self._star = -1
        self._starts: list[int] = []
        self._ends: list[int] = []

    def spans(self, star: int):
        """(low, high) pairs, low <= high, with ``*`` read as *star*."""
        for low, high in self.ranges:
            low = star if low is None else low
            high = star if high is None else high
            yield (low, high) if low <= high else (high, low)

    def contains(self, number: int, star: int) -> bool:
        if star != self._star:
            self._merge(star)
        i = bisect.bisect_right(self._starts, number) - 1
        return i >= 0 and number <= self._ends[i]

    def _merge(self, star: int) -> None:
        self._starts, self._ends = [], []
        for low, high in sorted(self.spans(star)):
            if self._ends and low <= self._ends[-1] + 1:
                self._ends[-1] = max(self._ends[-1], high)
            else:
                self._starts.append(low)
                self._ends.append(high)
        self._star = star


def parse(token: bytes) -> SequenceSet:
    if not _SET.fullmatch(token):
        raise BadSet("use numbers and ranges such as 1:5,7,9:*")
    ranges = []
    for part in token.split(b","):
        low, _, high = part.partition(b":")
        if len(low) > DIGITS or len(high) > DIGITS:
            raise BadSet("numbers stop at 4294967295")
        low_n = None if low == b"*" else int(low)
        high_n = low_n if not high else None if high == b"*" else int(high)
        if (low_n or 0) >= LIMIT or (high_n or 0) >= LIMIT:
            raise BadSet("numbers stop at 4294967295")
        ranges.append((low_n, high_n))
    return SequenceSet(ranges)
