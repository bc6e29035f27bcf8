"""Authentication for every protocol: one checker, one realm, one throttle.

``AddressPasswordChecker`` checks a full address and password against the directory;
argon2 runs in threads of its own (``PasswordHashing``), never on the reactor thread
and never in the pool the store works in, so a storm of bad logins slows neither
anyone's session nor the delivery of mail.
``MailRealm`` hands each protocol its avatar for the authenticated user.
``Authenticator`` is what the protocols call: it refuses addresses that failed too often
(more than ``limits.login_failures`` in a minute refuses that remote address for
``limits.login_lockout`` seconds, across SMTP, IMAP and HTTP alike), logs every attempt
with the remote address, and returns the avatar.
"""

import collections
import hashlib
import hmac
import os
import secrets

from twisted.cred import credentials, error, portal
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer, reactor, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import Interface, implementer

from rmail.config import Limits
from rmail.directory import Directory

FAILURE_WINDOW = 60.0  # seconds over which limits.login_failures are counted
REFUSAL_DELAY = 1.0  # seconds before a locked-out address hears "no" (as Dovecot's
#                      auth_failure_delay)

log = Logger(namespace="rmail.auth")


class TooManyFailures(error.UnauthorizedLogin):
    """The remote address is locked out for ``retry_after`` more seconds."""

    def __init__(self, message, retry_after=0):
        super().__init__(message)
        self.retry_after = max(1, int(retry_after + 0.999))


class IMailUser(Interface):
    """The avatar interface for protocols that only need to know who logged in."""


class VerifiedCache:
    """Logins argon2 has already verified, so a client reconnecting all day costs one hash.

    Mail clients log in again and again (several connections each, every few minutes);
    a deliberately slow hash on each would cost ~0.3 s of CPU and 64 MiB per login.  The
    cache keeps, for ``TTL`` seconds, an HMAC of the password under a key that lives only
    in this process, with the stored hash it was checked against: a password change
    (new hash) or a wrong password never hits.  Failures are never cached.
    """

    TTL = 600.0
    SIZE = 10000

    def __init__(self, clock):
        self.clock = clock
        self._key = secrets.token_bytes(32)
        self._entries = collections.OrderedDict()

    def _token(self, user, password: str):
        mac = hmac.new(self._key, password.encode("utf-8"), hashlib.sha256).digest()
        return (user.address, user.password_hash, mac)

    def hit(self, user, password: str) -> bool:
        token = self._token(user, password)
        expiry = self._entries.get(token)
        if expiry is None or expiry < self.clock.seconds():
            self._entries.pop(token, None)
            return False
        return True

    def add(self, user, password: str) -> None:
        self._entries[self._token(user, password)] = self.clock.seconds() + self.TTL
        while len(self._entries) > self.SIZE:
            self._entries.popitem(last=False)


class PasswordHashing:
    """A small thread pool of its own for argon2 (one thread a core, at most 4).

    argon2 takes a good fraction of a second of CPU by design; in the reactor's pool
    fifty bad logins would hold every thread the store needs for that long."""

    def __init__(self):
        self._pool = None

    def run(self, fn, *args):
        if self._pool is None:
            self._pool = ThreadPool(0, min(4, os.cpu_count() or 2), name="rmail-passwords")
            self._pool.start()
            reactor.addSystemEventTrigger("during", "shutdown", self._pool.stop)
        return threads.deferToThreadPool(reactor, self._pool, fn, *args)


@implementer(ICredentialsChecker)
class AddressPasswordChecker:
    credentialInterfaces = (credentials.IUsernamePassword,)

    def __init__(self, directory: Directory, clock=None):
        self.directory = directory
        self.verified = VerifiedCache(clock) if clock is not None else None
        self.hashing = PasswordHashing()

    def requestAvatarId(self, creds):
        try:
            username = creds.username
            password = creds.password
            if isinstance(username, bytes):
                username = username.decode("utf-8")
            if isinstance(password, bytes):
                password = password.decode("utf-8")
        except UnicodeDecodeError:
            return defer.fail(error.UnauthorizedLogin("credentials are not UTF-8"))
        user = self.directory.user(username)
        if user is None:
            return defer.fail(error.UnauthorizedLogin("no such user"))
        if self.verified is not None and self.verified.hit(user, password):
            return defer.succeed(user.address)
        d = self.hashing.run(Directory.verify_password, user, password)

        def checked(ok):
            if not ok:
                raise error.UnauthorizedLogin("bad password")
            if self.verified is not None:
                self.verified.add(user, password)
            return user.address
        return d.addCallback(checked)


@implementer(portal.IRealm)
class MailRealm:
    """Builds each protocol's avatar for an address; protocols register their factories."""

    def __init__(self, directory: Directory):
        self.directory = directory
        self.avatar_factories = {IMailUser: lambda user: user}

    def requestAvatar(self, avatarId, mind, *interfaces):
        user = self.directory.user(avatarId)
        if user is None:
            raise error.UnauthorizedLogin("user removed")
        for iface in interfaces:
            factory = self.avatar_factories.get(iface)
            if factory is not None:
                return iface, factory(user), lambda: None
        raise NotImplementedError(f"no avatar for {interfaces}")


class LoginThrottle:
    """Counts failed logins per remote address; refuses an address that failed too often."""

    def __init__(self, clock, limits=Limits):
        self.clock = clock
        self.limits = limits  # () -> the config's limits section in force
        self.window = FAILURE_WINDOW
        self._failures = collections.defaultdict(collections.deque)
        self._locked_until = {}
        self._checking = collections.Counter()  # remote -> logins being checked now

    def locked(self, remote: str) -> float:
        """Seconds *remote* stays locked out (0: it may try)."""
        until = self._locked_until.get(remote)
        if until is None:
            return 0
        left = until - self.clock.seconds()
        if left <= 0:
            del self._locked_until[remote]
            self._failures.pop(remote, None)
            return 0
        return left

    def crowded(self, remote: str) -> bool:
        """So many logins from *remote* are being checked that, should they all fail,
        it would be locked out: the next is refused without a check (a parallel burst
        cannot outrun the lockout, nor keep the password threads busy)."""
        checking = self._checking.get(remote, 0)
        return checking > 0 and checking + self._recent(remote) > self.limits().login_failures

    def checking(self, remote: str, delta: int) -> None:
        self._checking[remote] += delta
        if self._checking[remote] <= 0:
            del self._checking[remote]

    def _recent(self, remote: str) -> int:
        """Failures of *remote* within the window (older ones forgotten)."""
        failures = self._failures.get(remote)
        if failures is None:
            return 0
        horizon = self.clock.seconds() - self.window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[remote]
        return len(failures)

    def failed(self, remote: str) -> None:
        self._failures[remote].append(self.clock.seconds())
        failures = self._recent(remote)
        limits = self.limits()
        if failures > limits.login_failures:
            self._locked_until[remote] = self.clock.seconds() + limits.login_lockout
            log.warn("auth: {remote} locked out for {seconds:.0f}s after {n} failed logins",
                     remote=remote, seconds=limits.login_lockout, n=failures)

    def succeeded(self, remote: str) -> None:
        self._failures.pop(remote, None)


class Authenticator:
    """The login entry point every protocol uses."""

    def __init__(self, directory: Directory, clock, limits=Limits):
        self.directory = directory
        self.realm = MailRealm(directory)
        self.portal = portal.Portal(self.realm, [AddressPasswordChecker(directory, clock)])
        self.throttle = LoginThrottle(clock, limits)
        self.clock = clock
        self._refusals_logged = {}  # remote -> when its last refusal was logged

    def login(self, creds, remote: str, protocol: str, interface=IMailUser):
        """Fire with the avatar, or fail with UnauthorizedLogin (TooManyFailures when locked)."""
        username = getattr(creds, "username", b"")
        if isinstance(username, bytes):
            username = username.decode("utf-8", "replace")
        locked = self.throttle.locked(remote)
        if locked:
            return self._refuse(TooManyFailures("too many failed logins", locked), remote,
                                protocol, username)
        if self.throttle.crowded(remote):
            return self._refuse(TooManyFailures("too many logins at once", 1), remote,
                                protocol, username)
        self.throttle.checking(remote, 1)
        d = self.portal.login(creds, None, interface)
        d.addBoth(lambda result: (self.throttle.checking(remote, -1), result)[1])

        def ok(result):
            _, avatar, _ = result
            self.throttle.succeeded(remote)
            log.info("auth: {protocol} login {username} from {remote}: success",
                     protocol=protocol, username=username, remote=remote)
            return avatar

        def failed(f):
            f.trap(error.UnauthorizedLogin, error.UnhandledCredentials)
            self.throttle.failed(remote)
            log.info("auth: {protocol} login {username!r} from {remote}: failed",
                     protocol=protocol, username=username, remote=remote)
            return f
        return d.addCallbacks(ok, failed)

    def _refuse(self, refusal, remote, protocol, username):
        """A login refused unchecked, answered after REFUSAL_DELAY: a client hammering
        away while locked out gets one answer a second per connection instead of
        keeping the reactor busy, and its refusals are logged once a minute."""
        now = self.clock.seconds()
        if now - self._refusals_logged.get(remote, -FAILURE_WINDOW) >= FAILURE_WINDOW:
            self._refusals_logged[remote] = now
            if len(self._refusals_logged) > 10000:
                self._refusals_logged = {remote: now}
            log.info("auth: {protocol} login refused for {username!r} from {remote}: {why} "
                     "(logged once a minute)", protocol=protocol, username=username,
                     remote=remote, why=refusal)
        d = defer.Deferred()
        self.clock.callLater(REFUSAL_DELAY, d.errback, refusal)
        return d
