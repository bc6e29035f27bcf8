"""What every listener's factory shares: its open sessions, a gate per client address,
and a graceful stop.

``ClientGate`` is one for the whole server, so SMTP, IMAP and HTTP count a client's
connections together: at most ``limits.connections_per_address`` open at once and
``limits.connections_per_minute`` new ones a minute, addresses in
``limits.exempt_networks`` aside.  A refused connection is told so in its protocol's
words and closed; nothing of it reaches a session.

``Listener`` is mixed into each factory (SMTP, IMAP, the HTTP Site): ``buildProtocol``
asks the gate, sessions add themselves with ``session_opened`` and leave with
``session_closed`` (which gives the gate its slot back), and ``shut_down`` closes idle
sessions at once, lets busy ones finish, and aborts what is left after the grace period.
"""

import functools
import ipaddress

from twisted.internet import defer, protocol
from twisted.logger import Logger

log = Logger(namespace="rmail.limits")

SHUTDOWN_GRACE = 30.0  # seconds sessions in flight get to finish at shutdown
WINDOW = 60.0  # seconds over which limits.connections_per_minute counts


class ClientGate:
    """Connections per client address, counted across every listener."""

    def __init__(self, limits, clock):
        self.limits = limits  # () -> the config's limits section in force
        self.clock = clock
        self._open = {}  # host -> connections open now
        self._recent = {}  # host -> (window start, connections in it)
        self._logged = {}  # host -> window start of its last refusal log line
        self._exempt_key = None
        self._exempt = ()

    def admit(self, host: str):
        """None when *host* may connect now (it then holds a slot), else why not."""
        if self._is_exempt(host):
            return None
        limits = self.limits()
        if self._open.get(host, 0) >= limits.connections_per_address:
            return self._refuse(host, f"{limits.connections_per_address} connections open")
        now = self.clock.seconds()
        start, count = self._recent.get(host, (now, 0))
        if now - start >= WINDOW:
            start, count = now, 0
            if len(self._recent) > 10000:
                self._forget(now)
        if count >= limits.connections_per_minute:
            return self._refuse(host, f"{limits.connections_per_minute} connections a minute")
        self._recent[host] = (start, count + 1)
        self._open[host] = self._open.get(host, 0) + 1
        return None

    def release(self, host: str) -> None:
        n = self._open.get(host, 0) - 1
        if n > 0:
            self._open[host] = n
        else:
            self._open.pop(host, None)

    def _is_exempt(self, host: str) -> bool:
        networks = self.limits().exempt_networks
        if networks is not self._exempt_key:  # parsed again after a reload only
            self._exempt_key = networks
            self._exempt = tuple(ipaddress.ip_network(n, strict=False) for n in networks)
            _in_networks.cache_clear()
        return _in_networks(host, self._exempt)

    def _refuse(self, host, why):
        now = self.clock.seconds()
        if now - self._logged.get(host, -WINDOW) >= WINDOW:
            self._logged[host] = now
            log.warn("limits: refusing connections from {host}: {why} (logged once a minute)",
                     host=host, why=why)
        return why

    def _forget(self, now):
        for table in (self._recent, self._logged):
            for host in [h for h, v in table.items()
                         if now - (v[0] if isinstance(v, tuple) else v) >= WINDOW]:
                del table[host]


@functools.lru_cache(maxsize=4096)
def _in_networks(host, networks) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in n for n in networks)


class Refusal(protocol.Protocol):
    """Says *message* to a connection the gate turned away, and closes it."""

    def __init__(self, message: bytes):
        self.message = message

    def connectionMade(self):
        self.transport.write(self.message)
        self.transport.loseConnection()


class Listener:
    """Mixed into a listener's factory; call ``init_listener`` from its __init__."""

    shutdown_grace = SHUTDOWN_GRACE  # seconds its sessions get to finish at shutdown

    def refusal(self, why: str) -> bytes:
        """What a client over its limit is told, in the protocol's words."""
        raise NotImplementedError

    def init_listener(self, gate, clock):
        self.gate = gate
        self.clock = clock
        self.sessions = set()
        self._drained = []

    def buildProtocol(self, addr):
        host = getattr(addr, "host", None)
        if self.gate is not None and host is not None:
            why = self.gate.admit(host)
            if why is not None:
                return Refusal(self.refusal(why))
        session = self.new_session(addr)
        session.admitted_host = host if self.gate is not None else None
        return session

    def new_session(self, addr):
        """The protocol for an admitted connection."""
        return super().buildProtocol(addr)

    def session_opened(self, session):
        self.sessions.add(session)
        # A reply often leaves in more than one send (IMAP untagged updates, then the
        # tagged line once the store answers); with Nagle's algorithm the second waits
        # for the client's delayed ACK, up to 40 ms a command.  Replies are whole lines,
        # so sending each at once costs no extra packets worth keeping.
        set_no_delay = getattr(session.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)

    def session_closed(self, session):
        self.sessions.discard(session)
        host = getattr(session, "admitted_host", None)
        if host is not None:
            session.admitted_host = None  # its slot is given back once
            self.gate.release(host)
        if not self.sessions:
            waiters, self._drained = self._drained, []
            for d in waiters:
                d.callback(None)

    def shut_down(self):
        """Deferred firing when every session has closed (forced after the grace period).

        Each session's own ``shut_down`` closes it now when idle, else after what is in
        flight; ``abortConnection`` ends whatever still runs after ``shutdown_grace``."""
        if not self.sessions:
            return defer.succeed(None)
        d = defer.Deferred()
        self._drained.append(d)
        for session in list(self.sessions):
            session.shut_down()

        def force():
            for session in list(self.sessions):
                session.transport.abortConnection()
        call = self.clock.callLater(self.shutdown_grace, force)
        return d.addBoth(lambda r: (call.active() and call.cancel(), r)[1])
