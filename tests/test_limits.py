"""Every limit of config.json's `limits`, `smtp` and `imap` sections, reached over the wire.

Each test runs a server of its own with the limit set low, so that it is reached in a
few commands, and checks the protocol's reply; a second client shows that one client at
its limit does not hold up anyone else.
"""

import imaplib
import socket
import ssl
import time
import warnings

import pytest

from tests import harness
from tests.conftest import in_reactor
from tests.harness import TIMEOUT, SMTPClient


@pytest.fixture
def limited(tmp_path):
    """A server whose limits are set by the test: ``limited(**overrides)``."""
    servers = []

    def start(**overrides):
        overrides.setdefault("limits__exempt_networks", [])  # loopback counts here
        path = tmp_path / f"s{len(servers)}"
        path.mkdir()
        srv = harness.Server(path, in_reactor, **overrides)
        srv.start()
        servers.append(srv)
        return srv
    yield start
    for srv in servers:
        srv.stop()


def _read_all(sock) -> bytes:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def _refused_text(server, key) -> bytes:
    """What a connection to listener *key* is told (it must be closed afterwards)."""
    sock = socket.create_connection(("127.0.0.1", server.port(key)), timeout=TIMEOUT)
    try:
        if key == "http":
            sock.sendall(b"GET /folders HTTP/1.1\r\nHost: x\r\n\r\n")
        return _read_all(sock)
    finally:
        sock.close()


def _imap(server):
    return imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=TIMEOUT)


# -- connections per client address -------------------------------------------------------


def test_concurrent_connections_per_address_are_counted_across_listeners(limited):
    server = limited(limits__connections_per_address=3)
    smtp = [SMTPClient(server.port("smtp")), SMTPClient(server.port("submission"))]
    imap = _imap(server)
    # The fourth connection, whichever listener it comes to, is turned away.
    assert _refused_text(server, "smtp").startswith(b"421 4.7.0 ")
    assert _refused_text(server, "imap").startswith(b"* BYE [UNAVAILABLE] ")
    http = _refused_text(server, "http")
    assert http.startswith(b"HTTP/1.1 429 ") and b"Retry-After: 60" in http
    assert b'{"error": "too many connections' in http
    # The ones already open are served as usual.
    assert smtp[0].first("NOOP").startswith("250")
    assert imap.noop()[0] == "OK"
    # Closing one gives its slot back.
    smtp[1].cmd("QUIT")
    smtp[1].close()
    server.wait_for(lambda: len(server.service.factories["submission"].sessions) == 0,
                    "the closed session to leave")
    again = SMTPClient(server.port("smtp"))
    assert again.first("NOOP").startswith("250")
    for c in (smtp[0], again):
        c.close()
    imap.logout()


def test_new_connections_per_minute(limited):
    server = limited(limits__connections_per_minute=4)
    for _ in range(4):
        c = SMTPClient(server.port("smtp"))
        c.cmd("QUIT")
        c.close()
    assert b"4 connections a minute" in _refused_text(server, "smtp")
    assert _refused_text(server, "imap").startswith(b"* BYE [UNAVAILABLE]")


def test_exempt_networks_leave_loopback_alone_by_default(limited):
    server = limited(limits__exempt_networks=["127.0.0.0/8", "::1/128"],
                     limits__connections_per_address=2, limits__connections_per_minute=2)
    clients = [SMTPClient(server.port("smtp")) for _ in range(6)]
    assert all(c.first("NOOP").startswith("250") for c in clients)
    for c in clients:
        c.close()


# -- failed logins ---------------------------------------------------------------------------


def test_login_failures_and_lockout_are_configured(limited):
    server = limited(limits__login_failures=2, limits__login_lockout=3600)
    for _ in range(3):
        with pytest.raises(imaplib.IMAP4.error):
            _imap(server).login("alice@example.com", "wrong")
    # Locked out: even the right password is refused, on every protocol.
    with pytest.raises(imaplib.IMAP4.error, match="(?i)too many|failed"):
        _imap(server).login("alice@example.com", "alice-pw")
    r = harness.APIClient(server.port("http")).request(
        "POST", "/auth/login", {"username": "alice@example.com", "password": "alice-pw"})
    assert r.status == 429
    assert 3500 <= int(r.headers["Retry-After"]) <= 3600


# -- SMTP ---------------------------------------------------------------------------------------


def test_smtp_errors_before_disconnect(limited):
    server = limited(smtp__max_errors=3)
    c = SMTPClient(server.port("smtp"))
    for _ in range(3):
        assert c.first("BOGUS").startswith("502")
    lines = c.cmd("BOGUS")
    assert lines[0].startswith("502")
    assert c.reply()[0].startswith("421 4.7.0")
    assert c.closed()
    c.close()


def test_smtp_idle_timeout(limited):
    server = limited(smtp__idle_timeout=1)
    c = SMTPClient(server.port("smtp"))
    assert c.reply()[0].startswith("421 4.4.2")
    assert c.closed()
    c.close()


# -- IMAP ----------------------------------------------------------------------------------------


def test_imap_timeouts_before_and_after_login(limited):
    server = limited(imap__login_timeout=1, imap__idle_timeout=2)
    sock = socket.create_connection(("127.0.0.1", server.port("imap")), timeout=TIMEOUT)
    assert b"* BYE Autologout" in _read_all(sock)
    sock.close()
    imap = _imap(server)
    imap.login("alice@example.com", "alice-pw")
    time.sleep(1.2)  # longer than the login timeout: a logged-in session has its own
    assert imap.noop()[0] == "OK"
    sock = imap.socket()
    rest = _read_all(sock)
    assert b"* BYE Autologout" in rest


def test_imap_command_line_and_literal_limits(limited):
    server = limited(imap__max_command_line=2048, imap__max_literal=1500)
    sock = socket.create_connection(("127.0.0.1", server.port("imap")), timeout=TIMEOUT)
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(b"a1 LOGIN alice@example.com alice-pw\r\n")
    assert f.readline().startswith(b"a1 OK")
    sock.sendall(b"a2 NOOP " + b"x" * 3000 + b"\r\n")
    assert f.readline().startswith(b"a2 BAD")
    sock.sendall(b"a3 SELECT INBOX\r\n")
    line = f.readline()
    while line.startswith(b"*"):
        line = f.readline()
    assert line.startswith(b"a3 OK")
    sock.sendall(b"a4 SEARCH TEXT {2000}\r\n")
    line = f.readline()
    assert line.startswith(b"a4 NO") and b"2000" in line
    sock.sendall(b"a5 SEARCH TEXT {1000}\r\n")
    assert f.readline().startswith(b"+")
    sock.sendall(b"y" * 1000 + b"\r\n")
    assert f.readline().startswith(b"* SEARCH")
    assert f.readline().startswith(b"a5 OK")
    f.close()
    sock.close()


# -- TLS ------------------------------------------------------------------------------------------


def test_tls_min_version(limited):
    server = limited(tls__min_version="1.3")
    old = harness.client_tls()
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        with socket.create_connection(("127.0.0.1", server.port("imaps")), timeout=TIMEOUT) as s:
            old.wrap_socket(s).recv(100)
    with socket.create_connection(("127.0.0.1", server.port("imaps")), timeout=TIMEOUT) as s:
        tls = harness.client_tls().wrap_socket(s)
        assert tls.version() == "TLSv1.3"
        assert tls.recv(100).startswith(b"* OK")
        tls.close()


def test_tls_1_1_is_refused_by_default(limited):
    server = limited()
    old = harness.client_tls()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError):
        with socket.create_connection(("127.0.0.1", server.port("imaps")), timeout=TIMEOUT) as s:
            old.wrap_socket(s).recv(100)
