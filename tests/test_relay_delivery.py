"""Outbound relay, the good paths: real rmail, real smtplib clients, a real DNS server
and real SMTP receivers on 127.0.0.2, 127.0.0.3 ... (``tests.relay_peers``)."""

import pytest

from tests.conftest import in_reactor
from tests.harness import APIClient, Server
from tests.relay_peers import (
    LogCapture, relay_server, submit, wait_queue_empty,
)


@pytest.fixture
def server(tmp_path, net):
    srv = relay_server(tmp_path, net)
    yield srv
    srv.stop()


def send(server, recipients, **kwargs):
    return submit(server.port("submission"), recipients, **kwargs)


def test_seed_example_reaches_the_external_receiver_over_tls(server, net):
    """Alice logs in on submission and sends to an external address (the seed); the
    message arrives at the domain's MX over STARTTLS, from MAIL FROM alice, after EHLO
    with rmail's hostname, without rmail's Return-Path, and leaves the queue."""
    with LogCapture() as logs:
        assert send(server, ["recipient@ext.test"]) == {}
        (msg,) = net.tls.wait_for_messages(1)
        wait_queue_empty(server.config_path)
        line = logs.wait_for("relay: id=", "<recipient@ext.test> delivered")[0]
    assert msg.tls and msg.helo == "mail.example.com"
    assert msg.sender == "alice@example.com" and msg.recipients == ["recipient@ext.test"]
    assert msg.header("Subject") == "External"
    assert msg.header("Return-Path") is None
    assert "with ESMTPSA" in msg.header("Received")
    assert "host=mx-tls.ext.test[127.0.0.2]" in line and "tls=TLSv1" in line
    assert net.clear.messages == []


def test_lowest_mx_preference_is_tried_first(tmp_path, net):
    net.dns.set("pref.test", (20, "mx-clear.ext.test"), (10, "mx-tls.ext.test"))
    srv = relay_server(tmp_path, net)
    try:
        send(srv, ["someone@pref.test"])
        net.tls.wait_for_messages(1)
        wait_queue_empty(srv.config_path)
    finally:
        srv.stop()
    assert net.clear.connections == 0


def test_next_mx_when_the_preferred_one_refuses_the_connection(tmp_path, net):
    net.dns.set("fallback.test", (10, "mx-closed.ext.test"), (20, "mx-clear.ext.test"))
    srv = relay_server(tmp_path, net)
    try:
        with LogCapture() as logs:
            send(srv, ["someone@fallback.test"])
            (msg,) = net.clear.wait_for_messages(1)
            wait_queue_empty(srv.config_path)
            tried = logs.wait_for("host=mx-closed.ext.test[127.0.0.4]", "tries the next host")
    finally:
        srv.stop()
    assert "connection refused" in tried[0]
    assert not msg.tls  # that receiver offers no STARTTLS: clear text, as opportunistic TLS allows
    assert msg.recipients == ["someone@fallback.test"]


def test_a_domain_without_mx_gets_mail_at_its_address_record(tmp_path, net):
    net.dns.set("no-mx.test", "127.0.0.3")
    srv = relay_server(tmp_path, net)
    try:
        send(srv, ["someone@no-mx.test"])
        (msg,) = net.clear.wait_for_messages(1)
        wait_queue_empty(srv.config_path)
    finally:
        srv.stop()
    assert msg.recipients == ["someone@no-mx.test"]


def test_one_connection_per_destination_carries_all_its_recipients(server, net):
    send(server, ["a@ext.test", "b@ext.test", "c@clear.test", "A@EXT.test"])
    (msg,) = net.tls.wait_for_messages(1)
    (other,) = net.clear.wait_for_messages(1)
    wait_queue_empty(server.config_path)
    assert sorted(msg.recipients) == ["a@ext.test", "b@ext.test"]
    assert other.recipients == ["c@clear.test"]
    assert net.tls.connections == 1 and net.clear.connections == 1


def test_smarthost_takes_everything_in_one_connection(tmp_path, net):
    """relay.smarthost: no MX lookups, every domain's recipients to the one host."""
    srv = relay_server(tmp_path, net, relay__smarthost=f"127.0.0.3:{net.port}",
                       relay__dns_servers=["127.0.0.1:9"])
    try:
        send(srv, ["x@ext.test", "y@nowhere.example"])
        (msg,) = net.clear.wait_for_messages(1)
        wait_queue_empty(srv.config_path)
    finally:
        srv.stop()
    assert sorted(msg.recipients) == ["x@ext.test", "y@nowhere.example"]
    assert net.tls.connections == 0


def test_local_and_external_recipients_in_one_message(server, net):
    """Local recipients are delivered to the store, external ones queued, one 250."""
    send(server, ["bob@example.com", "friend@ext.test"], subject="Both")
    (msg,) = net.tls.wait_for_messages(1)
    (uid, flags, data), = server.messages("bob@example.com")
    assert b"Subject: Both" in data and data.startswith(b"Return-Path: <alice@example.com>")
    assert msg.recipients == ["friend@ext.test"] and msg.header("Subject") == "Both"
    wait_queue_empty(server.config_path)


def test_body_arrives_byte_for_byte_with_dots_and_8bit(server, net):
    """Dot-stuffing on the way out undoes the receiver's unstuffing exactly, whatever
    the chunking, and 8-bit text is passed on (BODY=8BITMIME)."""
    lines = [b"From: alice@example.com", b"To: x@ext.test", b"Subject: dots", b""]
    lines += [b".", b"..two", b".leading", "caf\u00e9 \u00fcml".encode()]
    lines += [b"x" * 900 for _ in range(600)] + [b".", b"end"]
    body = b"\r\n".join(lines) + b"\r\n"
    send(server, ["x@ext.test"], body=body)
    (msg,) = net.tls.wait_for_messages(1)
    assert msg.data.endswith(body)
    assert msg.data[:msg.data.index(b"From: alice@example.com")].startswith(b"Received: from ")
    wait_queue_empty(server.config_path)


def test_http_api_send_goes_through_the_same_relay(server, net):
    """POST /messages/send to an external address: the same policy, the same queue."""
    api = APIClient(server.port("http"))
    api.login("alice@example.com", "alice-pw")
    r = api.request("POST", "/messages/send", {"to": ["api@ext.test"], "subject": "Via API",
                                               "body": "hello"})
    assert r.status == 202, r
    (msg,) = net.tls.wait_for_messages(1)
    assert msg.sender == "alice@example.com" and msg.recipients == ["api@ext.test"]
    assert msg.header("Subject") == "Via API"
    wait_queue_empty(server.config_path)


def test_a_second_rmail_instance_receives_over_tls(tmp_path, net):
    """The MX is another rmail (on 127.0.0.5): the message lands in its user's INBOX."""
    remote_dir = tmp_path / "remote"
    remote_dir.mkdir()
    remote = Server(remote_dir, in_reactor, users={"dave@remote.test": "dave-pw"},
                    domains=["remote.test"], hostname="mx.remote.test",
                    listen__address="127.0.0.5", listen__smtp=net.port)
    remote.start()
    net.dns.set("remote.test", (10, "mx.remote.test"))
    net.dns.set("mx.remote.test", "127.0.0.5")
    local_dir = tmp_path / "local"
    local_dir.mkdir()
    srv = relay_server(local_dir, net)
    try:
        send(srv, ["dave@remote.test"], subject="Between two rmails")
        (_, _, data), = remote.wait_for(lambda: remote.messages("dave@remote.test"),
                                        "the message at the second rmail")
        wait_queue_empty(srv.config_path)
    finally:
        srv.stop()
        remote.stop()
    assert b"Subject: Between two rmails" in data
    assert data.startswith(b"Return-Path: <alice@example.com>\r\nReceived: from mail.example.com")
    assert b"with ESMTPS " in data  # the hop between the two ran over STARTTLS
