"""``host:port`` strings of the relay's config (``relay.smarthost``, ``relay.dns_servers``).

Kept apart from ``routes`` (which needs the reactor) so that config loading can check
them with the same code that later uses them.
"""

import ipaddress


def parse_hostport(value: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port``, ``v6`` -> (host, port); ValueError if not."""
    value = value.strip()
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(value)
        port = rest[1:] or str(default_port)
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, str(default_port)
    if not host or any(c.isspace() for c in host) or not port.isdigit() \
            or not 0 < int(port) < 65536:
        raise ValueError(value)
    return host, int(port)


def parse_dns_servers(values) -> list[tuple[str, int]]:
    """``relay.dns_servers`` as (ip, port) pairs; ValueError naming a bad one."""
    servers = []
    for value in values:
        try:
            host, port = parse_hostport(value, 53)
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(value)
        servers.append((host, port))
    return servers
