"""IMAP commands on folders: LIST/LSUB, STATUS, CREATE/DELETE/RENAME, SUBSCRIBE, APPEND,
SELECT/EXAMINE/UNSELECT/CLOSE.

Names travel in modified UTF-7 and are checked by the store's rules (``rmail.imap.folders``).
Every command goes through the session's ``Account`` and selected ``Mailbox``
(``rmail.imap.mailbox``), whose calls are Deferreds answered when they fire (TWISTED.md
22); failures answer NO with a response code (TRYCREATE, NONEXISTENT, ALREADYEXISTS).
"""

import re
import datetime

from rmail import crashpoint
from rmail.imap import folders
from rmail.imap.arguments import Arguments, opt_datetime, opt_plist, plist

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
            self._store_call(tag, b"CREATE", self.account.create(name), b"CREATE completed")

    auth_CREATE = select_CREATE = (do_CREATE, Arguments.finalastring)

    def do_DELETE(self, tag, wire):
        name = self._name(tag, wire)
        if name is not None:
            if self.mailbox is not None and self.mailbox.name == name:
                self._unselect()
                self.state = "auth"
            self._store_call(tag, b"DELETE", self.account.delete(name), b"DELETE completed")

    auth_DELETE = select_DELETE = (do_DELETE, Arguments.finalastring)

    def do_RENAME(self, tag, old_wire, new_wire):
        old, new = self._name(tag, old_wire), None
        if old is not None:
            new = self._name(tag, new_wire)
        if old is not None and new is not None:
            self._store_call(tag, b"RENAME", self.account.rename(old, new),
                             b"RENAME completed")

    auth_RENAME = select_RENAME = (do_RENAME, Arguments.arg_astring,
                                   Arguments.finalastring)

    def _subscribe(self, tag, wire, subscribed):
        name = self._name(tag, wire)
        if name is not None:
            call = self.account.subscribe if subscribed else self.account.unsubscribe
            self._store_call(tag, b"SUBSCRIBE", call(name),
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

        def listed(boxes):
            for name, box in boxes:
                attrs = box.getFlags()
                if verb == b"LSUB" and not box.info.subscribed and box.subscribed_below:
                    attrs = ["\\Noselect"]  # RFC 3501 6.3.9
                elif (subscribed_only and not box.info.subscribed) or \
                        (special_only and not box.info.special_use):
                    continue
                if show_subscribed and box.info.subscribed and verb == b"LIST":
                    attrs = attrs + ["\\Subscribed"]
                self.sendUntaggedResponse(verb + b" (" + " ".join(attrs).encode() + b') "/" '
                                          + folders.quoted(name))
            self.sendPositiveResponse(tag, verb + b" completed")
        d = self.account.listMailboxes(reference, list(patterns))
        d.addCallbacks(listed, lambda f: self._fail(tag, f, verb))

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
                      b"RECENT": info.recent}
            body = b" ".join(b"%s %d" % (i, values[i]) for i in items)
            self.sendUntaggedResponse(b"STATUS " + folders.quoted(name) + b" (" + body + b")")
            self.sendPositiveResponse(tag, b"STATUS completed")
        self.account.status(name).addCallbacks(status, lambda f: self._fail(tag, f, b"STATUS"))

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
        d = self.account.append(name, data, flag_names, when)

        def appended(result):
            uidvalidity, uid = result
            crashpoint.reach("imap.before-ok")
            self.sendPositiveResponse(tag, b"[APPENDUID %d %d] APPEND completed" % (uidvalidity, uid))
            crashpoint.after_flush(self.transport, "imap.after-ok")
        d.addCallbacks(appended, lambda f: self._fail(tag, f, b"APPEND"))

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

        def selected(mailbox):
            self.mailbox = mailbox
            mailbox.addListener(self)
            self.state = "select"
            self.sendUntaggedResponse(b"%d EXISTS" % mailbox.getMessageCount())
            self.sendUntaggedResponse(b"%d RECENT" % mailbox.getRecentCount())
            for line in mailbox.view.flag_lines():
                self.sendUntaggedResponse(line)
            if mailbox.first_unseen:
                self.sendUntaggedResponse(b"OK [UNSEEN %d] First unseen" % mailbox.first_unseen)
            self.sendUntaggedResponse(b"OK [UIDVALIDITY %d] UIDs valid" % mailbox.getUIDValidity())
            self.sendUntaggedResponse(b"OK [UIDNEXT %d] Predicted next UID" % mailbox.getUIDNext())
            mode = b"[READ-ONLY] EXAMINE" if readonly else b"[READ-WRITE] SELECT"
            self.sendPositiveResponse(tag, mode + b" completed")
        self.account.select(name, not readonly).addCallbacks(
            selected, lambda f: self._fail(tag, f, b"SELECT"))

    def do_SELECT(self, tag, wire):
        self._select(tag, wire, False)

    def do_EXAMINE(self, tag, wire):
        self._select(tag, wire, True)

    auth_SELECT = select_SELECT = (do_SELECT, Arguments.finalastring)
    auth_EXAMINE = select_EXAMINE = (do_EXAMINE, Arguments.finalastring)

    def _unselect(self):
        if self.mailbox is not None:
            self.mailbox.removeListener(self)
            self.mailbox = None

    def do_UNSELECT(self, tag):
        self._unselect()
        self.state = "auth"
        self.sendPositiveResponse(tag, b"UNSELECT completed")

    select_UNSELECT = (do_UNSELECT,)

    def do_CLOSE(self, tag):
        mailbox = self.mailbox
        self._unselect()  # CLOSE announces no EXPUNGE (RFC 3501 6.4.2)
        self.state = "auth"
        if not mailbox.isWriteable():
            return self.sendPositiveResponse(tag, b"CLOSE completed")
        mailbox.close().addCallbacks(lambda _: self.sendPositiveResponse(tag, b"CLOSE completed"),
                                     lambda f: self._fail(tag, f, b"CLOSE"))

    select_CLOSE = (do_CLOSE,)
