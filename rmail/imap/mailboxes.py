"""IMAP commands on folders: LIST/LSUB, STATUS, CREATE/DELETE/RENAME, SUBSCRIBE, APPEND,
SELECT/EXAMINE/UNSELECT/CLOSE.

Names travel in modified UTF-7 and are checked by the store's rules (``rmail.imap.folders``);
every store call is a Deferred, answered when it fires (TWISTED.md 22), and failures
answer NO with a response code (TRYCREATE, NONEXISTENT, ALREADYEXISTS).
"""

import re
import datetime

from twisted.internet import defer

from rmail.imap import folders
from rmail.imap.arguments import Arguments, opt_datetime, opt_plist, plist
from rmail.imap.view import SelectedFolder
from rmail.store import names

SYSTEM_FLAGS = b"\\Answered \\Flagged \\Deleted \\Seen \\Draft"
STATUS_ITEMS = (b"MESSAGES", b"RECENT", b"UIDNEXT", b"UIDVALIDITY", b"UNSEEN")
_BARE_NEWLINE = re.compile(rb"\r\n|\r|\n")


class MailboxCommands(Arguments):
    def _name(self, tag, wire):
        try:
            return folders.decode(wire)
        except folders.BadName as e:
            self.sendNegativeResponse(tag, str(e).encode("utf-8", "replace"))
            return None

    def _store_call(self, tag, what, d, ok_text):
        d.addCallbacks(lambda _: self.sendPositiveResponse(tag, ok_text),
                       lambda f: self._fail(tag, f, what))

    def do_CREATE(self, tag, wire):
        name = self._name(tag, wire.rstrip(b"/"))
        if name is not None:
            self._store_call(tag, b"CREATE", self.mailstore.create_folder(name), b"CREATE completed")

    auth_CREATE = select_CREATE = (do_CREATE, Arguments.finalastring)

    def do_DELETE(self, tag, wire):
        name = self._name(tag, wire)
        if name is not None:
            if self.view is not None and self.view.name == name:
                self._unselect()
                self.state = "auth"
            self._store_call(tag, b"DELETE", self.mailstore.delete_folder(name), b"DELETE completed")

    auth_DELETE = select_DELETE = (do_DELETE, Arguments.finalastring)

    def do_RENAME(self, tag, old_wire, new_wire):
        old, new = self._name(tag, old_wire), None
        if old is not None:
            new = self._name(tag, new_wire)
        if old is not None and new is not None:
            self._store_call(tag, b"RENAME", self.mailstore.rename_folder(old, new),
                             b"RENAME completed")

    auth_RENAME = select_RENAME = (do_RENAME, Arguments.arg_astring,
                                   Arguments.finalastring)

    def _subscribe(self, tag, wire, subscribed):
        name = self._name(tag, wire)
        if name is not None:
            self._store_call(tag, b"SUBSCRIBE", self.mailstore.subscribe(name, subscribed),
                             b"SUBSCRIBE completed" if subscribed else b"UNSUBSCRIBE completed")

    def do_SUBSCRIBE(self, tag, wire):
        self._subscribe(tag, wire, True)

    def do_UNSUBSCRIBE(self, tag, wire):
        self._subscribe(tag, wire, False)

    auth_SUBSCRIBE = select_SUBSCRIBE = (do_SUBSCRIBE, Arguments.finalastring)
    auth_UNSUBSCRIBE = select_UNSUBSCRIBE = (do_UNSUBSCRIBE, Arguments.finalastring)

    def _list(self, tag, verb, reference, patterns, select=(), returns=()):
        """LIST/LSUB, with RFC 5258's basic selection and return options as RFC 6154 uses
        them: ``LIST (SPECIAL-USE) "" "*"`` and ``RETURN (SPECIAL-USE SUBSCRIBED)``."""
        subscribed_only = verb == b"LSUB" or b"SUBSCRIBED" in select
        special_only = b"SPECIAL-USE" in select
        show_subscribed = b"SUBSCRIBED" in select or b"SUBSCRIBED" in returns
        if patterns == [b""]:
            self.sendUntaggedResponse(verb + b' (\\Noselect) "/" ""')
            return self.sendPositiveResponse(tag, verb + b" completed")
        regexes = [folders.pattern(reference, p) for p in patterns]

        def listed(infos):
            all_names = [f.name for f in infos]
            for info in infos:
                if (subscribed_only and not info.subscribed) or \
                        (special_only and not info.special_use):
                    continue
                wire = folders.encode(info.name).decode("latin-1")
                if not any(r.fullmatch(wire) for r in regexes):
                    continue
                attrs = folders.attributes(info, all_names)
                if show_subscribed and info.subscribed and verb == b"LIST":
                    attrs = attrs[:-1] + b" \\Subscribed)"
                self.sendUntaggedResponse(verb + b" " + attrs + b' "/" ' + folders.quoted(info.name))
            self.sendPositiveResponse(tag, verb + b" completed")
        self.mailstore.folders().addCallbacks(listed, lambda f: self._fail(tag, f, verb))

    def do_LIST(self, tag, args):
        select, reference, patterns, returns = args
        self._list(tag, b"LIST", reference, patterns, select, returns)

    def do_LSUB(self, tag, args):
        _, reference, patterns, _ = args
        self._list(tag, b"LSUB", reference, patterns)

    auth_LIST = select_LIST = (do_LIST, Arguments.list_args)
    auth_LSUB = select_LSUB = (do_LSUB, Arguments.list_args)

    def do_STATUS(self, tag, wire, items):
        name = self._name(tag, wire)
        if name is None:
            return
        items = [i.upper() for i in items]
        unknown = [i for i in items if i not in STATUS_ITEMS]
        if unknown or not items:
            return self.sendBadResponse(tag, b"Unknown STATUS item " + b" ".join(unknown))

        def status(info):
            values = {b"MESSAGES": info.messages, b"UIDNEXT": info.uidnext,
                      b"UIDVALIDITY": info.uidvalidity, b"UNSEEN": info.unseen,
                      b"RECENT": self.factory.recent_count(self.user.address, info)}
            body = b" ".join(b"%s %d" % (i, values[i]) for i in items)
            self.sendUntaggedResponse(b"STATUS " + folders.quoted(name) + b" (" + body + b")")
            self.sendPositiveResponse(tag, b"STATUS completed")
        self.mailstore.status(name).addCallbacks(status, lambda f: self._fail(tag, f, b"STATUS"))

    auth_STATUS = select_STATUS = (do_STATUS, Arguments.arg_astring,
                                   plist)

    def do_APPEND(self, tag, wire, flags, date, data):
        name = self._name(tag, wire)
        if name is None:
            return
        when = None
        if date:
            try:  # RFC 3501 date-time: "dd-Mon-yyyy hh:mm:ss +zzzz" (day may be space-padded)
                when = datetime.datetime.strptime(
                    date.decode("ascii").strip(), "%d-%b-%Y %H:%M:%S %z").timestamp()
            except (UnicodeDecodeError, ValueError):
                return self.sendBadResponse(tag, b"Bad date-time")
        flag_names = [f.decode("utf-8", "replace") for f in flags or ()]
        if data.count(b"\n") != data.count(b"\r\n") or data.count(b"\r") != data.count(b"\r\n"):
            # Stored messages are CRLF throughout, so RFC822.SIZE is the size of BODY[].
            data = _BARE_NEWLINE.sub(b"\r\n", data)
        writer = self.factory.store.new_message()
        writer.write(data)
        d = writer.finish()
        d.addCallback(lambda _: defer.gatherResults(
            [self.mailstore.status(name), self.mailstore.append(name, writer, flag_names, when)],
            consumeErrors=True))

        def appended(result):
            status, uid = result
            self.sendPositiveResponse(
                tag, b"[APPENDUID %d %d] APPEND completed" % (status.uidvalidity, uid))

        def failed(f):
            writer.discard()
            self._fail(tag, f, b"APPEND")
        d.addCallbacks(appended, failed)

    auth_APPEND = select_APPEND = (do_APPEND, Arguments.arg_astring,
                                   opt_plist, opt_datetime,
                                   Arguments.arg_literal)

    # -- selecting ------------------------------------------------------------------------------

    def _select(self, tag, wire, readonly):
        name = self._name(tag, wire)
        if name is None:
            return
        self._unselect()
        self.state = "auth"
        store = self.mailstore
        d = defer.gatherResults([store.status(name), store.messages(name, summaries=False)],
                                consumeErrors=True)

        def selected(result):
            status, infos = result
            recent = self.factory.claim_recent(self.user.address, name, status.uidvalidity,
                                               [i.uid for i in infos], readonly)
            view = SelectedFolder(name, status, infos, readonly, recent)
            self.view = view
            view.on_change = self._pushed
            self.factory.store.hub.subscribe(self.user.address, name, view.receive)
            self.state = "select"
            keywords = sorted({f for i in infos for f in i.flags if not f.startswith("\\")})
            flags = SYSTEM_FLAGS + b"".join(b" " + k.encode() for k in keywords)
            self.sendUntaggedResponse(b"%d EXISTS" % view.exists)
            self.sendUntaggedResponse(b"%d RECENT" % len(view.recent))
            self.sendUntaggedResponse(b"FLAGS (" + flags + b")")
            self.sendUntaggedResponse(b"OK [PERMANENTFLAGS (" + flags + b" \\*)] Flags permitted")
            unseen = next((i + 1 for i, info in enumerate(infos) if names.SEEN not in info.flags), None)
            if unseen:
                self.sendUntaggedResponse(b"OK [UNSEEN %d] First unseen" % unseen)
            self.sendUntaggedResponse(b"OK [UIDVALIDITY %d] UIDs valid" % status.uidvalidity)
            self.sendUntaggedResponse(b"OK [UIDNEXT %d] Predicted next UID" % status.uidnext)
            mode = b"[READ-ONLY] EXAMINE" if readonly else b"[READ-WRITE] SELECT"
            self.sendPositiveResponse(tag, mode + b" completed")
        d.addCallbacks(selected, lambda f: self._fail(tag, f, b"SELECT"))

    def do_SELECT(self, tag, wire):
        self._select(tag, wire, False)

    def do_EXAMINE(self, tag, wire):
        self._select(tag, wire, True)

    auth_SELECT = select_SELECT = (do_SELECT, Arguments.finalastring)
    auth_EXAMINE = select_EXAMINE = (do_EXAMINE, Arguments.finalastring)

    def _unselect(self):
        if self.view is not None:
            self.factory.store.hub.unsubscribe(self.user.address, self.view.name, self.view.receive)
            self.view.on_change = None
            self.view = None

    def do_UNSELECT(self, tag):
        self._unselect()
        self.state = "auth"
        self.sendPositiveResponse(tag, b"UNSELECT completed")

    select_UNSELECT = (do_UNSELECT,)

    def do_CLOSE(self, tag):
        view = self.view
        if view.readonly:
            self._unselect()
            self.state = "auth"
            return self.sendPositiveResponse(tag, b"CLOSE completed")
        d = self.mailstore.expunge(view.name)

        def closed(_):
            self._unselect()
            self.state = "auth"
            self.sendPositiveResponse(tag, b"CLOSE completed")
        d.addCallbacks(closed, lambda f: self._fail(tag, f, b"CLOSE"))

    select_CLOSE = (do_CLOSE,)
