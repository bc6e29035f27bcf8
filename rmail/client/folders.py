"""The folder pane: which folders there are, how many unread, which one is chosen.

Special-use attributes (RFC 6154) name the folders the client needs — where deleted
mail goes (\\Trash) and where the sent copy goes (\\Sent) — with the conventional
names as the fallback for servers that do not mark them.
"""

from dataclasses import dataclass

from rmail.client.layout import fit, scroll_to_show, width_of

FALLBACK_NAMES = {"\\Trash": "Trash", "\\Sent": "Sent", "\\Drafts": "Drafts",
                  "\\Junk": "Junk", "\\Archive": "Archive"}


@dataclass
class Folder:
    name: str
    attributes: frozenset = frozenset()
    delimiter: str | None = "/"
    messages: int | None = None
    unseen: int | None = None

    @property
    def selectable(self) -> bool:
        return not {"\\noselect", "\\nonexistent"} & {a.lower() for a in self.attributes}

    @property
    def special_use(self) -> str | None:
        for attribute in self.attributes:
            if attribute.title() in FALLBACK_NAMES:
                return attribute.title()
        return None

    @property
    def depth(self) -> int:
        return self.name.count(self.delimiter) if self.delimiter else 0

    @property
    def leaf(self) -> str:
        return self.name.rsplit(self.delimiter, 1)[-1] if self.delimiter else self.name

    def label(self, width: int) -> str:
        """The pane's line: indented leaf name, unread count at the right."""
        count = f" {self.unseen}" if self.unseen else ""
        name = "  " * self.depth + self.leaf
        room = width - width_of(count)
        return fit(name, room) + count


class FolderList:
    """The folders in display order, with a selection and a scroll position."""

    def __init__(self):
        self.folders: list[Folder] = []
        self.index = 0
        self.top = 0

    def replace(self, folders):
        """New folders from LIST: INBOX first, then the server's order; keeps the
        selection on the same name."""
        chosen = self.current.name if self.current else "INBOX"
        inbox = [f for f in folders if f.name.upper() == "INBOX"]
        rest = [f for f in folders if f.name.upper() != "INBOX"]
        self.folders = inbox + rest
        self.select(chosen)

    @property
    def current(self) -> Folder | None:
        return self.folders[self.index] if 0 <= self.index < len(self.folders) else None

    def find(self, name) -> Folder | None:
        for folder in self.folders:
            if folder.name == name or (name.upper() == "INBOX" and folder.name.upper() == "INBOX"):
                return folder
        return None

    def select(self, name) -> bool:
        for i, folder in enumerate(self.folders):
            if folder.name == name or (name.upper() == "INBOX" and folder.name.upper() == "INBOX"):
                self.index = i
                return True
        self.index = min(self.index, max(0, len(self.folders) - 1))
        return False

    def move(self, delta: int):
        if self.folders:
            self.index = max(0, min(len(self.folders) - 1, self.index + delta))

    def special(self, use: str) -> str:
        """The folder with special-use *use* (\\Trash, \\Sent), else its usual name."""
        for folder in self.folders:
            if folder.special_use == use:
                return folder.name
        return FALLBACK_NAMES[use]

    def set_counts(self, name, messages=None, unseen=None):
        folder = self.find(name)
        if folder is not None:
            if messages is not None:
                folder.messages = messages
            if unseen is not None:
                folder.unseen = unseen

    def adjust_unseen(self, name, delta: int):
        folder = self.find(name)
        if folder is not None and folder.unseen is not None:
            folder.unseen = max(0, folder.unseen + delta)

    def names(self) -> list:
        return [f.name for f in self.folders if f.selectable]

    def visible(self, height: int) -> list:
        """[(folder, is_selected)] for a pane *height* rows tall, scrolled to the selection."""
        self.top = scroll_to_show(self.index, self.top, height, len(self.folders))
        window = self.folders[self.top:self.top + height]
        return [(f, self.top + i == self.index) for i, f in enumerate(window)]
