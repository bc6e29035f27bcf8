"""The client itself: keys in, IMAP and SMTP calls out, models updated, screen redrawn.

``MailClient`` owns the session, the models and the new-mail watch.  Each key runs one
action (named in ``keys.BINDINGS``) through ``attempt``, which turns a lost connection
into a status-line message — the next key connects again — and a server's refusal
into its sentence, so no failure of the network or the server ends the program.
"""

import email.policy
import email.utils
import logging
import os
import queue

from rmail.client import compose, dialogs, keys, layout, submission
from rmail.client.folders import Folder, FolderList
from rmail.client.messages import MessageList
from rmail.client.reading import Reading
from rmail.client.screen import Screen
from rmail.client.session import ConnectionLost, MailSession, ServerRefused
from rmail.client.watch import NewMailWatch

log = logging.getLogger("rmail.client")

TICK_MS = 250  # how often the loop looks at the watch's queue while no key is pressed
OFFLINE_ACTIONS = ("quit", "help")  # what works without trying to reconnect first


class MailClient:
    def __init__(self, account, password, log_path=None):
        self.account = account
        self._password = password
        self.log_path = log_path
        self.session = MailSession(account, password)
        self.folders = FolderList()
        self.messages = MessageList()
        self.reading: Reading | None = None
        self.focus = "messages"
        self.status = ""
        self.status_is_error = False
        self.events = queue.Queue()
        self.watch: NewMailWatch | None = None
        self.watching = False
        self.offline = False
        self.quitting = False
        self.screen: Screen | None = None
        self._seen_at_select = None  # (messages, uidnext) when the folder was last read

    @property
    def me(self) -> frozenset:
        return frozenset(self.account.my_addresses)

    def say(self, text: str, error: bool = False):
        self.status = text
        self.status_is_error = error

    # --- lifecycle ------------------------------------------------------------------

    def start(self):
        """Log in and open INBOX (before the screen takes over, so a refused login is
        an ordinary message on the terminal)."""
        self.session.connect()
        self.load_folders()
        self.open_folder("INBOX")

    def close(self):
        watch = self.watch
        if watch is not None:
            watch.stop()
        self.session.close()
        if watch is not None:
            # Its DONE and LOGOUT finished before the interpreter exits: a daemon thread
            # cut off inside the TLS library at exit can crash the process (exit 139).
            watch.thread.join(2.0)

    def run(self, stdscr):
        """The main loop, inside curses.wrapper."""
        self.screen = Screen(stdscr)
        dirty = True
        while not self.quitting:
            if dirty:
                self.attempt(self.load_visible)
                self.screen.draw(self)
                dirty = False
            key = self.screen.read_key(TICK_MS)
            dirty = self.handle_events()
            if key is None:
                continue
            dirty = True
            if key == "KEY_RESIZE":
                self.screen.resized()
            else:
                self.handle_key(key)

    # --- running actions ------------------------------------------------------------

    def attempt(self, action, *args):
        try:
            action(*args)
        except ConnectionLost as e:
            self.offline = True
            self.say(f"{e}. The next key reconnects.", error=True)
        except (ServerRefused, submission.SubmissionRefused) as e:
            self.say(str(e), error=True)
        except Exception as e:  # a bug must not take the terminal and the mailbox down
            log.exception("error in %s", getattr(action, "__name__", action))
            where = f"; details in {self.log_path}" if self.log_path else ""
            self.say(f"unexpected error: {e}{where}", error=True)

    def handle_key(self, key):
        action = keys.action_for(key)
        if action is None:
            self.say(f"{key}: no such key; ? lists the keys.")
            return
        if not self.offline:
            self.say("")  # a note lasts one key; "connection lost" lasts until reconnected
        if self.offline and action not in OFFLINE_ACTIONS:
            self.attempt(self.reconnect)
            if self.offline:
                return
        self.attempt(getattr(self, "do_" + action))

    def handle_events(self) -> bool:
        """Apply what the watch reported; True when the screen needs drawing."""
        changed = False
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return changed
            if self.watch is None or event.folder != self.watch.folder:
                continue  # from the watch of a folder no longer open
            changed = True
            if event.kind == "watching":
                self.watching = True
                if self.status.startswith("new mail watch"):
                    self.say("New mail shows up live again.")
                if self.offline:
                    self.attempt(self.reconnect)
                elif event.detail != self._seen_at_select:
                    self.attempt(self.refresh_folder)
            elif event.kind == "changed" and not self.offline:
                self.attempt(self.refresh_folder)
            elif event.kind == "lost":
                if self.watching:
                    self.say(f"{event.detail}; retrying.", error=True)
                self.watching = False

    def reconnect(self):
        self.session.connect()
        self.offline = False
        self.load_folders()
        if self.messages.folder:
            self.refresh_folder()
        self.say("Reconnected.")

    # --- reading the server -------------------------------------------------------

    def load_folders(self):
        found = []
        for box in self.session.folders():
            folder = Folder(box.name, box.attributes, box.delimiter)
            if folder.selectable and box.name != self.session.selected:
                counts = self.session.status(box.name)
                folder.messages, folder.unseen = counts.get("MESSAGES"), counts.get("UNSEEN")
            elif (old := self.folders.find(box.name)) is not None:
                folder.messages, folder.unseen = old.messages, old.unseen
            found.append(folder)
        self.folders.replace(found)

    def open_folder(self, name):
        count = self.session.select(name)
        self._seen_at_select = (count, self.session.uidnext)
        self.messages.load(name, self.session.uids())
        self.folders.set_counts(name, count, len(self.session.uids("UNSEEN")))
        self.folders.select(name)
        self.reading = None
        self._watch(name)

    def _watch(self, name):
        if self.watch is not None:
            self.watch.stop()
        self.watching = False
        self.watch = NewMailWatch(self.account, self._password, name, self.events).start()

    def refresh_folder(self):
        """Bring the open folder up to date: new and vanished messages, flags, counts."""
        folder = self.messages.folder
        self.session.check()
        every = self.session.uids()
        if self.messages.search is not None:
            new = self.messages.update(self.session.search(self.messages.search))
        else:
            new = self.messages.update(every)
        self.folders.set_counts(folder, len(every), len(self.session.uids("UNSEEN")))
        self._seen_at_select = None
        shown = [uid for uid, envelope, _ in self.messages.visible(self._list_height())
                 if envelope is not None]
        for uid, flags in self.session.flags(shown).items():
            self.messages.set_flags(uid, flags)
        if new:
            self.say(f"{len(new)} new message{'s' if len(new) > 1 else ''} in {folder}.")

    def _list_height(self) -> int:
        panes = layout.panes(*self.screen.size()) if self.screen else None
        return panes.messages.height if panes else 20

    def _reading_size(self):
        panes = layout.panes(*self.screen.size()) if self.screen else None
        return (panes.reading.width - 1, panes.reading.height) if panes else (70, 10)

    def load_visible(self):
        """Fetch the envelopes of the pages the list pane shows (never while offline:
        the loop would retry on every tick)."""
        if self.offline or not self.messages.folder:
            return
        height = self._list_height()
        self.messages.visible(height)
        missing = self.messages.missing(height)
        if missing:
            self.messages.store(self.session.envelopes(missing))

    # --- which message an action is about ----------------------------------------------

    def _target_uid(self):
        if self.focus == "reading" and self.reading is not None:
            return self.reading.uid
        return self.messages.current_uid

    def _target_message(self):
        """(uid, parsed message, raw bytes) of the message an action is about."""
        uid = self._target_uid()
        if uid is None:
            self.say("No message selected.")
            return None, None, None
        if self.reading is not None and self.reading.uid == uid:
            return uid, self.reading.message, self.reading.raw
        raw = self.session.message(uid)
        if raw is None:
            self.say("That message is gone.", error=True)
            return None, None, None
        reading = Reading(uid, raw, self.messages.folder)
        return uid, reading.message, raw

    def _mark(self, uid, flag, on):
        envelope = self.messages.envelopes.get(uid)
        self.session.set_flags([uid], [flag], on)
        if envelope is not None:
            before = envelope.unread
            flags = set(envelope.flags)
            (flags.add if on else flags.discard)(flag)
            self.messages.set_flags(uid, flags)
            if envelope.unread != before:
                self.folders.adjust_unseen(self.messages.folder, 1 if envelope.unread else -1)

    # --- moving around ------------------------------------------------------------------

    def _step(self, delta):
        if self.focus == "folders":
            self.folders.move(delta)
        elif self.focus == "reading" and self.reading is not None:
            width, height = self._reading_size()
            self.reading.scroll(delta, width, height)
        else:
            self.messages.move(delta)

    def _page(self):
        if self.focus == "reading":
            return max(1, self._reading_size()[1] - 1)
        return max(1, self._list_height() - 1)

    def do_down(self):
        self._step(1)

    def do_up(self):
        self._step(-1)

    def do_page_down(self):
        self._step(self._page())

    def do_page_up(self):
        self._step(-self._page())

    def do_first(self):
        self._step(-10 ** 9)

    def do_last(self):
        self._step(10 ** 9)

    def do_next_pane(self):
        order = ["folders", "messages"] + (["reading"] if self.reading else [])
        self.focus = order[(order.index(self.focus) + 1) % len(order)] \
            if self.focus in order else "messages"

    def do_back(self):
        if self.focus == "reading":
            self.focus = "messages"
        elif self.focus == "messages" and self.messages.search is not None:
            self.messages.load(self.messages.folder, self.session.uids())
            self.say("Search cleared.")
        elif self.focus == "messages":
            self.focus = "folders"

    def do_open(self):
        if self.focus == "folders":
            folder = self.folders.current
            if folder is None or not folder.selectable:
                self.say("That folder cannot hold messages.")
                return
            self.open_folder(folder.name)
            self.focus = "messages"
        elif self.focus == "messages":
            uid = self.messages.current_uid
            if uid is None:
                return
            raw = self.session.message(uid)
            if raw is None:
                self.say("That message is gone.", error=True)
                return
            self.reading = Reading(uid, raw, self.messages.folder)
            envelope = self.messages.envelopes.get(uid)
            if envelope is None or envelope.unread:
                self._mark(uid, "\\Seen", True)
            self.focus = "reading"
        else:
            self.do_page_down()

    def do_headers(self):
        if self.reading is None:
            self.say("Open a message first (Enter).")
            return
        self.reading.toggle_headers()

    def do_help(self):
        self.screen.show_lines(keys.help_screen())

    def do_quit(self):
        self.quitting = True

    def do_refresh(self):
        self.load_folders()
        self.messages.forget_envelopes()
        self.refresh_folder()
        if self.screen is not None:
            self.screen.clear()
        if not self.status:
            self.say("Up to date.")

    # --- changing messages ----------------------------------------------------------

    def do_toggle_read(self):
        uid = self._target_uid()
        envelope = self.messages.envelopes.get(uid)
        if envelope is None:
            return
        self._mark(uid, "\\Seen", envelope.unread)
        self.say("Marked read." if not envelope.unread else "Marked unread.")

    def do_toggle_flag(self):
        uid = self._target_uid()
        envelope = self.messages.envelopes.get(uid)
        if envelope is None:
            return
        self._mark(uid, "\\Flagged", not envelope.flagged)
        self.say("Flagged." if envelope.flagged else "Flag removed.")

    def _gone(self, uid, where):
        self.messages.remove([uid])
        if self.reading is not None and self.reading.uid == uid:
            self.reading = None
            self.focus = "messages"
        folder = self.messages.folder
        for name in (folder, where):
            if name and name != folder:
                counts = self.session.status(name)
                self.folders.set_counts(name, counts.get("MESSAGES"), counts.get("UNSEEN"))
        self.folders.set_counts(folder, len(self.messages) if self.messages.search is None
                                else None, len(self.session.uids("UNSEEN")))

    def do_delete(self):
        uid = self._target_uid()
        if uid is None:
            self.say("No message selected.")
            return
        trash = self.folders.special("\\Trash")
        if self.messages.folder == trash:
            if dialogs.ask(self.screen, "Delete this message for good? (y/n)", "yn") != "y":
                return
            self.session.expunge([uid])
            self._gone(uid, None)
            self.say("Deleted for good.")
            return
        self.session.move([uid], trash)
        self._gone(uid, trash)
        self.say(f"Moved to {trash}.")

    def do_move(self):
        uid = self._target_uid()
        if uid is None:
            self.say("No message selected.")
            return
        names = [n for n in self.folders.names() if n != self.messages.folder]
        target = dialogs.pick(self.screen, "Move to folder", names)
        if target is None:
            return
        self.session.move([uid], target)
        self._gone(uid, target)
        self.say(f"Moved to {target}.")

    def do_search(self):
        words = dialogs.prompt(self.screen, "Search (subject, people, text): ",
                               self.messages.search or "")
        if words is None:
            return
        if not words.strip():
            self.messages.load(self.messages.folder, self.session.uids())
            return
        found = self.session.search(words.strip())
        self.messages.load(self.messages.folder, found, search=words.strip())
        self.focus = "messages"
        self.say(f"{len(found)} message{'' if len(found) == 1 else 's'} match; "
                 "Esc shows the whole folder.")

    # --- writing ----------------------------------------------------------------------

    def do_compose(self):
        self.write(compose.new_message(self._sender()))

    def do_reply(self, everyone=False):
        uid, message, _raw = self._target_message()
        if message is None:
            return
        self.write(compose.reply(message, self._sender(), self.me, everyone=everyone,
                                 answers=(self.messages.folder, uid)))

    def do_reply_all(self):
        self.do_reply(everyone=True)

    def do_forward(self):
        _uid, message, raw = self._target_message()
        if message is None:
            return
        self.write(compose.forward(message, raw, self._sender(),
                                   as_attachment=self.account.forward == "attachment"))

    def _sender(self) -> str:
        if self.account.name:
            return email.utils.formataddr((self.account.name, self.account.user))
        return self.account.user

    def _edit(self, text, row):
        editor = self.account.editor or os.environ.get("VISUAL") or os.environ.get("EDITOR")
        if editor:
            return dialogs.edit_with_program(self.screen, editor, text)
        return dialogs.edit_in_terminal(self.screen, text, row)

    def write(self, draft):
        """Edit *draft* until it is sent or abandoned; send it; keep a copy in Sent."""
        text = compose.draft_text(draft)
        row = compose.body_line(text) if draft.to else 1
        while True:
            edited = self._edit(text, row)
            if edited is None:
                self.say("Draft abandoned.")
                return
            text = edited
            try:
                final = compose.read_draft(text, draft)
            except compose.DraftError as e:
                if dialogs.ask(self.screen, f"{e}. (e)dit or (d)iscard?", "ed") == "e":
                    continue
                self.say("Draft discarded.")
                return
            message = compose.build(final)
            to = ", ".join(submission.recipients(message))
            answer = dialogs.ask(self.screen, f"Send to {to}? (y)es, (e)dit, (n)o", "yen")
            if answer == "e":
                continue
            if answer == "n":
                self.say("Draft discarded.")
                return
            self.say(f"Sending to {to}…")
            self.screen.draw(self)
            try:
                sent_to = submission.submit(self.account, self._password, message)
            except submission.SubmissionRefused as e:
                if dialogs.ask(self.screen, f"Not sent: {e}. (e)dit or (d)iscard?", "ed") == "e":
                    continue
                self.say("Draft discarded.")
                return
            break
        self._after_sending(final, message, sent_to)

    def _after_sending(self, draft, message, sent_to):
        sent = self.folders.special("\\Sent")
        note = f"Sent to {', '.join(sent_to)}"
        try:
            self.session.append(sent, message.as_bytes(policy=email.policy.SMTP))
            if draft.answers and draft.answers[0] == self.messages.folder:
                self._mark(draft.answers[1], "\\Answered", True)
            if self.messages.folder == sent:
                self.refresh_folder()
        except (ConnectionLost, ServerRefused) as e:
            self.offline = self.offline or isinstance(e, ConnectionLost)
            self.say(f"{note}, but not saved in {sent}: {e}", error=True)
            return
        self.say(f"{note}; saved in {sent}.")
