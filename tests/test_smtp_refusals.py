"""Every SMTP refusal, with its exact reply code and enhanced status code.

Each test drives a real rmail server over raw sockets and asserts on the first line of
each reply (``"550 5.1.1 ..."``), so a missing enhanced code or a wrong class fails.
"""

import base64

import pytest

from tests import harness
from tests.conftest import in_reactor
from tests.harness import USERS, SMTPClient as Client

CRLF = b"\r\n"


def submission(server, login=None):
    """A client on the submission port after EHLO, STARTTLS, EHLO (and AUTH if *login*)."""
    c = Client(server.port("submission"))
    assert c.first("EHLO client.example.com").startswith("250")
    c.starttls()
    assert c.first("EHLO client.example.com").startswith("250")
    if login:
        assert c.login(login, USERS[login]).startswith("235 2.7.0")
    return c


def mx(server):
    """A client on the port 25 role after EHLO."""
    c = Client(server.port("smtp"))
    assert c.first("EHLO client.example.com").startswith("250")
    return c


def message_of_size(total: int, header=b"Subject: size\r\n\r\n", line=100) -> bytes:
    """A CRLF message of exactly *total* octets (as the server counts it), lines <= *line*."""
    out = [header]
    remaining = total - len(header)
    assert remaining >= 2
    while remaining:
        take = min(line, remaining)
        if 0 < remaining - take < 2:
            take -= 2
        out.append(b"x" * (take - 2) + CRLF)
        remaining -= take
    data = b"".join(out)
    assert len(data) == total
    return data


@pytest.fixture
def small_server(tmp_path):
    """A server with a 10,000-octet message limit and at most 3 recipients."""
    path = tmp_path / "small"
    path.mkdir()
    srv = harness.Server(path, in_reactor, **{"smtp__max_message_size": 10000,
                                              "smtp__max_recipients": 3})
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def fresh_server(tmp_path):
    """A server of its own, so that a login lockout cannot leak into other tests."""
    path = tmp_path / "fresh"
    path.mkdir()
    srv = harness.Server(path, in_reactor)
    srv.start()
    yield srv
    srv.stop()


# -- recipients and relaying ---------------------------------------------------------------


def test_unknown_local_user_is_550_5_1_1(server):
    c = mx(server)
    assert c.first("MAIL FROM:<someone@external.com>").startswith("250 2.1.0")
    assert c.first("RCPT TO:<nobody@example.com>").startswith("550 5.1.1")
    assert c.first("RCPT TO:<nobody@example.org>").startswith("550 5.1.1")
    # The transaction is still usable for a good recipient.
    assert c.first("RCPT TO:<alice@example.com>").startswith("250 2.1.5")
    c.close()


def test_external_recipient_on_port_25_is_relay_denied(server):
    c = mx(server)
    assert c.first("MAIL FROM:<someone@external.com>").startswith("250 2.1.0")
    assert c.first("RCPT TO:<friend@elsewhere.net>").startswith("550 5.7.1 Relay not permitted")
    assert c.first("DATA").startswith("503 5.5.1")  # nobody was accepted
    c.close()


def test_external_recipient_from_authenticated_user_is_refused_when_relay_is_off(tmp_path):
    """relay.enabled false: even a logged-in user may not send elsewhere (the seed)."""
    srv = harness.Server(tmp_path, in_reactor, relay__enabled=False)
    srv.start()
    try:
        c = submission(srv, login="alice@example.com")
        assert c.first("MAIL FROM:<alice@example.com>").startswith("250 2.1.0")
        assert c.first("RCPT TO:<friend@elsewhere.net>").startswith(
            "550 5.7.1 Relay not permitted")
        assert c.first("RCPT TO:<bob@example.com>").startswith("250 2.1.5")
        c.first("QUIT")
        c.close()
    finally:
        srv.stop()


# -- message size ------------------------------------------------------------------------------


def test_size_parameter_over_the_limit_is_552_at_mail(small_server):
    c = mx(small_server)
    ehlo = c.cmd("EHLO client.example.com")
    assert "250-SIZE 10000" in ehlo
    assert c.first("MAIL FROM:<a@external.com> SIZE=10001").startswith("552 5.3.4")
    assert c.first("MAIL FROM:<a@external.com> SIZE=999999999999").startswith("552 5.3.4")
    # At the limit the sender is accepted.
    assert c.first("MAIL FROM:<a@external.com> SIZE=10000").startswith("250 2.1.0")
    c.close()


def test_message_one_octet_over_the_limit_is_552_after_the_dot(small_server):
    body = message_of_size(10001)
    c = mx(small_server)
    assert c.first("MAIL FROM:<a@external.com>").startswith("250 2.1.0")
    assert c.first("RCPT TO:<alice@example.com>").startswith("250 2.1.5")
    assert c.first("DATA").startswith("354")
    c.send(body + b".\r\n")
    assert c.reply()[0].startswith("552 5.3.4")
    # Exactly one reply for the DATA; the session goes on.
    assert c.first("NOOP").startswith("250 2.0.0")
    c.close()
    assert small_server.messages("alice@example.com") == []


def test_message_exactly_at_the_limit_is_accepted(small_server):
    body = message_of_size(10000)
    c = mx(small_server)
    assert c.first("MAIL FROM:<a@external.com> SIZE=10000").startswith("250 2.1.0")
    assert c.first("RCPT TO:<alice@example.com>").startswith("250 2.1.5")
    assert c.first("DATA").startswith("354")
    c.send(body + b".\r\n")
    assert c.reply()[0].startswith("250 2.0.0")
    c.close()
    (_, _, data), = small_server.messages("alice@example.com")
    assert data.endswith(body)
    # What was added in front is the trace headers only (they do not count).
    assert data[:-len(body)].startswith(b"Return-Path: <a@external.com>\r\nReceived: ")


def test_size_is_counted_after_dot_unstuffing(small_server):
    """A message of exactly the limit, sent with a stuffed dot (one octet more on the wire)."""
    stored = message_of_size(10000 - 10, line=100) + b".stuffed\r\n"
    assert len(stored) == 10000
    wire = stored[:-len(b".stuffed\r\n")] + b"..stuffed\r\n"
    c = mx(small_server)
    assert c.first("MAIL FROM:<a@external.com>").startswith("250 2.1.0")
    assert c.first("RCPT TO:<bob@example.com>").startswith("250 2.1.5")
    assert c.first("DATA").startswith("354")
    c.send(wire + b".\r\n")
    assert c.reply()[0].startswith("250 2.0.0")
    c.close()
    (_, _, data), = small_server.messages("bob@example.com")
    assert data.endswith(stored)


# -- recipient count ------------------------------------------------------------------------------


def test_recipient_over_the_configured_limit_is_452_4_5_3(small_server):
    c = mx(small_server)
    assert c.first("MAIL FROM:<a@external.com>").startswith("250 2.1.0")
    for rcpt in ("alice@example.com", "bob@example.com", "sales@example.com"):
        assert c.first(f"RCPT TO:<{rcpt}>").startswith("250 2.1.5")
    assert c.first("RCPT TO:<carol@example.org>").startswith("452 4.5.3")
    assert c.first("DATA").startswith("354")
    c.send(b"Subject: three\r\n\r\nhi\r\n.\r\n")
    assert c.reply()[0].startswith("250 2.0.0")
    c.close()
    for rcpt in ("alice@example.com", "bob@example.com", "sales@example.com"):
        (_, _, data), = small_server.messages(rcpt)
        assert data.endswith(b"Subject: three\r\n\r\nhi\r\n")
    assert small_server.messages("carol@example.org") == []


def test_101st_recipient_is_452_with_the_default_limit(server):
    """max_recipients defaults to 100: RCPTs 1-100 get 250, the 101st 452 4.5.3."""
    c = mx(server)
    assert c.first("MAIL FROM:<a@external.com>").startswith("250 2.1.0")
    names = ["alice@example.com", "bob@example.com", "sales@example.com", "carol@example.org"]
    rcpts = [names[i % 4] for i in range(101)]
    c.send(b"".join(f"RCPT TO:<{r}>\r\n".encode() for r in rcpts))  # pipelined
    replies = [c.reply()[0] for _ in rcpts]
    assert all(r.startswith("250 2.1.5") for r in replies[:100]), replies
    assert replies[100].startswith("452 4.5.3")
    assert c.first("DATA").startswith("354")
    c.send(b"Subject: many\r\n\r\nhi\r\n.\r\n")
    assert c.reply()[0].startswith("250 2.0.0")
    c.close()
    for name in names:  # each user once, however often named
        (_, _, data), = server.messages(name)
        assert data.endswith(b"Subject: many\r\n\r\nhi\r\n")


# -- malformed addresses and parameters ---------------------------------------------------------------


def test_recipient_without_at_sign_is_501_5_1_3(server):
    c = mx(server)
    assert c.first("MAIL FROM:<a@external.com>").startswith("250 2.1.0")
    assert c.first("RCPT TO:<no-at-sign>").startswith("501 5.1.3")
    c.close()


def test_sender_with_double_at_is_501_5_1_7(server):
    c = mx(server)
    assert c.first("MAIL FROM:<a@@b>").startswith("501 5.1.7")
    assert c.first("MAIL FROM:<a@b.com").startswith("501 5.1.7")  # unclosed bracket
    c.close()


def test_local_part_of_65_octets_is_501_5_1_3(server):
    c = mx(server)
    assert c.first(f"MAIL FROM:<{'s' * 65}@external.com>").startswith("501 5.1.3")
    assert c.first(f"MAIL FROM:<{'s' * 64}@external.com>").startswith("250 2.1.0")
    assert c.first(f"RCPT TO:<{'a' * 65}@example.com>").startswith("501 5.1.3")
    # 64 octets is well-formed: refused only because no such user exists.
    assert c.first(f"RCPT TO:<{'a' * 64}@example.com>").startswith("550 5.1.1")
    c.close()


def test_mail_without_from_is_501_5_5_4(server):
    c = mx(server)
    assert c.first("MAIL <a@external.com>").startswith("501 5.5.4")
    assert c.first("MAIL").startswith("501 5.5.4")
    assert c.first("MAIL TO:<a@external.com>").startswith("501 5.5.4")
    c.close()


def test_unknown_mail_parameter_is_555_5_5_4(server):
    c = mx(server)
    assert c.first("MAIL FROM:<a@external.com> FOO=bar").startswith("555 5.5.4")
    assert c.first("MAIL FROM:<a@external.com> BODY=8BITMIME").startswith("250 2.1.0")
    c.close()


def test_rcpt_notify_parameter_is_555(server):
    c = mx(server)
    assert c.first("MAIL FROM:<a@external.com>").startswith("250 2.1.0")
    assert c.first("RCPT TO:<alice@example.com> NOTIFY=NEVER").startswith("555 5.5.4")
    c.close()


def test_non_numeric_size_is_501(server):
    c = mx(server)
    assert c.first("MAIL FROM:<a@external.com> SIZE=abc").startswith("501 5.5.4")
    assert c.first("MAIL FROM:<a@external.com> SIZE").startswith("501 5.5.4")
    c.close()


# -- AUTH ---------------------------------------------------------------------------------------------


def test_auth_before_starttls_is_538_5_7_11(server):
    c = Client(server.port("submission"))
    ehlo = c.cmd("EHLO client.example.com")
    assert not any("AUTH" in line for line in ehlo)
    token = base64.b64encode(b"\0alice@example.com\0alice-pw").decode()
    assert c.first(f"AUTH PLAIN {token}").startswith("538 5.7.11")
    assert c.first("MAIL FROM:<alice@example.com>").startswith("530 5.7.0")  # not logged in
    c.close()


def test_auth_on_port_25_is_502_5_5_1(server):
    c = mx(server)
    token = base64.b64encode(b"\0alice@example.com\0alice-pw").decode()
    assert c.first(f"AUTH PLAIN {token}").startswith("502 5.5.1")
    c.starttls()
    assert c.first("EHLO client.example.com").startswith("250")
    assert c.first(f"AUTH PLAIN {token}").startswith("502 5.5.1")  # not even over TLS
    c.close()


def test_mail_without_auth_on_submission_is_530_5_7_0(server):
    c = submission(server)
    assert c.first("MAIL FROM:<alice@example.com>").startswith("530 5.7.0")
    c.close()
    c = Client(server.port("submissions"), tls=True)
    assert c.first("EHLO client.example.com").startswith("250")
    assert c.first("MAIL FROM:<alice@example.com>").startswith("530 5.7.0")
    c.close()


def test_wrong_password_is_535_5_7_8(server):
    c = submission(server)
    assert c.login("alice@example.com", "not-the-password").startswith("535 5.7.8")
    assert c.login("nobody@example.com", "x").startswith("535 5.7.8")
    assert c.first("MAIL FROM:<alice@example.com>").startswith("530 5.7.0")
    # The right password still works afterwards.
    assert c.login("alice@example.com", "alice-pw").startswith("235 2.7.0")
    c.close()


def test_auth_login_wrong_password_is_535_5_7_8(server):
    c = submission(server)
    assert c.first("AUTH LOGIN").startswith("334 ")
    assert c.first(base64.b64encode(b"alice@example.com").decode()).startswith("334 ")
    assert c.first(base64.b64encode(b"wrong").decode()).startswith("535 5.7.8")
    c.close()


def test_auth_plain_bad_base64_is_501_5_5_2(server):
    c = submission(server)
    assert c.first("AUTH PLAIN !!!notbase64").startswith("501 5.5.2")
    # Also as a response to the empty challenge.
    assert c.first("AUTH PLAIN").startswith("334")
    assert c.first("!!!notbase64").startswith("501 5.5.2")
    assert c.first("NOOP").startswith("250 2.0.0")  # back in command mode
    c.close()


def test_unknown_mechanism_is_504_5_5_4(server):
    c = submission(server)
    assert c.first("AUTH CRAM-MD5").startswith("504 5.5.4")
    assert c.first("AUTH XOAUTH2 dG9rZW4=").startswith("504 5.5.4")
    c.close()


def test_auth_aborted_with_star_is_501(server):
    c = submission(server)
    assert c.first("AUTH LOGIN").startswith("334 ")
    assert c.first("*").startswith("501 5.7.0")
    assert c.first("NOOP").startswith("250 2.0.0")
    assert c.first("AUTH PLAIN").startswith("334")
    assert c.first("*").startswith("501 5.7.0")
    c.close()


def test_login_lockout_after_more_than_ten_failures(fresh_server):
    """10 failures are tolerated; the 11th locks the address, even for the right password."""
    c = submission(fresh_server)
    for _ in range(10):
        assert c.login("alice@example.com", "wrong").startswith("535 5.7.8")
    c.close()
    c = submission(fresh_server, login="alice@example.com")  # 10 is not yet "more than 10"
    c.close()
    c = submission(fresh_server)  # the success above cleared the count: 11 more to lock
    for _ in range(11):
        assert c.login("bob@example.com", "wrong").startswith("535 5.7.8")
    assert c.login("bob@example.com", "bob-pw").startswith("454 4.7.0")
    c.close()
    c = submission(fresh_server)
    assert c.login("alice@example.com", "alice-pw").startswith("454 4.7.0")
    assert c.first("AUTH LOGIN").startswith("454 4.7.0")
    assert c.first("MAIL FROM:<alice@example.com>").startswith("530 5.7.0")
    c.close()


# -- sender ownership ------------------------------------------------------------------------------------


def _rcpt_accepted(server, address) -> bool:
    c = mx(server)
    try:
        assert c.first("MAIL FROM:<probe@external.com>").startswith("250")
        return c.first(f"RCPT TO:<{address}>").startswith("250")
    finally:
        c.close()


def test_sending_as_someone_else_is_553_5_7_1(server):
    c = submission(server, login="alice@example.com")
    assert c.first("MAIL FROM:<bob@example.com>").startswith("553 5.7.1")
    assert c.first("MAIL FROM:<ceo@external.com>").startswith("553 5.7.1")
    assert c.first("MAIL FROM:<nobody@example.com>").startswith("553 5.7.1")
    assert c.first("MAIL FROM:<alice@example.com>").startswith("250 2.1.0")
    c.close()


def test_sending_as_an_alias_of_oneself_is_accepted(server):
    server.directory.add_alias("example.com", "alice-.*", "alice")
    server.wait_for(lambda: _rcpt_accepted(server, "alice-x@example.com"), "the alias to load")
    c = submission(server, login="alice@example.com")
    assert c.first("MAIL FROM:<alice-news@example.com>").startswith("250 2.1.0")
    assert c.first("RCPT TO:<bob@example.com>").startswith("250 2.1.5")
    assert c.first("DATA").startswith("354")
    c.send(b"Subject: via alias\r\n\r\nhi\r\n.\r\n")
    assert c.reply()[0].startswith("250 2.0.0")
    c.close()
    (_, _, data), = server.messages("bob@example.com")
    assert data.startswith(b"Return-Path: <alice-news@example.com>\r\n")
    # bob may not use alice's alias.
    c = submission(server, login="bob@example.com")
    assert c.first("MAIL FROM:<alice-news@example.com>").startswith("553 5.7.1")
    c.close()


# -- command sequence and unknown commands ------------------------------------------------------------------


def test_mail_before_ehlo_is_503_5_5_1(server):
    c = Client(server.port("smtp"))
    assert c.first("MAIL FROM:<a@external.com>").startswith("503 5.5.1")
    assert c.first("HELO client.example.com").startswith("250")
    assert c.first("MAIL FROM:<a@external.com>").startswith("250 2.1.0")
    c.close()


def test_rcpt_before_mail_is_503_5_5_1(server):
    c = mx(server)
    assert c.first("RCPT TO:<alice@example.com>").startswith("503 5.5.1")
    c.close()


def test_data_before_rcpt_is_503_5_5_1(server):
    c = mx(server)
    assert c.first("DATA").startswith("503 5.5.1")
    assert c.first("MAIL FROM:<a@external.com>").startswith("250 2.1.0")
    assert c.first("DATA").startswith("503 5.5.1")
    assert c.first("RCPT TO:<nobody@example.com>").startswith("550 5.1.1")
    assert c.first("DATA").startswith("503 5.5.1")
    c.close()


def test_second_mail_is_503_5_5_1(server):
    c = mx(server)
    assert c.first("MAIL FROM:<a@external.com>").startswith("250 2.1.0")
    assert c.first("MAIL FROM:<b@external.com>").startswith("503 5.5.1")
    assert c.first("RSET").startswith("250 2.0.0")
    assert c.first("MAIL FROM:<b@external.com>").startswith("250 2.1.0")
    c.close()


def test_unknown_command_is_502_5_5_1(server):
    c = mx(server)
    assert c.first("FOOBAR").startswith("502 5.5.1")
    assert c.first("FOOBAR with arguments").startswith("502 5.5.1")
    c.close()


def test_noop_rset_vrfy_help(server):
    c = Client(server.port("smtp"))
    assert c.first("NOOP").startswith("250 2.0.0")
    assert c.first("RSET").startswith("250 2.0.0")
    assert c.first("VRFY alice").startswith("252")
    assert c.first("HELP").startswith("214")
    c.close()


def test_ehlo_without_argument_is_501(server):
    c = Client(server.port("smtp"))
    assert c.first("EHLO").startswith("501")
    assert c.first("HELO").startswith("501")
    assert c.first("MAIL FROM:<a@external.com>").startswith("503 5.5.1")  # no greeting took
    c.close()


# -- line length and error limit -------------------------------------------------------------------------------


def test_command_line_over_smtp_max_command_line_is_500_5_5_2(server):
    c = mx(server)
    assert c.first("NOOP " + "x" * 3000).startswith("500 5.5.2")
    assert c.first("NOOP").startswith("250 2.0.0")
    # smtp.max_command_line (2048) octets with the CRLF is the limit.
    assert c.first("NOOP " + "x" * (2048 - 2 - 5)).startswith("250 2.0.0")
    assert c.first("NOOP " + "x" * (2048 - 2 - 4)).startswith("500 5.5.2")
    c.close()


def test_smtp_max_command_line_is_the_configured_value(tmp_path):
    server = harness.Server(tmp_path, in_reactor, smtp__max_command_line=600)
    server.start()
    try:
        c = mx(server)
        assert c.first("NOOP " + "x" * (600 - 2 - 5)).startswith("250 2.0.0")
        assert c.first("NOOP " + "x" * (600 - 2 - 4)).startswith("500 5.5.2")
        c.close()
    finally:
        server.stop()


def test_unterminated_line_over_12288_octets_gets_one_500(server):
    c = mx(server)
    c.send(b"NOOP " + b"x" * 13000)  # no newline yet
    assert c.reply()[0].startswith("500 5.5.2")
    c.send(b"y" * 13000)  # still no newline: the same line, no second reply
    c.send(b"z" * 100 + b"\r\n")
    c.send(b"NOOP\r\n")
    assert c.reply()[0].startswith("250 2.0.0")  # the next reply is the NOOP's
    assert c.first("MAIL FROM:<a@external.com>").startswith("250 2.1.0")
    c.close()


def test_more_than_20_errors_closes_with_421(server):
    c = mx(server)
    for _ in range(20):
        assert c.first("FOOBAR").startswith("502 5.5.1")
    assert c.first("NOOP").startswith("250 2.0.0")  # 20 errors are tolerated
    assert c.first("FOOBAR").startswith("502 5.5.1")
    assert c.reply()[0].startswith("421 4.7.0")
    assert c.closed()
    c.close()
    # Other clients are unaffected.
    c = mx(server)
    assert c.first("NOOP").startswith("250 2.0.0")
    c.close()
