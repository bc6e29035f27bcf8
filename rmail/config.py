"""config.json: the one typed schema of every key and default.

The dataclasses below are the only home of rmail's configuration keys and their
defaults; docs/configuration.md describes them for people.  Loading walks the JSON
against the schema so that an unknown key or a wrong type is refused with its dotted
path (``listen.smpt``) and what was expected, before anything starts.

Relative paths in the file (``mail_root``, ``tls.cert``, ``tls.key``) are relative to
the directory holding the config file.
"""

import dataclasses
import ipaddress
import json
import os
import socket
import types
import typing
from dataclasses import dataclass, field
from typing import Optional, Union


class ConfigError(Exception):
    """A config file that cannot be used; the message is one sentence for people."""


@dataclass(frozen=True)
class Listen:
    address: str = "0.0.0.0"
    smtp: Optional[int] = 25
    submission: Optional[int] = 587
    submissions: Optional[int] = 465
    imap: Optional[int] = 143
    imaps: Optional[int] = 993
    http: Optional[int] = 9002


@dataclass(frozen=True)
class TLS:
    cert: Optional[str] = None  # None: {mail_root}/tls/cert.pem
    key: Optional[str] = None  # None: {mail_root}/tls/key.pem
    min_version: str = "1.2"


TLS_VERSIONS = ("1.2", "1.3")


@dataclass(frozen=True)
class SMTP:
    max_message_size: int = 52428800
    max_recipients: int = 100
    # RFC 5321's 512 octets plus room for MAIL/RCPT extension parameters (AUTH lines
    # may always carry RFC 4954's 12288).
    max_command_line: int = 2048
    max_errors: int = 20  # error replies before the client is disconnected
    idle_timeout: int = 300  # RFC 5321 4.5.3.2.7: at least 5 minutes


@dataclass(frozen=True)
class Relay:
    enabled: bool = True
    smarthost: Optional[str] = None
    dns_servers: Optional[list[str]] = None
    port: int = 25
    retry_intervals: list[int] = field(default_factory=lambda: [60, 300, 900, 3600, 14400])
    max_queue_time: int = 432000


@dataclass(frozen=True)
class IMAP:
    allow_plaintext_auth: bool = True
    idle_timeout: int = 1800  # after login (RFC 3501 5.4: at least 30 minutes)
    login_timeout: int = 60  # before login
    max_command_line: int = 65536
    max_literal: int = 102400  # APPEND literals may be up to smtp.max_message_size


@dataclass(frozen=True)
class Limits:
    """Per client address, shared by every listener."""
    connections_per_address: int = 30  # open at once
    connections_per_minute: int = 300
    # Addresses the two connection limits leave alone (as Postfix exempts mynetworks).
    exempt_networks: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    login_failures: int = 10  # failed logins in a minute before the address is locked out
    login_lockout: int = 60  # seconds


@dataclass(frozen=True)
class HTTP:
    jwt_secret: str = ""  # written at random by `init`
    token_ttl: int = 86400
    cors_origins: list[str] = field(default_factory=lambda: ["*"])


@dataclass(frozen=True)
class Storage:
    backend: str = "shard"
    threads: int = 2  # for disk and SQLite work (read at start)


STORAGE_BACKENDS = ("shard",)

# The unprivileged loopback ports that `init --dev` writes.
DEV_LISTEN = Listen(
    address="127.0.0.1", smtp=2525, submission=2587, submissions=2465,
    imap=1143, imaps=1993, http=9002,
)


@dataclass(frozen=True)
class Config:
    hostname: str = field(default_factory=socket.getfqdn)
    domains: list[str] = field(default_factory=lambda: ["example.com"])
    mail_root: str = "data"
    listen: Listen = field(default_factory=Listen)
    tls: TLS = field(default_factory=TLS)
    smtp: SMTP = field(default_factory=SMTP)
    relay: Relay = field(default_factory=Relay)
    imap: IMAP = field(default_factory=IMAP)
    http: HTTP = field(default_factory=HTTP)
    limits: Limits = field(default_factory=Limits)
    storage: Storage = field(default_factory=Storage)
    # Where the file was read from; not a key of the file.
    path: str = field(default="config.json", compare=False, metadata={"internal": True})

    @property
    def base_dir(self) -> str:
        return os.path.dirname(os.path.abspath(self.path))

    def resolve(self, path: str) -> str:
        """A path from the file, made absolute against the config file's directory."""
        return os.path.normpath(os.path.join(self.base_dir, os.path.expanduser(path)))

    @property
    def mail_root_path(self) -> str:
        return self.resolve(self.mail_root)

    @property
    def tls_cert_path(self) -> str:
        if self.tls.cert is not None:
            return self.resolve(self.tls.cert)
        return os.path.join(self.mail_root_path, "tls", "cert.pem")

    @property
    def tls_key_path(self) -> str:
        if self.tls.key is not None:
            return self.resolve(self.tls.key)
        return os.path.join(self.mail_root_path, "tls", "key.pem")

    def is_local_domain(self, domain: str) -> bool:
        return domain.lower() in self.local_domains

    @property
    def local_domains(self) -> frozenset:
        return frozenset(d.lower() for d in self.domains)

    def listeners(self) -> dict:
        """The configured ports by key (``smtp``, ``imaps`` ...), leaving out disabled ones."""
        return {
            f.name: getattr(self.listen, f.name)
            for f in dataclasses.fields(Listen)
            if f.name != "address" and getattr(self.listen, f.name) is not None
        }

    def to_dict(self) -> dict:
        """The file's content for these settings (the internal ``path`` left out)."""
        data = dataclasses.asdict(self)
        data.pop("path")
        return data


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        names = [_type_name(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(names) + " or null"
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}s"
    return {str: "a string", int: "an integer", bool: "true or false"}.get(tp, tp.__name__)


def _convert(value, tp, where: str):
    """Check *value* against the annotation *tp*; return it, built into dataclasses."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        try:
            return _convert(value, inner, where)
        except ConfigError:
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {json.dumps(value)}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {json.dumps(value)}")
        (inner,) = typing.get_args(tp)
        return [_convert(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    ok = (
        isinstance(value, bool) if tp is bool
        else isinstance(value, int) and not isinstance(value, bool) if tp is int
        else isinstance(value, tp)
    )
    if not ok:
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {json.dumps(value)}")
    return value


def _build(cls, data, where: str = ""):
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected an object, got {json.dumps(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{path}: unknown key (known keys here: {known})")
        kwargs[key] = _convert(value, hints[key], path)
    return cls(**kwargs)


def _check(config: Config) -> None:
    """Rules beyond types: values a server could not run with."""
    if not config.hostname or any(c.isspace() for c in config.hostname):
        raise ConfigError("hostname: expected a host name such as mail.example.com")
    if not config.domains:
        raise ConfigError("domains: expected at least one local domain")
    for i, domain in enumerate(config.domains):
        if not domain or "@" in domain or "/" in domain or any(c.isspace() for c in domain):
            raise ConfigError(f"domains[{i}]: {json.dumps(domain)} is not a domain name")
    for key, port in config.listeners().items():
        if not 0 <= port <= 65535:
            raise ConfigError(f"listen.{key}: expected a port number 0-65535 or null, got {port}")
    if config.storage.backend not in STORAGE_BACKENDS:
        raise ConfigError(
            f"storage.backend: expected one of {', '.join(STORAGE_BACKENDS)}, "
            f"got {json.dumps(config.storage.backend)}")
    for section, keys in (("smtp", ("max_message_size", "max_recipients", "max_errors",
                                    "idle_timeout")),
                          ("imap", ("idle_timeout", "login_timeout")),
                          ("limits", ("connections_per_address", "connections_per_minute",
                                      "login_failures", "login_lockout")),
                          ("storage", ("threads",))):
        for key in keys:
            if getattr(getattr(config, section), key) < 1:
                raise ConfigError(f"{section}.{key}: expected a positive integer")
    for section, key, least in (("smtp", "max_command_line", 512),
                                ("imap", "max_command_line", 1024),
                                ("imap", "max_literal", 1024)):
        if getattr(getattr(config, section), key) < least:
            raise ConfigError(f"{section}.{key}: expected at least {least} octets")
    for i, network in enumerate(config.limits.exempt_networks):
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(f"limits.exempt_networks[{i}]: expected an address or network "
                              f"such as 127.0.0.0/8, got {json.dumps(network)}")
    if config.tls.min_version not in TLS_VERSIONS:
        raise ConfigError(f"tls.min_version: expected one of {', '.join(TLS_VERSIONS)}, "
                          f"got {json.dumps(config.tls.min_version)}")
    if config.http.token_ttl < 1:
        raise ConfigError("http.token_ttl: expected a positive number of seconds")
    _check_relay(config.relay)


def _check_relay(relay: Relay) -> None:
    from rmail.relay.hostports import parse_dns_servers, parse_hostport
    if relay.smarthost is not None:
        try:
            parse_hostport(relay.smarthost, 25)
        except ValueError:
            raise ConfigError(f"relay.smarthost: expected \"host:port\" (or null), "
                              f"got {json.dumps(relay.smarthost)}")
    for i, server in enumerate(relay.dns_servers or ()):
        try:
            parse_dns_servers([server])
        except ValueError:
            raise ConfigError(f"relay.dns_servers[{i}]: expected an IP address with an "
                              f"optional :port, got {json.dumps(server)}")
    if not 0 < relay.port < 65536:
        raise ConfigError(f"relay.port: expected a port number 1-65535, got {relay.port}")
    if not relay.retry_intervals or any(s < 1 for s in relay.retry_intervals):
        raise ConfigError("relay.retry_intervals: expected a non-empty list of positive "
                          "numbers of seconds")
    if relay.max_queue_time < 1:
        raise ConfigError("relay.max_queue_time: expected a positive number of seconds")


def parse(data, path: str = "config.json") -> Config:
    """Build a Config from already-decoded JSON, refusing anything the schema does not allow."""
    config = _build(Config, data)
    config = dataclasses.replace(config, path=os.path.abspath(path))
    _check(config)
    return config


def load(path: str) -> Config:
    """Read and check a config file; raise ConfigError with a one-line reason."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; create one with `python run.py init`")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start} cannot be read)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})")
    except RecursionError:
        raise ConfigError(f"{path}: not usable JSON (lists or objects nested too deeply)")
    except ValueError:  # a number of over 4300 digits: int()'s limit for text
        raise ConfigError(f"{path}: not usable JSON (a number too long to read)")
    return parse(data, path)
