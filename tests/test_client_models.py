"""The terminal client's UI logic without a terminal: parsing, models, layout, keys, editor."""

import datetime
import json

import pytest

from rmail.client import account, keys, layout, wire
from rmail.client.editbuffer import TextBuffer
from rmail.client.folders import Folder, FolderList
from rmail.client.htmltext import html_to_text
from rmail.client.messages import MessageList, short_date, summary
from rmail.client.reading import Reading, human_size

UTC = datetime.timezone.utc


# --- IMAP responses --------------------------------------------------------------------

def test_fetch_envelope_with_literal_and_encoded_words():
    """A subject sent as a literal and RFC 2047 names both come out as text."""
    data = [
        (b'7 (UID 42 FLAGS (\\Seen \\Flagged) RFC822.SIZE 1234 INTERNALDATE '
         b'"26-Nov-2026 09:49:00 +0000" ENVELOPE ("Thu, 26 Nov 2026 10:00:00 +0100" {11}',
         b'Lunch (now)'),
        b' (("=?utf-8?q?J=C3=BCrgen?=" NIL "jurgen" "example.org")) NIL NIL '
        b'((NIL NIL "alice" "example.com")) NIL NIL NIL "<a@b>"))',
        b'8 (UID 43 FLAGS () RFC822.SIZE 10 INTERNALDATE "26-Nov-2026 09:49:00 +0000" '
        b'ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL))',
    ]
    items = wire.fetch_items(data)
    assert sorted(items) == [42, 43]
    env = wire.envelope(42, items[42])
    assert env.subject == "Lunch (now)"
    assert env.sender == [wire.Address("Jürgen", "jurgen@example.org")]
    assert env.to[0].address == "alice@example.com"
    assert env.flags == {"\\Seen", "\\Flagged"} and not env.unread and env.flagged
    assert env.size == 1234 and env.message_id == "<a@b>"
    assert env.date == datetime.datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    bare = wire.envelope(43, items[43])
    assert bare.unread and bare.subject == "" and bare.sender == []
    # no Date header: the arrival time (INTERNALDATE) is shown instead
    assert bare.date == datetime.datetime(2026, 11, 26, 9, 49, tzinfo=UTC)


def test_fetch_without_uid_is_left_out_and_body_sections_parse():
    data = [b'3 (FLAGS (\\Seen))',
            (b'4 (UID 9 BODY[HEADER.FIELDS (SUBJECT)] {14}', b'Subject: x\r\n\r\n'), b')']
    items = wire.fetch_items(data)
    assert list(items) == [9]
    assert items[9]["BODY[HEADER.FIELDS (SUBJECT)]"] == b"Subject: x\r\n\r\n"


def test_control_characters_never_reach_the_screen():
    assert wire.text(b"Hi\x1b[2Jthere\r\n") == "Hi [2Jthere  "


def test_group_syntax_in_addresses_is_skipped():
    value = [[None, None, b"friends", None], [b"Bob", None, b"bob", b"example.com"],
             [None, None, None, None]]
    assert wire.addresses(value) == [wire.Address("Bob", "bob@example.com")]


def test_list_and_status_responses():
    box = wire.mailbox([b'(\\HasNoChildren \\Sent) "/" "Sent"'])
    assert box == wire.Mailbox("Sent", frozenset({"\\HasNoChildren", "\\Sent"}), "/")
    box = wire.mailbox([b'(\\HasNoChildren) "." Entw&APw-rfe'])
    assert box.name == "Entwürfe" and box.delimiter == "."
    assert wire.status([b'"INBOX" (MESSAGES 12 UNSEEN 3 UIDNEXT 40)']) == \
        {"MESSAGES": 12, "UNSEEN": 3, "UIDNEXT": 40}


@pytest.mark.parametrize("name,encoded", [
    ("INBOX", "INBOX"), ("Entwürfe", "Entw&APw-rfe"), ("A&B", "A&-B"),
    ("日本語", "&ZeVnLIqe-"), ("Ünïcödé/Sub", "&ANw-n&AO8-c&APY-d&AOk-/Sub")])
def test_modified_utf7_folder_names(name, encoded):
    assert wire.encode_folder(name) == encoded
    assert wire.decode_folder(encoded) == name


def test_quoting_and_uid_sets():
    assert wire.quoted('say "hi" \\o/') == '"say \\"hi\\" \\\\o/"'
    assert wire.uid_set([9, 1, 2, 3, 7, 10]) == "1:3,7,9:10"


# --- folder list ---------------------------------------------------------------------

def _folders():
    return [Folder("Archive", frozenset({"\\Archive"})), Folder("INBOX", unseen=3, messages=10),
            Folder("Bin", frozenset({"\\Trash"})), Folder("Projects", frozenset({"\\Noselect"})),
            Folder("Projects/rmail", unseen=0), Folder("Sent")]


def test_folder_list_puts_inbox_first_and_finds_special_folders():
    folders = FolderList()
    folders.replace(_folders())
    assert [f.name for f in folders.folders][:2] == ["INBOX", "Archive"]
    assert folders.current.name == "INBOX"
    assert folders.special("\\Trash") == "Bin"  # marked by the server
    assert folders.special("\\Sent") == "Sent"  # not marked: the usual name
    assert "Projects" not in folders.names()


def test_unread_counts_shown_and_kept():
    folders = FolderList()
    folders.replace(_folders())
    inbox = folders.find("INBOX")
    assert inbox.label(16) == "INBOX          3"
    folders.adjust_unseen("INBOX", -1)
    assert inbox.unseen == 2 and inbox.label(16).endswith(" 2")
    folders.adjust_unseen("INBOX", -5)
    assert inbox.unseen == 0 and inbox.label(16) == "INBOX".ljust(16)
    assert folders.find("Projects/rmail").label(16).startswith("  rmail")
    folders.select("Sent")
    folders.replace(_folders())  # a refresh keeps the selection by name
    assert folders.current.name == "Sent"


def test_folder_pane_scrolls_to_the_selection():
    folders = FolderList()
    folders.replace([Folder(f"F{i}") for i in range(30)])
    folders.move(25)
    shown = folders.visible(10)
    assert len(shown) == 10 and [f.name for f, sel in shown if sel] == ["F25"]


# --- message list paging -------------------------------------------------------------

def _envelope(uid, **kw):
    return wire.Envelope(uid=uid, subject=f"Message {uid}",
                         sender=[wire.Address("Bob", "bob@example.com")], **kw)


def test_pages_fetched_only_for_what_is_shown():
    """5000 messages: the first screen needs page 0 only, the end needs the last page."""
    messages = MessageList(page_size=50)
    messages.load("INBOX", range(1, 5001))
    assert len(messages) == 5000 and messages.uids[0] == 5000  # newest first
    messages.visible(20)
    wanted = messages.missing(20)
    assert wanted == list(range(5000, 4950, -1))
    messages.store({uid: _envelope(uid) for uid in wanted})
    assert messages.missing(20) == []
    messages.move(10 ** 9)  # End
    messages.visible(20)
    assert messages.current_uid == 1
    assert messages.missing(20) == list(range(50, 0, -1))


def test_a_window_across_a_page_boundary_needs_both_pages():
    messages = MessageList(page_size=50)
    messages.load("INBOX", range(1, 201))
    messages.move(60)
    messages.visible(20)  # rows 41..60 show: pages 0 and 1
    assert messages.top == 41
    assert len(messages.missing(20)) == 100
    assert messages.page_of(41) == 0 and messages.page_of(60) == 1
    assert messages.page(3) == list(range(50, 0, -1))
    assert messages.page(4) == []


def test_new_mail_keeps_the_selection_and_the_loaded_envelopes():
    messages = MessageList()
    messages.load("INBOX", [1, 2, 3])
    messages.store({u: _envelope(u) for u in (1, 2, 3)})
    messages.move(1)
    assert messages.current_uid == 2
    new = messages.update([1, 2, 3, 4, 5])
    assert new == [5, 4]
    assert messages.current_uid == 2 and messages.position() == "4/5"
    assert messages.visible(10)[0][0] == 5  # at the top, the new mail shows
    assert messages.missing(10) == [5, 4]
    messages.update([1, 3, 4, 5])  # 2 expunged elsewhere
    assert 2 not in messages.envelopes and messages.current_uid == 1


def test_removing_selects_the_next_message():
    messages = MessageList()
    messages.load("INBOX", [1, 2, 3])
    messages.move(1)
    messages.remove([2])
    assert messages.current_uid == 1
    messages.remove([1])
    assert messages.current_uid == 3
    messages.remove([3])
    assert messages.current_uid is None and messages.position() == "0/0"


def test_summary_line():
    now = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    env = _envelope(1, date=datetime.datetime(2026, 11, 26, 9, 41, tzinfo=UTC))
    line = summary(env, 60, now)
    assert len(line) == 60
    assert line.startswith("N  09:41    Bob ") and "Message 1" in line
    env.flags = frozenset({"\\Seen", "\\Answered"})
    assert summary(env, 60, now).startswith(" r 09:41")
    env.flags = frozenset({"\\Flagged"})
    assert summary(env, 60, now).startswith("N!")
    assert short_date(datetime.datetime(2026, 3, 1, tzinfo=UTC), now) == "Mar 01"
    assert short_date(datetime.datetime(2024, 3, 1, tzinfo=UTC), now) == "Mar 2024"
    # in Sent, the user's own messages show whom they went to
    mine = wire.Envelope(uid=2, subject="Hi", sender=[wire.Address("", "alice@example.com")],
                         to=[wire.Address("Bob", "bob@example.com")])
    assert "To Bob" in summary(mine, 60, now, me={"alice@example.com"})
    assert summary(None, 20).strip() == "…"


# --- reading ---------------------------------------------------------------------------

MIXED = (b"From: Bob <bob@example.com>\r\nTo: alice@example.com\r\nSubject: Report\r\n"
         b"Date: Thu, 26 Nov 2026 09:00:00 +0000\r\nX-Extra: yes\r\nMIME-Version: 1.0\r\n"
         b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
         b'--b1\r\nContent-Type: multipart/alternative; boundary="b2"\r\n\r\n'
         b"--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>HTML <b>version</b></p>\r\n"
         b"--b2\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
         b"Content-Transfer-Encoding: quoted-printable\r\n\r\nPlain na=EFve text\r\n--b2--\r\n"
         b"--b1\r\nContent-Type: application/pdf; name=report.pdf\r\n"
         b"Content-Disposition: attachment; filename=report.pdf\r\n"
         b"Content-Transfer-Encoding: base64\r\n\r\n" + b"QUJD" * 700 + b"\r\n--b1--\r\n")


def test_reading_prefers_plain_text_and_lists_attachments():
    reading = Reading(1, MIXED)
    assert reading.text.strip() == "Plain naïve text"
    assert [(a.name, a.content_type, a.size) for a in reading.attachments] == \
        [("report.pdf", "application/pdf", 2100)]
    lines = reading.lines(60)
    assert lines[:2] == ["From: Bob <bob@example.com>", "To: alice@example.com"]
    assert "Attachment: report.pdf (2.1 KB, application/pdf)" in lines
    assert "X-Extra: yes" not in lines


def test_full_headers_toggle():
    reading = Reading(1, MIXED)
    reading.toggle_headers()
    assert "X-Extra: yes" in reading.lines(60)
    reading.toggle_headers()
    assert "X-Extra: yes" not in reading.lines(60)


def test_html_only_message_is_shown_as_text():
    raw = (b"Subject: News\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
           b"<html><head><style>p{color:red}</style></head><body><h1>Title</h1>"
           b"<p>First&nbsp;para with <a href='https://example.com/x'>a link</a>.</p>"
           b"<ul><li>one</li><li>two</li></ul><script>alert(1)</script></body></html>")
    text = Reading(1, raw).text
    assert text == ("Title\n\nFirst\xa0para with a link <https://example.com/x>.\n\n"
                    "* one\n* two")


def test_html_to_text_details():
    assert html_to_text("a<br>b<br/>c") == "a\nb\nc"
    assert html_to_text("<pre>  keep\n    this</pre>") == "  keep\n    this"
    assert html_to_text("<blockquote>said</blockquote>after") == "> said\n\nafter"
    assert html_to_text("<p>  lots   of \n space </p>") == "lots of space"
    assert html_to_text('<img alt="logo"> <a href="#top">top</a>') == "[logo] top"


def test_long_lines_wrap_to_the_pane_and_scrolling_stops_at_the_end():
    raw = b"Subject: x\r\n\r\n" + b"word " * 100 + b"\r\n"
    reading = Reading(1, raw)
    lines = reading.lines(30)
    assert all(len(line) <= 30 for line in lines) and len(lines) > 15
    reading.scroll(1000, 30, 10)
    assert reading.top == len(lines) - 10
    reading.scroll(-1000, 30, 10)
    assert reading.top == 0


def test_human_sizes():
    assert [human_size(n) for n in (0, 1023, 1024, 15 * 1024, 3 * 1024 ** 2)] == \
        ["0 B", "1023 B", "1.0 KB", "15 KB", "3.0 MB"]


# --- layout, keys, editor --------------------------------------------------------------

def test_an_80x24_terminal_shows_three_useful_panes():
    p = layout.panes(24, 80)
    assert p.folders.width >= 12 and p.messages.height >= 7 and p.reading.height >= 10
    assert p.messages.width >= 60
    # nothing overlaps, nothing is off screen
    assert p.folders.right <= p.separator.left < p.messages.left
    assert p.messages.bottom == p.divider.top and p.divider.bottom == p.reading.top
    assert p.reading.bottom == p.status.top == 22 and p.help.top == 23
    assert p.messages.right == p.reading.right == 80
    assert layout.panes(9, 80) is None and layout.panes(24, 39) is None


def test_fit_pads_and_cuts_by_columns():
    assert layout.fit("abc", 5) == "abc  "
    assert layout.fit("abcdef", 4) == "abc…"
    assert layout.fit("日本語テキスト", 8) == "日本語… "  # wide characters take two columns
    assert layout.width_of(layout.fit("日本語テキスト", 7)) == 7 == layout.width_of("日本語…")


def test_every_action_has_a_key_and_a_method():
    from rmail.client.app import MailClient
    for binding in keys.BINDINGS:
        assert callable(getattr(MailClient, "do_" + binding.action))
        for key in binding.keys:
            assert keys.action_for(key) == binding.action
    required = {"down", "up", "open", "reply", "reply_all", "forward", "compose", "delete",
                "move", "toggle_read", "toggle_flag", "search", "refresh", "quit", "help",
                "headers"}
    assert required <= {b.action for b in keys.BINDINGS}


def test_help_line_fits_and_starts_with_help_and_quit():
    line = keys.help_line(80)
    assert len(line) <= 80 and line.startswith("?:help q:quit r:reply")
    assert len(keys.help_line(30)) <= 30
    screen = "\n".join(keys.help_screen())
    assert all(b.description in screen for b in keys.BINDINGS)


def test_text_buffer_editing():
    buf = TextBuffer("To: \n\nbody", row=0, col=4)
    buf.insert("bob@example.com")
    buf.down()
    buf.down()
    buf.end()
    buf.insert("\nmore")
    assert buf.text == "To: bob@example.com\n\nbody\nmore"
    buf.home()
    buf.backspace()  # joins with the line above
    assert buf.text == "To: bob@example.com\n\nbodymore" and (buf.row, buf.col) == (2, 4)
    buf.kill_line()
    assert buf.text.endswith("\nbody")
    buf.up(10)
    assert buf.row == 0


def test_text_buffer_soft_wraps_and_keeps_the_cursor_visible():
    buf = TextBuffer("x" * 25 + "\nshort", row=0, col=23)
    rows, cursor = buf.visual(10)
    assert rows == ["x" * 10, "x" * 10, "x" * 5, "short"] and cursor == (2, 3)
    buf.down()
    visible, cursor = buf.window(10, 2)
    assert visible == ["xxxxx", "short"] and cursor == (1, 5)


# --- settings --------------------------------------------------------------------------

def test_settings_from_file_and_command_line(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "rmail").mkdir()
    (tmp_path / "rmail" / "client.json").write_text(json.dumps(
        {"host": "mail.example.com", "user": "alice@example.com", "tls": "tls"}))
    acct = account.from_arguments(["--smtp-port", "2465"])
    assert acct.imap_address == ("mail.example.com", 993)
    assert acct.smtp_address == ("mail.example.com", 2465)
    acct = account.from_arguments(["--tls", "starttls", "--host", "127.0.0.1"])
    assert acct.imap_address == ("127.0.0.1", 143) and acct.smtp_address == ("127.0.0.1", 587)


def test_settings_refuse_unknown_keys_and_missing_user(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    with pytest.raises(account.AccountError, match="no user"):
        account.from_arguments([])
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"hots": "x"}))
    with pytest.raises(account.AccountError, match="unknown key 'hots'"):
        account.from_arguments(["--config", str(path)])
    path.write_text(json.dumps({"imap_port": "143"}))
    with pytest.raises(account.AccountError, match="imap_port should be a int"):
        account.from_arguments(["--config", str(path)])


def test_password_from_the_environment(monkeypatch):
    monkeypatch.setenv(account.PASSWORD_VARIABLE, "s3cret")
    assert account.password(account.Account(user="a@example.com")) == "s3cret"


def test_the_client_imports_nothing_from_the_server():
    """rmail.client is an ordinary IMAP/SMTP client: only rmail.client.* and the standard
    library get imported (no Twisted, no store, no protocols)."""
    import subprocess
    import sys
    code = ("import sys, rmail.client.startup; "
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('rmail', 'twisted', 'OpenSSL', 'jwt', 'passlib', 'klein'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True,
                         timeout=60).stdout.decode().split()
    assert out and all(m == "rmail" or m.startswith("rmail.client") for m in out), out
