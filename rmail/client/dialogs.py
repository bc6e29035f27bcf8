"""Asking the user things with curses: a line of text, a choice, a folder, a whole draft.

Each dialog draws over the client and returns a plain value (``None`` when the user
backs out); the caller redraws afterwards.  The editors return the edited text.
"""

import curses
import os
import shlex
import subprocess
import tempfile

from rmail.client import layout
from rmail.client.editbuffer import TextBuffer

CANCEL_KEYS = ("^[", "^G", "^C")


def _show_cursor(on: bool):
    try:
        curses.curs_set(1 if on else 0)
    except curses.error:
        pass


def _edit_key(buffer: TextBuffer, key: str) -> bool:
    """Apply an editing key; False when the key is not an editing key."""
    moves = {"KEY_LEFT": buffer.left, "KEY_RIGHT": buffer.right, "KEY_HOME": buffer.home,
             "^A": buffer.home, "KEY_END": buffer.end, "^E": buffer.end,
             "KEY_BACKSPACE": buffer.backspace, "^?": buffer.backspace, "^H": buffer.backspace,
             "KEY_DC": buffer.delete, "^D": buffer.delete, "^K": buffer.kill_line}
    if key in moves:
        moves[key]()
    elif len(key) == 1 and key.isprintable():
        buffer.insert(key)
    else:
        return False
    return True


def prompt(screen, label: str, initial: str = "") -> str | None:
    """One line typed on the status row; None when cancelled (Esc, Ctrl-G, Ctrl-C)."""
    buffer = TextBuffer(initial, 0, len(initial))
    _show_cursor(True)
    try:
        while True:
            rows, cols = screen.size()
            room = max(1, cols - len(label) - 1)
            visible, (_, column) = buffer.window(room, 1)
            screen.put(rows - 2, 0, label + (visible[0] if visible else ""), cols)
            screen.stdscr.move(rows - 2, min(cols - 1, len(label) + column))
            screen.stdscr.refresh()
            try:
                key = screen.read_key(1000)
            except KeyboardInterrupt:
                return None
            if key is None or key == "KEY_RESIZE":
                continue
            if key in ("^J", "^M", "KEY_ENTER"):
                return buffer.text
            if key in CANCEL_KEYS:
                return None
            _edit_key(buffer, key)
    finally:
        _show_cursor(False)


def ask(screen, question: str, choices: str) -> str:
    """One key out of *choices* (lower case); Esc answers with the last choice."""
    while True:
        rows, cols = screen.size()
        screen.put(rows - 2, 0, question, cols, curses.A_BOLD)
        screen.stdscr.refresh()
        try:
            key = screen.read_key(1000)
        except KeyboardInterrupt:
            return choices[-1]
        if key in CANCEL_KEYS:
            return choices[-1]
        if key and key.lower() in choices:
            return key.lower()


def pick(screen, title: str, items: list) -> str | None:
    """One of *items* from a box over the middle of the screen; None on Esc."""
    if not items:
        return None
    index = 0
    top = 0
    while True:
        rows, cols = screen.size()
        width = min(cols - 4, max(len(title) + 2, *(layout.width_of(i) for i in items)) + 4)
        height = min(rows - 4, len(items) + 2)
        y, x = (rows - height) // 2, (cols - width) // 2
        inner = height - 2
        top = layout.scroll_to_show(index, top, inner, len(items))
        box = screen.stdscr.subwin(height, width, y, x)  # shares stdscr's cells
        box.erase()
        box.box()
        screen.put(y, x + 2, f" {title} ", min(width - 4, len(title) + 2))
        for row, item in enumerate(items[top:top + inner]):
            attr = curses.A_REVERSE if top + row == index else 0
            screen.put(y + 1 + row, x + 1, " " + item, width - 2, attr)
        screen.stdscr.touchwin()  # the box was drawn through the subwindow
        screen.stdscr.refresh()
        try:
            key = screen.read_key(1000)
        except KeyboardInterrupt:
            return None
        if key in ("j", "KEY_DOWN"):
            index = min(len(items) - 1, index + 1)
        elif key in ("k", "KEY_UP"):
            index = max(0, index - 1)
        elif key in ("^J", "^M", "KEY_ENTER"):
            return items[index]
        elif key in CANCEL_KEYS or key == "q":
            return None
        elif key and len(key) == 1 and key.isprintable():  # jump to a name by its first letter
            for offset in range(1, len(items) + 1):
                candidate = (index + offset) % len(items)
                if items[candidate].lower().startswith(key.lower()):
                    index = candidate
                    break


def edit_in_terminal(screen, text: str, row: int = 0) -> str | None:
    """The built-in editor over the whole screen, the cursor at the end of line *row*;
    None when the draft is abandoned."""
    buffer = TextBuffer(text, row, 0)
    buffer.end()
    _show_cursor(True)
    curses.raw()  # Ctrl-C arrives as a key here: it must not throw the draft away unasked
    try:
        while True:
            rows, cols = screen.size()
            height = max(1, rows - 2)
            visible, (crow, ccol) = buffer.window(cols, height)
            screen.stdscr.erase()
            screen.put(0, 0, " Compose — Ctrl-X: done   Ctrl-C: abandon   Ctrl-K: cut line",
                       cols, curses.A_REVERSE)
            for i, line in enumerate(visible):
                screen.put(1 + i, 0, line, cols)
            screen.put(rows - 1, 0, "Headers, a blank line, then the text. Attach: PATH adds "
                       "a file.", cols, curses.A_DIM)
            screen.stdscr.move(1 + crow, min(ccol, cols - 1))
            screen.stdscr.refresh()
            try:
                key = screen.read_key(1000)
            except KeyboardInterrupt:
                key = "^C"
            if key is None:
                continue
            if key == "KEY_RESIZE":
                screen.resized()
            elif key == "^X":
                return buffer.text
            elif key == "^C":
                if ask(screen, "Abandon this draft? (y/n)", "yn") == "y":
                    return None
            elif key in ("^J", "^M", "KEY_ENTER"):
                buffer.newline()
            elif key == "^I":
                buffer.insert("    ")
            elif key == "KEY_UP":
                buffer.up()
            elif key == "KEY_DOWN":
                buffer.down()
            elif key == "KEY_PPAGE":
                buffer.up(height)
            elif key == "KEY_NPAGE":
                buffer.down(height)
            else:
                _edit_key(buffer, key)
    finally:
        curses.noraw()
        curses.cbreak()
        _show_cursor(False)


def edit_with_program(screen, editor: str, text: str) -> str:
    """Run the user's editor on the draft in a private temporary file."""
    fd, path = tempfile.mkstemp(prefix="rmail-draft-", suffix=".eml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        curses.def_prog_mode()
        curses.endwin()
        try:
            subprocess.call(shlex.split(editor) + [path])
        finally:
            curses.reset_prog_mode()
            screen.clear()
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    finally:
        os.unlink(path)
