"""The relay's pure parts: the DATA body encoder, queue entries, DSNs and config checks."""

import email
import email.policy
import json

import pytest

from rmail import config as rconfig
from rmail.relay import dsn
from rmail.relay.body import BodyEncoder
from rmail.relay.entry import DamagedEntry, QueueEntry
from rmail.relay.hostports import parse_dns_servers, parse_hostport
from rmail.relay.results import RemoteReply


def encode(data: bytes, chunk: int) -> bytes:
    encoder = BodyEncoder()
    out = b"".join(encoder.feed(data[i:i + chunk]) for i in range(0, len(data), chunk))
    return out + encoder.finish()


MESSAGE = (b"Return-Path: <alice@example.com>\r\n\tfolded on\r\nReceived: from x\r\n"
           b"Subject: s\r\n\r\n.leading dot\r\n.\r\nbare lf\nbare cr\rlast line")
EXPECTED = (b"Received: from x\r\nSubject: s\r\n\r\n..leading dot\r\n..\r\nbare lf\r\n"
            b"bare cr\r\nlast line\r\n.\r\n")


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 16, 33, 64, 1000])
def test_body_is_stuffed_and_crlf_whatever_the_chunking(chunk):
    """TWISTED.md 9: stuffing per chunk loses dots at chunk starts; this encoder does not."""
    assert encode(MESSAGE, chunk) == EXPECTED


def test_a_lone_dot_at_a_chunk_boundary_does_not_end_data():
    data = b"Subject: x\r\n\r\n" + b"a" * 16370 + b"\r\n.\r\nafter\r\n"
    out = encode(data, 16384)
    assert b"\r\n..\r\nafter\r\n.\r\n" in out and out.count(b"\r\n.\r\n") == 1


def test_without_return_path_nothing_is_dropped():
    assert encode(b"Subject: a\r\n\r\nb\r\n", 4) == b"Subject: a\r\n\r\nb\r\n.\r\n"
    assert encode(b"Ret", 1) == b"Ret\r\n.\r\n"
    assert encode(b"", 1) == b".\r\n"


def test_entry_round_trip_and_damage():
    entry = QueueEntry.new("0123456789abcdef", "a@example.com", ["x@y.test", "x@y.test",
                                                                  "z@y.test"], 42, now=1000.0)
    assert [r.address for r in entry.recipients] == ["x@y.test", "z@y.test"]
    raw = entry.to_json()
    assert QueueEntry.from_json(raw, entry.id) == entry
    with pytest.raises(DamagedEntry, match="not complete JSON"):
        QueueEntry.from_json(raw[:len(raw) // 2], entry.id)
    with pytest.raises(DamagedEntry, match="names queue ID"):
        QueueEntry.from_json(raw, "fedcba9876543210")
    data = json.loads(raw)
    data["recipients"][0]["status"] = "lost"
    with pytest.raises(DamagedEntry):
        QueueEntry.from_json(json.dumps(data).encode(), entry.id)


def test_reply_status_comes_from_the_enhanced_code_when_it_matches():
    assert RemoteReply(550, "5.1.1 no such user").status == "5.1.1"
    assert RemoteReply(550, "no such user").status == "5.0.0"
    assert RemoteReply(550, "4.1.1 mismatched class").status == "5.0.0"
    assert RemoteReply.parse("421 4.4.1 Cannot connect") == RemoteReply(421, "4.4.1 Cannot connect")


def test_dsn_is_a_multipart_report_with_the_original_header():
    entry = QueueEntry.new("0123456789abcdef", "alice@example.com", ["x@y.test"], 10, now=0)
    r = entry.recipients[0]
    r.last_reply, r.last_host, r.last_attempt = "550 5.1.1 nope", "mx.y.test[192.0.2.1]:25", 5
    raw = dsn.build("mail.example.com", entry, [r], b"Subject: hi\r\nFrom: alice\r\n\r\n", 10)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["To"] == "alice@example.com" and msg["Auto-Submitted"] == "auto-replied"
    kinds = [p.get_content_type() for p in msg.iter_parts()]
    assert kinds == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    per_message, per_recipient = msg.get_payload()[1].get_payload()
    assert per_message["Reporting-MTA"] == "dns; mail.example.com"
    assert per_recipient["Final-Recipient"] == "rfc822; x@y.test"
    assert per_recipient["Status"] == "5.1.1" and per_recipient["Action"] == "failed"
    assert per_recipient["Remote-MTA"] == "dns; mx.y.test"
    assert "Subject: hi" in msg.get_payload()[2].get_content()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


def test_hostports():
    assert parse_hostport("mx.example.net:2525", 25) == ("mx.example.net", 2525)
    assert parse_hostport("mx.example.net", 25) == ("mx.example.net", 25)
    assert parse_hostport("[::1]:53", 53) == ("::1", 53)
    assert parse_dns_servers(["127.0.0.1:5353", "::1", "192.0.2.1"]) == [
        ("127.0.0.1", 5353), ("::1", 53), ("192.0.2.1", 53)]
    for bad in ("host:", "host:99999", ":25", "a b:25"):
        with pytest.raises(ValueError):
            parse_hostport(bad, 25)
    with pytest.raises(ValueError):
        parse_dns_servers(["dns.example.net"])


@pytest.mark.parametrize("relay, key", [
    ({"smarthost": "mail.example.net:notaport"}, "relay.smarthost"),
    ({"dns_servers": ["resolver.example.net"]}, "relay.dns_servers[0]"),
    ({"port": 0}, "relay.port"),
    ({"retry_intervals": []}, "relay.retry_intervals"),
    ({"retry_intervals": [60, 0]}, "relay.retry_intervals"),
    ({"max_queue_time": 0}, "relay.max_queue_time"),
])
def test_bad_relay_settings_are_refused_naming_the_key(relay, key):
    with pytest.raises(rconfig.ConfigError) as e:
        rconfig.parse({"relay": relay})
    assert str(e.value).startswith(key)
