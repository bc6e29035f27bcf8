"""The relay's peers for tests, all on 127.0.0.0/8: a DNS server and SMTP receivers.

- ``DNSServer``: Twisted's own authoritative server (``twisted.names``) for the zone
  ``test``, on a free UDP port of 127.0.0.1; records can be changed while it runs.
- ``Receiver``: an SMTP server written for tests, so each fault can be staged exactly:
  a greeting of 421, STARTTLS that works or breaks mid-handshake, a refused recipient,
  4xx or 5xx after DATA, a connection dropped in the middle of DATA, or no answer to the
  final dot at all.  It records every message it accepted, with the TLS state.
- ``common_port``: one port number free on several loopback addresses (the relay
  connects to every MX on ``relay.port``).

Everything runs on the test reactor thread (``in_reactor``); tests read the recorded
state from their own thread through ``wait_until``.
"""

import json
import os
import socket
import time

from twisted.internet import defer, protocol, reactor
from twisted.logger import globalLogPublisher
from twisted.names import authority, dns, server
from twisted.protocols.basic import LineReceiver

from tests import harness
from tests.conftest import in_reactor

TIMEOUT = harness.TIMEOUT


def wait_until(predicate, what="condition", timeout=TIMEOUT):
    """Poll *predicate* (from the test thread) until it is true; bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# -- DNS ------------------------------------------------------------------------------------

class _Zone(authority.FileAuthority):
    def __init__(self):
        super().__init__(None)

    def loadFile(self, filename):
        self.soa = (b"test", dns.Record_SOA(mname=b"ns.test", rname=b"root.test", serial=1,
                                            refresh=1, retry=1, expire=1, minimum=1, ttl=1))
        self.records = {b"test": [self.soa[1]]}


class DNSServer:
    """An authoritative DNS server for ``*.test`` on a free UDP port of 127.0.0.1 (its
    answers are small: no client needs TCP)."""

    def __init__(self):
        self.zone = _Zone()
        self.udp = None

    def start(self):
        def listen():
            factory = server.DNSServerFactory(authorities=[self.zone])
            factory.noisy = False
            self.udp = reactor.listenUDP(0, dns.DNSDatagramProtocol(factory),
                                         interface="127.0.0.1")
        in_reactor(listen)
        self.address = f"127.0.0.1:{self.udp.getHost().port}"
        return self

    def stop(self):
        in_reactor(lambda: defer.maybeDeferred(self.udp.stopListening))

    def set(self, name: str, *records):
        """Replace every record of *name* (A as "127.0.0.2", MX as (10, "mx.x.test"))."""
        out = []
        for r in records:
            if isinstance(r, tuple):
                out.append(dns.Record_MX(r[0], r[1].encode(), ttl=0))
            elif isinstance(r, str):
                out.append(dns.Record_A(r, ttl=0))
            else:
                out.append(r)
        self.zone.records[name.lower().encode()] = out

    def null_mx(self, name):
        self.zone.records[name.lower().encode()] = [dns.Record_MX(0, b"", ttl=0)]


class SilentDNS:
    """A UDP port that reads DNS questions and never answers."""

    def start(self):
        class Sink(protocol.DatagramProtocol):
            def __init__(self):
                self.questions = 0

            def datagramReceived(self, data, addr):
                self.questions += 1

        self.sink = Sink()
        self.port = in_reactor(reactor.listenUDP, 0, self.sink, interface="127.0.0.1")
        self.address = f"127.0.0.1:{self.port.getHost().port}"
        return self

    def stop(self):
        in_reactor(self.port.stopListening)


# -- SMTP receivers ----------------------------------------------------------------------

def common_port(addresses) -> int:
    """A TCP port free on every one of *addresses* right now."""
    for _ in range(50):
        probe = socket.socket()
        probe.bind((addresses[0], 0))
        port = probe.getsockname()[1]
        others = []
        try:
            for address in addresses[1:]:
                s = socket.socket()
                others.append(s)
                s.bind((address, port))
            return port
        except OSError:
            continue
        finally:
            probe.close()
            for s in others:
                s.close()
    raise AssertionError("no port free on all of " + ", ".join(addresses))


def _tls_options():
    from rmail.tls import ServerTLS  # the server's own context: TLS 1.2 or newer
    return ServerTLS(*harness.shared_certificate())


class Message:
    def __init__(self, sender, recipients, data, tls, helo):
        self.sender = sender
        self.recipients = recipients
        self.data = data
        self.tls = tls
        self.helo = helo

    def header(self, name: str):
        """The first header field called *name*, unfolded; None when there is none."""
        block = self.data.split(b"\r\n\r\n")[0].replace(b"\r\n\t", b" ")
        for line in block.replace(b"\r\n ", b" ").split(b"\r\n"):
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower().encode():
                return value.strip().decode("utf-8", "replace")
        return None


class _Session(LineReceiver):
    delimiter = b"\r\n"
    MAX_LENGTH = 1 << 20

    def connectionMade(self):
        r = self.receiver = self.factory.receiver
        r.connections += 1
        r.sessions.add(self)
        self.tls = False
        self.helo = None
        self._reset()
        greeting = r.greetings.pop(0) if r.greetings else f"220 {r.name} ESMTP test"
        self.say(greeting)
        if not greeting.startswith("2"):
            self.transport.loseConnection()

    def connectionLost(self, reason):
        self.receiver.sessions.discard(self)

    def _reset(self):
        self.sender = None
        self.recipients = []
        self.data = None

    def say(self, line):
        self.receiver.transcript.append(("S", line))
        self.sendLine(line.encode())

    def lineReceived(self, line):
        r = self.receiver
        if self.data is not None:
            return self._data_line(line)
        text = line.decode("utf-8", "replace")
        r.transcript.append(("C", text))
        verb = text.split(" ", 1)[0].upper()
        arg = text[len(verb):].strip()
        if verb in ("EHLO", "HELO"):
            self.helo = arg
            self._reset()
            if verb == "HELO":
                return self.say(f"250 {r.name}")
            lines = [r.name, "PIPELINING", "8BITMIME", "SIZE 10000000"]
            if r.tls and not self.tls:
                lines.append("STARTTLS")
            lines.append("ENHANCEDSTATUSCODES")
            for i, item in enumerate(lines):
                self.say(f"250{'-' if i < len(lines) - 1 else ' '}{item}")
        elif verb == "STARTTLS":
            if not r.tls or self.tls:
                return self.say("454 4.7.0 TLS not available")
            self.say("220 2.0.0 Ready to start TLS")
            if r.tls == "broken":
                r.broken_handshakes += 1
                self.setRawMode()  # read the ClientHello, then fail the handshake
                return
            self.transport.startTLS(r.tls_options)
            self.tls = True
            self.helo = None
            self._reset()
        elif verb == "MAIL":
            self.sender = arg.partition(":")[2].split(">")[0].lstrip("<")
            self.say("250 2.1.0 OK")
        elif verb == "RCPT":
            address = arg.partition(":")[2].split(">")[0].lstrip("<")
            reply = r.rcpt.get(address.lower(), "250 2.1.5 OK")
            if reply.startswith("2"):
                self.recipients.append(address)
            self.say(reply)
        elif verb == "DATA":
            if not self.recipients:
                return self.say("554 5.5.1 No valid recipients")
            self.data = []
            self.say("354 Go ahead")
        elif verb == "RSET":
            self._reset()
            self.say("250 2.0.0 OK")
        elif verb == "NOOP":
            self.say("250 2.0.0 OK")
        elif verb == "QUIT":
            self.say("221 2.0.0 Bye")
            self.transport.loseConnection()
        else:
            self.say("502 5.5.1 Not implemented")

    def rawDataReceived(self, data):
        # A ClientHello arrived: answer with something that is not TLS and hang up.
        self.transport.write(b"\x15\x03\x01\x00\x02\x02\x28")  # a bare fatal alert
        self.transport.loseConnection()

    def _data_line(self, line):
        r = self.receiver
        if line != b".":
            self.data.append(line[1:] if line.startswith(b".") else line)
            if r.drop_in_data and len(self.data) >= 2:
                r.drop_in_data -= 1
                r.dropped += 1
                self.transport.abortConnection()
            return
        if r.hold:
            r.held.append(self)
            return
        self.hold_answer(r.data_replies.pop(0) if r.data_replies else "250 2.0.0 OK queued")

    def hold_answer(self, reply):
        """Answer the final dot: record the message if *reply* accepts it."""
        if self.data is None:
            return
        data = b"\r\n".join(self.data) + b"\r\n"
        if reply.startswith("2"):
            self.receiver.messages.append(Message(self.sender, list(self.recipients), data,
                                                  self.tls, self.helo))
        self.say(reply)
        self._reset()


class Receiver:
    """A test SMTP server on *address*:*port*; attributes below stage its behaviour."""

    def __init__(self, address="127.0.0.2", port=0, name=None, tls=True):
        self.address = address
        self.port = port
        self.name = name or f"receiver-{address}"
        self.tls = tls  # True: offer STARTTLS; "broken": offer it, fail the handshake
        self.tls_options = _tls_options()
        self.greetings = []  # replace the greeting of the next connections ("421 ...")
        self.rcpt = {}  # recipient (lowercase) -> its RCPT reply
        self.data_replies = []  # replies to the next final dots ("451 ...", "550 ...")
        self.drop_in_data = 0  # drop the next N connections in the middle of DATA
        self.hold = False  # never answer the final dot
        self.messages = []
        self.transcript = []
        self.connections = 0
        self.dropped = 0
        self.broken_handshakes = 0
        self.held = []
        self.sessions = set()
        self.listening = None

    def start(self):
        factory = protocol.ServerFactory.forProtocol(_Session)
        factory.receiver = self
        factory.noisy = False
        self.listening = in_reactor(reactor.listenTCP, self.port, factory,
                                    interface=self.address)
        self.port = self.listening.getHost().port
        return self

    def stop(self):
        def stop():
            for s in list(self.sessions):
                s.transport.abortConnection()
            return self.listening.stopListening()
        if self.listening is not None:
            in_reactor(stop)
            self.listening = None

    def release(self, reply="250 2.0.0 OK queued"):
        """Answer the final dots held so far (``hold``) with *reply*."""
        def answer():
            held, self.held = self.held, []
            for session in held:
                session.hold_answer(reply)
        in_reactor(answer)

    def wait_for_messages(self, n, timeout=TIMEOUT):
        return wait_until(lambda: len(self.messages) >= n and self.messages,
                          f"{n} messages at {self.address}:{self.port}", timeout)


class LogCapture:
    """The text of rmail's log events, as they happen, for assertions on log lines."""

    def __init__(self, namespace_prefix="rmail"):
        self.prefix = namespace_prefix
        self.lines = []

    def __enter__(self):
        globalLogPublisher.addObserver(self._observe)
        return self

    def __exit__(self, *exc):
        globalLogPublisher.removeObserver(self._observe)

    def _observe(self, event):
        if event.get("log_namespace", "").startswith(self.prefix):
            from twisted.logger import formatEvent
            self.lines.append(formatEvent(event))

    def matching(self, *needles):
        return [line for line in list(self.lines) if all(n in line for n in needles)]

    def wait_for(self, *needles, timeout=TIMEOUT):
        return wait_until(lambda: self.matching(*needles), f"a log line with {needles}",
                          timeout)


# -- a small internet, and an rmail that relays into it ------------------------------------

LOOPBACKS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]


class Network:
    """A DNS server and receivers on one port: 127.0.0.2 offers STARTTLS, 127.0.0.3 does
    not, nothing listens on 127.0.0.4 (connection refused), 127.0.0.5 is left for a
    second rmail.  ``ext.test`` has its MX on .2 and ``clear.test`` on .3."""

    def start(self):
        self.dns = DNSServer().start()
        self.port = common_port(LOOPBACKS)
        self.tls = Receiver("127.0.0.2", self.port, "mx-tls.ext.test", tls=True).start()
        self.clear = Receiver("127.0.0.3", self.port, "mx-clear.ext.test", tls=False).start()
        self.dns.set("mx-tls.ext.test", "127.0.0.2")
        self.dns.set("mx-clear.ext.test", "127.0.0.3")
        self.dns.set("mx-closed.ext.test", "127.0.0.4")
        self.dns.set("ext.test", (10, "mx-tls.ext.test"))
        self.dns.set("clear.test", (10, "mx-clear.ext.test"))
        return self

    def stop(self):
        self.tls.stop()
        self.clear.stop()
        self.dns.stop()


def relay_overrides(net, **overrides):
    return {"relay__dns_servers": [net.dns.address], "relay__port": net.port,
            "relay__retry_intervals": [1], **overrides}


def relay_server(tmp_path, net, **overrides):
    """A started in-process rmail whose relay asks *net*'s DNS and retries after 1 s."""
    srv = harness.Server(tmp_path, in_reactor, **relay_overrides(net, **overrides))
    srv.start()
    return srv


def submit(port, recipients, body=None, sender="alice@example.com", subject="External"):
    """The seed's example: log in on submission (STARTTLS) and send; smtplib's result."""
    import smtplib
    if body is None:
        body = (f"From: {sender}\r\nTo: {', '.join(recipients)}\r\nSubject: {subject}\r\n"
                f"\r\nBody\r\n").encode()
    s = smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT)
    try:
        s.starttls(context=harness.client_tls())
        s.login(sender, harness.USERS[sender])
        refused = s.sendmail(sender, recipients, body)
        s.quit()
    finally:
        s.close()
    return refused


def queue_dir(config_path) -> str:
    from rmail import config as rconfig
    return os.path.join(rconfig.load(str(config_path)).mail_root_path, "queue")


def queued(config_path) -> list:
    """The queue entries on disk (as JSON dicts), oldest first."""
    entries = os.path.join(queue_dir(config_path), "entries")
    out = []
    for name in sorted(os.listdir(entries)) if os.path.isdir(entries) else []:
        if name.endswith(".json") and not name.startswith("."):
            try:
                with open(os.path.join(entries, name)) as f:
                    out.append(json.load(f))
            except (FileNotFoundError, ValueError):
                continue
    return out


def wait_queue_empty(config_path, timeout=TIMEOUT):
    wait_until(lambda: not queued(config_path), "an empty queue", timeout)
