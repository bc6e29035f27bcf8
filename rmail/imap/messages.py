"""IMAP commands on messages of the selected folder: FETCH, STORE, COPY, MOVE, EXPUNGE, SEARCH.

Sequence numbers are the session's (``rmail.imap.view``); the store works in UIDs.
FETCH streams one message at a time and pauses while the client's socket is full.
MOVE (RFC 6851) is one store operation; COPYUID and UID EXPUNGE are RFC 4315's.
"""

from twisted.internet import defer, threads

from rmail.imap import fetch as fetching
from rmail.imap.arguments import Arguments, atom, flaglist, opt_charset, searchkeys, seqset
from rmail.store import names


class MessageCommands(Arguments):
    def _uids(self, tag, id_list, uid):
        try:
            return self.view.resolve(id_list, uid)
        except IndexError:
            self.sendBadResponse(tag, b"Invalid message sequence number")
            return None

    def do_FETCH(self, tag, id_list, items, uid=False):
        uids = self._uids(tag, id_list, uid)
        if uids is None:
            return
        view = self.view
        mark_seen = fetching.sets_seen(items) and not view.readonly
        d = self.mailstore.messages(view.name, uids, summaries=fetching.wants_summary(items))
        if mark_seen:
            unseen = [u for u in uids if names.SEEN not in view.flags.get(u, ())]

            def set_seen(infos):
                d2 = self.mailstore.set_flags(view.name, unseen, [names.SEEN], "add")

                def noted(changed):
                    for u, flags in changed.items():
                        view.set_flags(u, flags)
                    return infos, set(changed)
                return d2.addCallback(noted)
            d.addCallback(set_seen)
        else:
            d.addCallback(lambda infos: (infos, set()))

        @defer.inlineCallbacks
        def send(result):
            infos, seen_now = result
            self.transport.registerProducer(self, True)
            try:
                for info in infos:
                    seq = view.seq(info.uid)
                    if seq is None or self._closing:
                        continue
                    raw = None
                    if fetching.needs_file(items, info):
                        raw = yield threads.deferToThread(_read, info.path)
                    data = fetching.render(items, info, view.flag_list(info.uid), raw, uid,
                                           seen_now=info.uid in seen_now)
                    self.transport.write(b"* %d FETCH " % seq + data + b"\r\n")
                    if self._drained is not None:
                        yield self._drained  # the client reads slower than we send
            finally:
                self.transport.unregisterProducer()
            self.sendPositiveResponse(tag, b"FETCH completed")
        d.addCallback(send)
        d.addErrback(lambda f: self._fail(tag, f, b"FETCH"))

    select_FETCH = (do_FETCH, seqset, Arguments.arg_fetchatt)

    def do_STORE(self, tag, id_list, mode, flags, uid=False):
        mode = mode.upper()
        silent = mode.endswith(b".SILENT")
        how = {b"FLAGS": "replace", b"+FLAGS": "add", b"-FLAGS": "remove"}.get(
            mode[:-7] if silent else mode)
        if how is None:
            return self.sendBadResponse(tag, b"STORE needs FLAGS, +FLAGS or -FLAGS")
        if self.view.readonly:
            return self.sendNegativeResponse(tag, b"[READ-ONLY] Mailbox is read-only")
        uids = self._uids(tag, id_list, uid)
        if uids is None:
            return
        view = self.view
        flag_names = [f.decode("utf-8", "replace") for f in flags]
        d = self.mailstore.set_flags(view.name, uids, flag_names, how)

        def stored(changed):
            for u in sorted(changed):
                view.set_flags(u, changed[u])
                seq = view.seq(u)
                if not silent and seq is not None:
                    extra = b" UID %d" % u if uid else b""
                    self.sendUntaggedResponse(b"%d FETCH (FLAGS %s%s)" % (seq, view.flag_list(u), extra))
            self.sendPositiveResponse(tag, b"STORE completed")
        d.addCallbacks(stored, lambda f: self._fail(tag, f, b"STORE"))

    select_STORE = (do_STORE, seqset, atom,
                    flaglist)

    def _copy(self, tag, id_list, wire, uid, move):
        verb = b"MOVE" if move else b"COPY"
        target = self._name(tag, wire)
        if target is None:
            return
        uids = self._uids(tag, id_list, uid)
        if uids is None:
            return
        view = self.view
        if move and view.readonly:
            return self.sendNegativeResponse(tag, b"[READ-ONLY] Mailbox is read-only")
        if not uids:
            return self.sendPositiveResponse(tag, verb + b" completed")
        call = self.mailstore.move if move else self.mailstore.copy
        d = defer.gatherResults([self.mailstore.status(target),
                                 call(view.name, uids, target)], consumeErrors=True)

        def copied(result):
            status, pairs = result
            code = b"COPYUID %d %s %s" % (
                status.uidvalidity, _uid_set([a for a, _ in pairs]), _uid_set([b for _, b in pairs]))
            if move:
                self.sendUntaggedResponse(b"OK [" + code + b"] Moved")
                for line in view.remove([a for a, _ in pairs]):
                    self.sendUntaggedResponse(line)
                self.sendPositiveResponse(tag, b"MOVE completed")
            else:
                self.sendPositiveResponse(tag, b"[" + code + b"] COPY completed")
        d.addCallbacks(copied, lambda f: self._fail(tag, f, verb))

    def do_COPY(self, tag, id_list, wire, uid=False):
        self._copy(tag, id_list, wire, uid, move=False)

    def do_MOVE(self, tag, id_list, wire, uid=False):
        self._copy(tag, id_list, wire, uid, move=True)

    select_COPY = (do_COPY, seqset, Arguments.finalastring)
    select_MOVE = (do_MOVE, seqset, Arguments.finalastring)

    def do_EXPUNGE(self, tag, id_list=None, uid=False):
        view = self.view
        if view.readonly:
            return self.sendNegativeResponse(tag, b"[READ-ONLY] Mailbox is read-only")
        only = None
        if uid:
            if id_list is None:
                return self.sendBadResponse(tag, b"UID EXPUNGE needs a UID set")
            only = view.resolve(id_list, True)
        d = self.mailstore.expunge(view.name, only)

        def expunged(removed):
            for line in view.remove(removed):
                self.sendUntaggedResponse(line)
            self.sendPositiveResponse(tag, b"EXPUNGE completed")
        d.addCallbacks(expunged, lambda f: self._fail(tag, f, b"EXPUNGE"))

    select_EXPUNGE = (do_EXPUNGE, Arguments.optional_seqset)

    def do_SEARCH(self, tag, charset, query, uid=False):
        from rmail.imap import search
        try:
            compiled = search.compile(query, charset.decode() if charset else None)
        except search.BadCharset as e:
            return self.sendNegativeResponse(tag, b"[BADCHARSET (UTF-8 US-ASCII)] "
                                             + str(e).encode("ascii", "replace"))
        except search.SearchError as e:
            return self.sendBadResponse(tag, str(e).encode("utf-8", "replace"))
        view = self.view
        d = self.mailstore.messages(view.name, summaries=False,
                                    headers=compiled.needs_header and not compiled.needs_body)

        def evaluate(infos):
            records = [_SearchRecord(view, info) for info in infos if view.seq(info.uid)]
            max_seq, max_uid = view.exists, view.uids[-1] if view.uids else 0
            if compiled.needs_header or compiled.needs_body:
                return threads.deferToThread(_matching, compiled, records, max_seq, max_uid)
            return [r for r in records if compiled.matches(r, max_seq, max_uid)]
        d.addCallback(evaluate)

        def answer(found):
            ids = sorted(r.uid if uid else r.seq for r in found)
            self.sendUntaggedResponse(b"SEARCH" + b"".join(b" %d" % i for i in ids))
            self.sendPositiveResponse(tag, b"SEARCH completed")
        d.addCallbacks(answer, lambda f: self._fail(tag, f, b"SEARCH"))

    select_SEARCH = (do_SEARCH, opt_charset, searchkeys)


class _SearchRecord:
    """One message as the search evaluator sees it; file contents read lazily."""

    __slots__ = ("seq", "uid", "flags", "recent", "internaldate", "size", "_path", "_raw",
                 "_header")

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

    def raw(self) -> bytes:
        if self._raw is None:
            self._raw = _read(self._path)
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


def _matching(compiled, records, max_seq, max_uid) -> list:
    """In a thread: the records that match, each message's bytes dropped once judged, so
    a BODY search holds one message in memory at a time, not the folder."""
    found = []
    for record in records:
        if compiled.matches(record, max_seq, max_uid):
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


def _read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _uid_set(uids) -> bytes:
    """A compact UID set: 1:3,7 (RFC 4315 COPYUID keeps the source order)."""
    out = []
    for u in uids:
        if out and out[-1][1] + 1 == u:
            out[-1][1] = u
        else:
            out.append([u, u])
    return b",".join(b"%d" % a if a == b else b"%d:%d" % (a, b) for a, b in out)
