"""The message list pane: thousands of messages, fetched a page at a time.

The list holds every UID of the folder (one UID SEARCH: a few bytes each) but only the
envelopes of pages someone has looked at: ``missing()`` names the UIDs of the pages the
pane shows that are not loaded yet, the app fetches them with one UID FETCH each, and
``store()`` keeps them.  Envelopes are kept by UID, so new mail or a deletion does not
throw away what is loaded, and the selection stays on the same message.

Newest first: UIDs grow with arrival (RFC 3501 section 2.3.1.1), so descending UID
order is arrival order without fetching a date for every message.
"""

import datetime

from rmail.client.layout import fit, scroll_to_show

PAGE_SIZE = 50


class MessageList:
    def __init__(self, page_size: int = PAGE_SIZE):
        self.page_size = page_size
        self.folder = None
        self.uids: list[int] = []
        self.envelopes: dict = {}
        self.index = 0
        self.top = 0
        self.search = None  # the words of a search being shown, None for the whole folder

    # --- contents ------------------------------------------------------------------

    def load(self, folder, uids, search=None):
        """A folder (or a search result in it) shown from the top."""
        if folder != self.folder:
            self.envelopes = {}
        self.folder = folder
        self.search = search
        self.uids = sorted(set(uids), reverse=True)
        self.index = 0
        self.top = 0

    def update(self, uids) -> list:
        """The folder's UIDs now (after new mail or expunges); returns the new ones.

        The selection stays on the same message when it is still there."""
        chosen = self.current_uid
        before = set(self.uids)
        self.uids = sorted(set(uids), reverse=True)
        now = set(self.uids)
        for uid in list(self.envelopes):
            if uid not in now:
                del self.envelopes[uid]
        if chosen in now:
            self.index = self.uids.index(chosen)
            # Scrolled down: the rows stay put when mail arrives above them.  At the
            # top: new mail shows up there.
            if self.top > 0:
                self.top += sum(1 for uid in now - before if uid > chosen)
        self.index = max(0, min(self.index, len(self.uids) - 1))
        return sorted(now - before, reverse=True)

    def remove(self, uids):
        """Messages moved or deleted: the selection moves to the next one down."""
        gone = set(uids)
        self.uids = [u for u in self.uids if u not in gone]
        for uid in gone:
            self.envelopes.pop(uid, None)
        self.index = max(0, min(self.index, len(self.uids) - 1))

    def store(self, envelopes: dict):
        self.envelopes.update(envelopes)

    def set_flags(self, uid, flags):
        envelope = self.envelopes.get(uid)
        if envelope is not None:
            envelope.flags = frozenset(flags)

    def forget_envelopes(self):
        """Reload what is shown on the next draw (a manual refresh)."""
        self.envelopes = {}

    # --- selection and scrolling -----------------------------------------------------

    def __len__(self):
        return len(self.uids)

    @property
    def current_uid(self) -> int | None:
        return self.uids[self.index] if 0 <= self.index < len(self.uids) else None

    @property
    def current(self):
        uid = self.current_uid
        return self.envelopes.get(uid) if uid is not None else None

    def move(self, delta: int):
        if self.uids:
            self.index = max(0, min(len(self.uids) - 1, self.index + delta))

    def select_uid(self, uid) -> bool:
        if uid in self.uids:
            self.index = self.uids.index(uid)
            return True
        return False

    def visible(self, height: int) -> list:
        """[(uid, envelope or None, is_selected)] for a pane *height* rows tall."""
        self.top = scroll_to_show(self.index, self.top, height, len(self.uids))
        window = self.uids[self.top:self.top + height]
        return [(uid, self.envelopes.get(uid), self.top + i == self.index)
                for i, uid in enumerate(window)]

    # --- paging ----------------------------------------------------------------------

    def page_of(self, index: int) -> int:
        return index // self.page_size

    def page(self, number: int) -> list:
        """The UIDs of page *number* (0 is the newest)."""
        start = number * self.page_size
        return self.uids[start:start + self.page_size]

    def missing(self, height: int) -> list:
        """UIDs to fetch so the pane (from ``top``, *height* rows) shows every row:
        whole pages, so scrolling on fetches once per page rather than once per row."""
        if not self.uids or height <= 0:
            return []
        first = self.page_of(self.top)
        last = self.page_of(min(len(self.uids) - 1, self.top + height - 1))
        wanted = []
        for number in range(first, last + 1):
            wanted.extend(uid for uid in self.page(number) if uid not in self.envelopes)
        return wanted

    def position(self) -> str:
        if not self.uids:
            return "0/0"
        return f"{self.index + 1}/{len(self.uids)}"


# --- one line of the pane --------------------------------------------------------------

def short_date(when, now=None) -> str:
    """Today as 09:41, this year as Nov 26, older as Nov 2024 (local time)."""
    if when is None:
        return ""
    now = now or datetime.datetime.now().astimezone()
    local = when.astimezone(now.tzinfo) if when.tzinfo else when
    if local.date() == now.date():
        return local.strftime("%H:%M")
    if local.year == now.year:
        return local.strftime("%b %d")
    return local.strftime("%b %Y")


def summary(envelope, width: int, now=None, me=frozenset()) -> str:
    """The message's row: unread mark (N), flag (!) or answered (r), date, from, subject.

    A message from the user shows whom it went to instead ("To bob"), as the Sent
    folder needs."""
    if envelope is None:
        return fit("   …", width)
    mark = ("N" if envelope.unread else " ") + (
        "!" if envelope.flagged else "r" if envelope.answered else " ")
    sender = envelope.sender[0] if envelope.sender else None
    if sender is not None and sender.address.lower() in me and envelope.to:
        who = "To " + envelope.to[0].shown
    else:
        who = sender.shown if sender else ""
    from_width = max(8, min(24, width // 4))
    line = f"{mark} {fit(short_date(envelope.date, now), 8)} {fit(who, from_width)} "
    return fit(line + (envelope.subject or "(no subject)"), width)
