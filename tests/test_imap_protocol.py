"""IMAP protocol behaviour the stock Twisted server gets wrong (TWISTED.md 14-24), and bad input."""

import imaplib
import os
import socket

import pytest

from tests.harness import TIMEOUT, client_tls


class Raw:
    """A raw IMAP connection: send lines, read lines."""

    def __init__(self, port, tls=False):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        if tls:
            self.sock = client_tls().wrap_socket(self.sock)
        self.f = self.sock.makefile("rb")
        self.greeting = self.line()

    def line(self) -> bytes:
        data = self.f.readline()
        if not data:
            raise ConnectionError("closed")
        return data

    def send(self, data: bytes):
        self.sock.sendall(data)

    def until(self, tag: bytes) -> list[bytes]:
        """Every line up to and including the tagged response for *tag*."""
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def login(self, user=b"alice@example.com", password=b"alice-pw"):
        self.send(b"l1 LOGIN " + user + b" " + password + b"\r\n")
        assert self.until(b"l1")[-1].startswith(b"l1 OK")

    def close(self):
        self.f.close()
        self.sock.close()


def test_starttls_discards_commands_pipelined_before_the_handshake(server):
    raw = Raw(server.port("imap"))
    raw.send(b"b STARTTLS\r\nc LOGIN alice@example.com alice-pw\r\nd SELECT INBOX\r\n")
    assert raw.line().startswith(b"b OK")
    raw.sock = client_tls().wrap_socket(raw.sock)
    raw.f = raw.sock.makefile("rb")
    raw.send(b"e CAPABILITY\r\n")
    lines = raw.until(b"e")
    assert lines[0].startswith(b"* CAPABILITY") and lines[-1].startswith(b"e OK")
    raw.send(b"f SELECT INBOX\r\n")
    assert raw.until(b"f")[-1].startswith(b"f BAD")  # still not logged in
    raw.close()


def test_literal_plus_is_read_as_data_not_as_a_command(server):
    raw = Raw(server.port("imap"))
    raw.login()
    message = b"l3 DELETE Trash\r\nX: y\r\n"
    raw.send(b"a APPEND INBOX {%d+}\r\n%s\r\n" % (len(message), message))
    assert raw.until(b"a")[-1].startswith(b"a OK [APPENDUID ")
    raw.send(b"s LIST \"\" Trash\r\n")
    assert b'"Trash"' in b"".join(raw.until(b"s"))
    raw.close()
    (_, _, data), = server.messages("alice@example.com")
    assert data == message


def test_append_literal_over_the_limit_is_refused_before_reading(server):
    raw = Raw(server.port("imap"))
    raw.login()
    raw.send(b"a APPEND INBOX {99999999999}\r\n")
    reply = raw.line()
    assert reply.startswith(b"a NO [TOOBIG]")
    raw.send(b"n NOOP\r\n")
    assert raw.until(b"n")[-1] == b"n OK NOOP completed\r\n"
    raw.close()
    assert server.messages("alice@example.com") == []


def test_negative_or_malformed_literal_sizes_are_bad(server):
    raw = Raw(server.port("imap"))
    raw.login()
    raw.send(b"a APPEND INBOX {-100}\r\n")
    assert raw.line().startswith(b"a BAD")
    raw.send(b"n NOOP\r\n")
    assert raw.until(b"n")[-1] == b"n OK NOOP completed\r\n"
    raw.close()


def test_append_to_a_missing_folder_is_trycreate(server):
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    imap.login("alice@example.com", "alice-pw")
    status, data = imap.append("Nope", None, None, b"Subject: x\r\n\r\ny\r\n")
    assert status == "NO" and b"TRYCREATE" in data[0]
    imap.logout()


def test_append_without_flags_and_appenduid(server):
    raw = Raw(server.port("imap"))
    raw.login()
    raw.send(b"a APPEND INBOX {7}\r\n")
    assert raw.line().startswith(b"+")
    raw.send(b"X: y\r\n\r\n")
    reply = raw.until(b"a")[-1]
    assert reply.startswith(b"a OK [APPENDUID ") and b" 1] " in reply
    raw.close()


def test_idle_ends_only_on_done(server):
    raw = Raw(server.port("imap"))
    raw.login()
    raw.send(b"s SELECT INBOX\r\n")
    raw.until(b"s")
    raw.send(b"j IDLE\r\n")
    assert raw.line() == b"+ idling\r\n"
    raw.send(b"k NOOP\r\n")
    assert raw.line().startswith(b"j BAD")
    raw.send(b"m NOOP\r\n")
    assert raw.until(b"m")[-1] == b"m OK NOOP completed\r\n"
    raw.close()


def test_status_with_an_unknown_item_is_bad(server):
    raw = Raw(server.port("imap"))
    raw.login()
    raw.send(b"s STATUS INBOX (MESSAGES FOO)\r\n")
    assert raw.until(b"s")[-1].startswith(b"s BAD")
    raw.send(b"t STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT)\r\n")
    lines = raw.until(b"t")
    assert lines[0].startswith(b'* STATUS "INBOX" (MESSAGES 0 UIDNEXT 1 UIDVALIDITY ')
    raw.close()


def test_select_reports_uidnext_permanentflags_and_uidvalidity(server):
    raw = Raw(server.port("imap"))
    raw.login()
    raw.send(b"s SELECT INBOX\r\n")
    text = b"".join(raw.until(b"s"))
    assert b"* OK [UIDNEXT 1]" in text and b"* OK [UIDVALIDITY " in text
    assert b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)]" in text
    assert b"s OK [READ-WRITE] SELECT completed" in text
    raw.send(b"n SELECT Nope\r\n")
    assert raw.until(b"n")[-1].startswith(b"n NO")
    raw.close()


@pytest.mark.parametrize("name", [b'"a/../b"', b'"../etc"', b"{3}\r\na\x01b", b'"a//b"'])
def test_bad_folder_names_are_refused_with_no(server, name):
    raw = Raw(server.port("imap"))
    raw.login()
    raw.send(b"c CREATE " + name + b"\r\n")
    assert raw.until(b"c")[-1].startswith(b"c NO")
    raw.close()


def test_bad_sequence_set_and_unknown_command(server):
    raw = Raw(server.port("imap"))
    raw.login()
    raw.send(b"s SELECT INBOX\r\nf FETCH 1:x FLAGS\r\nu FOO\r\nn NOOP\r\n")
    raw.until(b"s")
    assert raw.until(b"f")[-1].startswith(b"f BAD")
    assert raw.until(b"u")[-1].startswith(b"u BAD")
    assert raw.until(b"n")[-1] == b"n OK NOOP completed\r\n"
    raw.close()


def test_long_command_line_is_bad_and_connection_survives(server):
    raw = Raw(server.port("imap"))
    raw.login()
    raw.send(b"s SELECT INBOX\r\n")
    raw.until(b"s")
    raw.send(b"f UID FETCH " + b"1," * 40000 + b"1 FLAGS\r\n")
    assert raw.line().startswith(b"f BAD")
    raw.send(b"n NOOP\r\n")
    assert raw.until(b"n")[-1] == b"n OK NOOP completed\r\n"
    raw.close()


def test_disconnect_mid_literal_changes_nothing(server):
    raw = Raw(server.port("imap"))
    raw.login()
    raw.send(b"a APPEND INBOX {1000}\r\n")
    assert raw.line().startswith(b"+")
    raw.send(b"Subject: partial\r\n")
    raw.close()
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    imap.login("alice@example.com", "alice-pw")
    assert imap.select("INBOX") == ("OK", [b"0"])
    imap.logout()


def test_sessions_leave_no_listeners_behind(server):
    hub = server.store.hub
    for _ in range(5):
        imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
        imap.login("alice@example.com", "alice-pw")
        imap.select("INBOX")
        imap.logout()
    for _ in range(3):
        raw = Raw(server.port("imap"))
        raw.login()
        raw.send(b"s SELECT INBOX\r\n")
        raw.until(b"s")
        raw.close()  # dropped without LOGOUT
    server.wait_for(lambda: hub.listener_count("alice@example.com", "INBOX") == 0,
                    "listeners to go away")


def test_two_sessions_see_each_others_flags_and_expunges(server):
    imap_a = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    imap_a.login("alice@example.com", "alice-pw")
    for i in range(3):
        imap_a.append("INBOX", None, None, b"Subject: %d\r\n\r\nx\r\n" % i)
    imap_a.select("INBOX")
    imap_b = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    imap_b.login("alice@example.com", "alice-pw")
    imap_b.select("INBOX")
    imap_a.store("2", "+FLAGS", "\\Flagged")
    imap_a.store("1", "+FLAGS", "\\Deleted")
    imap_a.expunge()
    status, _ = imap_b.noop()
    assert imap_b.untagged_responses.pop("EXPUNGE") == [b"1"]
    fetches = imap_b.untagged_responses.pop("FETCH", [])
    assert any(b"FLAGS (\\Flagged" in f for f in fetches)
    # After the EXPUNGE, B's sequence numbers match A's.
    status, data = imap_b.fetch("1", "(UID)")
    assert data == [b"1 (UID 2)"]
    imap_a.logout()
    imap_b.logout()


def _untagged(lines, prefix):
    """Indexes of the untagged responses starting with *prefix* (after "* N " for a number)."""
    found = []
    for i, line in enumerate(lines):
        words = line.split(b" ", 2)
        if line.startswith(b"* " + prefix) or (len(words) > 2 and words[1].isdigit()
                                               and words[2].startswith(prefix)):
            found.append(i)
    return found


def test_a_new_keyword_is_announced_in_flags_before_a_fetch_shows_it(server):
    """RFC 3501 7.2.6: FLAGS lists the folder's keywords.  A keyword new to the folder
    (set by this session, another one, or an APPEND) comes in a new FLAGS response
    before the first FETCH response that uses it; an appended message's flags reach a
    session that has the folder selected with the message."""
    port = server.port("imap")
    a, b = Raw(port), Raw(port)
    a.login()
    b.login()
    a.send(b"s SELECT INBOX\r\n")
    assert b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n" in a.until(b"s")
    b.send(b"s SELECT INBOX\r\n")
    b.until(b"s")

    message = b"Subject: k\r\n\r\nx\r\n"
    b.send(b"p APPEND INBOX (\\Seen $Work) {%d+}\r\n%s\r\n" % (len(message), message))
    assert b.until(b"p")[-1].startswith(b"p OK")
    a.send(b"n NOOP\r\n")
    lines = a.until(b"n")
    assert b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)\r\n" in lines
    assert b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work " \
           b"\\*)] Flags permitted\r\n" in lines
    a.send(b"f FETCH 1 (FLAGS)\r\n")
    # \\Recent too: A, selected first, was the first session told of the message
    assert a.until(b"f")[0] == b"* 1 FETCH (FLAGS (\\Seen \\Recent $Work))\r\n"

    a.send(b"t STORE 1 +FLAGS ($Urgent)\r\n")
    lines = a.until(b"t")
    flags, fetches = _untagged(lines, b"FLAGS"), _untagged(lines, b"FETCH")
    assert flags and fetches and flags[0] < fetches[0], lines
    assert b"$Urgent" in lines[flags[0]] and b"$Urgent" in lines[fetches[0]]

    b.send(b"n NOOP\r\n")
    lines = b.until(b"n")
    flags, fetches = _untagged(lines, b"FLAGS"), _untagged(lines, b"FETCH")
    assert flags and fetches and flags[0] < fetches[0], lines
    assert lines[fetches[0]] == b"* 1 FETCH (FLAGS (\\Seen $Urgent $Work))\r\n"
    b.send(b"u STORE 1 -FLAGS.SILENT ($Urgent)\r\n")  # no new keyword: no FLAGS
    assert _untagged(b.until(b"u"), b"FLAGS") == []
    a.close()
    b.close()


def test_a_new_message_is_recent_in_one_selected_session_only(server):
    """RFC 3501 2.3.2: \\Recent belongs to the first session told of a message.  With
    the folder selected in an EXAMINE session and two SELECT sessions, a new message is
    \\Recent (with a RECENT response) in the first read-write one alone, and STATUS
    from a fourth counts it no longer recent, now and after a restart."""
    port = server.port("imap")
    examine, first, second, other = Raw(port), Raw(port), Raw(port), Raw(port)
    for session, command in ((examine, b"EXAMINE"), (first, b"SELECT"), (second, b"SELECT")):
        session.login()
        session.send(b"s " + command + b" INBOX\r\n")
        session.until(b"s")
    other.login()
    message = b"Subject: r\r\n\r\nx\r\n"
    other.send(b"a APPEND INBOX {%d+}\r\n%s\r\n" % (len(message), message))
    assert other.until(b"a")[-1].startswith(b"a OK")
    answers = {}
    for name, session in (("examine", examine), ("first", first), ("second", second)):
        session.send(b"n NOOP\r\nf FETCH 1 (FLAGS)\r\n")
        answers[name] = session.until(b"n") + session.until(b"f")
    assert answers["first"][:2] == [b"* 1 EXISTS\r\n", b"* 1 RECENT\r\n"]
    assert b"* 1 FETCH (FLAGS (\\Recent))\r\n" in answers["first"]
    for name in ("examine", "second"):
        assert b"* 1 FETCH (FLAGS ())\r\n" in answers[name], answers[name]
        assert not any(b"RECENT" in line for line in answers[name])
    other.send(b"t STATUS INBOX (MESSAGES RECENT)\r\n")
    assert other.until(b"t")[0] == b'* STATUS "INBOX" (MESSAGES 1 RECENT 0)\r\n'
    for session in (examine, first, second, other):
        session.close()
    server.stop()
    server.start()
    raw = Raw(server.port("imap"))
    raw.login()
    raw.send(b"s SELECT INBOX\r\n")
    assert b"* 0 RECENT\r\n" in raw.until(b"s")
    raw.close()


def test_logout_sends_no_changes_after_its_bye(server):
    """A change from another session still pending at LOGOUT is not announced: after
    the BYE the client has let go of the folder (imaptest counts such a FETCH an error)."""
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    imap.login("alice@example.com", "alice-pw")
    imap.append("INBOX", None, None, b"Subject: x\r\n\r\nx\r\n")
    raw = Raw(server.port("imap"))
    raw.login()
    raw.send(b"s SELECT INBOX\r\n")
    raw.until(b"s")
    imap.select("INBOX")
    imap.store("1", "+FLAGS", "\\Answered")
    raw.send(b"o LOGOUT\r\n")
    assert raw.until(b"o") == [b"* BYE rmail logging out\r\n", b"o OK LOGOUT completed\r\n"]
    raw.close()
    imap.logout()


def test_fetching_messages_expunged_meanwhile_is_expungeissued_not_an_error(server):
    """A message this session still numbers but another session expunged (its index row
    gone, or only its file, between reading the index and the file): the others are
    answered, and the tagged OK carries RFC 5530's EXPUNGEISSUED (RFC 2180 4.1.3)."""
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    imap.login("alice@example.com", "alice-pw")
    for i in range(3):
        imap.append("INBOX", None, None, b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i))
    imap.logout()
    raw, other = Raw(server.port("imap")), Raw(server.port("imap"))
    raw.login()
    other.login()
    raw.send(b"s SELECT INBOX\r\n")
    raw.until(b"s")

    other.send(b"s SELECT INBOX\r\nd STORE 2 +FLAGS.SILENT (\\Deleted)\r\ne EXPUNGE\r\n")
    assert other.until(b"e")[-1].startswith(b"e OK")
    raw.send(b"f FETCH 1:3 (UID)\r\n")
    lines = raw.until(b"f")
    assert [line for line in lines if b"UID" in line] == [
        b"* 1 FETCH (UID 1)\r\n", b"* 3 FETCH (UID 3)\r\n"]  # 2's FLAGS may come too
    assert lines[-1].startswith(b"f OK [EXPUNGEISSUED]")

    infos = server.in_reactor(server.store.user("alice@example.com").messages, "INBOX")
    os.unlink(infos[0].path)  # as if expunged after its row was read
    raw.send(b"g FETCH 1:3 BODY.PEEK[]\r\n")
    lines = raw.until(b"g")
    assert lines[0] == b"* 3 FETCH (BODY[] {22}\r\n"
    assert lines[-1].startswith(b"g OK [EXPUNGEISSUED]")
    raw.send(b"n NOOP\r\n")
    assert raw.until(b"n") == [b"* 2 EXPUNGE\r\n", b"n OK NOOP completed\r\n"]
    raw.close()
    other.close()


def test_logindisabled_without_tls_when_plaintext_is_off(tmp_path):
    from tests.conftest import in_reactor
    from tests.harness import Server
    srv = Server(tmp_path, in_reactor, imap__allow_plaintext_auth=False)
    srv.start()
    try:
        imap = imaplib.IMAP4("127.0.0.1", srv.port("imap"))
        assert "LOGINDISABLED" in imap.capabilities
        try:
            imap.login("alice@example.com", "alice-pw")
        except imaplib.IMAP4.error:
            pass
        else:
            raise AssertionError("LOGIN accepted in clear")
        imap.starttls(ssl_context=client_tls())
        assert imap.login("alice@example.com", "alice-pw")[0] == "OK"
        imap.logout()
    finally:
        srv.stop()



def test_append_with_bare_newlines_is_stored_crlf_so_sizes_agree(server):
    """A raw APPEND with bare LF/CR (imaplib would fix them itself) is stored CRLF."""
    message = b"Subject: lf\n\nline one\nline two\rend\n"
    raw = Raw(server.port("imap"))
    raw.login()
    raw.send(b"a APPEND INBOX {%d+}\r\n%s\r\n" % (len(message), message))
    assert raw.until(b"a")[-1].startswith(b"a OK")
    raw.close()
    (_, _, stored), = server.messages("alice@example.com")
    assert stored == b"Subject: lf\r\n\r\nline one\r\nline two\r\nend\r\n"
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    imap.login("alice@example.com", "alice-pw")
    imap.select("INBOX")
    status, data = imap.fetch("1", "(RFC822.SIZE BODY.PEEK[])")
    assert data[0][1] == stored and b"RFC822.SIZE %d" % len(stored) in data[0][0]
    imap.logout()


def test_large_fetch_waits_for_a_slow_reader(server):
    """FETCH 1:* BODY[] of 40 x 1 MB to a client that does not read: the server stops
    sending when the socket is full instead of buffering the whole mailbox in memory."""
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    imap.login("alice@example.com", "alice-pw")
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 1000
    for _ in range(40):
        imap.append("INBOX", None, None, big)
    imap.logout()
    raw = Raw(server.port("imap"))
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    raw.login()
    raw.send(b"s SELECT INBOX\r\n")
    raw.until(b"s")
    raw.send(b"f FETCH 1:* BODY.PEEK[]\r\n")
    sessions = server.service.factories["imap"].sessions
    # The transport asked the FETCH to pause: the rest waits on disk, not in memory.
    server.wait_for(lambda: any(s._drained is not None for s in sessions), "the FETCH to pause")
    total = 0
    while True:
        line = raw.line()
        if line.startswith(b"f "):
            assert line.startswith(b"f OK")
            break
        if line.endswith(b"}\r\n"):
            size = int(line[line.rindex(b"{") + 1:-3])
            total += len(raw.f.read(size))
    assert total == 40 * len(big)
    raw.close()


def test_authenticate_plain_with_a_continuation_and_with_sasl_ir(server):
    import base64
    token = base64.b64encode(b"\0alice@example.com\0alice-pw")
    raw = Raw(server.port("imap"))
    raw.send(b"a AUTHENTICATE PLAIN\r\n")
    assert raw.line().startswith(b"+")
    raw.send(token + b"\r\n")
    assert raw.until(b"a")[-1].startswith(b"a OK")
    raw.close()
    raw = Raw(server.port("imap"))
    raw.send(b"b AUTHENTICATE PLAIN " + token + b"\r\n")
    assert raw.until(b"b")[-1].startswith(b"b OK")
    raw.send(b"c AUTHENTICATE PLAIN\r\n")
    assert raw.until(b"c")[-1].startswith(b"c BAD")  # already authenticated
    raw.close()
    raw = Raw(server.port("imap"))
    raw.send(b"d AUTHENTICATE PLAIN\r\n")
    raw.line()
    raw.send(b"*\r\n")
    assert raw.until(b"d")[-1].startswith(b"d BAD")
    raw.send(b"n NOOP\r\n")
    assert raw.until(b"n")[-1] == b"n OK NOOP completed\r\n"
    raw.close()


def test_append_date_time_keeps_its_zone(server):
    """APPEND's date-time with a negative offset is the right instant (10:00 -0500 = 15:00 UTC)."""
    raw = Raw(server.port("imap"))
    raw.login()
    raw.send(b'a APPEND INBOX " 1-Jan-2024 10:00:00 -0500" {9+}\r\nSubject: \r\n')
    assert raw.until(b"a")[-1].startswith(b"a OK")
    raw.send(b'b APPEND INBOX "31-Feb-2024 10:00:00 +0000" {9+}\r\nSubject: \r\n')
    assert raw.until(b"b")[-1].startswith(b"b BAD")
    raw.send(b"s SELECT INBOX\r\nf FETCH 1 INTERNALDATE\r\n")
    raw.until(b"s")
    assert raw.until(b"f")[0] == b'* 1 FETCH (INTERNALDATE "01-Jan-2024 15:00:00 +0000")\r\n'
    raw.close()


def test_header_search_is_answered_from_the_index(server):
    """SEARCH on header keys uses the header block kept at delivery: it never opens the
    message file (shown by changing the file behind the index's back)."""
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    imap.login("alice@example.com", "alice-pw")
    imap.append("INBOX", None, None, b"Subject: apple\r\n\r\nbody text\r\n")
    info, = server.in_reactor(server.store.user("alice@example.com").messages, "INBOX")
    with open(info.path, "r+b") as f:
        f.write(b"Subject: mango")
    imap.select("INBOX")
    assert imap.search(None, "SUBJECT", "apple") == ("OK", [b"1"])
    assert imap.search(None, "SUBJECT", "mango") == ("OK", [b""])
    assert imap.search(None, "TEXT", "mango") == ("OK", [b"1"])  # TEXT reads the file
    imap.logout()
