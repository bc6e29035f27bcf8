"""IMAP commands on messages of the selected folder: FETCH, STORE, COPY, MOVE, EXPUNGE, SEARCH.

Each command works through the selected ``rmail.imap.mailbox.Mailbox``; sequence numbers
are the session's (``rmail.imap.view``), the store works in UIDs.
FETCH streams one message at a time and pauses while the client's socket is full.
MOVE (RFC 6851) is one store operation; COPYUID and UID EXPUNGE are RFC 4315's.
"""

from twisted.internet import defer

from rmail.imap import fetch as fetching, search
from rmail.imap.arguments import Arguments, atom, flaglist, opt_charset, searchkeys, seqset
from rmail.imap.mailbox import ADD, REMOVE, REPLACE
from rmail.store import names


# FETCH responses gathered before a write: enough to make a 10,000-message list view a
# few hundred writes, small enough that back-pressure still works per batch.
_BATCH = 64 * 1024


class MessageCommands(Arguments):
    def _uids(self, tag, id_list, uid):
        try:
            return self.mailbox.resolve(id_list, uid)
        except IndexError:
            self.sendBadResponse(tag, b"Invalid message sequence number")
            return None

    def do_FETCH(self, tag, id_list, items, uid=False):
        mailbox = self.mailbox
        view = mailbox.view
        try:
            d = mailbox.fetch(id_list, uid, summaries=fetching.wants_summary(items))
        except IndexError:
            return self.sendBadResponse(tag, b"Invalid message sequence number")
        mark_seen = fetching.sets_seen(items) and mailbox.isWriteable()
        if mark_seen:
            def set_seen(found):
                messages = found[0]
                unseen = [m.getUID() for m in messages if names.SEEN not in m.getFlags()]
                d2 = mailbox.set_flags(unseen, [names.SEEN], "add")
                return d2.addCallback(lambda changed: (found, {view.uids[s - 1]
                                                                for s in changed}))
            d.addCallback(set_seen)
        else:
            d.addCallback(lambda found: (found, set()))

        @defer.inlineCallbacks
        def send(result):
            (messages, complete), seen_now = result
            gone = not complete  # some were expunged by another session meanwhile
            out, size = [], 0  # responses written a batch at a time, not one write each
            for message in messages:  # the session is the transport's producer (server.py)
                seq = view.seq(message.info.uid)
                if seq is None or self._closing:
                    continue
                if fetching.needs_file(items, message.info):
                    if out:  # what is ready goes out while the file is read
                        self.transport.writeSequence(out)
                        out, size = [], 0
                    try:
                        yield message.load()
                    except FileNotFoundError:  # expunged since the index was read
                        gone = True
                        continue
                data = fetching.render(items, message.info, view.flag_list(message.info.uid),
                                       message.raw, uid, seen_now=message.info.uid in seen_now)
                out.append(b"* %d FETCH %s\r\n" % (seq, data))
                size += len(data)
                if size >= _BATCH or message.raw is not None:
                    self.transport.writeSequence(out)
                    out, size = [], 0
                    if self._drained is not None:
                        yield self._drained  # the client reads slower than we send
            if out and not self._closing:
                self.transport.writeSequence(out)
            if gone:  # RFC 2180 4.1.3, with RFC 5530's code, as Dovecot answers
                self.sendPositiveResponse(
                    tag, b"[EXPUNGEISSUED] Some of the requested messages no longer exist")
            else:
                self.sendPositiveResponse(tag, b"FETCH completed")
        d.addCallback(send)
        d.addErrback(lambda f: self._fail(tag, f, b"FETCH"))

    select_FETCH = (do_FETCH, seqset, Arguments.arg_fetchatt)

    def do_STORE(self, tag, id_list, mode, flags, uid=False):
        mode = mode.upper()
        silent = mode.endswith(b".SILENT")
        how = {b"FLAGS": REPLACE, b"+FLAGS": ADD, b"-FLAGS": REMOVE}.get(
            mode[:-7] if silent else mode)
        if how is None:
            return self.sendBadResponse(tag, b"STORE needs FLAGS, +FLAGS or -FLAGS")
        mailbox = self.mailbox
        if not mailbox.isWriteable():
            return self.sendNegativeResponse(tag, b"[READ-ONLY] Mailbox is read-only")
        try:
            d = mailbox.store(id_list, flags, how, uid)
        except IndexError:
            return self.sendBadResponse(tag, b"Invalid message sequence number")

        def stored(changed):
            for line in mailbox.view.keyword_lines():  # a keyword new to the folder
                self.sendUntaggedResponse(line)
            if not silent:
                for seq in sorted(changed):
                    extra = b" UID %d" % mailbox.getUID(seq) if uid else b""
                    self.sendUntaggedResponse(b"%d FETCH (FLAGS %s%s)" % (
                        seq, mailbox.view.flag_list(mailbox.getUID(seq)), extra))
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
        if move and not self.mailbox.isWriteable():
            return self.sendNegativeResponse(tag, b"[READ-ONLY] Mailbox is read-only")
        if not uids:
            return self.sendPositiveResponse(tag, verb + b" completed")

        def copied(result):
            uidvalidity, pairs, expunged = result
            code = b"COPYUID %d %s %s" % (
                uidvalidity, _uid_set([a for a, _ in pairs]), _uid_set([b for _, b in pairs]))
            if move:
                self.sendUntaggedResponse(b"OK [" + code + b"] Moved")
                for seq in expunged:
                    self.sendUntaggedResponse(b"%d EXPUNGE" % seq)
                self.sendPositiveResponse(tag, b"MOVE completed")
            else:
                self.sendPositiveResponse(tag, b"[" + code + b"] COPY completed")
        self.mailbox.transfer(uids, target, move).addCallbacks(
            copied, lambda f: self._fail(tag, f, verb))

    def do_COPY(self, tag, id_list, wire, uid=False):
        self._copy(tag, id_list, wire, uid, move=False)

    def do_MOVE(self, tag, id_list, wire, uid=False):
        self._copy(tag, id_list, wire, uid, move=True)

    select_COPY = (do_COPY, seqset, Arguments.finalastring)
    select_MOVE = (do_MOVE, seqset, Arguments.finalastring)

    def do_EXPUNGE(self, tag, id_list=None, uid=False):
        mailbox = self.mailbox
        if not mailbox.isWriteable():
            return self.sendNegativeResponse(tag, b"[READ-ONLY] Mailbox is read-only")
        only = None
        if uid:
            if id_list is None:
                return self.sendBadResponse(tag, b"UID EXPUNGE needs a UID set")
            only = mailbox.resolve(id_list, True)

        def expunged(seqs):
            for seq in seqs:
                self.sendUntaggedResponse(b"%d EXPUNGE" % seq)
            self.sendPositiveResponse(tag, b"EXPUNGE completed")
        mailbox.expunge(only).addCallbacks(expunged, lambda f: self._fail(tag, f, b"EXPUNGE"))

    select_EXPUNGE = (do_EXPUNGE, Arguments.optional_seqset)

    def do_SEARCH(self, tag, charset, query, uid=False):
        try:
            compiled = search.compile(query, charset)  # bytes: compile reads it as ASCII
        except search.BadCharset as e:
            return self.sendNegativeResponse(tag, b"[BADCHARSET (UTF-8 US-ASCII)] "
                                             + str(e).encode("ascii", "replace"))
        except search.SearchError as e:
            return self.sendBadResponse(tag, str(e).encode("utf-8", "replace"))

        def answer(found):
            self.sendUntaggedResponse(b"SEARCH" + b"".join(b" %d" % i for i in found))
            self.sendPositiveResponse(tag, b"SEARCH completed")
        self.mailbox.search(compiled, uid).addCallbacks(
            answer, lambda f: self._fail(tag, f, b"SEARCH"))

    select_SEARCH = (do_SEARCH, opt_charset, searchkeys)


def _uid_set(uids) -> bytes:
    """A compact UID set: 1:3,7 (RFC 4315 COPYUID keeps the source order)."""
    out = []
    for u in uids:
        if out and out[-1][1] + 1 == u:
            out[-1][1] = u
        else:
            out.append([u, u])
    return b",".join(b"%d" % a if a == b else b"%d:%d" % (a, b) for a, b in out)
