"""Drawing the client with curses: the only module (with ``dialogs``) that touches the terminal.

It reads the client's models and draws them into the rectangles ``layout`` computes;
it decides nothing.  Every string goes through ``put``, which fits it to its columns
and to the terminal's encoding, so no subject can break a line or raise an error.
"""

import curses
import locale
import time

from rmail.client import keys, layout
from rmail.client.messages import summary


class Screen:
    def __init__(self, stdscr):
        self.stdscr = stdscr
        self._failed_reads = 0  # reads that failed at once, in a row
        self.encoding = locale.getpreferredencoding(False) or "utf-8"
        stdscr.keypad(True)
        try:
            curses.curs_set(0)
        except curses.error:
            pass
        self.error_attr = curses.A_BOLD
        if curses.has_colors():
            try:
                curses.use_default_colors()
                curses.init_pair(1, curses.COLOR_RED, -1)
                self.error_attr = curses.color_pair(1) | curses.A_BOLD
            except curses.error:
                pass

    # --- primitives ------------------------------------------------------------------

    def size(self):
        return self.stdscr.getmaxyx()

    def put(self, y, x, text, width, attr=0):
        """*text* fitted to *width* columns at (y, x); never raises."""
        if width <= 0:
            return
        text = layout.fit(text, width)
        text = text.encode(self.encoding, "replace").decode(self.encoding, "replace")
        try:
            self.stdscr.addstr(y, x, text, attr)
        except curses.error:
            pass  # the bottom-right cell: curses writes it and then reports an error

    def read_key(self, timeout_ms: int) -> str | None:
        """The next key as curses names it (see keys.py), or None after *timeout_ms*."""
        self.stdscr.timeout(timeout_ms)
        started = time.monotonic()
        try:
            key = self.stdscr.get_wch()
        except curses.error:
            # A timeout, or a terminal that is gone (its pane closed, the ssh connection
            # dropped): then every read fails at once, and looping on it would spin.
            quick = time.monotonic() - started < timeout_ms / 4000
            self._failed_reads = self._failed_reads + 1 if quick else 0
            if self._failed_reads > 100:
                raise SystemExit("rmail.client: the terminal is gone")
            return None
        self._failed_reads = 0
        if isinstance(key, int):
            return curses.keyname(key).decode("ascii", "replace")
        if key == "\x7f":
            return "^?"
        if len(key) == 1 and ord(key) < 32:
            return "^" + chr(ord(key) + 64)
        return key

    def resized(self):
        curses.update_lines_cols()
        self.stdscr.clear()

    def clear(self):
        self.stdscr.clear()

    # --- the whole client ---------------------------------------------------------

    def draw(self, client):
        self.stdscr.erase()
        rows, cols = self.size()
        panes = layout.panes(rows, cols)
        if panes is None:
            self.put(0, 0, f"Terminal too small: rmail needs {layout.MIN_COLS}x"
                     f"{layout.MIN_ROWS}.", cols)
            self.stdscr.refresh()
            return
        self._title(client, panes.title)
        self._folders(client, panes.folders)
        try:
            self.stdscr.vline(panes.separator.top, panes.separator.left, curses.ACS_VLINE,
                              panes.separator.height)
        except curses.error:
            pass
        self._messages(client, panes.messages)
        self._divider(client, panes.divider)
        self._reading(client, panes.reading)
        self.put(panes.status.top, 0, client.status, cols,
                 self.error_attr if client.status_is_error else 0)
        self.put(panes.help.top, 0, keys.help_line(cols), cols, curses.A_REVERSE)
        self.stdscr.refresh()

    def _title(self, client, rect):
        messages = client.messages
        folder = client.folders.find(messages.folder) if messages.folder else None
        text = f" rmail  {client.account.user}"
        if messages.folder:
            text += f"  {messages.folder}: {len(messages)} messages"
            if folder is not None and folder.unseen:
                text += f", {folder.unseen} unread"
            if messages.search is not None:
                text = f" rmail  {client.account.user}  {messages.folder}: {len(messages)} " \
                       f"found for “{messages.search}”"
        live = "live" if client.watching else "not live"
        self.put(rect.top, rect.left, text, rect.width - len(live) - 2, curses.A_BOLD)
        self.put(rect.top, rect.right - len(live) - 1, live, len(live) + 1)

    def _folders(self, client, rect):
        focused = client.focus == "folders"
        for row, (folder, selected) in enumerate(client.folders.visible(rect.height)):
            attr = 0
            if folder.name == client.messages.folder:
                attr |= curses.A_BOLD
            if selected and focused:
                attr |= curses.A_REVERSE
            self.put(rect.top + row, rect.left, folder.label(rect.width), rect.width, attr)

    def _messages(self, client, rect):
        focused = client.focus == "messages"
        rows = client.messages.visible(rect.height)
        if not rows:
            note = "No messages match." if client.messages.search is not None else "No messages."
            self.put(rect.top, rect.left, "  " + note, rect.width, curses.A_DIM)
        opened = client.reading.uid if client.reading else None
        for row, (uid, envelope, selected) in enumerate(rows):
            attr = curses.A_BOLD if envelope is not None and envelope.unread else 0
            if selected:
                attr |= curses.A_REVERSE if focused else curses.A_UNDERLINE
            elif uid == opened:
                attr |= curses.A_UNDERLINE
            self.put(rect.top + row, rect.left, summary(envelope, rect.width, me=client.me),
                     rect.width, attr)

    def _divider(self, client, rect):
        try:
            self.stdscr.hline(rect.top, rect.left, curses.ACS_HLINE, rect.width)
        except curses.error:
            pass
        text = f" {client.messages.position()} "
        if client.reading is not None:
            text += f"─ {client.reading.subject} "
        self.put(rect.top, rect.left + 1, text, min(rect.width - 2, layout.width_of(text)))

    def _reading(self, client, rect):
        reading = client.reading
        if reading is None:
            self.put(rect.top, rect.left + 1, "Enter opens the selected message; ? lists "
                     "the keys.", rect.width - 1, curses.A_DIM)
            return
        width = rect.width - 1
        lines = reading.lines(width)
        reading.top = max(0, min(reading.top, max(0, len(lines) - rect.height)))
        heads = len(reading.header_lines()) + len(reading.attachments)
        for row, line in enumerate(lines[reading.top:reading.top + rect.height]):
            attr = curses.A_BOLD if reading.top + row < heads else 0
            self.put(rect.top + row, rect.left + 1, line, width, attr)

    def show_lines(self, lines):
        """A full-screen page of text (the ? help) until a key is pressed."""
        self.stdscr.erase()
        rows, cols = self.size()
        for row, line in enumerate(lines[:rows]):
            self.put(row, 1, line, cols - 1)
        self.stdscr.refresh()
        while self.read_key(1000) is None:
            pass
