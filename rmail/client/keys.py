"""Every key the client answers to, once: the help line, the ? screen and the dispatch
all read this table.

Keys are named as curses names them (``curses.keyname``): ``j``, ``KEY_DOWN``, ``^J``
(Enter), ``^I`` (Tab), ``KEY_NPAGE`` (Page Down), ``^[`` (Escape).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Binding:
    keys: tuple
    action: str
    label: str  # how the help line names the keys
    description: str
    hint: str = ""  # how the help line shows it; empty: only on the ? screen


BINDINGS = (
    Binding(("j", "KEY_DOWN"), "down", "j/Down", "next message, folder or line"),
    Binding(("k", "KEY_UP"), "up", "k/Up", "previous message, folder or line"),
    Binding(("KEY_NPAGE", " "), "page_down", "PgDn/Space", "one screen down"),
    Binding(("KEY_PPAGE", "-"), "page_up", "PgUp/-", "one screen up"),
    Binding(("KEY_HOME", "<"), "first", "Home/<", "first (newest) message"),
    Binding(("KEY_END", ">"), "last", "End/>", "last (oldest) message"),
    Binding(("^I", "KEY_BTAB"), "next_pane", "Tab", "go to the next pane"),
    Binding(("^J", "^M", "KEY_ENTER", "l", "KEY_RIGHT"), "open", "Enter",
            "open the folder or message", "Enter:open"),
    Binding(("^[", "KEY_LEFT"), "back", "Esc/Left", "back to the list; clear a search"),
    Binding(("r",), "reply", "r", "reply to the sender", "r:reply"),
    Binding(("a",), "reply_all", "a", "reply to everyone", "a:all"),
    Binding(("f",), "forward", "f", "forward", "f:fwd"),
    Binding(("c",), "compose", "c", "write a new message", "c:new"),
    Binding(("d", "KEY_DC"), "delete", "d/Del", "delete (move to Trash)", "d:del"),
    Binding(("m",), "move", "m", "move to a folder", "m:move"),
    Binding(("u",), "toggle_read", "u", "mark read / unread", "u:read"),
    Binding(("s", "!"), "toggle_flag", "s", "flag / unflag", "s:flag"),
    Binding(("/",), "search", "/", "search this folder (IMAP SEARCH)", "/:find"),
    Binding(("g", "^L"), "refresh", "g", "check for mail, redraw", "g:get"),
    Binding(("h",), "headers", "h", "full headers on / off", "h:hdrs"),
    Binding(("?",), "help", "?", "this help", "?:help"),
    Binding(("q",), "quit", "q", "quit", "q:quit"),
)

_BY_KEY = {key: b.action for b in BINDINGS for key in b.keys}


def action_for(key: str) -> str | None:
    return _BY_KEY.get(key)


def help_line(width: int) -> str:
    """As many "key:word" pairs as fit in *width* columns, most useful first."""
    words = []
    used = 0
    for binding in sorted((b for b in BINDINGS if b.hint), key=lambda b: _ORDER.index(b.action)):
        word = binding.hint
        need = len(word) + (1 if words else 0)
        if used + need > width:
            break
        words.append(word)
        used += need
    return " ".join(words)


# What the help line keeps when the terminal is narrow: help and quit first.
_ORDER = ("help", "quit", "reply", "reply_all", "forward", "compose", "delete", "move",
          "toggle_read", "toggle_flag", "search", "refresh", "headers", "open")


def help_screen() -> list:
    """The ? screen's lines."""
    width = max(len(b.label) for b in BINDINGS)
    lines = ["Keys", ""]
    lines += [f"  {b.label.ljust(width)}  {b.description}" for b in BINDINGS]
    lines += ["", "In the editor: Ctrl-X finishes (then y sends), Ctrl-C abandons the draft,",
              "Ctrl-K cuts to the end of the line.", "", "Any key closes this help."]
    return lines
