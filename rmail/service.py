"""One MultiService for the whole server, built from config.json.

``run.py`` and the twistd plugin both call ``build``.  The service binds every
configured listener in ``privilegedStartService`` (so a port that cannot be bound stops
the start with one line naming its config key), watches users.json/aliases.json for
changes, and handles the signals SPEC lists:

- SIGTERM/SIGINT (the reactor's own handlers stop the reactor, which stops this
  service): stop accepting, let SMTP transactions in flight finish (bounded), let
  the relay's attempts in flight finish (bounded), close the store, exit 0;
- SIGHUP: reload config.json, users, aliases and the certificate; a broken config is
  refused with a log line and the old one stays in force; connections stay open.
"""

import errno
import os
import signal
import threading

from twisted.application import service
from twisted.internet import defer, reactor, task, threads
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory

from rmail import config as rconfig, crashpoint
from rmail.auth import Authenticator
from rmail.delivery import MailPolicy
from rmail.directory import Directory, DirectoryError
from rmail.imap import fetch as fetching
from rmail.imap.factory import IMAPFactory
from rmail.listener import ClientGate
from rmail.relay.service import RelayService, RelayStartError
from rmail.smtp.factory import SMTPFactory
from rmail.smtp.server import MX, SUBMISSION
from rmail.store import open_store
from rmail.tls import ServerTLS, TLSError
from rmail.web import build_site

log = Logger(namespace="rmail.service")

# How often users.json / aliases.json are checked for changes (SPEC: seen within 1 s).
DIRECTORY_POLL = 0.5

# The listeners this build serves: config key -> (name for people, implicit TLS).
LISTENERS = {
    "smtp": ("SMTP", False),
    "submission": ("submission (STARTTLS)", False),
    "submissions": ("submission (TLS)", True),
    "imap": ("IMAP (STARTTLS)", False),
    "imaps": ("IMAP (TLS)", True),
    "http": ("HTTP", False),
}


class StartError(Exception):
    """The server cannot start; the message is one line for the operator."""


class Settings:
    """The config in force; replaced as a whole on SIGHUP."""

    def __init__(self, config):
        self.config = config


class RmailService(service.MultiService):
    def __init__(self, config, clock=reactor):
        super().__init__()
        self.settings = Settings(config)
        self.clock = clock
        self.directory = Directory(config.mail_root_path, config.domains)
        self.store = open_store(config, describe=fetching.describe)
        self.authenticator = Authenticator(self.directory, clock,
                                           lambda: self.settings.config.limits)
        self.relay = RelayService(self.settings, self.directory, self.store, clock)
        self.relay.setServiceParent(self)  # stopped after the listeners' sessions
        self.policy = MailPolicy(self.settings, self.directory, self.store, relay=self.relay)
        try:
            self.tls = ServerTLS(config.tls_cert_path, config.tls_key_path,
                                 config.tls.min_version)
        except TLSError as e:
            raise StartError(str(e))
        gate = ClientGate(lambda: self.settings.config.limits, clock)
        self.factories = {
            "smtp": SMTPFactory(MX, self.settings, self.policy, self.store,
                                self.authenticator, self.tls, gate=gate, clock=clock),
            "submission": SMTPFactory(SUBMISSION, self.settings, self.policy, self.store,
                                      self.authenticator, self.tls, gate=gate, clock=clock),
            "submissions": SMTPFactory(SUBMISSION, self.settings, self.policy, self.store,
                                       self.authenticator, self.tls, implicit_tls=True,
                                       gate=gate, clock=clock),
            "imap": IMAPFactory(self.settings, self.store, self.authenticator, self.tls,
                                gate=gate, clock=clock),
            "imaps": IMAPFactory(self.settings, self.store, self.authenticator, self.tls,
                                 implicit_tls=True, gate=gate, clock=clock),
            "http": build_site(self.settings, self.directory, self.store, self.authenticator,
                               self.policy, self.bound_ports, gate=gate, clock=clock),
        }
        self.ports = {}
        self._watcher = None
        self._previous_sighup = None

    @property
    def config(self):
        return self.settings.config

    def port(self, key: str) -> int:
        """The port a listener is bound to (useful when the config says 0)."""
        return self.ports[key].getHost().port

    def bound_ports(self) -> dict:
        """{listener key: port} of the listeners bound now (what autoconfig describes)."""
        return {key: self.port(key) for key in self.ports}

    # -- start -------------------------------------------------------------------------

    def _prepare(self):
        """Blocking start-up work, before any listener exists."""
        try:
            self.directory.refresh()
        except DirectoryError as e:
            raise StartError(str(e))
        os.umask(0o077)
        self.store._prepare()
        try:
            self.relay.prepare()
        except RelayStartError as e:
            raise StartError(str(e))

    def privilegedStartService(self):
        self._prepare()
        config = self.config
        for key, port in config.listeners().items():
            if key not in LISTENERS:
                continue
            factory = self.factories[key]
            if LISTENERS[key][1]:
                factory = TLSMemoryBIOFactory(self.tls, False, factory)
            try:
                self.ports[key] = reactor.listenTCP(port, factory, interface=config.listen.address)
            except CannotListenError as e:
                self._stop_listening()
                raise StartError(_bind_advice(key, config.listen.address, port, e))
        super().privilegedStartService()

    def startService(self):
        if not self.ports:
            self.privilegedStartService()
        super().startService()
        self._watcher = task.LoopingCall(self._refresh_directory)
        self._watcher.clock = self.clock
        self._watcher.start(DIRECTORY_POLL, now=False)
        if threading.current_thread() is threading.main_thread():
            self._previous_sighup = signal.signal(
                signal.SIGHUP, lambda *_: reactor.callFromThread(self.reload))
        log.info("rmail: serving {hostname}: {listeners}", hostname=self.config.hostname,
                 listeners=", ".join(self.describe_listeners()))

    def describe_listeners(self) -> list[str]:
        return [f"{LISTENERS[key][0]} {self.config.listen.address}:{self.port(key)}"
                for key in LISTENERS if key in self.ports]

    def _refresh_directory(self):
        d = threads.deferToThread(self.directory.refresh)

        def reloaded(paths):
            for path in paths:
                log.info("directory: reloaded {path}", path=path)

        def failed(f):
            f.trap(DirectoryError)
            log.error("directory: {error}; the previous contents stay in force", error=f.value)
        return d.addCallbacks(reloaded, failed)

    # -- SIGHUP ------------------------------------------------------------------------

    def reload(self):
        """Reload config, users, aliases and certificate; keep the old config if broken."""
        path = self.config.path
        try:
            new = rconfig.load(path)
            self.tls.reload(new.tls_cert_path, new.tls_key_path, new.tls.min_version)
        except (rconfig.ConfigError, TLSError) as e:
            log.error("reload: refused, the running configuration stays: {error}", error=e)
            return False
        if new.mail_root_path != self.config.mail_root_path:
            log.warn("reload: mail_root changes take effect after a restart")
            new = rconfig.parse({**new.to_dict(), "mail_root": self.config.mail_root}, path)
        if new.listen != self.config.listen:
            log.warn("reload: listen.* changes take effect after a restart")
        self.directory.domains = tuple(d.lower() for d in new.domains)
        self.settings.config = new
        self._refresh_directory()
        log.info("reload: configuration reloaded from {path}", path=path)
        return True

    # -- stop ----------------------------------------------------------------------------

    def _stop_listening(self):
        ports, self.ports = self.ports, {}
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports.values()])

    @defer.inlineCallbacks
    def stopService(self):
        if self._watcher is not None and self._watcher.running:
            self._watcher.stop()
        if self._previous_sighup is not None:
            signal.signal(signal.SIGHUP, self._previous_sighup)
            self._previous_sighup = None
        yield self._stop_listening()
        log.info("rmail: stopping: listeners closed; finishing {n} sessions in flight",
                 n=sum(len(f.sessions) for f in self.factories.values()))
        yield defer.gatherResults([defer.maybeDeferred(f.shut_down)
                                   for f in self.factories.values()])
        yield defer.maybeDeferred(super().stopService)
        yield self.store.close()
        log.info("rmail: stopped")


def _bind_advice(key, address, port, error) -> str:
    cause = getattr(error, "socketError", None)
    code = getattr(cause, "errno", None)
    where = f"cannot listen on {address}:{port} (listen.{key})"
    if code == errno.EACCES:
        return (f"{where}: permission denied; run as root or with CAP_NET_BIND_SERVICE "
                f"(`python run.py install`), or set listen.{key} to a port above 1023")
    if code == errno.EADDRINUSE:
        return (f"{where}: the port is in use by another program; stop it, "
                f"or set listen.{key} to a free port (or null to disable it)")
    if code == errno.EADDRNOTAVAIL:
        return f"{where}: no such address on this machine; fix listen.address"
    return f"{where}: {cause or error}; fix listen.{key} or listen.address"


def build(config_path: str, clock=reactor) -> RmailService:
    """The service for a config file; StartError/ConfigError with one line when it cannot be."""
    config = rconfig.load(config_path)
    try:
        crashpoint.arm(os.environ.get("RMAIL_CRASHPOINT"))
    except crashpoint.UnknownCrashPoint as e:
        raise StartError(str(e))
    if not config.http.jwt_secret:
        log.warn("http.jwt_secret is empty; run `python run.py init` to create a config with one")
    return RmailService(config, clock)
