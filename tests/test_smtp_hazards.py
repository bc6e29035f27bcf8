"""TWISTED.md's SMTP hazards (items 1-8) and hostile input, each against a live rmail.

Every test here would fail on the stock ``twisted.mail.smtp.ESMTP``: pipelined replies
out of order, STARTTLS injection, bare LF passed through, an over-long DATA line
turning the body into commands, and so on.
"""

import fcntl
import os
import random
import re
import struct
import termios

from tests.conftest import in_reactor
from tests.harness import SMTPClient as Client, client_tls

CRLF = b"\r\n"


def mx(server):
    c = Client(server.port("smtp"))
    assert c.first("EHLO client.example.com").startswith("250")
    return c


def send_message(server, body, sender="sender@external.com", rcpts=("alice@example.com",)):
    """One whole transaction on port 25; returns the reply to the final dot (first line)."""
    c = mx(server)
    assert c.first(f"MAIL FROM:<{sender}>").startswith("250 2.1.0")
    for r in rcpts:
        assert c.first(f"RCPT TO:<{r}>").startswith("250 2.1.5")
    assert c.first("DATA").startswith("354")
    c.send(body + b".\r\n")
    result = c.reply()[0]
    assert c.first("QUIT").startswith("221 2.0.0")
    c.close()
    return result


def spool_dir(server):
    return os.path.join(server.service.config.mail_root_path, "spool")


def only_crlf(data: bytes) -> bool:
    """No bare CR and no bare LF anywhere in *data*."""
    return re.search(rb"\r(?!\n)|(?<!\r)\n", data) is None


def strip_trace(data: bytes) -> bytes:
    """The message as the client sent it: drop the Return-Path and Received headers."""
    assert data.startswith(b"Return-Path: ")
    m = re.match(rb"Return-Path: [^\r\n]*\r\nReceived: [^\r\n]*(\r\n\t[^\r\n]*)*\r\n", data)
    assert m, data[:300]
    return data[m.end():]


# -- item 6: pipelining ----------------------------------------------------------------------------------


def test_pipelined_commands_are_answered_in_order(server):
    c = mx(server)
    c.send(b"MAIL FROM:<x@ext.com>\r\nRCPT TO:<alice@example.com>\r\n"
           b"RCPT TO:<nobody@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n")
    replies = [c.reply()[0] for _ in range(5)]
    assert replies[0].startswith("250 2.1.0")
    assert replies[1].startswith("250 2.1.5")
    assert replies[2].startswith("550 5.1.1")
    assert replies[3].startswith("250 2.1.5")
    assert replies[4].startswith("354")
    c.send(b"Subject: pipelined\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    assert c.reply()[0].startswith("250 2.0.0")
    assert c.reply()[0].startswith("221 2.0.0")
    assert c.closed()
    c.close()
    for rcpt in ("alice@example.com", "bob@example.com"):
        (_, _, data), = server.messages(rcpt)
        assert strip_trace(data) == b"Subject: pipelined\r\n\r\nbody\r\n"


def test_quit_pipelined_after_the_dot_gets_250_before_221(server):
    c = mx(server)
    assert c.first("MAIL FROM:<x@ext.com>").startswith("250 2.1.0")
    assert c.first("RCPT TO:<alice@example.com>").startswith("250 2.1.5")
    assert c.first("DATA").startswith("354")
    c.send(b"Subject: q\r\n\r\n" + b"y" * 500 + b"\r\n.\r\nQUIT\r\n")
    assert c.reply()[0].startswith("250 2.0.0")
    assert c.reply()[0].startswith("221 2.0.0")
    assert c.closed()
    c.close()
    (_, _, data), = server.messages("alice@example.com")
    assert data.endswith(b"y" * 500 + b"\r\n")


def test_whole_transaction_in_one_segment(server):
    """MAIL..DATA, the body and QUIT all at once: the body is never read as commands."""
    c = mx(server)
    c.send(b"MAIL FROM:<x@ext.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
           b"Subject: one go\r\n\r\nNOOP\r\nRSET\r\n.\r\nQUIT\r\n")
    replies = [c.reply()[0] for _ in range(5)]
    assert [r[:3] for r in replies] == ["250", "250", "354", "250", "221"], replies
    c.close()
    (_, _, data), = server.messages("bob@example.com")
    assert strip_trace(data) == b"Subject: one go\r\n\r\nNOOP\r\nRSET\r\n"


# -- items 7 and 8: extensions, parameters, missing commands ----------------------------------------------


def test_ehlo_advertises_what_is_implemented(server):
    c = Client(server.port("smtp"))
    ehlo = c.cmd("EHLO client.example.com")
    assert ehlo[0] == "250-mail.example.com"
    keywords = {line[4:] for line in ehlo[1:]}
    assert {"SIZE 52428800", "8BITMIME", "PIPELINING", "ENHANCEDSTATUSCODES", "STARTTLS"} <= keywords
    assert not any(k.startswith("AUTH") for k in keywords)  # no AUTH on the port 25 role
    assert c.first("MAIL FROM:<a@ext.com> BODY=BINARYMIME").startswith("501 5.5.4")
    assert c.first("MAIL FROM:<a@ext.com> BODY=7BIT SIZE=100").startswith("250 2.1.0")
    assert c.first("RSET").startswith("250 2.0.0")
    assert c.first("MAIL FROM:<a@ext.com> AUTH=<>").startswith("555 5.5.4")  # AUTH= only on 587/465
    assert c.first("VRFY alice@example.com").startswith("252 2.5.0")
    assert c.first("HELP").startswith("214 2.0.0")
    assert c.first("EXPN staff").startswith("502 5.5.1")
    c.close()


# -- item 2: STARTTLS injection and state reset -----------------------------------------------------------


def test_starttls_injection_is_discarded_on_submission(server):
    c = Client(server.port("submission"))
    assert c.first("EHLO client.example.com").startswith("250")
    c.send(b"STARTTLS\r\nMAIL FROM:<inj@evil>\r\n")  # one segment
    assert c.reply()[0].startswith("220 2.0.0")
    c.sock = client_tls().wrap_socket(c.sock)
    c.f = c.sock.makefile("rb")
    ehlo = c.cmd("EHLO client.example.com")
    # The first reply inside TLS is the EHLO's, not one to the injected MAIL.
    assert len(ehlo) > 1 and ehlo[0] == "250-mail.example.com", ehlo
    assert "250-AUTH PLAIN LOGIN" in ehlo or "250 AUTH PLAIN LOGIN" in ehlo
    assert not any("STARTTLS" in line for line in ehlo)
    assert c.first("MAIL FROM:<alice@example.com>").startswith("530 5.7.0")
    c.close()


def test_starttls_resets_the_session_state(server):
    """Port 25 (no AUTH needed): an injected MAIL would be accepted if it ran, and a
    MAIL given before STARTTLS must not stay in force after it."""
    c = mx(server)
    assert c.first("MAIL FROM:<before@ext.com>").startswith("250 2.1.0")
    c.send(b"STARTTLS\r\nRSET\r\nMAIL FROM:<inj@evil.com>\r\nRCPT TO:<alice@example.com>\r\n")
    assert c.reply()[0].startswith("220 2.0.0")
    c.sock = client_tls().wrap_socket(c.sock)
    c.f = c.sock.makefile("rb")
    # Neither the pre-TLS MAIL nor the injected one is in force (RCPT needs no EHLO).
    assert c.first("RCPT TO:<alice@example.com>").startswith("503 5.5.1")
    assert c.first("DATA").startswith("503 5.5.1")
    # HELO/EHLO is forgotten too.
    assert c.first("MAIL FROM:<x@ext.com>").startswith("503 5.5.1")
    ehlo = c.cmd("EHLO client.example.com")
    assert ehlo[0] == "250-mail.example.com", ehlo
    assert c.first("RCPT TO:<alice@example.com>").startswith("503 5.5.1")
    assert c.first("DATA").startswith("503 5.5.1")
    assert c.first("STARTTLS").startswith("503 5.5.1")  # TLS already active
    assert c.first("MAIL FROM:<x@ext.com>").startswith("250 2.1.0")
    assert c.first("RCPT TO:<alice@example.com>").startswith("250 2.1.5")
    assert c.first("DATA").startswith("354")
    c.send(b"Subject: tls\r\n\r\nx\r\n.\r\n")
    assert c.reply()[0].startswith("250 2.0.0")
    c.close()
    (_, _, data), = server.messages("alice@example.com")
    assert data.startswith(b"Return-Path: <x@ext.com>\r\n")
    assert b" with ESMTPS id " in data


# -- item 3: bare LF and bare CR --------------------------------------------------------------------------------


def test_bare_lf_dot_lf_inside_data_does_not_end_it(server):
    body = (b"Subject: smuggle\r\n\r\nline1\nline2\n.\nMAIL FROM:<evil@x>\nRCPT TO:<bob@example.com>\n"
            b"DATA\nsmuggled\n.\nend\r\n")
    c = mx(server)
    assert c.first("MAIL FROM:<x@ext.com>").startswith("250 2.1.0")
    assert c.first("RCPT TO:<alice@example.com>").startswith("250 2.1.5")
    assert c.first("DATA").startswith("354")
    c.send(body + b".\r\n")
    assert c.reply()[0].startswith("250 2.0.0")
    assert c.first("NOOP").startswith("250 2.0.0")  # one reply for the DATA, nothing more
    c.close()
    (_, _, data), = server.messages("alice@example.com")
    assert only_crlf(data), data
    assert strip_trace(data) == body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert server.messages("bob@example.com") == []


def test_bare_cr_is_normalised(server):
    body = b"Subject: cr\r\n\r\nmid\rcr\r\nlone\r\r\nend\r\n"
    assert send_message(server, body).startswith("250 2.0.0")
    (_, _, data), = server.messages("alice@example.com")
    assert only_crlf(data), data
    assert strip_trace(data) == b"Subject: cr\r\n\r\nmid\r\ncr\r\nlone\r\n\r\nend\r\n"


def test_lf_dot_lf_then_later_crlf_dot_crlf(server):
    c = mx(server)
    assert c.first("MAIL FROM:<x@ext.com>").startswith("250 2.1.0")
    assert c.first("RCPT TO:<alice@example.com>").startswith("250 2.1.5")
    assert c.first("DATA").startswith("354")
    c.send(b"Subject: t\r\n\r\nbody\n.\n")
    c.send(b"more\r\n.\r\n")
    assert c.reply()[0].startswith("250 2.0.0")
    assert c.first("NOOP").startswith("250 2.0.0")
    c.close()
    (_, _, data), = server.messages("alice@example.com")
    assert b"more" in data
    assert only_crlf(data)
    assert strip_trace(data).startswith(b"Subject: t\r\n\r\nbody\r\n")


# -- item 4: an over-long DATA line ---------------------------------------------------------------------------------


def test_long_data_line_is_554_and_the_rest_is_not_run_as_commands(server):
    c = mx(server)
    assert c.first("MAIL FROM:<x@ext.com>").startswith("250 2.1.0")
    assert c.first("RCPT TO:<alice@example.com>").startswith("250 2.1.5")
    assert c.first("DATA").startswith("354")
    c.send(b"Subject: long\r\n\r\n" + b"A" * 100_000 + b"\r\n"
           b"MAIL FROM:<smuggled@x>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n")
    c.send(b"in the same body, a later read\r\n")
    c.send(b"MAIL FROM:<smuggled2@x>\r\nRCPT TO:<bob@example.com>\r\n")
    c.send(b".\r\n")
    assert c.reply()[0].startswith("554 5.6.0")
    # Exactly one reply for the whole DATA: the next one is the NOOP's.
    assert c.first("NOOP").startswith("250 2.0.0")
    # The connection still takes a normal transaction.
    assert c.first("MAIL FROM:<x@ext.com>").startswith("250 2.1.0")
    assert c.first("RCPT TO:<alice@example.com>").startswith("250 2.1.5")
    assert c.first("DATA").startswith("354")
    c.send(b"Subject: normal\r\n\r\nok\r\n.\r\n")
    assert c.reply()[0].startswith("250 2.0.0")
    c.close()
    (_, _, data), = server.messages("alice@example.com")
    assert strip_trace(data) == b"Subject: normal\r\n\r\nok\r\n"
    assert server.messages("bob@example.com") == []


def test_long_data_line_without_newline_for_a_while(server):
    """A 100 kB line arriving in pieces, none of them ending it yet."""
    c = mx(server)
    assert c.first("MAIL FROM:<x@ext.com>").startswith("250 2.1.0")
    assert c.first("RCPT TO:<alice@example.com>").startswith("250 2.1.5")
    assert c.first("DATA").startswith("354")
    c.send(b"Subject: long\r\n\r\n")
    for _ in range(10):
        c.send(b"B" * 10_000)
    c.send(b"\r\nRSET\r\nQUIT\r\n.\r\n")
    assert c.reply()[0].startswith("554 5.6.0")
    assert c.first("NOOP").startswith("250 2.0.0")  # QUIT inside the body did not run
    c.close()
    assert server.messages("alice@example.com") == []


def _unread(sock) -> int:
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4))[0]


def _unacked(sock) -> int:
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]


def wait_until_read(server, client, role="smtp"):
    """Bounded poll until the server has read (and handled) every byte *client* sent:
    nothing unacknowledged on the client side and nothing unread on the server's
    sockets.  Run on the reactor thread, so the read's ``dataReceived`` has returned."""
    def drained():
        if _unacked(client.sock):
            return False
        return in_reactor(lambda: all(
            _unread(s.transport.getHandle()) == 0 for s in server.service.factories[role].sessions))
    server.wait_for(drained, "the server to read what was sent")


def test_long_data_line_ending_in_a_dot_at_a_read_boundary(server):
    """An over-long line whose last byte before a read boundary is "." and whose CRLF
    comes in the next read must not be taken for the end of data: else the rest of
    the body runs as commands (TWISTED.md item 4, SMTP smuggling)."""
    c = mx(server)
    assert c.first("MAIL FROM:<x@ext.com>").startswith("250 2.1.0")
    assert c.first("RCPT TO:<alice@example.com>").startswith("250 2.1.5")
    assert c.first("DATA").startswith("354")
    c.send(b"Subject: dot\r\n\r\n" + b"A" * 2000 + b".")
    wait_until_read(server, c)  # the next bytes arrive in a read of their own
    c.send(b"\r\nMAIL FROM:<smuggled@x>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
           b"Subject: smuggled\r\n\r\nsmuggled\r\n.\r\n")
    assert c.reply()[0].startswith("554 5.6.0")
    # One reply for the whole DATA: the next is the NOOP's, not a smuggled MAIL's.
    assert c.first("NOOP").startswith("250 2.0.0")
    c.close()
    assert server.messages("bob@example.com") == []
    assert server.messages("alice@example.com") == []


def test_long_data_line_ending_in_a_dot_in_one_read(server):
    """The same bytes sent together (the line ends within one read) are handled right."""
    c = mx(server)
    assert c.first("MAIL FROM:<x@ext.com>").startswith("250 2.1.0")
    assert c.first("RCPT TO:<alice@example.com>").startswith("250 2.1.5")
    assert c.first("DATA").startswith("354")
    c.send(b"Subject: dot\r\n\r\n" + b"A" * 2000 + b".\r\nMAIL FROM:<smuggled@x>\r\n"
           b"RCPT TO:<bob@example.com>\r\n.\r\n")
    assert c.reply()[0].startswith("554 5.6.0")
    assert c.first("NOOP").startswith("250 2.0.0")
    c.close()
    assert server.messages("bob@example.com") == []


def test_data_line_of_998_octets_is_accepted(server):
    body = b"Subject: edge\r\n\r\n" + b"C" * 998 + b"\r\n"
    assert send_message(server, body).startswith("250 2.0.0")
    (_, _, data), = server.messages("alice@example.com")
    assert strip_trace(data) == body
    body = b"Subject: edge\r\n\r\n" + b"C" * 999 + b"\r\n"
    assert send_message(server, body).startswith("554 5.6.0")
    assert len(server.messages("alice@example.com")) == 1


# -- dot-stuffing, 8-bit, trace headers ---------------------------------------------------------------------------------


def test_dot_stuffing_is_undone(server):
    c = mx(server)
    assert c.first("MAIL FROM:<x@ext.com>").startswith("250 2.1.0")
    assert c.first("RCPT TO:<alice@example.com>").startswith("250 2.1.5")
    assert c.first("DATA").startswith("354")
    c.send(b"Subject: dots\r\n\r\n..first body line\r\nmid\r\n..hidden\r\n...\r\n")
    c.send(b"split\r\n.")  # a stuffed dot cut between two reads
    c.send(b".across reads\r\n.\r\n")
    assert c.reply()[0].startswith("250 2.0.0")
    c.close()
    (_, _, data), = server.messages("alice@example.com")
    assert strip_trace(data) == (b"Subject: dots\r\n\r\n.first body line\r\nmid\r\n.hidden\r\n..\r\n"
                                 b"split\r\n.across reads\r\n")


def test_first_data_line_starting_with_a_dot_is_unstuffed(server):
    body = b"..leading\r\nSubject: x\r\n\r\nbody\r\n"
    assert send_message(server, body).startswith("250 2.0.0")
    (_, _, data), = server.messages("alice@example.com")
    assert strip_trace(data) == b".leading\r\nSubject: x\r\n\r\nbody\r\n"


def test_8bit_content_is_stored_byte_for_byte(server):
    body = ("Subject: café üml 日本語\r\nFrom: Jörg <j@ext.com>\r\n\r\n"
            "Grüße, ça va? ✓\r\n").encode("utf-8") + b"latin-1 \xe9\xff\x80 raw\r\n"
    c = mx(server)
    assert c.first("MAIL FROM:<j@ext.com> BODY=8BITMIME").startswith("250 2.1.0")
    assert c.first("RCPT TO:<alice@example.com>").startswith("250 2.1.5")
    assert c.first("DATA").startswith("354")
    c.send(body + b".\r\n")
    assert c.reply()[0].startswith("250 2.0.0")
    c.close()
    (_, _, data), = server.messages("alice@example.com")
    assert strip_trace(data) == body


def test_received_and_return_path_are_added_at_the_top(server):
    body = b"From: s@ext.com\r\nSubject: trace\r\n\r\nx\r\n"
    assert send_message(server, body, sender="s@ext.com").startswith("250 2.0.0")
    (_, _, data), = server.messages("alice@example.com")
    lines = data.split(b"\r\n")
    assert lines[0] == b"Return-Path: <s@ext.com>"
    assert lines[1] == b"Received: from client.example.com ([127.0.0.1])"
    assert re.fullmatch(rb"\tby mail\.example\.com \(rmail\) with ESMTP id [0-9a-f]+", lines[2])
    assert lines[3] == b"\tfor <alice@example.com>;"
    assert lines[4].startswith(b"\t") and re.search(rb"\d{2}:\d{2}:\d{2}", lines[4])
    assert b"\r\n".join(lines[5:]) == body
    assert data.count(b"Return-Path:") == 1 and data.count(b"Received:") == 1


def test_null_sender_is_accepted_and_recorded(server):
    assert send_message(server, b"Subject: bounce\r\n\r\nx\r\n", sender="").startswith("250 2.0.0")
    (_, _, data), = server.messages("alice@example.com")
    assert data.startswith(b"Return-Path: <>\r\nReceived: ")


def test_same_user_named_twice_is_stored_once(server):
    server.directory.add_alias("example.com", "alice-.*", "alice")

    def alias_loaded():
        c = mx(server)
        try:
            assert c.first("MAIL FROM:<probe@ext.com>").startswith("250")
            return c.first("RCPT TO:<alice-x@example.com>").startswith("250")
        finally:
            c.close()
    server.wait_for(alias_loaded, "the alias to load")
    rcpts = ("alice@example.com", "ALICE@example.com", "alice-x@example.com", "Alice@EXAMPLE.COM",
             "bob@example.com")
    assert send_message(server, b"Subject: twice\r\n\r\nx\r\n", rcpts=rcpts).startswith("250 2.0.0")
    (_, _, data), = server.messages("alice@example.com")
    assert data.endswith(b"Subject: twice\r\n\r\nx\r\n")
    assert len(server.messages("bob@example.com")) == 1


# -- a client that goes away, and garbage -----------------------------------------------------------------------------


def test_disconnect_mid_data_stores_nothing_and_cleans_the_spool(server):
    spool = spool_dir(server)
    c = mx(server)
    assert c.first("MAIL FROM:<x@ext.com>").startswith("250 2.1.0")
    assert c.first("RCPT TO:<alice@example.com>").startswith("250 2.1.5")
    assert c.first("DATA").startswith("354")
    c.send(b"Subject: cut\r\n\r\n" + (b"D" * 998 + b"\r\n") * 400)  # 400 kB: spooled to disk
    server.wait_for(lambda: os.listdir(spool), "the spool file to appear")
    c.close()
    server.wait_for(lambda: not os.listdir(spool), "the spool to be emptied")
    assert server.messages("alice@example.com") == []
    # Others are still served.
    assert send_message(server, b"Subject: after\r\n\r\nok\r\n").startswith("250 2.0.0")
    (_, _, data), = server.messages("alice@example.com")
    assert data.endswith(b"Subject: after\r\n\r\nok\r\n")
    server.wait_for(lambda: not os.listdir(spool), "the spool to be empty after delivery")


def _junk_lines(n, seed):
    rng = random.Random(seed)
    alphabet = bytes(range(0x21, 0x7f)) + b" \x00\x00\x00"
    lines = []
    for _ in range(n):
        # A leading NUL or symbol: never a real command verb.
        line = rng.choice([b"\x00", b"#", b"%", b"\x00\x00"]) + bytes(
            rng.choice(alphabet) for _ in range(rng.randint(5, 80)))
        lines.append(line + CRLF)
    return lines


def test_pipelined_garbage_gets_one_5xx_per_line_then_421(server):
    c = mx(server)
    lines = _junk_lines(15, seed=1)
    c.send(b"".join(lines) + b"NOOP\r\n")
    replies = [c.reply()[0] for _ in lines]
    assert all(r[0] == "5" for r in replies), replies
    assert c.reply()[0].startswith("250 2.0.0")  # the pipelined NOOP, in its place
    c.close()

    c = mx(server)
    c.send(b"".join(_junk_lines(50, seed=2)))
    replies = []
    while True:
        line = c.f.readline()
        if not line:
            break
        replies.append(line.decode("ascii").rstrip("\r\n"))
    assert len(replies) == 21 + 1, replies  # MAX_ERRORS (20) + 1 errors, then 421
    assert all(r[0] == "5" for r in replies[:-1]), replies
    assert replies[-1].startswith("421 4.7.0")
    c.close()
    # The server is still up.
    assert send_message(server, b"Subject: still up\r\n\r\nok\r\n").startswith("250 2.0.0")
