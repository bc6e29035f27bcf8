"""Who may relay (the seed): authenticated users while relay.enabled, nobody else; and
SIGHUP changes it on a running server."""

import json
import signal
import smtplib

import pytest

from tests import harness
from tests.conftest import in_reactor
from tests.harness import TIMEOUT, APIClient, Process, SMTPClient, USERS, client_tls


def rcpt_reply(port, recipient, login=None):
    """The reply to RCPT TO:<recipient>, on submission with *login* or on the MX port."""
    c = SMTPClient(port)
    try:
        c.first("EHLO client.example.com")
        if login:
            c.starttls()
            c.first("EHLO client.example.com")
            assert c.login(login, USERS[login]).startswith("235")
        assert c.first(f"MAIL FROM:<{login or 'someone@elsewhere.example'}>").startswith("250")
        return c.first(f"RCPT TO:<{recipient}>")
    finally:
        c.close()


def test_unauthenticated_relay_is_refused_on_port_25(server):
    assert rcpt_reply(server.port("smtp"), "friend@elsewhere.net") == \
        "550 5.7.1 Relay not permitted"


def test_authenticated_users_may_relay(server):
    assert rcpt_reply(server.port("submission"), "friend@elsewhere.net",
                      login="alice@example.com").startswith("250 2.1.5")


@pytest.fixture
def relay_off(tmp_path):
    srv = harness.Server(tmp_path, in_reactor, relay__enabled=False)
    srv.start()
    yield srv
    srv.stop()


def test_relay_disabled_refuses_even_authenticated_users(relay_off):
    """relay.enabled false: 550 5.7.1 on submission, and nothing is queued."""
    port = relay_off.port("submission")
    assert rcpt_reply(port, "friend@elsewhere.net", login="alice@example.com") == \
        "550 5.7.1 Relay not permitted"
    s = smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT)
    s.starttls(context=client_tls())
    s.login("alice@example.com", "alice-pw")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        s.sendmail("alice@example.com", ["recipient@gmail.com"], b"Subject: x\r\n\r\nx\r\n")
    s.quit()
    assert refused.value.recipients["recipient@gmail.com"] == (550, b"5.7.1 Relay not permitted")


def test_relay_disabled_refuses_the_http_api_send(relay_off):
    api = APIClient(relay_off.port("http"))
    api.login("alice@example.com", "alice-pw")
    r = api.request("POST", "/messages/send", {"to": ["recipient@gmail.com"],
                                               "subject": "s", "body": "b"})
    assert r.status == 403 and r.json() == {"error": "Relay not permitted"}


def test_sighup_switches_relaying_on_and_off(tmp_path):
    config = harness.write_config(tmp_path, relay__enabled=False)
    harness.add_users(config)
    proc = Process(config)

    def set_relay(enabled):
        with open(config) as f:
            data = json.load(f)
        data["relay"]["enabled"] = enabled
        with open(config, "w") as f:
            json.dump(data, f)
        proc.signal(signal.SIGHUP)
        proc.wait_for_output(rb"configuration reloaded")

    try:
        port = proc.ports["submission"]
        held = SMTPClient(port)  # a connection open across the reloads
        held.first("EHLO held.example.com")
        assert rcpt_reply(port, "a@elsewhere.net", "alice@example.com").startswith("550 5.7.1")
        set_relay(True)
        assert rcpt_reply(port, "a@elsewhere.net", "alice@example.com").startswith("250 2.1.5")
        set_relay(False)
        assert rcpt_reply(port, "a@elsewhere.net", "alice@example.com").startswith("550 5.7.1")
        assert held.first("NOOP").startswith("250")
        held.close()
    finally:
        proc.stop()
    assert proc.proc.returncode == 0
