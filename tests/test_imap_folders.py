"""IMAP folders: LIST/LSUB (with SPECIAL-USE), STATUS, CREATE/RENAME/DELETE, names, UIDPLUS."""

import imaplib

import pytest


@pytest.fixture
def imap(server):
    client = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    client.login("alice@example.com", "alice-pw")
    yield client
    client.logout()


def _names(lines):
    return [line.rsplit(b' "/" ', 1)[1].strip(b'"') for line in lines]


def test_list_shows_special_use_attributes(imap):
    status, lines = imap.list()
    assert status == "OK"
    assert b'(\\HasNoChildren \\Sent) "/" "Sent"' in lines
    assert b'(\\HasNoChildren \\Trash) "/" "Trash"' in lines
    assert _names(lines) == [b"INBOX", b"Archive", b"Drafts", b"Junk", b"Sent", b"Trash"]


def test_list_special_use_selection_and_return_options(imap):
    status, lines = imap._simple_command("LIST", "(SPECIAL-USE)", '""', '"*"')
    lines = imap.untagged_responses.pop("LIST")
    assert status == "OK"
    assert sorted(_names(lines)) == [b"Archive", b"Drafts", b"Junk", b"Sent", b"Trash"]
    imap.unsubscribe("Junk")
    status, _ = imap._simple_command("LIST", '""', '"*"', "RETURN", "(SUBSCRIBED SPECIAL-USE)")
    lines = imap.untagged_responses.pop("LIST")
    assert b'(\\HasNoChildren \\Sent \\Subscribed) "/" "Sent"' in lines
    assert b'(\\HasNoChildren \\Junk) "/" "Junk"' in lines


def test_wildcards_percent_and_star(imap):
    for name in ("Work", "Work/2024", "Work/2024/Q1", "Workshop"):
        assert imap.create(name)[0] == "OK"
    assert _names(imap.list('""', "Work/%")[1]) == [b"Work/2024"]
    assert _names(imap.list('""', "Work/*")[1]) == [b"Work/2024", b"Work/2024/Q1"]
    assert _names(imap.list("Work/", "%")[1]) == [b"Work/2024"]
    assert b'(\\HasChildren) "/" "Work"' in imap.list('""', "Work")[1]
    assert imap.list('""', '""')[1] == [b'(\\Noselect) "/" ""']


def test_non_ascii_names_travel_in_modified_utf7(server, imap):
    assert imap.create("Entw&APw-rfe/&ZeVnLIqe-")[0] == "OK"
    names = [f.name for f in server.in_reactor(server.store.user("alice@example.com").folders)]
    assert "Entwürfe/日本語" in names and "Entwürfe" in names
    assert b'"Entw&APw-rfe/&ZeVnLIqe-"' in b" ".join(imap.list()[1])


def test_rename_with_children_and_delete_rules(imap):
    imap.create("Projects/Alpha")
    imap.append("Projects/Alpha", None, None, b"Subject: a\r\n\r\nx\r\n")
    assert imap.rename("Projects", "Archive/Projects")[0] == "OK"
    assert _names(imap.list('""', "Archive/*")[1]) == [b"Archive/Projects", b"Archive/Projects/Alpha"]
    assert imap.select("Archive/Projects/Alpha") == ("OK", [b"1"])
    imap.close()
    status, data = imap.delete("Archive/Projects")
    assert status == "NO"  # has sub-folders
    assert imap.delete("Archive/Projects/Alpha")[0] == "OK"
    assert imap.delete("INBOX")[0] == "NO"
    assert imap.create("Sent")[0] == "NO"


def test_subscriptions_persist_in_lsub(server, imap):
    imap.create("Lists/python")
    imap.unsubscribe("Drafts")
    server.stop()
    server.start()
    client = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    client.login("alice@example.com", "alice-pw")
    names = _names(client.lsub()[1])
    assert b"Drafts" not in names and b"Lists/python" in names and b"INBOX" in names
    client.logout()


def test_lsub_percent_lists_an_unsubscribed_parent_of_a_subscribed_folder_as_noselect(imap):
    """RFC 3501 6.3.9: "foo/bar" subscribed and "foo" not, LSUB "" "%" returns foo, not
    foo/bar, flagged \\Noselect; "*" returns foo/bar itself.  (CREATE subscribes.)"""
    for name in ("Clubs", "Clubs/Chess", "Clubs/Chess/2026", "Clubs/Go"):
        assert imap.create(name)[0] == "OK"
    imap.unsubscribe("Clubs/Chess")
    imap.unsubscribe("Clubs/Go")
    status, lines = imap.lsub('""', "Clubs/%")
    assert lines == [b'(\\Noselect) "/" "Clubs/Chess"']
    assert _names(imap.lsub('""', "Clubs/*")[1]) == [b"Clubs/Chess/2026"]
    status, lines = imap.list('""', "Clubs/%")
    assert lines == [b'(\\HasChildren) "/" "Clubs/Chess"', b'(\\HasNoChildren) "/" "Clubs/Go"']


def test_status_counts(imap):
    imap.append("INBOX", "\\Seen", None, b"Subject: a\r\n\r\nx\r\n")
    imap.append("INBOX", None, None, b"Subject: b\r\n\r\nx\r\n")
    status, data = imap.status("INBOX", "(MESSAGES UNSEEN UIDNEXT)")
    assert data == [b'"INBOX" (MESSAGES 2 UNSEEN 1 UIDNEXT 3)']
    assert imap.status("Nope", "(MESSAGES)")[0] == "NO"


def test_copyuid_and_uid_expunge(imap):
    for i in range(4):
        imap.append("INBOX", None, None, b"Subject: %d\r\n\r\nx\r\n" % i)
    imap.select("INBOX")
    status, data = imap._simple_command("UID", "COPY", "2:3", "Archive")  # the tagged text
    assert status == "OK" and data[0].startswith(b"[COPYUID ")
    assert data[0].split()[2:4] == [b"2:3", b"1:2]"]
    imap.store("1:4", "+FLAGS", "\\Deleted")
    status, data = imap.uid("EXPUNGE", "1,3")
    assert status == "OK"
    assert imap.untagged_responses.pop("EXPUNGE") == [b"3", b"1"]
    status, data = imap.uid("SEARCH", "ALL")
    assert data == [b"2 4"]
