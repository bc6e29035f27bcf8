"""Twisted's IMAP mailbox interfaces, implemented over rmail's store.

``Account`` (IAccount, INamespacePresenter) is the IMAP avatar the cred portal hands a
session at login; ``Mailbox`` (IMailbox, ISearchableMailbox, IMessageCopier,
ICloseableMailbox) is a selected folder; ``Message`` and ``MessagePart`` (IMessage,
IMessagePart) are its messages.  The command handlers of ``rmail.imap`` talk to these
and nothing else of the store.

Two departures from how the stock IMAP4Server uses these interfaces, both for reasons
TWISTED.md records:

- Every method that touches storage returns a Deferred (the store never blocks the
  reactor thread; item 22).  Message contents are read by ``Message.load`` in the thread
  pool, so list views that only need the index never open a file.
- Sequence numbers are the session's own (``rmail.imap.view``): a Mailbox belongs to one
  session, announces changes to its listeners only as "something is pending", and the
  session tells the client at a command boundary (RFC 3501 7.4.1).  The store itself
  works in UIDs.
"""

import io
import time

from twisted.internet import defer, threads
from twisted.mail import imap4
from zope.interface import implementer

from rmail import mime, mimeparts
from rmail.imap import folders
from rmail.imap.view import SelectedFolder
from rmail.rfc5322 import header_fields
from rmail.store import names, workers

# Twisted's STORE modes.
REMOVE, REPLACE, ADD = -1, 0, 1
_STORE_MODES = {REMOVE: "remove", REPLACE: "replace", ADD: "add"}


@implementer(imap4.IAccount, imap4.INamespacePresenter)
class Account:
    """One user's folders, for IMAP."""

    def __init__(self, user, store):
        self.user = user
        self.store = store  # the IMailStore: new messages, the change hub
        self.folders = store.user(user.address)  # this user's IUserStore

    # -- IAccount -------------------------------------------------------------------

    def addMailbox(self, name, mbox=None):
        return self.create(name)

    def create(self, pathspec):
        return self.folders.create_folder(pathspec)

    def select(self, name, rw=True):
        """Deferred Mailbox; a read-write select claims the folder's \\Recent messages."""
        d = self.folders.select(name, claim_recent=bool(rw))
        return d.addCallback(lambda result: Mailbox(self, name, *result, readonly=not rw))

    def delete(self, name):
        return self.folders.delete_folder(name)

    def rename(self, oldname, newname):
        return self.folders.rename_folder(oldname, newname)

    def isSubscribed(self, name):
        return self.folders.status(name).addCallback(lambda info: info.subscribed)

    def subscribe(self, name):
        return self.folders.subscribe(name, True)

    def unsubscribe(self, name):
        return self.folders.subscribe(name, False)

    def listMailboxes(self, ref, wildcard):
        """Deferred [(name, FolderListing)] of the folders LIST ``ref wildcard`` names;
        *wildcard* may also be a list of patterns (RFC 5258's multiple patterns)."""
        patterns = wildcard if isinstance(wildcard, list) else [wildcard]
        regexes = [folders.pattern(ref, p) for p in patterns]

        def matching(infos):
            all_names = [f.name for f in infos]
            named = [any(r.fullmatch(folders.encode(info.name).decode("latin-1"))
                         for r in regexes) for info in infos]
            # LSUB with "%" (RFC 3501 6.3.9): a folder whose subscribed child the pattern
            # does not reach is listed in its stead, as \Noselect.
            unnamed_subscribed = [info.name + names.SEPARATOR
                                  for info, hit in zip(infos, named) if info.subscribed and not hit]
            return [(info.name, FolderListing(info, all_names, unnamed_subscribed))
                    for info, hit in zip(infos, named) if hit]
        return self.folders.folders().addCallback(matching)

    # -- beyond IAccount: what STATUS and APPEND need without selecting ------------------

    def status(self, name):
        """Deferred FolderInfo."""
        return self.folders.status(name)

    def append(self, name, data: bytes, flags=(), date=None):
        """Store *data* (CRLF line ends) in folder *name*; Deferred (UIDVALIDITY, UID)."""
        writer = self.store.new_message()
        writer.write(data)
        d = self.folders.append(name, writer, flags, date)  # written in the commit's turn
        # Kept by the store until folders change: no second trip to the disk thread.
        d.addCallback(lambda uid: self.folders.uidvalidity(name).addCallback(
            lambda uidvalidity: (uidvalidity, uid)))

        def failed(f):
            writer.discard()
            return f
        return d.addErrback(failed)

    # -- INamespacePresenter ------------------------------------------------------------

    def getPersonalNamespaces(self):
        return [[b"", names.SEPARATOR.encode()]]

    def getSharedNamespaces(self):
        return None

    def getUserNamespaces(self):
        return None


@implementer(imap4.IMailboxInfo)
class FolderListing:
    """A folder as LIST shows it: ``getFlags`` are its LIST attributes."""

    def __init__(self, info, all_names, unnamed_subscribed=()):
        self.info = info
        prefix = info.name + names.SEPARATOR
        children = any(other.startswith(prefix) for other in all_names)
        self.attributes = ["\\HasChildren" if children else "\\HasNoChildren"]
        if info.special_use:
            self.attributes.append(info.special_use)
        # a subscribed folder inside this one that the LIST pattern did not name
        self.subscribed_below = any(other.startswith(prefix) for other in unnamed_subscribed)

    def getFlags(self):
        return self.attributes

    def getHierarchicalDelimiter(self):
        return names.SEPARATOR


@implementer(imap4.IMailbox, imap4.ISearchableMailbox, imap4.IMessageCopier,
             imap4.ICloseableMailbox)
class Mailbox:
    """A folder selected by one session: its view, and the store calls on its messages."""

    def __init__(self, account, name, status, messages, recent, readonly=False):
        """*messages*: (UID, flags) in UID order, as the store's ``select`` gives them."""
        self.account = account
        self.name = name
        self.view = SelectedFolder(name, status, messages, readonly, recent)
        self.first_unseen = next((seq for seq, (_, flags) in enumerate(messages, 1)
                                  if names.SEEN not in flags), None)
        self._listeners = []

    @property
    def _store(self):
        return self.account.folders

    # -- IMailboxInfo / IMailbox: what the session knows already -----------------------

    def getFlags(self):
        return self.view.flag_names()

    def getHierarchicalDelimiter(self):
        return names.SEPARATOR

    def getUIDValidity(self):
        return self.view.uidvalidity

    def getUIDNext(self):
        return self.view.uidnext

    def getUID(self, message):
        return self.view.uids[message - 1]

    def getMessageCount(self):
        return self.view.exists

    def getRecentCount(self):
        return len(self.view.recent)

    def getUnseenCount(self):
        return sum(names.SEEN not in f for f in self.view.flags.values())

    def isWriteable(self):
        return not self.view.readonly

    def destroy(self):
        """The store removes a deleted folder's messages itself."""

    def requestStatus(self, names_):
        values = {"MESSAGES": self.getMessageCount, "RECENT": self.getRecentCount,
                  "UIDNEXT": self.getUIDNext, "UIDVALIDITY": self.getUIDValidity,
                  "UNSEEN": self.getUnseenCount}
        return {n: values[n]() for n in names_}

    # -- listeners: changes from other sessions, SMTP and HTTP --------------------------

    def addListener(self, listener):
        """*listener* (an IMailboxListener) hears ``newMessages`` whenever a change is
        pending in the view; the first listener subscribes the view to the store's hub."""
        if not self._listeners:
            self.account.store.hub.subscribe(self.account.user.address, self.name,
                                             self._receive)
            self.view.on_change = self._changed
        self._listeners.append(listener)

    def removeListener(self, listener):
        """The last listener gone, the view leaves the hub (TWISTED.md 21: the stock
        server never removes them, a leak growing with every login)."""
        if listener in self._listeners:
            self._listeners.remove(listener)
        if not self._listeners:
            self.account.store.hub.unsubscribe(self.account.user.address, self.name,
                                               self._receive)
            self.view.on_change = None

    def _receive(self, change):
        """A change from the hub.  New messages no other session has taken are \\Recent
        in this one (RFC 3501 2.3.2: the first session told of them), unless it only
        EXAMINEs the folder; the store remembers they were taken."""
        if change.unclaimed_recent and not self.view.readonly:
            taken = sorted(change.unclaimed_recent)
            change.unclaimed_recent.clear()
            self.view.take_recent(taken)
            self._store.claim_recent(self.name, taken[-1])
        self.view.receive(change)

    def _changed(self):
        for listener in list(self._listeners):
            listener.newMessages(None, None)

    # -- messages --------------------------------------------------------------------

    def resolve(self, messages, uid=False) -> list:
        """The UIDs a sequence set or UID set names; IndexError for a sequence number
        this session does not know."""
        return self.view.resolve(messages, uid)

    def addMessage(self, message, flags=(), date=None):
        """Add a message (bytes or a file, CRLF line ends) to this folder, *date* its
        internal date in seconds since the epoch; Deferred UID."""
        data = message if isinstance(message, bytes) else message.read()
        d = self.account.append(self.name, data, [_text(f) for f in flags], date)
        return d.addCallback(lambda result: result[1])

    def fetch(self, messages, uid, summaries=False):
        """Deferred ([Message] for the messages named, in UID order, whether every one
        named still exists); *summaries* fetches the ENVELOPE/BODY/BODYSTRUCTURE the
        index keeps (none of it opens a file)."""
        uids = self.resolve(messages, uid)
        everything = len(uids) == self.view.exists  # 1:*, as list views ask

        def known(infos):
            if everything:  # all the folder holds now: some may not be announced yet
                announced = set(self.view.uids)
                infos = [info for info in infos if info.uid in announced]
            return [Message(info, self) for info in infos], len(infos) == len(uids)
        d = self._store.messages(self.name, None if everything else uids, summaries=summaries)
        return d.addCallback(known)

    def store(self, messages, flags, mode, uid):
        """Change flags (*mode* Twisted's -1 remove, 0 replace, 1 add); Deferred
        {sequence number: new flags} for the messages changed."""
        uids = self.resolve(messages, uid)
        return self.set_flags(uids, flags, _STORE_MODES[mode])

    def set_flags(self, uids, flags, how):
        d = self._store.set_flags(self.name, uids, [_text(f) for f in flags], how)

        def noted(changed):
            out = {}
            for u in sorted(changed):
                self.view.set_flags(u, changed[u])
                seq = self.view.seq(u)
                if seq is not None:
                    out[seq] = changed[u]
            return out
        return d.addCallback(noted)

    def expunge(self, uids=None):
        """Remove the \\Deleted messages (only among *uids* when given); Deferred list of
        the sequence numbers removed, in the order EXPUNGE announces them."""
        return self._store.expunge(self.name, uids).addCallback(self.view.removed)

    def close(self):
        """CLOSE: expunge without announcing it (RFC 3501 6.4.2)."""
        return self._store.expunge(self.name).addCallback(lambda _: None)

    def search(self, query, uid):
        """Deferred list of sequence numbers (or UIDs) of the messages matching the
        compiled *query* (``rmail.imap.search``).  Keys on flags, sizes, dates and
        numbers are answered from the index; header keys from the header blocks the
        index keeps; only BODY and TEXT open message files.  The whole evaluation runs in
        the thread pool, on a snapshot of the session's view: a folder of 10,000 would
        otherwise hold the reactor thread for a tenth of a second."""
        d = self._store.messages(self.name, summaries=False,
                                 headers=query.needs_header and not query.needs_body,
                                 texts=query.needs_kept, containing=query.kept_filters)

        def evaluate(infos):
            return threads.deferToThread(_matching, query, self.view.snapshot(), infos)

        def numbers(found):
            return sorted(r.uid if uid else r.seq for r in found)
        return d.addCallback(evaluate).addCallback(numbers)

    def copy(self, messageObject):
        """IMessageCopier: copy one Message of this account into this folder; Deferred UID."""
        d = self._store.copy(messageObject.mailbox.name, [messageObject.getUID()], self.name)
        return d.addCallback(lambda pairs: pairs[0][1])

    def transfer(self, uids, target, move):
        """COPY or MOVE (RFC 6851, one store transaction) to *target*; Deferred
        (target UIDVALIDITY, [(old UID, new UID)], [sequence numbers expunged by MOVE])."""
        call = self._store.move if move else self._store.copy
        d = defer.gatherResults([self._store.uidvalidity(target), call(self.name, uids, target)],
                                consumeErrors=True)

        def done(result):
            uidvalidity, pairs = result
            gone = self.view.removed([a for a, _ in pairs]) if move else []
            return uidvalidity, pairs, gone
        return d.addCallback(done)


@implementer(imap4.IMessagePart)
class MessagePart:
    """A MIME part of a loaded message: *path* is its part number as a tuple ((1, 2) is
    section "1.2"); the empty path is the whole message."""

    def __init__(self, raw: bytes, path: tuple = ()):
        self.raw = raw
        self.path = path

    def _part(self):
        root = mimeparts.tree(self.raw)
        return mime.find_part(root, self.path) if self.path else root

    def getHeaders(self, negate, *names_):
        """{lower-case name: value} of the header fields named (or all others when
        *negate*); names and values as bytes, the first field of a name, unfolded."""
        kind = "HEADER" if not self.path else "MIME"
        block = mime.section(self.raw, self.path, kind)
        wanted = {(n if isinstance(n, bytes) else n.encode()).lower() for n in names_}
        out = {}
        for name, value, _, _ in header_fields(block):
            if name and (not names_ or (name in wanted) != bool(negate)):
                out.setdefault(name, value.replace(b"\n", b" ").strip())
        return out

    def getBodyFile(self):
        kind = "TEXT" if not self.path else None
        return io.BytesIO(mime.section(self.raw, self.path, kind))

    def getSize(self):
        return len(mime.section(self.raw, self.path)) if self.path else len(self.raw)

    def isMultipart(self):
        part = self._part()
        return bool(part is not None and part.multipart)

    def getSubPart(self, part):
        """Part *part* (0-based, as Twisted counts) of this multipart."""
        if not self.isMultipart():
            raise TypeError("not a multipart")
        return MessagePart(self.raw, self.path + (part + 1,))


@implementer(imap4.IMessage)
class Message(MessagePart):
    """A message of a selected folder: the index's MessageInfo, and its bytes once
    ``load`` has read them (in the thread pool)."""

    def __init__(self, info, mailbox):
        super().__init__(None)
        self.info = info
        self.mailbox = mailbox

    def load(self):
        """Deferred self, with ``raw`` read from the message file off the reactor thread."""
        if self.raw is not None:
            return defer.succeed(self)

        def loaded(raw):
            self.raw = raw
            return self
        return workers.run(read_file, self.info.path).addCallback(loaded)

    def getUID(self):
        return self.info.uid

    def getFlags(self):
        """The flags as the session sees them, \\Recent included."""
        view = self.mailbox.view
        flags = list(view.flags.get(self.info.uid, self.info.flags))
        if self.info.uid in view.recent:
            flags.append("\\Recent")
        return flags

    def getInternalDate(self):
        return time.strftime("%d-%b-%Y %H:%M:%S +0000", time.gmtime(self.info.internaldate))

    def getSize(self):
        return self.info.size


class _SearchRecord:
    """One message as the search evaluator sees it; file contents read lazily."""

    __slots__ = ("seq", "uid", "flags", "recent", "internaldate", "size", "_path", "_raw",
                 "_header", "_kept")

    def __init__(self, view, info):
        self.seq = view.seq(info.uid)
        self.uid = info.uid
        self.flags = view.flags.get(info.uid, info.flags)
        self.recent = info.uid in view.recent
        self.internaldate = info.internaldate
        self.size = info.size
        self._path = info.path
        self._raw = None
        self._header = info.header  # from the index when the search asked for it
        self._kept = info.texts  # likewise

    def kept_texts(self):
        return self._kept

    def raw(self) -> bytes:
        if self._raw is None:
            self._raw = read_file(self._path)
        return self._raw

    def forget(self):
        self._raw = None

    def header(self) -> bytes:
        """The header block: from the index, or read alone from disk."""
        if self._header is not None:
            return self._header
        if self._raw is not None:
            data, complete = self._raw, True
        else:
            data, complete = _read_header(self._path)
        end = data.find(b"\r\n\r\n")
        return data[:end + 2] if end >= 0 else data if complete else self.raw()


def _matching(query, view, infos) -> list:
    """In a thread: the records of the messages in *view* (a ViewSnapshot) that match,
    each message's bytes dropped once judged, so a BODY search holds one message in
    memory at a time, not the folder."""
    max_seq, max_uid = view.exists, view.uids[-1] if view.uids else 0
    found = []
    for info in infos:
        record = _SearchRecord(view, info)
        if record.seq is None:  # arrived after the view was taken: not announced yet
            continue
        if query.matches(record, max_seq, max_uid):
            found.append(record)
        record.forget()
    return found


def _read_header(path, chunk=16384, limit=1 << 20):
    """The start of a message up to its blank line (or *limit*); (data, read to the end)."""
    with open(path, "rb") as f:
        data = b""
        while len(data) < limit:
            more = f.read(chunk)
            if not more:
                return data, True
            data += more
            if b"\r\n\r\n" in data[-len(more) - 3:]:
                return data, False
        return data, False


def read_file(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _text(flag) -> str:
    return flag if isinstance(flag, str) else flag.decode("utf-8", "replace")
