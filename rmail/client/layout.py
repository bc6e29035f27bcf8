"""Where the three panes go on a terminal of a given size, and fitting text into columns.

Pure geometry, so the 80x24 promise is a unit test rather than a hope:

    row 0         title: account, open folder, counts
    rows 1..      folders | message list
                          | divider (the open message's subject)
                          | message view
    row -2        status line (what just happened, prompts)
    row -1        help line (the keys)
"""

import unicodedata
from dataclasses import dataclass

MIN_ROWS, MIN_COLS = 10, 40


@dataclass(frozen=True)
class Rect:
    top: int
    left: int
    height: int
    width: int

    @property
    def bottom(self):
        return self.top + self.height

    @property
    def right(self):
        return self.left + self.width


@dataclass(frozen=True)
class Panes:
    title: Rect
    folders: Rect
    separator: Rect  # the vertical bar between folders and the rest
    messages: Rect
    divider: Rect
    reading: Rect
    status: Rect
    help: Rect


def panes(rows: int, cols: int) -> Panes | None:
    """The layout for a rows x cols screen, or None when it is too small to be useful."""
    if rows < MIN_ROWS or cols < MIN_COLS:
        return None
    body_top, body_height = 1, rows - 3
    folder_width = max(12, min(24, cols // 5))
    right_left = folder_width + 1
    right_width = cols - right_left
    list_height = max(3, body_height * 2 // 5)
    reading_height = body_height - list_height - 1
    return Panes(
        title=Rect(0, 0, 1, cols),
        folders=Rect(body_top, 0, body_height, folder_width),
        separator=Rect(body_top, folder_width, body_height, 1),
        messages=Rect(body_top, right_left, list_height, right_width),
        divider=Rect(body_top + list_height, right_left, 1, right_width),
        reading=Rect(body_top + list_height + 1, right_left, reading_height, right_width),
        status=Rect(rows - 2, 0, 1, cols),
        help=Rect(rows - 1, 0, 1, cols),
    )


def cell_width(ch: str) -> int:
    """Columns a character takes: 2 for wide East Asian characters, 0 for combining."""
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def width_of(text: str) -> int:
    return sum(cell_width(ch) for ch in text)


def fit(text: str, width: int, ellipsis: str = "…") -> str:
    """*text* cut or padded to exactly *width* columns (cut text ends in an ellipsis)."""
    if width <= 0:
        return ""
    if width_of(text) <= width:
        return text + " " * (width - width_of(text))
    out, used = [], 0
    limit = width - width_of(ellipsis)
    for ch in text:
        w = cell_width(ch)
        if used + w > limit:
            break
        out.append(ch)
        used += w
    out.append(ellipsis)
    used += width_of(ellipsis)
    return "".join(out) + " " * (width - used)


def scroll_to_show(index: int, top: int, height: int, count: int) -> int:
    """The first visible row after scrolling just enough to show row *index*."""
    if height <= 0 or count <= 0:
        return 0
    if index < top:
        top = index
    elif index >= top + height:
        top = index - height + 1
    return max(0, min(top, max(0, count - height)))
