"""The seed's SMTP examples, verbatim against a real server (hostnames aside)."""

import smtplib

from tests.harness import client_tls, smtp_dialogue


def test_telnet_session_line_for_line(server):
    """Port 25 answers the seed's telnet session exactly (PIPELINING, which SPEC allows, aside)."""
    body = (b"From: sender@external.com\r\nTo: alice@example.com\r\nSubject: Inbound test\r\n"
            b"\r\nBody text.\r\n.\r\n")
    transcript = smtp_dialogue(server.port("smtp"), [
        "EHLO client.example.com", "MAIL FROM:<sender@external.com>",
        "RCPT TO:<alice@example.com>", "DATA", body, "QUIT"])
    ehlo = [line for line in transcript[1] if line != "250-PIPELINING"]
    assert transcript[0] == ["220 mail.example.com ESMTP rmail"]
    assert ehlo == ["250-mail.example.com", "250-SIZE 52428800", "250-8BITMIME",
                    "250-STARTTLS", "250 ENHANCEDSTATUSCODES"]
    assert transcript[2:] == [
        ["250 2.1.0 OK"], ["250 2.1.5 OK"], ["354 End data with <CR><LF>.<CR><LF>"],
        ["250 2.0.0 OK: message accepted for delivery"],
        ["221 2.0.0 mail.example.com closing connection"]]
    (uid, flags, data), = server.messages("alice@example.com")
    assert uid == 1 and flags == frozenset()
    assert data.startswith(b"Return-Path: <sender@external.com>\r\nReceived: from client.example.com")
    assert data.endswith(b"Subject: Inbound test\r\n\r\nBody text.\r\n")


def test_submission_example_verbatim(server):
    """The seed's smtplib example: STARTTLS, login, sendmail; the message lands in bob's INBOX."""
    s = smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10)
    s.ehlo("client.example.com")
    s.starttls(context=client_tls())
    s.ehlo("client.example.com")
    s.login("alice@example.com", "alice-pw")
    refused = s.sendmail(
        "alice@example.com",
        ["bob@example.com"],
        "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: Hello\r\n\r\nBody\r\n"
    )
    s.quit()
    assert refused == {}
    (uid, _, data), = server.messages("bob@example.com")
    assert uid == 1
    assert b"with ESMTPSA" in data
    assert data.endswith(b"Subject: Hello\r\n\r\nBody\r\n")


def test_implicit_tls_submission(server):
    """465: TLS from the first byte, AUTH offered at once."""
    s = smtplib.SMTP_SSL("127.0.0.1", server.port("submissions"), timeout=10, context=client_tls())
    code, features = s.ehlo("client.example.com")
    assert code == 250 and b"AUTH PLAIN LOGIN" in features and b"STARTTLS" not in features
    s.login("bob@example.com", "bob-pw")
    s.sendmail("bob@example.com", ["alice@example.com"], b"Subject: tls\r\n\r\nx\r\n")
    s.quit()
    (_, _, data), = server.messages("alice@example.com")
    assert data.endswith(b"Subject: tls\r\n\r\nx\r\n")


def test_auth_login_mechanism(server):
    s = smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10)
    s.starttls(context=client_tls())
    s.ehlo("c")
    s.user, s.password = "alice@example.com", "alice-pw"
    code, _ = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
    assert code == 235
    s.quit()


def test_tls_context_refuses_versions_below_1_2(server):
    """The server context disables SSLv3, TLS 1.0 and 1.1 itself (whatever the system's OpenSSL allows)."""
    from OpenSSL import SSL
    options = server.service.tls.options.getContext().set_options(0)  # returns the options in force
    for flag in (SSL.OP_NO_SSLv3, SSL.OP_NO_TLSv1, SSL.OP_NO_TLSv1_1):
        assert options & flag
    s = smtplib.SMTP_SSL("127.0.0.1", server.port("submissions"), timeout=10, context=client_tls())
    assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
    s.quit()
