"""The shard store against its contract (rmail.store.interfaces), on a real reactor and disk.

Every store call runs on the reactor thread through ``in_reactor``; files are checked
from the test thread once the Deferred has fired (the store's durability promise).
"""

import os

import pytest
from twisted.internet import defer

from rmail.store import hub as changes
from rmail.store.interfaces import (
    FolderExists, FolderNotDeletable, InvalidFlag, InvalidFolderName, NoSuchFolder,
)
from rmail.store.shardstore import ShardStore
from rmail.store.spool import CHUNK
from tests.conftest import in_reactor

ALICE = "alice@example.com"
BOB = "bob@example.com"
DEFAULTS = {"INBOX": None, "Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash",
            "Junk": "\\Junk", "Archive": "\\Archive"}


# -- helpers -------------------------------------------------------------------------


@pytest.fixture
def mail_root(tmp_path):
    return str(tmp_path / "mail")


@pytest.fixture
def open_store(mail_root):
    """A factory of opened ShardStores on mail_root; every one is closed at teardown."""
    opened = []

    def make():
        s = ShardStore(mail_root)
        in_reactor(s.open)
        opened.append(s)
        return s
    yield make
    for s in opened:
        in_reactor(s.close)


@pytest.fixture
def store(open_store):
    return open_store()


def reopen(old, open_store):
    """Close *old* and open a fresh ShardStore on the same directory."""
    in_reactor(old.close)
    return open_store()


def _finished(store, data):
    w = store.new_message()
    w.write(data)
    return w.finish()


def message(store, data=b"Subject: x\r\n\r\nbody\r\n"):
    """A finished writer holding *data*."""
    return in_reactor(_finished, store, data)


def append(store, data=b"Subject: x\r\n\r\nbody\r\n", folder="INBOX", flags=(), address=ALICE):
    """Write, finish and append one message; return its UID."""
    def run():
        d = _finished(store, data)
        return d.addCallback(lambda w: store.user(address).append(folder, w, flags))
    return in_reactor(run)


def call(store, method, *args, address=ALICE, **kwargs):
    return in_reactor(getattr(store.user(address), method), *args, **kwargs)


def infos(store, folder="INBOX", address=ALICE, uids=None):
    return call(store, "messages", folder, uids, address=address)


def uids_of(store, folder="INBOX", address=ALICE):
    return [m.uid for m in infos(store, folder, address)]


def folder_names(store, address=ALICE):
    return [f.name for f in call(store, "folders", address=address)]


def shard_dir(mail_root, local="alice", domain="example.com"):
    return os.path.join(mail_root, "domains", domain, "mailboxes", local)


def spool_files(mail_root):
    return os.listdir(os.path.join(mail_root, "spool"))


def listen(store, folder, address=ALICE):
    """Collect the hub's Change events for (address, folder) into a list."""
    events = []
    in_reactor(store.hub.subscribe, address, folder, events.append)
    return events


# -- default folders -------------------------------------------------------------------


def test_default_folders_with_special_use_inbox_first(store):
    """A new user has INBOX, Sent, Drafts, Trash, Junk, Archive with SPECIAL-USE, INBOX first."""
    folders = call(store, "folders")
    assert folders[0].name == "INBOX"
    assert {f.name: f.special_use for f in folders} == DEFAULTS
    assert [f.name for f in folders] == ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]
    for f in folders:
        assert f.messages == 0 and f.unseen == 0 and f.uidnext == 1 and f.uidvalidity > 0


def test_inbox_stays_first_among_other_names(store):
    """INBOX is listed first even when other names sort before it."""
    call(store, "create_folder", "AAA")
    call(store, "create_folder", "Ab")
    names = folder_names(store)
    assert names[0] == "INBOX"
    assert names[1:] == sorted(names[1:])
    assert {"AAA", "Ab"} <= set(names)


# -- folder names ------------------------------------------------------------------------


def test_nested_create_makes_parents(store):
    """Creating a/b/c also creates a and a/b."""
    call(store, "create_folder", "a/b/c")
    names = folder_names(store)
    assert {"a", "a/b", "a/b/c"} <= set(names)
    with pytest.raises(FolderExists):
        call(store, "create_folder", "a/b")
    call(store, "create_folder", "a/d")
    assert "a/d" in folder_names(store)


@pytest.mark.parametrize("bad", [
    "..", ".", "a/../b", "a/./b", "a/..", "./a",
    "a//b", "/a", "a/", "/", "",
    "a\x00b", "a\nb", "a\rb", "a\tb", "a\x1fb", "a\x7fb", "a\x85b",
])
def test_invalid_folder_names_refused(store, bad):
    """Dot segments, empty segments and control characters are refused with InvalidFolderName."""
    before = folder_names(store)
    with pytest.raises(InvalidFolderName):
        call(store, "create_folder", bad)
    with pytest.raises(InvalidFolderName):
        call(store, "rename_folder", "Archive", bad)
    with pytest.raises(InvalidFolderName):
        call(store, "status", bad)
    assert folder_names(store) == before


def test_over_long_folder_name_refused(store):
    """A segment over 255 characters is refused with InvalidFolderName."""
    with pytest.raises(InvalidFolderName):
        call(store, "create_folder", "x" * 256)
    call(store, "create_folder", "y" * 255)


def test_non_ascii_folder_names_work(store):
    """Unicode names such as Entwürfe/日本 can be created, listed and used."""
    call(store, "create_folder", "Entwürfe/日本")
    names = folder_names(store)
    assert "Entwürfe" in names and "Entwürfe/日本" in names
    uid = append(store, b"hallo", folder="Entwürfe/日本")
    assert uid == 1
    assert call(store, "status", "Entwürfe/日本").messages == 1
    (info,) = infos(store, "Entwürfe/日本")
    with open(info.path, "rb") as f:
        assert f.read() == b"hallo"


def test_inbox_is_case_insensitive(store):
    """inbox (any case) means INBOX; creating it is FolderExists."""
    uid = append(store, b"one", folder="inbox")
    assert call(store, "status", "InBoX").name == "INBOX"
    assert call(store, "status", "INBOX").messages == 1
    assert [m.uid for m in infos(store, "iNbOx")] == [uid]
    with pytest.raises(FolderExists):
        call(store, "create_folder", "inbox")
    call(store, "create_folder", "inbox/sub")
    assert "INBOX/sub" in folder_names(store)


def test_create_existing_folder_is_folder_exists(store):
    """Creating a folder that exists fails with FolderExists."""
    call(store, "create_folder", "Work")
    with pytest.raises(FolderExists):
        call(store, "create_folder", "Work")
    with pytest.raises(FolderExists):
        call(store, "create_folder", "Sent")


def test_missing_folder_is_no_such_folder(store):
    """status, messages, append, set_flags, expunge, rename, delete of a missing folder: NoSuchFolder."""
    with pytest.raises(NoSuchFolder):
        call(store, "status", "Nope")
    with pytest.raises(NoSuchFolder):
        call(store, "messages", "Nope")
    with pytest.raises(NoSuchFolder):
        append(store, folder="Nope")
    with pytest.raises(NoSuchFolder):
        call(store, "set_flags", "Nope", [1], ["\\Seen"])
    with pytest.raises(NoSuchFolder):
        call(store, "expunge", "Nope")
    with pytest.raises(NoSuchFolder):
        call(store, "rename_folder", "Nope", "Other")
    with pytest.raises(NoSuchFolder):
        call(store, "delete_folder", "Nope")
    with pytest.raises(NoSuchFolder):
        call(store, "subscribe", "Nope", False)
    assert "Other" not in folder_names(store)


def test_failed_append_to_missing_folder_leaves_no_file(store, mail_root):
    """An append refused with NoSuchFolder leaves no message file in the shard."""
    append(store, b"keep")
    with pytest.raises(NoSuchFolder):
        append(store, b"lost", folder="Nope")
    messages_dir = os.path.join(shard_dir(mail_root), "messages")
    assert sorted(os.listdir(messages_dir)) == [os.path.basename(m.path) for m in infos(store)]


def test_subscribe_recorded(store):
    """subscribe(folder, False/True) is reflected in FolderInfo.subscribed."""
    assert call(store, "status", "Junk").subscribed is True
    call(store, "subscribe", "Junk", False)
    assert call(store, "status", "Junk").subscribed is False
    call(store, "subscribe", "Junk", True)
    assert call(store, "status", "Junk").subscribed is True


# -- append, status, flags ---------------------------------------------------------------


def test_append_increasing_uids_and_status(store):
    """append returns increasing UIDs; status counts messages, unseen and uidnext."""
    u1 = append(store, b"m1", flags=["\\Seen"])
    u2 = append(store, b"m2")
    u3 = append(store, b"m3", flags=["\\Flagged"])
    assert u1 < u2 < u3
    assert (u1, u2, u3) == (1, 2, 3)
    st = call(store, "status", "INBOX")
    assert (st.messages, st.unseen, st.uidnext) == (3, 2, 4)
    assert uids_of(store) == [1, 2, 3]
    other = call(store, "status", "Sent")
    assert (other.messages, other.unseen, other.uidnext) == (0, 0, 1)


def test_message_file_holds_exactly_what_was_written(store):
    """The message file's bytes and size are exactly what was written, in chunks, even large."""
    small = b"From: a@b\r\n\r\n\x00\xff binary \r\n"
    big = bytes(range(256)) * ((3 * CHUNK) // 256 + 7)

    def run():
        w = store.new_message()
        for i in range(0, len(big), 10000):
            w.write(big[i:i + 10000])
        d = w.finish()
        return d.addCallback(lambda w: store.user(ALICE).append("INBOX", w))
    append(store, small)
    in_reactor(run)
    a, b = infos(store)
    with open(a.path, "rb") as f:
        assert f.read() == small
    with open(b.path, "rb") as f:
        assert f.read() == big
    assert (a.size, b.size) == (len(small), len(big))


def test_messages_subset_by_uid(store):
    """messages(folder, uids) returns only the existing messages among uids, in UID order."""
    uids = [append(store, b"%d" % i) for i in range(4)]
    assert [m.uid for m in infos(store, uids=[uids[3], 999, uids[1]])] == [uids[1], uids[3]]
    assert infos(store, uids=[]) == []


def test_empty_message_append(store):
    """A message with no bytes can be appended; its file exists and is empty."""
    uid = append(store, b"")
    (info,) = infos(store)
    assert (info.uid, info.size) == (uid, 0)
    with open(info.path, "rb") as f:
        assert f.read() == b""


def test_internaldate_stored(store):
    """An explicit internaldate is returned by messages()."""
    def run():
        return _finished(store, b"x").addCallback(
            lambda w: store.user(ALICE).append("INBOX", w, (), 1234567890.5))
    in_reactor(run)
    (info,) = infos(store)
    assert info.internaldate == 1234567890.5


def test_flags_stored_canonical_with_keywords(store):
    """System flags are stored canonically and keywords as given."""
    uid = append(store, flags=["\\seen", "\\FLAGGED", "$Forwarded", "Work"])
    (info,) = infos(store)
    assert info.uid == uid
    assert info.flags == frozenset({"\\Seen", "\\Flagged", "$Forwarded", "Work"})
    assert call(store, "status", "INBOX").unseen == 0


@pytest.mark.parametrize("bad", ["\\Recent", "\\recent", "\\Foo", "a b", "(x", "x)", "a\"b",
                                 "", "\\", "a*", "a%", "a{", "a]", "caf\u00e9", "a\x01"])
def test_invalid_flags_refused(store, bad):
    """Invalid flags and \\Recent are refused with InvalidFlag by append and set_flags."""
    with pytest.raises(InvalidFlag):
        append(store, flags=[bad])
    assert uids_of(store) == []
    uid = append(store, flags=["\\Seen"])
    with pytest.raises(InvalidFlag):
        call(store, "set_flags", "INBOX", [uid], [bad], "add")
    (info,) = infos(store)
    assert info.flags == frozenset({"\\Seen"})


def test_set_flags_modes_return_new_flags(store):
    """set_flags replace/add/remove return {uid: new flags} and store them."""
    u1 = append(store, flags=["\\Seen"])
    u2 = append(store, flags=["\\Draft"])
    assert call(store, "set_flags", "INBOX", [u1, u2], ["\\Flagged", "Work"], "add") == {
        u1: frozenset({"\\Seen", "\\Flagged", "Work"}),
        u2: frozenset({"\\Draft", "\\Flagged", "Work"})}
    assert call(store, "set_flags", "INBOX", [u1, u2], ["\\Flagged", "\\Seen"], "remove") == {
        u1: frozenset({"Work"}), u2: frozenset({"\\Draft", "Work"})}
    assert call(store, "set_flags", "INBOX", [u2], ["\\Answered"], "replace") == {
        u2: frozenset({"\\Answered"})}
    assert call(store, "set_flags", "INBOX", [u1, 999], ["\\Seen"]) == {u1: frozenset({"\\Seen"})}
    got = {m.uid: m.flags for m in infos(store)}
    assert got == {u1: frozenset({"\\Seen"}), u2: frozenset({"\\Answered"})}
    st = call(store, "status", "INBOX")
    assert st.unseen == 1


# -- removing ------------------------------------------------------------------------------


def test_expunge_removes_only_deleted_and_unlinks_files(store):
    """expunge removes only \\Deleted messages (among uids when given) and unlinks their files."""
    uids = [append(store, b"msg %d" % i) for i in range(4)]
    paths = {m.uid: m.path for m in infos(store)}
    call(store, "set_flags", "INBOX", [uids[0], uids[1], uids[3]], ["\\Deleted"], "add")
    assert call(store, "expunge", "INBOX", [uids[0], uids[2]]) == [uids[0]]
    assert uids_of(store) == [uids[1], uids[2], uids[3]]
    assert not os.path.exists(paths[uids[0]])
    assert all(os.path.exists(paths[u]) for u in uids[1:])
    assert call(store, "expunge", "INBOX") == [uids[1], uids[3]]
    assert uids_of(store) == [uids[2]]
    assert not os.path.exists(paths[uids[1]]) and not os.path.exists(paths[uids[3]])
    assert os.path.exists(paths[uids[2]])
    assert call(store, "expunge", "INBOX") == []
    assert uids_of(store) == [uids[2]]


def test_remove_ignores_flags_and_unlinks(store):
    """remove deletes the given messages whatever their flags, and their files."""
    u1 = append(store, b"a")
    u2 = append(store, b"b", flags=["\\Seen"])
    u3 = append(store, b"c")
    paths = {m.uid: m.path for m in infos(store)}
    assert call(store, "remove", "INBOX", [u2, u3, 999]) == [u2, u3]
    assert uids_of(store) == [u1]
    assert not os.path.exists(paths[u2]) and not os.path.exists(paths[u3])
    assert os.path.exists(paths[u1])


def test_removed_file_kept_while_a_copy_references_it(store):
    """A message file stays on disk while a copy still references it, and goes with the last."""
    uid = append(store, b"shared")
    ((_, new),) = call(store, "copy", "INBOX", [uid], "Archive")
    (orig,) = infos(store)
    (copy,) = infos(store, "Archive")
    assert call(store, "remove", "INBOX", [uid]) == [uid]
    assert os.path.exists(copy.path)
    with open(copy.path, "rb") as f:
        assert f.read() == b"shared"
    assert call(store, "remove", "Archive", [new]) == [new]
    assert not os.path.exists(copy.path) and not os.path.exists(orig.path)


# -- copy and move ---------------------------------------------------------------------------


def test_copy_returns_pairs_and_keeps_flags(store):
    """copy returns (old, new) UID pairs in order, keeps flags and contents, keeps the source."""
    u1 = append(store, b"one", flags=["\\Seen", "Work"])
    u2 = append(store, b"two", flags=["\\Flagged"])
    append(store, b"pre-existing", folder="Archive")
    pairs = call(store, "copy", "INBOX", [u2, 999, u1], "Archive")
    assert pairs == [(u1, 2), (u2, 3)]
    assert uids_of(store) == [u1, u2]
    copied = {m.uid: m for m in infos(store, "Archive")}
    assert copied[2].flags == frozenset({"\\Seen", "Work"})
    assert copied[3].flags == frozenset({"\\Flagged"})
    with open(copied[3].path, "rb") as f:
        assert f.read() == b"two"
    assert call(store, "status", "Archive").uidnext == 4


def test_move_returns_pairs_and_removes_source(store):
    """move returns (old, new) pairs, keeps flags and removes the originals in the same call."""
    u1 = append(store, b"one", flags=["\\Answered"])
    u2 = append(store, b"two")
    u3 = append(store, b"three", flags=["\\Seen"])
    pairs = call(store, "move", "INBOX", [u3, u1], "Trash")
    assert pairs == [(u1, 1), (u3, 2)]
    assert uids_of(store) == [u2]
    moved = infos(store, "Trash")
    assert [(m.uid, m.flags) for m in moved] == [
        (1, frozenset({"\\Answered"})), (2, frozenset({"\\Seen"}))]
    for m, data in zip(moved, (b"one", b"three")):
        with open(m.path, "rb") as f:
            assert f.read() == data


def test_move_to_missing_folder_leaves_source(store):
    """Moving into a missing folder fails with NoSuchFolder and the source is untouched."""
    u1 = append(store, b"one", flags=["\\Seen"])
    u2 = append(store, b"two")
    before = infos(store)
    with pytest.raises(NoSuchFolder):
        call(store, "move", "INBOX", [u1, u2], "Missing")
    assert infos(store) == before
    assert all(os.path.exists(m.path) for m in before)
    assert call(store, "status", "INBOX").uidnext == 3


# -- rename and delete ----------------------------------------------------------------------


def test_rename_folder_renames_children(store):
    """Renaming a folder renames its sub-folders and keeps its messages; siblings untouched."""
    call(store, "create_folder", "a/b/c")
    call(store, "create_folder", "ab")
    uid = append(store, b"in b", folder="a/b")
    validity = call(store, "status", "a/b").uidvalidity
    call(store, "rename_folder", "a", "z/y")
    names = set(folder_names(store))
    assert {"z", "z/y", "z/y/b", "z/y/b/c", "ab"} <= names
    assert not names & {"a", "a/b", "a/b/c"}
    assert uids_of(store, "z/y/b") == [uid]
    assert call(store, "status", "z/y/b").uidvalidity == validity
    with pytest.raises(FolderExists):
        call(store, "rename_folder", "ab", "Sent")
    with pytest.raises(FolderExists):
        call(store, "rename_folder", "z/y", "z/y/b/inner")


def test_rename_inbox_moves_messages_and_leaves_inbox_empty(store):
    """Renaming INBOX moves its messages to the new folder; INBOX remains, empty (RFC 3501 6.3.5)."""
    u1 = append(store, b"one", flags=["\\Seen"])
    u2 = append(store, b"two")
    call(store, "rename_folder", "INBOX", "Old/Mail")
    names = folder_names(store)
    assert names[0] == "INBOX"
    assert "Old" in names and "Old/Mail" in names
    st = call(store, "status", "INBOX")
    assert (st.messages, st.unseen) == (0, 0)
    assert uids_of(store) == []
    moved = infos(store, "Old/Mail")
    assert len(moved) == 2
    assert [m.flags for m in moved] == [frozenset({"\\Seen"}), frozenset()]
    for m, data in zip(moved, (b"one", b"two")):
        with open(m.path, "rb") as f:
            assert f.read() == data
    # INBOX keeps working and does not reuse the UIDs it had.
    u3 = append(store, b"three")
    assert u3 > u2 > u1
    assert uids_of(store) == [u3]


def test_delete_refuses_inbox_and_parents(store):
    """delete_folder refuses INBOX and folders with sub-folders with FolderNotDeletable."""
    append(store, b"keep")
    with pytest.raises(FolderNotDeletable):
        call(store, "delete_folder", "INBOX")
    with pytest.raises(FolderNotDeletable):
        call(store, "delete_folder", "inbox")
    call(store, "create_folder", "Parent/Child")
    with pytest.raises(FolderNotDeletable):
        call(store, "delete_folder", "Parent")
    names = folder_names(store)
    assert "INBOX" in names and "Parent" in names and "Parent/Child" in names
    assert len(uids_of(store)) == 1
    call(store, "delete_folder", "Parent/Child")
    call(store, "delete_folder", "Parent")
    names = folder_names(store)
    assert "Parent" not in names and "Parent/Child" not in names


def test_delete_folder_removes_messages(store):
    """Deleting a folder removes its messages and their files; created again it is empty."""
    call(store, "create_folder", "Work")
    append(store, b"w1", folder="Work")
    append(store, b"w2", folder="Work")
    paths = [m.path for m in infos(store, "Work")]
    assert all(os.path.exists(p) for p in paths)
    call(store, "delete_folder", "Work")
    assert "Work" not in folder_names(store)
    assert not any(os.path.exists(p) for p in paths)
    call(store, "create_folder", "Work")
    st = call(store, "status", "Work")
    assert (st.messages, st.uidnext) == (0, 1)
    assert infos(store, "Work") == []


# -- UIDs and UIDVALIDITY across restarts -------------------------------------------------------


def test_uids_never_reused_across_reopen(store, open_store):
    """After expunging the highest UID and reopening, the next append gets a higher UID."""
    append(store, b"1")
    append(store, b"2")
    top = append(store, b"3")
    call(store, "set_flags", "INBOX", [top], ["\\Deleted"])
    assert call(store, "expunge", "INBOX") == [top]
    store2 = reopen(store, open_store)
    assert call(store2, "status", "INBOX").uidnext == top + 1
    new = append(store2, b"4")
    assert new > top
    assert uids_of(store2) == [1, 2, new]


def test_uidvalidity_stable_across_reopen(store, open_store):
    """UIDVALIDITY of every folder is the same after closing and reopening the store."""
    call(store, "create_folder", "Work")
    append(store)
    before = {f.name: f.uidvalidity for f in call(store, "folders")}
    store2 = reopen(store, open_store)
    after = {f.name: f.uidvalidity for f in call(store2, "folders")}
    assert after == before
    assert len(set(before.values())) == len(before)  # distinct per folder


def test_default_folders_are_created_once_not_on_every_open(store, open_store):
    """A renamed or deleted default folder stays so after reopening; INBOX always exists."""
    call(store, "rename_folder", "Sent", "Outbox")
    call(store, "delete_folder", "Trash")
    store2 = reopen(store, open_store)
    folders = {f.name: f.special_use for f in call(store2, "folders")}
    assert "Sent" not in folders and "Trash" not in folders
    assert folders["Outbox"] == "\\Sent"
    assert list(folders.values()).count("\\Sent") == 1
    assert "INBOX" in folders


def test_recreated_folder_gets_greater_uidvalidity(store, open_store):
    """A folder deleted and created again gets a different, greater UIDVALIDITY."""
    call(store, "create_folder", "Work")
    first = call(store, "status", "Work").uidvalidity
    call(store, "delete_folder", "Work")
    call(store, "create_folder", "Work")
    second = call(store, "status", "Work").uidvalidity
    assert second > first
    store2 = reopen(store, open_store)
    call(store2, "delete_folder", "Work")
    call(store2, "create_folder", "Work")
    assert call(store2, "status", "Work").uidvalidity > second


def test_kept_uidvalidity_follows_delete_rename_and_create(store):
    """uidvalidity() answers from memory between folder changes, and never a folder's
    old value after it was deleted, renamed over, or created again."""
    call(store, "create_folder", "Work")
    first = call(store, "uidvalidity", "Work")
    assert first == call(store, "status", "Work").uidvalidity
    assert call(store, "uidvalidity", "Work") == first  # kept
    call(store, "delete_folder", "Work")
    with pytest.raises(NoSuchFolder):
        call(store, "uidvalidity", "Work")
    call(store, "create_folder", "Work")
    second = call(store, "uidvalidity", "Work")
    assert second == call(store, "status", "Work").uidvalidity and second != first
    call(store, "create_folder", "Other")
    other = call(store, "uidvalidity", "Other")
    call(store, "delete_folder", "Work")
    call(store, "rename_folder", "Other", "Work")
    assert call(store, "uidvalidity", "Work") == other
    with pytest.raises(NoSuchFolder):
        call(store, "uidvalidity", "Other")
    # The index's own folder ids follow too: messages land in the renamed folder.
    uid = append(store, folder="Work")
    assert uids_of(store, "Work") == [uid]


# -- delivery -----------------------------------------------------------------------------------


def test_deliver_one_copy_per_user_hard_linked(store, mail_root):
    """deliver to two users (one repeated) stores one hard-linked file and empties the spool."""
    data = b"Subject: to both\r\n\r\nhi\r\n"
    w = message(store, data)
    result = in_reactor(store.deliver, w, [ALICE, BOB, "Alice@Example.COM"])
    assert result == {ALICE: 1, BOB: 1}
    (a,) = infos(store, address=ALICE)
    (b,) = infos(store, address=BOB)
    assert a.path != b.path
    assert a.path.startswith(shard_dir(mail_root, "alice")) and b.path.startswith(
        shard_dir(mail_root, "bob"))
    sa, sb = os.stat(a.path), os.stat(b.path)
    assert sa.st_ino == sb.st_ino and sa.st_dev == sb.st_dev
    assert sa.st_nlink == 2
    for info in (a, b):
        with open(info.path, "rb") as f:
            assert f.read() == data
    assert spool_files(mail_root) == []
    # Removing it from one mailbox leaves the other's copy intact.
    call(store, "remove", "INBOX", [1], address=ALICE)
    assert os.path.exists(b.path) and os.stat(b.path).st_nlink == 1


def test_deliver_single_address_empties_spool(store, mail_root):
    """deliver to one user moves the spool file into the mailbox (one link, spool empty)."""
    w = message(store, b"solo")
    assert in_reactor(store.deliver, w, [BOB]) == {BOB: 1}
    (b,) = infos(store, address=BOB)
    assert os.stat(b.path).st_nlink == 1
    assert spool_files(mail_root) == []


def test_discarded_writer_leaves_nothing_in_spool(store, mail_root):
    """A discarded writer, partly written to disk or finished, leaves nothing in the spool."""
    w = store.new_message()

    def write_big():
        w.write(b"x" * (CHUNK + 10))
        return w.when_below(0)
    in_reactor(write_big)
    assert spool_files(mail_root) == [w.name]  # the first chunk reached the disk
    in_reactor(w.discard)
    assert spool_files(mail_root) == []

    w2 = message(store, b"finished but unwanted")
    assert spool_files(mail_root) == [w2.name]
    in_reactor(w2.discard)
    assert spool_files(mail_root) == []


# -- crash reconciliation ------------------------------------------------------------------------


def test_stray_message_file_is_quarantined(store, open_store, mail_root):
    """A file in messages/ without an index row moves to quarantine/ on the shard's first use."""
    uid = append(store, b"real")
    in_reactor(store.close)
    root = shard_dir(mail_root)
    stray = "1700000000000000000.1.deadbeef"
    with open(os.path.join(root, "messages", stray), "wb") as f:
        f.write(b"never acknowledged")
    store2 = open_store()
    listed = infos(store2)
    assert [m.uid for m in listed] == [uid]
    assert all(os.path.basename(m.path) != stray for m in listed)
    assert not os.path.exists(os.path.join(root, "messages", stray))
    with open(os.path.join(root, "quarantine", stray), "rb") as f:
        assert f.read() == b"never acknowledged"
    with open(listed[0].path, "rb") as f:
        assert f.read() == b"real"


def test_missing_message_file_drops_its_row(store, open_store):
    """A message whose file was lost is gone from messages() after reopening; others remain."""
    u1 = append(store, b"one")
    u2 = append(store, b"two")
    u3 = append(store, b"three")
    lost = {m.uid: m.path for m in infos(store)}[u2]
    in_reactor(store.close)
    os.unlink(lost)
    store2 = open_store()
    assert uids_of(store2) == [u1, u3]
    st = call(store2, "status", "INBOX")
    assert st.messages == 2 and st.uidnext == u3 + 1


def test_open_removes_spool_leftovers(store, open_store, mail_root):
    """store.open() deletes files a crash left in the spool."""
    in_reactor(store.close)
    leftover = os.path.join(mail_root, "spool", "1700000000000000000.1.cafe")
    with open(leftover, "wb") as f:
        f.write(b"half a message")
    assert spool_files(mail_root) == ["1700000000000000000.1.cafe"]
    open_store()
    assert spool_files(mail_root) == []


# -- change notifications --------------------------------------------------------------------------


def test_append_publishes_added(store):
    """append publishes an 'added' Change with the new UID and its flags on (address,
    folder): a session with the folder selected learns the flags with the message."""
    events = listen(store, "INBOX")
    uid = append(store, flags=["\\Seen", "$Work"])
    flags = frozenset({"\\Seen", "$Work"})
    assert events == [changes.Change(changes.ADDED, ALICE, "INBOX", (uid,), {uid: flags}, {uid})]
    append(store, folder="Sent")
    assert len(events) == 1  # other folders are not announced to INBOX listeners


def test_set_flags_publishes_flags(store):
    """set_flags publishes a 'flags' Change with the UIDs and their new flags."""
    uid = append(store)
    events = listen(store, "INBOX")
    call(store, "set_flags", "INBOX", [uid], ["\\Seen"], "add")
    assert len(events) == 1
    (event,) = events
    assert (event.kind, event.address, event.folder, event.uids) == (
        changes.FLAGS, ALICE, "INBOX", (uid,))
    assert event.flags == {uid: frozenset({"\\Seen"})}


def test_expunge_publishes_expunged(store):
    """expunge publishes an 'expunged' Change with the removed UIDs."""
    u1 = append(store)
    u2 = append(store)
    call(store, "set_flags", "INBOX", [u2], ["\\Deleted"])
    events = listen(store, "INBOX")
    call(store, "expunge", "INBOX")
    assert events == [changes.Change(changes.EXPUNGED, ALICE, "INBOX", (u2,))]
    assert uids_of(store) == [u1]


def test_move_publishes_added_and_expunged(store):
    """move publishes 'added' on the target and 'expunged' on the source."""
    u1 = append(store, flags=["\\Flagged"])
    source = listen(store, "INBOX")
    target = listen(store, "Archive")
    pairs = call(store, "move", "INBOX", [u1], "Archive")
    assert pairs == [(u1, 1)]
    assert target == [changes.Change(changes.ADDED, ALICE, "Archive", (1,),
                                     {1: frozenset({"\\Flagged"})}, {1})]
    assert source == [changes.Change(changes.EXPUNGED, ALICE, "INBOX", (u1,))]


def test_deliver_publishes_added_per_user(store):
    """deliver publishes an 'added' Change to each recipient's folder."""
    ea = listen(store, "INBOX", ALICE)
    eb = listen(store, "INBOX", BOB)
    w = message(store)
    in_reactor(store.deliver, w, [ALICE, BOB])
    assert ea == [changes.Change(changes.ADDED, ALICE, "INBOX", (1,), {1: frozenset()}, {1})]
    assert eb == [changes.Change(changes.ADDED, BOB, "INBOX", (1,), {1: frozenset()}, {1})]


# -- group commit -------------------------------------------------------------------------------------


def test_group_commit_concurrent_appends(store):
    """50 concurrent appends all succeed with 50 distinct consecutive UIDs, committed in batches."""
    events = listen(store, "INBOX")
    payloads = [b"message %d" % i for i in range(50)]

    def run():
        writers = [store.new_message() for _ in payloads]
        for w, data in zip(writers, payloads):
            w.write(data)
        d = defer.gatherResults([w.finish() for w in writers], consumeErrors=True)

        def append_all(finished):
            user = store.user(ALICE)
            return defer.gatherResults([user.append("INBOX", w) for w in finished],
                                       consumeErrors=True)
        return d.addCallback(append_all)
    uids = in_reactor(run)
    assert len(uids) == 50
    assert sorted(uids) == list(range(1, 51))
    listed = infos(store)
    assert [m.uid for m in listed] == list(range(1, 51))
    contents = set()
    for m in listed:
        with open(m.path, "rb") as f:
            contents.add(f.read())
    assert contents == set(payloads)
    by_uid = dict(zip(uids, payloads))
    for m in listed:
        with open(m.path, "rb") as f:
            assert f.read() == by_uid[m.uid]
    announced = [u for e in events for u in e.uids]
    assert sorted(announced) == list(range(1, 51))
    assert len(events) < 50  # appends were committed together, not one by one


# -- select and \Recent ------------------------------------------------------------------


def test_select_reads_flags_and_claims_recent_across_reopen(store, open_store):
    append(store, flags=["\\Seen"])
    append(store)
    status, messages, recent = call(store, "select", "INBOX", claim_recent=False)
    assert (status.messages, status.recent) == (2, 2)
    assert messages == [(1, frozenset({"\\Seen"})), (2, frozenset())]
    assert recent == [1, 2]  # a read-only look leaves them \Recent
    assert call(store, "select", "INBOX")[2] == [1, 2]
    assert call(store, "select", "INBOX")[2] == []  # claimed by the first
    store = reopen(store, open_store)
    assert call(store, "status", "INBOX").recent == 0
    append(store)
    assert call(store, "status", "INBOX").recent == 1
    assert call(store, "select", "INBOX")[2] == [3]
    with pytest.raises(NoSuchFolder):
        call(store, "select", "Nope")


def test_claim_recent_counts_at_once_and_is_kept_at_close(store, open_store):
    """claim_recent (a selected session told first of new messages) takes no turn of
    its own: the next read counts them not recent, and closing writes the mark."""
    append(store)
    append(store)
    in_reactor(store.user(ALICE).claim_recent, "INBOX", 1)
    assert call(store, "status", "INBOX").recent == 1
    in_reactor(store.user(ALICE).claim_recent, "INBOX", 2)
    store = reopen(store, open_store)  # nothing ran in between: close wrote it
    assert call(store, "status", "INBOX").recent == 0
    in_reactor(store.user(ALICE).claim_recent, "Gone", 9)  # a folder deleted meanwhile
    assert call(store, "status", "INBOX").recent == 0


def test_an_index_from_before_recent_marks_opens_with_everything_recent(store, open_store,
                                                                         mail_root):
    """Schema 3 had no folders.recent_mark: opening adds it, and keeps every message."""
    import sqlite3
    append(store)
    in_reactor(store.close)
    db = sqlite3.connect(os.path.join(shard_dir(mail_root), "index.sqlite"))
    db.execute("ALTER TABLE folders DROP COLUMN recent_mark")
    db.execute("PRAGMA user_version=3")
    db.commit()
    db.close()
    store = open_store()
    assert uids_of(store) == [1]
    assert call(store, "status", "INBOX").recent == 1
    assert call(store, "select", "INBOX")[2] == [1]


def _older_index(mail_root, downgrade: str, version: int):
    """An open store whose index holds one message ("Subject: old") from an index as
    schema *version* wrote it (*downgrade* undoes what came later)."""
    import sqlite3
    from rmail.imap.fetch import describe
    store = ShardStore(mail_root, describe=describe)
    in_reactor(store.open)
    append(store, b"Subject: old\r\n\r\nold text\r\n")
    in_reactor(store.close)
    db = sqlite3.connect(os.path.join(shard_dir(mail_root), "index.sqlite"))
    db.execute(downgrade)
    db.execute(f"PRAGMA user_version={version}")
    db.commit()
    db.close()
    store = ShardStore(mail_root, describe=describe)
    in_reactor(store.open)
    return store


def test_an_index_from_before_previews_opens_and_keeps_previews_from_then_on(mail_root):
    """Schema 4 had no headers.preview: opening adds it; older messages have None."""
    store = _older_index(mail_root, "ALTER TABLE headers DROP COLUMN preview", 4)
    try:
        append(store, b"Subject: new\r\n\r\nnew text\r\n")
        infos = call(store, "messages", "INBOX", summaries=False, headers=True)
        assert [(i.uid, i.preview) for i in infos] == [(1, None), (2, "new text")]
        assert infos[0].header.startswith(b"Subject: old")
    finally:
        in_reactor(store.close)


def test_search_texts_are_kept_and_an_older_index_gives_headers_instead(mail_root):
    """Schema 5 had no texts table: opening adds it.  A message delivered since has
    SEARCH's texts of SUBJECT/FROM/TO/CC/BCC and no header block when texts are asked
    for; an older one has its header block instead, for SEARCH to read."""
    store = _older_index(mail_root, "DROP TABLE texts", 5)
    try:
        append(store, b"From: =?utf-8?q?J=C3=B6rg?= <j@example.com>\r\nSubject: New  "
                      b"=?utf-8?b?w4Z0aGVy?=\r\nCc: a@x.example\r\nCC: b@y.example\r\n\r\n"
                      b"new text\r\n")
        old, new = call(store, "messages", "INBOX", summaries=False, texts=True)
        assert old.texts is None and old.header.startswith(b"Subject: old")
        assert new.header is None
        assert new.texts == ["new æther", "jörg <j@example.com>", None,
                             "<a@x.example>\0<b@y.example>", None]
        append(store, b"Subject: other\r\nCc: c@x.example\r\n\r\nx\r\n")

        def uids(containing):
            infos = call(store, "messages", "INBOX", summaries=False, texts=True,
                         containing=containing)
            return [i.uid for i in infos]
        # Narrowed in SQLite to the messages whose kept texts hold every string; the
        # older message has none kept, so it is always listed, for SEARCH to test itself.
        assert uids([(0, "æther")]) == [1, 2]
        assert uids([(3, "x.example")]) == [1, 2, 3]
        assert uids([(3, "x.example"), (1, "jörg")]) == [1, 2]
        assert uids([(2, "a")]) == [1]  # no To at all: not a candidate
        assert uids([(4, "nowhere")]) == [1]
    finally:
        in_reactor(store.close)

# -- bulk loading (migrate, import): ShardIndex's additions and the ShardLoader ----------

def _index(mail_root):
    from rmail.store.index import ShardIndex
    os.makedirs(shard_dir(mail_root), exist_ok=True)
    return ShardIndex(os.path.join(shard_dir(mail_root), "index.sqlite"))


def test_restore_folder_takes_a_uidvalidity_only_where_no_uid_was_given_out(mail_root):
    index = _index(mail_root)
    try:
        assert index.restore_folder("Archive/2024", 42).uidvalidity == 42
        assert index.status("Archive").uidvalidity > 42  # a parent of its own
        assert index.restore_folder("Sent", 7).uidvalidity == 7  # a default, never used
        assert index.restore_folder("Sent", 7).uidvalidity == 7  # again: nothing changes
        with index.transaction():
            index.add([("INBOX", "f1", 10, frozenset(), 0.0, None)])
        inbox = index.status("INBOX").uidvalidity
        with pytest.raises(FolderExists):
            index.restore_folder("INBOX", 5)
        assert index.status("INBOX").uidvalidity == inbox
        with pytest.raises(ValueError):
            index.restore_folder("Junk", 2 ** 32)
        # Folders created later never repeat a restored value, however large.
        index.restore_folder("Big", 4_000_000_000)
        index.create_folder("Later")
        assert index.status("Later").uidvalidity > 4_000_000_000
    finally:
        index.close()


def test_insert_rows_keeps_uids_and_never_goes_below_uidnext(mail_root):
    index = _index(mail_root)
    try:
        index.insert_rows("INBOX", [(3, "a", 5, frozenset({"\\Seen"}), 1.0, None),
                                    (9, "b", 6, frozenset(), 2.0, None)])
        assert [r[0] for r in index.messages("INBOX")] == [3, 9]
        assert index.status("INBOX").uidnext == 10
        assert index.status("INBOX").unseen == 1
        with pytest.raises(ValueError):  # 9 was given out; nothing of the call is kept
            index.insert_rows("INBOX", [(12, "c", 1, frozenset(), 0.0, None),
                                        (9, "d", 1, frozenset(), 0.0, None)])
        assert [r[0] for r in index.messages("INBOX")] == [3, 9]
        index.raise_uidnext("INBOX", 40)
        index.raise_uidnext("INBOX", 20)  # never down
        assert index.status("INBOX").uidnext == 40
        with index.transaction():  # the server's own appends go on after it
            assert index.add([("INBOX", "e", 1, frozenset(), 0.0, None)]) == [40]
        assert index.holds_file("INBOX", "a") and not index.holds_file("Sent", "a")
    finally:
        index.close()


def test_a_loaded_shard_opens_in_the_store_with_nothing_quarantined(mail_root, open_store):
    from rmail.store.loader import ShardLoader
    loader = ShardLoader(mail_root, ALICE, batch_messages=2).open()
    try:
        loader.index.restore_folder("Old", 77)
        for uid in (2, 5, 6):
            loader.add("Old", b"Subject: %d\nLF ends\n" % uid, frozenset({"\\Seen"}), 1e9,
                       uid=uid)
        loader.add("Old", b"Subject: 6\nLF ends\n", uid=8)  # the same bytes: one file
        assert loader.add("INBOX", b"Subject: new\r\n\r\n", skip_present=True)
        assert not loader.add("INBOX", b"Subject: new\r\n\r\n", skip_present=True)
        loader.finish_folder("Old", 20)
        loader.flush()
    finally:
        loader.close()
    store = open_store()
    infos_old = infos(store, "Old")
    assert [m.uid for m in infos_old] == [2, 5, 6, 8]
    assert infos_old[2].path == infos_old[3].path
    with open(infos_old[0].path, "rb") as f:
        assert f.read() == b"Subject: 2\r\nLF ends\r\n"
    status = call(store, "status", "Old")
    assert (status.uidvalidity, status.uidnext) == (77, 20)
    assert uids_of(store) == [1]
    assert os.listdir(os.path.join(shard_dir(mail_root), "quarantine")) == []
    assert append(store, folder="Old") == 20


def test_a_loader_removes_what_an_interrupted_run_left_uncommitted(mail_root):
    from rmail.store.loader import ShardLoader

    class Killed(Exception):
        pass

    def kill_at_second_commit(loader):
        if loader.committed:
            raise Killed()  # files durable in messages/, their rows never committed
    loader = ShardLoader(mail_root, ALICE, before_commit=kill_at_second_commit).open()
    loader.add("INBOX", b"Subject: kept\r\n\r\n")
    loader.flush()
    loader.add("INBOX", b"Subject: never committed\r\n\r\n")
    with pytest.raises(Killed):
        loader.flush()
    loader.add("INBOX", b"Subject: still in the spool\r\n\r\n")
    list(loader._writes.values())[-1][0].result()  # written, not yet synced
    loader.close()
    messages = os.path.join(shard_dir(mail_root), "messages")
    assert len(os.listdir(messages)) == 2
    assert any(n.endswith(".tmp") for n in spool_files(mail_root))
    loader = ShardLoader(mail_root, ALICE).open()
    try:
        assert loader.leftovers == 1
        assert loader.index.files() == set(os.listdir(messages))
        assert spool_files(mail_root) == []
        assert [r[0] for r in loader.index.messages("INBOX")] == [1]
    finally:
        loader.close()


def test_page_counts_from_the_newest_message_across_gaps(store):
    for _ in range(7):
        append(store)
    call(store, "set_flags", "INBOX", [2, 5, 6], ["\\Deleted"], "add")
    call(store, "expunge", "INBOX")  # UIDs 1 3 4 7 remain
    assert call(store, "page", "INBOX", 0, 3) == (4, [7, 4, 3])
    assert call(store, "page", "INBOX", 3, 3) == (4, [1])
    assert call(store, "page", "INBOX", 4, 3) == (4, [])
    assert call(store, "page", "Sent", 0, 10) == (0, [])
    with pytest.raises(NoSuchFolder):
        call(store, "page", "Nope", 0, 10)


def test_paging_again_sees_every_change_since_the_last_page(store):
    """page() keeps the folder's UIDs between changes: an append, an expunge or a move
    made after one page must show in the next."""
    for _ in range(3):
        append(store)
    assert call(store, "page", "INBOX", 0, 10) == (3, [3, 2, 1])
    append(store)
    assert call(store, "page", "INBOX", 0, 2) == (4, [4, 3])
    call(store, "remove", "INBOX", [3])
    assert call(store, "page", "INBOX", 0, 10) == (3, [4, 2, 1])
    call(store, "move", "INBOX", [4], "Archive")
    assert call(store, "page", "INBOX", 0, 10) == (2, [2, 1])
    assert call(store, "page", "Archive", 0, 10) == (1, [1])
    assert call(store, "page", "INBOX", 1, 10) == (2, [1])


def test_an_index_out_of_space_fails_as_an_os_error(tmp_path):
    """SQLite's "database or disk is full" reaches the protocols as OSError(ENOSPC), the
    error they answer "try again later" to, and the transaction leaves nothing behind."""
    import errno
    from rmail.store.index import ShardIndex
    index = ShardIndex(str(tmp_path / "index.sqlite"))
    pages = index.db.execute("PRAGMA page_count").fetchone()[0]
    index.db.execute(f"PRAGMA max_page_count = {pages + 2}")
    with pytest.raises(OSError) as refused:
        with index.transaction():
            for i in range(5000):
                index.add([("INBOX", f"file{i}", 10, [], 0.0, None)])
    assert refused.value.errno == errno.ENOSPC
    assert index.files() == set()


def test_the_kept_folder_listing_follows_every_change(store):
    """folders() and status() are answered from a listing kept between changes: each kind
    of change must be seen by the next call, whatever was asked just before it."""
    def inbox():
        listed = {f.name: f for f in call(store, "folders")}
        assert call(store, "status", "INBOX") == listed["INBOX"]
        f = listed["INBOX"]
        return f.messages, f.unseen, f.recent, f.uidnext

    assert inbox() == (0, 0, 0, 1)
    uid = append(store)
    assert inbox() == (1, 1, 1, 2)
    append(store, flags=["\\Seen"])
    assert inbox() == (2, 1, 2, 3)
    call(store, "set_flags", "INBOX", [uid], ["\\Seen"], "add")
    assert inbox() == (2, 0, 2, 3)
    call(store, "select", "INBOX", claim_recent=False)
    assert inbox() == (2, 0, 2, 3)
    call(store, "select", "INBOX")
    assert inbox() == (2, 0, 0, 3)
    call(store, "copy", "INBOX", [uid], "Archive")
    assert {f.name: f.messages for f in call(store, "folders")}["Archive"] == 1
    call(store, "move", "INBOX", [uid], "Trash")
    assert inbox() == (1, 0, 0, 3)
    call(store, "remove", "INBOX", [uid + 1])
    assert inbox() == (0, 0, 0, 3)
    call(store, "create_folder", "Lists")
    assert "Lists" in {f.name for f in call(store, "folders")}
    call(store, "subscribe", "Lists", True)
    assert {f.name: f.subscribed for f in call(store, "folders")}["Lists"] is True
    call(store, "rename_folder", "Lists", "Groups")
    assert {"Groups"} <= {f.name for f in call(store, "folders")} - {"Lists"}
    call(store, "delete_folder", "Groups")
    assert "Groups" not in {f.name for f in call(store, "folders")}


# -- the store's threads ---------------------------------------------------------------------


def test_workers_never_run_more_calls_at_once_than_their_size():
    """Calls beyond the pool's size wait their turn; every result (and every exception)
    comes back on the reactor thread through its Deferred."""
    import threading
    import time
    from rmail.store.workers import Workers

    pool = Workers(size=2, name="test-workers")
    lock = threading.Lock()
    running, peak = [0], [0]

    def call(i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        if i == 3:
            raise ValueError("call 3 fails")
        return i * i

    def run_all():
        calls = [pool.run(call, i).addErrback(lambda f: f.trap(ValueError) and "failed")
                 for i in range(8)]
        return defer.gatherResults(calls)
    try:
        results = in_reactor(run_all)
    finally:
        in_reactor(lambda: defer.succeed(pool.stop()))
    assert results == [0, 1, 4, "failed", 16, 25, 36, 49]
    assert peak[0] == 2


def test_calls_in_order_run_one_at_a_time_and_answer_in_order():
    """A shard's calls (``InOrder``): never two at once in the threads, started in the
    order made, and each answered (a failure too) before the next one's answer."""
    import threading
    import time
    from rmail.store.workers import InOrder

    turns = InOrder()
    lock = threading.Lock()
    running, peak, started, answered = [0], [0], [], []

    def call(i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            started.append(i)
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        if i == 2:
            raise ValueError("call 2 fails")
        return i

    def run_all():
        calls = []
        for i in range(6):
            d = turns.run(call, i)
            d.addCallbacks(lambda r, i=i: answered.append(i) or r,
                           lambda f, i=i: f.trap(ValueError) and answered.append(i) or "failed")
            calls.append(d)
        return defer.gatherResults(calls)
    results = in_reactor(run_all)
    assert results == [0, 1, "failed", 3, 4, 5]
    assert started == answered == list(range(6))
    assert peak[0] == 1


def test_every_result_of_a_burst_of_calls_comes_back():
    """Thousands of instant calls on two threads: their results come back through one
    queue and pipe (``_Handback``), many per wake-up, and none may be left behind."""
    from rmail.store.workers import Workers

    pool = Workers(size=2, name="test-race")

    def run_all():
        return defer.gatherResults([pool.run(int, i) for i in range(5000)])
    try:
        for _ in range(3):
            assert in_reactor(run_all) == list(range(5000))
    finally:
        in_reactor(lambda: defer.succeed(pool.stop()))
