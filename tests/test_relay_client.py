"""The SMTP client's RFC 5321 section 4.5.3.2 timeouts, over real loopback connections,
with time itself on a ``task.Clock`` so that minutes pass at once."""

import pytest
from twisted.internet import protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from rmail.relay import client
from tests.conftest import in_reactor
from tests.relay_peers import Receiver, wait_until


class Silent(protocol.Protocol):
    """Accepts the connection and never says a word."""


@pytest.fixture
def silent():
    port = in_reactor(reactor.listenTCP, 0, protocol.ServerFactory.forProtocol(Silent),
                      interface="127.0.0.2")
    yield port.getHost().port
    in_reactor(port.stopListening)


def start_session(tmp_path, port, clock):
    path = tmp_path / "message"
    path.write_bytes(b"Subject: t\r\n\r\nbody\r\n")
    job = client.Job("0123456789abcdef", "alice@example.com", ["x@ext.test"], str(path),
                     path.stat().st_size, "mail.example.com")
    session = client.RelayClient(job, "mx.ext.test", f"mx.ext.test[127.0.0.2]:{port}", True,
                                 clock)
    results = []

    def connect():
        d = connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.2", port), session)
        session.done.addCallback(results.append)
        return d  # fires once connected
    in_reactor(connect)
    return session, results


def test_no_greeting_times_out_after_five_minutes_and_tries_the_next_host(tmp_path, silent):
    clock = task.Clock()
    session, results = start_session(tmp_path, silent, clock)
    in_reactor(clock.advance, client.GREETING_TIMEOUT - 1)
    assert results == []
    in_reactor(clock.advance, 1)
    (result,) = wait_until(lambda: results, "the session's end")
    assert str(result.failure).startswith("421 4.4.2 Timed out waiting for the reply to "
                                          "the greeting from mx.ext.test[127.0.0.2]")
    assert result.next_host


def test_no_answer_to_the_final_dot_times_out_after_ten_minutes(tmp_path):
    receiver = Receiver("127.0.0.2", 0, "mx.ext.test", tls=False).start()
    receiver.hold = True
    try:
        clock = task.Clock()
        session, results = start_session(tmp_path, receiver.port, clock)
        wait_until(lambda: receiver.held, "the final dot at the receiver")
        in_reactor(clock.advance, client.DATA_END_TIMEOUT - 1)
        assert results == []
        in_reactor(clock.advance, 1)
        (result,) = wait_until(lambda: results, "the session's end")
    finally:
        receiver.stop()
    reply = result.reply_for("x@ext.test")
    assert str(reply).startswith("421 4.4.2 Timed out waiting for the reply to the end of data")
    assert not result.next_host  # the message may have arrived: no other host this time
    assert receiver.messages == []
