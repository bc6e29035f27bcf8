"""Where a recipient domain's mail goes: the hosts to try, in order (RFC 5321 section 5.1).

- ``relay.smarthost`` set: that one host, for every domain;
- an address literal (``user@[192.0.2.1]``): that address;
- otherwise the domain's MX records, lowest preference first, equal preferences in
  random order, each host's A then AAAA addresses;
- no MX records: the domain itself, as an implicit MX of preference 0 (its A/AAAA);
- a null MX (a single ``MX 0 .``, RFC 7505), NXDOMAIN, or neither MX nor address:
  permanent failures (5yz, so the sender hears at once);
- a DNS server that fails or does not answer: temporary (4yz, retried later).

Lookups go through ``twisted.names`` on the reactor (never blocking it), to the
servers of ``relay.dns_servers`` or else those of the system's resolv.conf, which
dnspython reads.  Answers are kept for their TTL (at most ``MAX_CACHE_TTL``; empty
answers for the SOA's negative TTL, RFC 2308), so a busy queue does not ask the same
question for every message; failures are never kept.  Failures come back as
``RouteError`` carrying the reply to record.
"""

import ipaddress
import random
import socket
from dataclasses import dataclass

import dns.resolver
from twisted.internet import defer, reactor
from twisted.names import client, dns as tdns, error as dns_error
from twisted.python.failure import Failure

from rmail.relay import results
from rmail.relay.hostports import parse_dns_servers, parse_hostport

# Seconds before each re-send of an unanswered query (to each server in turn); their sum
# is how long a dead DNS server delays an attempt.
DNS_TIMEOUT = (1, 3, 5)
MAX_HOSTS = 10  # MX hosts tried per attempt
MAX_CACHE_TTL = 300  # seconds
MAX_CACHE_ENTRIES = 10000
SMTP_PORT = 25


class RouteError(Exception):
    def __init__(self, reply: results.RemoteReply):
        super().__init__(str(reply))
        self.reply = reply


@dataclass(frozen=True)
class Host:
    name: str  # the MX (or smarthost, or implicit MX) name, for logs and TLS SNI
    addresses: tuple
    port: int


def _system_dns_servers() -> list[tuple[str, int]]:
    try:
        resolver = dns.resolver.Resolver(configure=True)
    except dns.resolver.NoResolverConfiguration:
        return [("127.0.0.1", 53)]
    return [(str(ns), resolver.nameserver_ports.get(str(ns), resolver.port))
            for ns in resolver.nameservers]


def _ip(text: str):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _describe(failure) -> str:
    if failure.check(dns_error.DNSQueryTimeoutError, defer.TimeoutError):
        return "no answer from the DNS server"
    if failure.check(dns_error.DNSServerError):
        return "SERVFAIL"
    if failure.check(dns_error.DNSQueryRefusedError):
        return "REFUSED"
    return f"{type(failure.value).__name__}: {failure.value}"


def _ttl(answers, authority) -> int:
    """How long an answer may be kept: its smallest TTL, or for an empty answer the
    negative TTL of the SOA beside it (RFC 2308 section 5); 0 when neither is there."""
    if answers:
        return min(MAX_CACHE_TTL, min(rr.ttl for rr in answers))
    soas = [min(rr.ttl, rr.payload.minimum) for rr in authority if rr.type == tdns.SOA]
    return min([MAX_CACHE_TTL] + soas) if soas else 0


class Router:
    def __init__(self, dns_servers=None, clock=reactor):
        self.clock = clock
        self.servers = parse_dns_servers(dns_servers) if dns_servers else _system_dns_servers()
        self.resolver = client.Resolver(servers=self.servers, timeout=DNS_TIMEOUT,
                                        reactor=clock)
        self._cache = {}  # (query type, name) -> (expires, answers)

    def _lookup(self, kind: str, name: str):
        """Deferred answer records of one query, from the cache while they are fresh."""
        key = (kind, name.lower())
        now = self.clock.seconds()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return defer.succeed(cached[1])
        d = getattr(self.resolver, kind)(name)

        def keep(result):
            answers, authority, _ = result
            ttl = _ttl(answers, authority)
            if ttl > 0:
                if len(self._cache) >= MAX_CACHE_ENTRIES:
                    self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                    if len(self._cache) >= MAX_CACHE_ENTRIES:
                        self._cache.clear()
                self._cache[key] = (now + ttl, answers)
            return answers
        return d.addCallback(keep)

    @defer.inlineCallbacks
    def route(self, domain: str, port: int, smarthost=None):
        """Deferred list of Host to try in order; RouteError when there is none."""
        if smarthost:
            name, smart_port = parse_hostport(smarthost, SMTP_PORT)
            addresses, problem = yield self.addresses(name)
            if not addresses:
                raise RouteError(problem or results.MX_UNRESOLVED(domain=name))
            return [Host(name, addresses, smart_port)]
        if domain.startswith("[") and domain.endswith("]"):
            literal = domain[1:-1]
            literal = literal[5:] if literal.lower().startswith("ipv6:") else literal
            if _ip(literal) is None:
                raise RouteError(results.NO_SUCH_DOMAIN(domain=domain))
            return [Host(domain, (literal,), port)]
        try:
            answers = yield self._lookup("lookupMailExchange", domain)
        except dns_error.DNSNameError:
            raise RouteError(results.NO_SUCH_DOMAIN(domain=domain))
        except Exception:
            raise RouteError(results.DNS_FAILED(name=domain, reason=_describe(Failure())))
        exchanges = [(rr.payload.preference, _name(rr.payload.name)) for rr in answers
                     if rr.type == tdns.MX]
        if any(name == "" for _, name in exchanges):
            if len(exchanges) == 1:
                raise RouteError(results.NULL_MX(domain=domain))
            exchanges = [(p, n) for p, n in exchanges if n]  # a null MX among others: ignored
        if not exchanges:  # RFC 5321 5.1: the domain is its own (implicit) MX
            addresses, problem = yield self.addresses(domain)
            if addresses:
                return [Host(domain, addresses, port)]
            raise RouteError(problem or results.NO_MAIL_HOST(domain=domain))
        random.shuffle(exchanges)
        exchanges.sort(key=lambda e: e[0])  # stable: equal preferences stay shuffled
        names = list(dict.fromkeys(name for _, name in exchanges))[:MAX_HOSTS]
        found = yield defer.gatherResults([self.addresses(n) for n in names])
        hosts = [Host(n, addresses, port) for n, (addresses, _) in zip(names, found) if addresses]
        if not hosts:
            problems = [problem for _, problem in found if problem]
            raise RouteError(problems[0] if problems else results.MX_UNRESOLVED(domain=domain))
        return hosts

    @defer.inlineCallbacks
    def addresses(self, name: str):
        """Deferred (A then AAAA addresses, a RemoteReply if a lookup failed temporarily)."""
        if _ip(name) is not None:
            return (name,), None
        outcomes = yield defer.DeferredList(
            [self._lookup("lookupAddress", name), self._lookup("lookupIPV6Address", name)],
            consumeErrors=True)
        found, problem = [], None
        for ok, value in outcomes:
            if not ok:
                if not value.check(dns_error.DNSNameError):
                    problem = results.DNS_FAILED(name=name, reason=_describe(value))
                continue
            for rr in value:
                if rr.type == tdns.A:
                    found.append(rr.payload.dottedQuad())
                elif rr.type == tdns.AAAA:
                    found.append(socket.inet_ntop(socket.AF_INET6, rr.payload.address))
        return tuple(dict.fromkeys(found)), problem


def _name(name) -> str:
    return name.name.decode("ascii", "replace").rstrip(".").lower()
