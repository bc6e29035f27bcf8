"""The terminal client end to end: `python -m rmail.client` in tmux against a real rmail.

Each test runs its own tmux server (a unique -L socket, killed in a finally) with one
fixed-size window, types with send-keys and reads the screen with capture-pane, waiting
(bounded) for what should appear.  What the client did is then checked on the server
side with imaplib.
"""

import imaplib
import os
import re
import shlex
import shutil
import smtplib
import subprocess
import sys
import time
import uuid

import pytest

from rmail.client import keys, layout
from tests.harness import ROOT, TIMEOUT, client_tls

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None,
    reason="tmux is not installed (.ci/run installs it): the terminal client's "
           "end-to-end tests read its screen through tmux")


class Terminal:
    """One program in a tmux window of a fixed size, on a tmux server of its own."""

    def __init__(self, tmp_path, argv, env, cols=100, rows=30):
        self.socket = f"rmail-client-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.log = tmp_path / "state" / "rmail" / "client.log"
        conf = tmp_path / "tmux.conf"
        # remain-on-exit: the screen and exit status stay readable after the program ends
        conf.write_text("set -g remain-on-exit on\nset -g status off\n")
        settings = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        # After the client: its exit status and the terminal modes it left behind.  The
        # shell only notes Ctrl-C (trap), so it lives on to print them.
        self.modes = tmp_path / "stty.txt"
        script = (f"trap : INT; cd {shlex.quote(ROOT)} && env -u EDITOR -u VISUAL {settings} "
                  f"{shlex.join(argv)}; echo \"exit status $?\"; "
                  f"stty -a > {shlex.quote(str(self.modes))}")
        self.socket_path = None
        self.tmux("-f", str(conf), "new-session", "-d", "-s", "client", "-x", str(cols),
                  "-y", str(rows), "sh", "-c", script)
        self.socket_path = self.tmux("display", "-p", "#{socket_path}").strip()

    def tmux(self, *args) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              timeout=TIMEOUT, check=True)
        return done.stdout.decode("utf-8", "replace")

    def screen(self, history=False) -> str:
        return self.tmux("capture-pane", "-p", "-t", "client", *(["-S", "-"] if history else []))

    def keys(self, *names):
        self.tmux("send-keys", "-t", "client", *names)

    def type(self, text):
        self.tmux("send-keys", "-t", "client", "-l", text)

    def wait_for(self, wanted, what=None):
        """The screen once *wanted* (text, or a test of the screen) shows; bounded."""
        test = wanted if callable(wanted) else (lambda screen: wanted in screen)
        deadline = time.monotonic() + TIMEOUT
        while True:
            screen = self.screen()
            if test(screen):
                return screen
            if time.monotonic() > deadline:
                log = self.log.read_text() if self.log.exists() else "(no client log)"
                raise AssertionError(f"timed out waiting for {what or wanted!r}; the screen:\n"
                                     f"{screen}\nthe client's log:\n{log}")
            time.sleep(0.05)

    def finished(self) -> tuple:
        """(screen with its history, terminal modes) once the program and the shell
        after it have ended."""
        deadline = time.monotonic() + TIMEOUT
        while self.tmux("display", "-p", "-t", "client", "#{pane_dead}").strip() != "1":
            if time.monotonic() > deadline:
                raise AssertionError(f"the client did not exit; the screen:\n{self.screen()}")
            time.sleep(0.05)
        return self.screen(history=True), self.modes.read_text()

    def kill(self):
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       timeout=TIMEOUT)
        try:
            os.unlink(self.socket_path)  # tmux leaves the socket file behind
        except (OSError, TypeError):
            pass


def start_client(server, tmp_path, editor=None, **size):
    env = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "XDG_STATE_HOME": str(tmp_path / "state"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "RMAIL_PASSWORD": "alice-pw", "TERM": "screen"}
    if editor:
        env["EDITOR"] = editor
    argv = [sys.executable, "-m", "rmail.client", "--insecure", "--host", "127.0.0.1",
            "--imap-port", str(server.port("imap")), "--smtp-port",
            str(server.port("submission")), "--user", "alice@example.com"]
    return Terminal(tmp_path, argv, env, **size)


def deliver(server, subject, body, sender="Bob <bob@example.com>", message_id=None):
    message_id = message_id or f"<{uuid.uuid4().hex}@example.com>"
    s = smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=TIMEOUT)
    s.sendmail(re.search(r"<(.*)>", sender).group(1), ["alice@example.com"],
               f"From: {sender}\r\nTo: alice@example.com\r\nSubject: {subject}\r\n"
               f"Date: Thu, 26 Nov 2026 09:00:00 +0000\r\nMessage-ID: {message_id}\r\n\r\n"
               f"{body}\r\n")
    s.quit()


def imap_messages(server, user, password, folder):
    """[(flags, bytes)] of a folder, read with imaplib over STARTTLS."""
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=TIMEOUT)
    try:
        imap.starttls(ssl_context=client_tls())
        imap.login(user, password)
        typ, _ = imap.select(f'"{folder}"', readonly=True)
        assert typ == "OK"
        _, data = imap.uid("SEARCH", "ALL")
        out = []
        for uid in data[0].split():
            _, parts = imap.uid("FETCH", uid, "(FLAGS BODY.PEEK[])")
            out.append((parts[0][0], parts[0][1]))
        return out
    finally:
        imap.logout()


def assert_terminal_restored(screen, modes):
    """The program's screen is gone and the tty is back in its cooked, echoing mode."""
    assert "?:help" not in screen and "Traceback" not in screen, screen
    assert {"icanon", "echo", "isig"} <= set(modes.split()), modes


def list_rows(screen):
    """The message-list pane's rows (right of the folder pane, under the title)."""
    return [line.split("│", 1)[1] for line in screen.splitlines()[1:9] if "│" in line]


def test_read_reply_delete_and_new_mail_live(server, tmp_path):
    deliver(server, "Lunch on Friday", "Shall we meet at noon?\r\n\r\nBob",
            message_id="<lunch-1@example.com>")
    term = start_client(server, tmp_path)
    try:
        # logged in: folders with the unread count, the message sent beforehand
        screen = term.wait_for(lambda s: "Lunch on Friday" in s and "Trash" in s,
                               "the folder list and the message")
        folders = [line.split("│")[0].strip() for line in screen.splitlines()[1:8]]
        assert folders[0].split() == ["INBOX", "1"]  # one unread
        assert {"Sent", "Trash"} <= set(folders)
        (row,) = [r for r in list_rows(screen) if "Lunch on Friday" in r]
        assert row.startswith("N ") and "Bob" in row

        # open it: the text shows and it is no longer unread
        term.keys("Enter")
        screen = term.wait_for("Shall we meet at noon?")
        assert "From: Bob <bob@example.com>" in screen

        # reply in the built-in editor and send
        term.keys("r")
        screen = term.wait_for("Subject: Re: Lunch on Friday")
        assert "To: Bob <bob@example.com>" in screen and "> Shall we meet at noon?" in screen
        term.type("Noon works for me.")
        term.keys("C-x")
        term.wait_for("Send to bob@example.com?")
        term.keys("y")
        term.wait_for("Sent to bob@example.com; saved in Sent.")

        # the reply reached bob, threaded under the original; alice keeps a copy in Sent
        server.wait_for(lambda: server.messages("bob@example.com"), "the reply at bob")
        ((_, reply),) = imap_messages(server, "bob@example.com", "bob-pw", "INBOX")
        assert b"Subject: Re: Lunch on Friday\r\n" in reply
        assert b"In-Reply-To: <lunch-1@example.com>\r\n" in reply
        assert b"Noon works for me." in reply and b"> Shall we meet at noon?" in reply
        ((flags, copy),) = imap_messages(server, "alice@example.com", "alice-pw", "Sent")
        assert b"Subject: Re: Lunch on Friday" in copy and b"\\Seen" in flags
        ((flags, _),) = imap_messages(server, "alice@example.com", "alice-pw", "INBOX")
        assert b"\\Seen" in flags and b"\\Answered" in flags

        # delete: gone from the list, and found in Trash
        term.keys("Escape", "d")
        screen = term.wait_for("Moved to Trash.")
        assert not any("Lunch on Friday" in r for r in list_rows(screen))
        assert imap_messages(server, "alice@example.com", "alice-pw", "INBOX") == []
        ((_, trashed),) = imap_messages(server, "alice@example.com", "alice-pw", "Trash")
        assert b"Subject: Lunch on Friday" in trashed

        # new mail shows up while the list is open, with no key pressed
        deliver(server, "Fresh news", "Just arrived.", sender="Carol <carol@example.org>")
        screen = term.wait_for(lambda s: any("Fresh news" in r for r in list_rows(s)),
                               "the new message in the list")
        assert "1 new message in INBOX." in screen

        # a smaller terminal: everything is drawn again for 80x24
        term.tmux("resize-window", "-t", "client", "-x", "80", "-y", "24")

        bar = layout.panes(24, 80).separator.left  # where the folder pane ends at 80x24

        def redrawn_for_80x24(s):
            lines = s.splitlines()
            return (len(lines) == 24 and lines[-1].rstrip() == keys.help_line(80)
                    and all(line[bar:bar + 1] == "│" for line in lines[1:22])
                    and any("Fresh news" in r for r in list_rows(s)))
        screen = term.wait_for(redrawn_for_80x24, "a redraw at 80x24")
        assert "Trash" in screen and "─ 1/1 ─" in screen
        assert all(len(line) <= 80 for line in screen.splitlines())

        term.keys("q")
        screen, modes = term.finished()
        assert "exit status 0" in screen
        assert_terminal_restored(screen, modes)
    finally:
        term.kill()


def test_ctrl_c_gives_the_terminal_back(server, tmp_path):
    deliver(server, "Anything", "Text.")
    term = start_client(server, tmp_path, cols=80, rows=24)
    try:
        term.wait_for("Anything")
        term.keys("C-c")
        screen, modes = term.finished()
        assert "exit status 130" in screen
        assert_terminal_restored(screen, modes)
    finally:
        term.kill()


def test_compose_abandon_and_search(server, tmp_path):
    """Ctrl-C in the editor asks before dropping a draft; / searches with IMAP SEARCH."""
    for n in range(1, 4):
        deliver(server, f"Invoice {n}", f"amount {n}00 EUR")
    deliver(server, "Holiday photos", "see attached")
    term = start_client(server, tmp_path)
    try:
        term.wait_for("Holiday photos")
        term.keys("c")
        term.wait_for("Compose")
        term.keys("C-c")
        term.wait_for("Abandon this draft? (y/n)")
        term.keys("n")  # keeps editing
        term.type("bob@example.com")
        screen = term.wait_for("To: bob@example.com")
        term.keys("C-c")
        term.wait_for("Abandon this draft? (y/n)")
        term.keys("y")
        term.wait_for("Draft abandoned.")

        term.keys("/")
        term.wait_for("Search")
        term.type("200 EUR")
        term.keys("Enter")
        screen = term.wait_for("1 message match")
        rows = [r for r in list_rows(screen) if r.strip()]
        assert len(rows) == 1 and "Invoice 2" in rows[0]
        term.keys("Escape")
        term.wait_for(lambda s: len([r for r in list_rows(s) if r.strip()]) == 4,
                      "the whole folder again")
        term.keys("q")
        assert "exit status 0" in term.finished()[0]
        assert not server.messages("bob@example.com")
    finally:
        term.kill()


def test_move_mark_and_flag(server, tmp_path):
    deliver(server, "Keep this", "For the archive.")
    deliver(server, "Newest", "On top.")
    term = start_client(server, tmp_path)
    try:
        term.wait_for("Keep this")
        term.keys("j", "u")  # "Keep this": marked read without opening it
        screen = term.wait_for("Marked read.")
        (row,) = [r for r in list_rows(screen) if "Keep this" in r]
        assert not row.startswith("N")
        term.keys("s")
        screen = term.wait_for("Flagged.")
        (row,) = [r for r in list_rows(screen) if "Keep this" in r]
        assert row.startswith(" !")
        ((flags, _),) = [m for m in imap_messages(server, "alice@example.com", "alice-pw",
                                                  "INBOX") if b"Keep this" in m[1]]
        assert b"\\Seen" in flags and b"\\Flagged" in flags

        term.keys("m")
        term.wait_for("Move to folder")
        term.keys("A", "Enter")  # the first folder starting with A: Archive
        screen = term.wait_for("Moved to Archive.")
        assert not any("Keep this" in r for r in list_rows(screen))
        ((_, moved),) = imap_messages(server, "alice@example.com", "alice-pw", "Archive")
        assert b"Subject: Keep this" in moved
        term.keys("q")
        assert "exit status 0" in term.finished()[0]
    finally:
        term.kill()


def test_compose_in_the_users_editor(server, tmp_path):
    """With $EDITOR set, the draft is edited by that program (here a sed script)."""
    script = tmp_path / "editor.sh"
    script.write_text("#!/bin/sh\nsed -i -e 's/^To: $/To: bob@example.com/' "
                      "-e 's/^Subject: $/Subject: From the editor/' "
                      "-e '$a Written by a script.' \"$1\"\n")
    script.chmod(0o755)
    deliver(server, "Hello", "Hi.")
    term = start_client(server, tmp_path, editor=str(script))
    try:
        term.wait_for("Hello")
        term.keys("c")
        term.wait_for("Send to bob@example.com? (y)es, (e)dit, (n)o")
        term.keys("y")
        term.wait_for("Sent to bob@example.com; saved in Sent.")
        ((_, sent),) = imap_messages(server, "bob@example.com", "bob-pw", "INBOX")
        assert b"Subject: From the editor" in sent and b"Written by a script." in sent
        term.keys("q")
        assert "exit status 0" in term.finished()[0]
    finally:
        term.kill()
