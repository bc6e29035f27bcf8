"""Outbound relay faults, each staged for real: refused connections, 421, a connection
dropped mid-DATA, a recipient refused, 5xx, no MX and no A, a null MX, a DNS server that
never answers, a STARTTLS that fails mid-handshake, queue files damaged on disk."""

import email
import email.policy
import os

import pytest

from tests import harness
from tests.conftest import in_reactor
from tests.relay_peers import (
    LogCapture, SilentDNS, queue_dir, queued, relay_overrides, relay_server,
    submit, wait_queue_empty, wait_until,
)


@pytest.fixture
def server(tmp_path, net):
    srv = relay_server(tmp_path, net)
    yield srv
    srv.stop()


def send(server, recipients, **kwargs):
    return submit(server.port("submission"), recipients, **kwargs)


def bounces(server, address="alice@example.com"):
    """The DSNs in *address*'s INBOX, parsed."""
    return [email.message_from_bytes(data, policy=email.policy.default)
            for _, _, data in server.messages(address)
            if b"report-type=delivery-status" in data]


def wait_bounce(server, address="alice@example.com"):
    return server.wait_for(lambda: bounces(server, address), f"a bounce for {address}")[0]


def report(dsn) -> str:
    """The message/delivery-status part as text."""
    (part,) = [p for p in dsn.iter_parts() if p.get_content_type() == "message/delivery-status"]
    return "\n\n".join(block.as_string() for block in part.get_payload())


def original_header(dsn) -> str:
    (part,) = [p for p in dsn.iter_parts() if p.get_content_type() == "text/rfc822-headers"]
    return part.get_content()


# -- connection-level trouble: retried ----------------------------------------------------

def test_refused_connection_is_retried_later(tmp_path, net):
    net.dns.set("refusing.test", (10, "mx-closed.ext.test"))
    srv = relay_server(tmp_path, net, relay__retry_intervals=[3600])
    try:
        with LogCapture() as logs:
            send(srv, ["x@refusing.test"])
            line = logs.wait_for("<x@refusing.test> deferred")[0]
        (entry,) = wait_until(lambda: [e for e in queued(srv.config_path)
                                       if e["recipients"][0]["attempts"]], "the saved attempt")
    finally:
        srv.stop()
    assert "connection refused" in line
    (r,) = entry["recipients"]
    assert r["status"] == "pending" and r["attempts"] == 1
    assert r["last_reply"].startswith("421 4.4.1 Cannot connect to mx-closed.ext.test[127.0.0.4]")
    assert r["next_attempt"] >= r["last_attempt"] + 3600 - 1  # relay.retry_intervals[0]
    assert bounces(srv) == []


def test_421_greeting_is_retried_then_delivered_once(server, net):
    net.tls.greetings = ["421 4.3.2 mx-tls.ext.test busy, try again later"]
    with LogCapture() as logs:
        send(server, ["x@ext.test"])
        first = logs.wait_for("<x@ext.test> deferred")[0]
        (msg,) = net.tls.wait_for_messages(1)
        wait_queue_empty(server.config_path)
        second = logs.wait_for("<x@ext.test> delivered")[0]
    assert '"421 4.3.2 mx-tls.ext.test busy' in first and "attempt=1" in first
    assert "attempt=2" in second
    assert net.tls.connections == 2 and len(net.tls.messages) == 1


def test_connection_dropped_mid_data_is_retried_then_delivered_once(server, net):
    net.tls.drop_in_data = 1
    with LogCapture() as logs:
        send(server, ["x@ext.test"], subject="Dropped once")
        line = logs.wait_for("<x@ext.test> deferred")[0]
        (msg,) = net.tls.wait_for_messages(1)
        wait_queue_empty(server.config_path)
    assert "lost during DATA" in line
    assert net.tls.dropped == 1 and msg.header("Subject") == "Dropped once"


def test_4xx_after_data_is_retried_then_delivered(server, net):
    net.tls.data_replies = ["451 4.3.0 Local trouble, try later"]
    with LogCapture() as logs:
        send(server, ["x@ext.test"])
        line = logs.wait_for("<x@ext.test> deferred")[0]
        net.tls.wait_for_messages(1)
        wait_queue_empty(server.config_path)
    assert '"451 4.3.0 Local trouble, try later"' in line
    assert bounces(server) == []


def test_dns_server_that_never_answers_defers(tmp_path, net):
    silent = SilentDNS().start()
    srv = relay_server(tmp_path, net, relay__dns_servers=[silent.address],
                       relay__retry_intervals=[3600])
    try:
        with LogCapture() as logs:
            send(srv, ["x@ext.test"])
            line = logs.wait_for("<x@ext.test> deferred")[0]
        (entry,) = wait_until(lambda: [e for e in queued(srv.config_path)
                                       if e["recipients"][0]["attempts"]], "the saved attempt")
    finally:
        srv.stop()
        silent.stop()
    assert "4.4.3 DNS lookup of ext.test failed: no answer" in line
    assert entry["recipients"][0]["status"] == "pending"
    assert silent.sink.questions >= 3  # asked again after each timeout
    assert net.tls.connections == 0


def test_starttls_failing_mid_handshake_retries_the_same_host_in_clear(server, net):
    net.tls.tls = "broken"
    with LogCapture() as logs:
        send(server, ["x@ext.test"])
        (msg,) = net.tls.wait_for_messages(1)
        warning = logs.wait_for("STARTTLS handshake failed", "retrying the same host in clear")
        wait_queue_empty(server.config_path)
        delivered = logs.wait_for("<x@ext.test> delivered")[0]
    assert "host=mx-tls.ext.test[127.0.0.2]" in warning[0]
    assert net.tls.broken_handshakes == 1 and net.tls.connections == 2
    assert not msg.tls and "tls=no" in delivered


# -- permanent failures: one DSN to the sender --------------------------------------------

def test_550_for_one_of_three_recipients_bounces_that_one(server, net):
    net.tls.rcpt = {"c@ext.test": "550 5.1.1 <c@ext.test>: no such user here"}
    send(server, ["a@ext.test", "b@ext.test", "c@ext.test"], subject="Three of us")
    (msg,) = net.tls.wait_for_messages(1)
    dsn = wait_bounce(server)
    wait_queue_empty(server.config_path)
    assert sorted(msg.recipients) == ["a@ext.test", "b@ext.test"]
    assert dsn["Subject"] == "Undelivered Mail Returned to Sender"
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    text = report(dsn)
    assert "Final-Recipient: rfc822; c@ext.test" in text
    assert "a@ext.test" not in text and "b@ext.test" not in text
    assert "Action: failed" in text and "Status: 5.1.1" in text
    assert "Remote-MTA: dns; mx-tls.ext.test" in text
    assert "Diagnostic-Code: smtp; 550 5.1.1 <c@ext.test>: no such user here" in text
    assert "Subject: Three of us" in original_header(dsn)
    assert len(bounces(server)) == 1


def test_5xx_after_data_bounces_into_the_senders_inbox(server, net):
    net.tls.data_replies = ["554 5.7.1 Message refused as spam"]
    send(server, ["x@ext.test", "y@ext.test"], subject="Spammy")
    dsn = wait_bounce(server)
    wait_queue_empty(server.config_path)
    text = report(dsn)
    assert text.count("Final-Recipient:") == 2 and "Status: 5.7.1" in text
    assert "554 5.7.1 Message refused as spam" in dsn.get_body(("plain",)).get_content()
    assert "Subject: Spammy" in original_header(dsn)
    assert dsn["From"] == "Mail Delivery System <MAILER-DAEMON@mail.example.com>"
    (_, _, raw), = server.messages("alice@example.com")
    assert raw.startswith(b"Return-Path: <>\r\n")  # a DSN comes from the null sender
    assert net.tls.messages == []


@pytest.mark.parametrize("domain, status, words", [
    ("missing.test", "5.1.2", "does not exist"),
    ("no-host.test", "5.1.2", "has no MX and no A/AAAA record"),
    ("nullmx.test", "5.1.10", "accepts no mail (null MX"),
])
def test_undeliverable_domains_bounce_without_a_connection(server, net, domain, status, words):
    """NXDOMAIN, a name with neither MX nor A/AAAA, and a null MX (RFC 7505)."""
    from twisted.names import dns
    net.dns.set("no-host.test", dns.Record_TXT(b"v=spf1 -all", ttl=0))
    net.dns.null_mx("nullmx.test")
    send(server, [f"x@{domain}"])
    dsn = wait_bounce(server)
    wait_queue_empty(server.config_path)
    text = report(dsn)
    assert f"Status: {status}" in text and words in text
    assert "Remote-MTA" not in text
    assert net.tls.connections == net.clear.connections == 0


def test_expired_message_bounces_after_max_queue_time(tmp_path, net):
    net.dns.set("refusing.test", (10, "mx-closed.ext.test"))
    srv = relay_server(tmp_path, net, relay__max_queue_time=2)
    try:
        send(srv, ["x@refusing.test"])
        dsn = wait_bounce(srv)
        wait_queue_empty(srv.config_path)
        text = report(dsn)
    finally:
        srv.stop()
    assert "Status: 5.4.7" in text and "Delivery time expired" in text
    assert "Cannot connect to mx-closed.ext.test" in text


def test_a_bounce_is_never_bounced(server, net):
    """A DSN (from <>) that cannot be delivered is dropped with a log line."""
    with LogCapture() as logs:
        in_reactor(server.service.relay.enqueue_bytes,
                   b"Subject: a bounce\r\n\r\nbody\r\n", "", ["x@missing.test"])
        logs.wait_for("bounce to <x@missing.test> dropped (a bounce is never bounced)")
    wait_queue_empty(server.config_path)
    assert bounces(server) == []


def test_bounce_to_an_external_sender_is_queued_from_the_null_sender(server, net):
    in_reactor(server.service.relay.enqueue_bytes,
               b"From: someone@ext.test\r\nSubject: original\r\n\r\nbody\r\n",
               "someone@ext.test", ["x@missing.test"])
    (msg,) = net.tls.wait_for_messages(1)
    wait_queue_empty(server.config_path)
    assert msg.sender == "" and msg.recipients == ["someone@ext.test"]
    assert msg.header("Content-Type").startswith("multipart/report")
    assert b"Subject: original" in msg.data and b"Final-Recipient: rfc822; x@missing.test" in msg.data


# -- the queue on disk ------------------------------------------------------------------------

def test_damaged_queue_files_are_quarantined_and_the_rest_goes_on(tmp_path, net):
    """A truncated entry and a truncated message are moved to queue/quarantine/ with a
    log line each at start; the sound entry beside them is delivered."""
    net.dns.set("later.test", (10, "mx-closed.ext.test"))
    srv = relay_server(tmp_path, net)
    for subject in ("one", "two", "three"):
        send(srv, ["x@later.test"], subject=subject)
    wait_until(lambda: all(e["recipients"][0]["attempts"] for e in queued(srv.config_path))
               and len(queued(srv.config_path)) == 3, "three deferred messages")
    srv.stop()
    root = queue_dir(srv.config_path)
    ids = [e["id"] for e in queued(srv.config_path)]
    entry_file = os.path.join(root, "entries", ids[0] + ".json")
    with open(entry_file, "r+b") as f:
        f.truncate(os.path.getsize(entry_file) // 2)
    message_file = os.path.join(root, "messages", ids[1])
    with open(message_file, "r+b") as f:
        f.truncate(10)
    net.dns.set("later.test", (10, "mx-clear.ext.test"))
    again = harness.Server(tmp_path, in_reactor, users=None, **relay_overrides(net))
    with LogCapture() as logs:
        again.start()
        try:
            (msg,) = net.clear.wait_for_messages(1)
            wait_queue_empty(again.config_path)
        finally:
            again.stop()
    assert msg.header("Subject") == "three"
    quarantined = sorted(os.listdir(os.path.join(root, "quarantine")))
    assert quarantined == sorted([ids[0], ids[0] + ".json", ids[0] + ".reason",
                                  ids[1], ids[1] + ".json", ids[1] + ".reason"])
    assert logs.matching(f"queue entry {ids[0]} is damaged (not complete JSON")
    assert logs.matching(f"queue entry {ids[1]} is damaged (its message file has 10 bytes")
