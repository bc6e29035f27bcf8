"""One session's view of its selected folder: sequence numbers, flags, pending changes.

RFC 3501 7.4.1: a session's sequence numbers change only when the server tells it,
and an EXPUNGE may not be sent while a FETCH, STORE or SEARCH (by sequence number) is
answered.  So changes from the store's hub (other sessions, SMTP, HTTP) are queued
here and announced at a command boundary (or at once while IDLE): EXPUNGEs first,
then EXISTS, then changed FLAGS.  The view's UID list is what sequence numbers mean.

The FLAGS response lists the keywords in use (RFC 3501 7.2.6); a keyword a message
gains later, from any session, is announced with a new FLAGS response before the first
FETCH that shows it, as clients that track keywords (and Dovecot's imaptest) expect.
A message is \\Recent in the first session told of it (RFC 3501 2.3.2): at SELECT, the
ones no session has seen; later, the new ones, in the first read-write session with the
folder selected (``Mailbox._receive``), announced with a RECENT response after EXISTS.

Reactor thread only.
"""

import bisect

from rmail.store import hub as changes

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


class SelectedFolder:
    def __init__(self, name, status, messages, readonly, recent_uids=()):
        """*messages*: (UID, flags) of the folder's messages in UID order."""
        self.name = name
        self.uidvalidity = status.uidvalidity
        self.uidnext = status.uidnext
        self.readonly = readonly
        self.flags = dict(messages)
        self.uids = list(self.flags)
        self.keywords = {f for flags in set(self.flags.values()) for f in flags if f[0] != "\\"}
        self._keywords_grew = False  # since the last FLAGS response
        self.recent = set(recent_uids)
        self._expunged = set()
        self._added = set()
        self._recent_added = set()  # of _added: \\Recent in this session
        self._flag_changes = {}
        self.on_change = None  # called when something is pending (IDLE pushes it at once)

    # -- sequence numbers ---------------------------------------------------------

    @property
    def exists(self) -> int:
        return len(self.uids)

    def seq(self, uid: int):
        return _seq(self.uids, uid)

    def snapshot(self) -> "ViewSnapshot":
        return ViewSnapshot(self)

    def resolve(self, id_list, uid: bool) -> list[int]:
        """The UIDs a sequence set (or UID set, when *uid*) names, in UID order.

        ``*`` is the highest sequence number / UID (RFC 3501 6.4.8: a UID range naming
        only UIDs above the highest still includes the highest)."""
        if not self.uids:
            return []
        if uid:
            wanted = []
            for start, end in id_list.spans(self.uids[-1]):
                lo = bisect.bisect_left(self.uids, start)
                hi = bisect.bisect_right(self.uids, end)
                wanted.extend(self.uids[lo:hi])
            return sorted(set(wanted))
        result = set()
        for start, end in id_list.spans(len(self.uids)):
            if start < 1 or end > len(self.uids):
                raise IndexError("no such message")
            result.update(self.uids[start - 1:end])
        return sorted(result)

    # -- changes from the hub ---------------------------------------------------------

    def receive(self, change):
        if change.kind == changes.ADDED:
            for uid in change.uids:
                if uid not in self.flags:
                    self._added.add(uid)
                    self._flag_changes[uid] = change.flags.get(uid, frozenset())
        elif change.kind == changes.EXPUNGED:
            self._expunged.update(u for u in change.uids if u in self.flags)
        elif change.kind == changes.FLAGS:
            for uid, flags in change.flags.items():
                if uid in self.flags or uid in self._added:
                    self._flag_changes[uid] = flags
        else:
            return
        if self.on_change is not None:
            self.on_change()

    def take_recent(self, uids):
        """Messages about to be announced that are \\Recent in this session."""
        self._recent_added.update(uids)

    @property
    def pending(self) -> bool:
        return bool(self._expunged or self._added or self._flag_changes)

    def flush(self, allow_expunge=True) -> list[bytes]:
        """The untagged responses for what changed since the last flush; applies them."""
        lines = []
        if allow_expunge and self._expunged:
            lines.extend(b"%d EXPUNGE" % seq for seq in self.removed(set(self._expunged)))
        if self._added:
            recent = len(self.recent)
            for uid in sorted(self._added):
                if not self.uids or uid > self.uids[-1]:
                    self.uids.append(uid)
                    self._record(uid, self._flag_changes.pop(uid, frozenset()))
                    self.uidnext = max(self.uidnext, uid + 1)
                    if uid in self._recent_added:
                        self.recent.add(uid)
            self._added.clear()
            self._recent_added.clear()
            lines.append(b"%d EXISTS" % len(self.uids))
            if len(self.recent) != recent:
                lines.append(b"%d RECENT" % len(self.recent))
        fetches = []
        for uid, flags in sorted(self._flag_changes.items()):
            if uid in self.flags and self.flags[uid] != flags:
                self._record(uid, flags)
                fetches.append(b"%d FETCH (FLAGS %s)" % (self.seq(uid), self.flag_list(uid)))
        self._flag_changes.clear()
        return lines + self.keyword_lines() + fetches

    def set_flags(self, uid, flags):
        """Record flags this session changed itself (so the hub's echo announces nothing)."""
        if uid in self.flags:
            self._record(uid, flags)
        self._flag_changes.pop(uid, None)

    def _record(self, uid, flags):
        self.flags[uid] = flags
        for flag in flags:
            if flag not in self.keywords and flag[0] != "\\":
                self.keywords.add(flag)
                self._keywords_grew = True

    # -- FLAGS and PERMANENTFLAGS ---------------------------------------------------------

    def flag_names(self) -> list[str]:
        """What FLAGS lists: the system flags and the keywords in use."""
        return list(SYSTEM_FLAGS) + sorted(self.keywords)

    def flag_lines(self) -> list[bytes]:
        """The FLAGS and PERMANENTFLAGS responses (``flag_names``); any keyword may be
        added (``\\*``) unless the folder is read-only."""
        self._keywords_grew = False
        flags = " ".join(self.flag_names()).encode()
        permanent = b"" if self.readonly else flags + b" \\*"
        return [b"FLAGS (" + flags + b")",
                b"OK [PERMANENTFLAGS (" + permanent + b")] Flags permitted"]

    def keyword_lines(self) -> list[bytes]:
        """flag_lines() if a message gained a keyword since they were last sent."""
        return self.flag_lines() if self._keywords_grew else []

    def removed(self, uids) -> list[int]:
        """Messages expunged or moved away: their sequence numbers, highest first (the
        order in which EXPUNGE responses keep every number valid)."""
        seqs = []
        for uid in sorted(uids, reverse=True):
            seq = self.seq(uid)
            if seq is not None:
                del self.uids[seq - 1]
                self.flags.pop(uid, None)
                self.recent.discard(uid)
                seqs.append(seq)
            self._expunged.discard(uid)
        return seqs

    def flag_list(self, uid) -> bytes:
        key = (self.flags.get(uid, frozenset()), uid in self.recent)
        text = _FLAG_LISTS.get(key)
        if text is None:
            flags = sorted(key[0], key=lambda f: (not f.startswith("\\"), f))
            if key[1]:
                flags.insert(sum(f.startswith("\\") for f in flags), "\\Recent")
            text = b"(" + " ".join(flags).encode() + b")"
            if len(_FLAG_LISTS) >= 4096:  # a folder has few distinct combinations
                _FLAG_LISTS.clear()
            _FLAG_LISTS[key] = text
        return text


# (flags, \\Recent) -> the FLAGS list as written: most messages share a few.
_FLAG_LISTS: dict = {}


class ViewSnapshot:
    """Sequence numbers, flags and \\Recent marks as a view holds them at one moment:
    copied on the reactor thread, then read in another (a SEARCH over a large folder
    builds its records there) while the session's own view goes on changing."""

    __slots__ = ("uids", "flags", "recent")

    def __init__(self, view: SelectedFolder):
        self.uids = list(view.uids)
        self.flags = dict(view.flags)
        self.recent = frozenset(view.recent)

    @property
    def exists(self) -> int:
        return len(self.uids)

    def seq(self, uid: int):
        return _seq(self.uids, uid)


def _seq(uids: list, uid: int):
    """The sequence number of *uid* among *uids* (in UID order), None if absent."""
    i = bisect.bisect_left(uids, uid)
    return i + 1 if i < len(uids) and uids[i] == uid else None
