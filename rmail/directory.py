"""Users, domains and aliases: who has a mailbox here, and where an address delivers.

Files (one home for the layout, see ``DomainFiles``)::

    {mail_root}/domains/{domain}/users.json    {"users": {"alice": {"password_hash": ...,
                                                 "admin": false, "password_generation": 1}}}
    {mail_root}/domains/{domain}/aliases.json  [{"pattern": "sales-.*", "target": "sales"}, ...]

Resolution (SPEC, "consistent with the Postfix model"): an exact user first, then the
alias patterns of the domain in declaration order, each matched against the whole
local part, case-insensitively.  A target names an existing user: a local part of the
same domain, or a full address in another local domain.

Changes are read-modify-write under an flock on the domain directory and replaced
atomically, so concurrent CLI runs and a running server never see a torn file.  The
server notices changed files by polling their stat (``refresh``), from a thread.

Threads: lookups (``user``, ``resolve``, ``owns``) read immutable snapshots and are safe
on the reactor thread; everything that touches disk or hashes a password blocks.
"""

import contextlib
import fcntl
import json
import os
import re
import re._constants as _sre
import re._parser as _sre_parser
from dataclasses import dataclass

from passlib.hash import argon2

from rmail import durable

LOCAL_PART = re.compile(r"[a-z0-9](?:[a-z0-9._+-]{0,62}[a-z0-9_+-])?")


class DirectoryError(Exception):
    """A refused change or lookup; the message is one sentence for people."""


@dataclass(frozen=True)
class User:
    local: str
    domain: str
    password_hash: str
    admin: bool = False
    password_generation: int = 1

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}"


@dataclass(frozen=True)
class Alias:
    pattern: str
    target: str
    regex: re.Pattern

    def to_json(self) -> dict:
        return {"pattern": self.pattern, "target": self.target}


def split_address(address: str) -> tuple[str, str]:
    """``Alice@Example.COM`` -> ``("alice", "example.com")``; DirectoryError when not an address."""
    local, sep, domain = address.strip().rpartition("@")
    if not sep or not local or not domain:
        raise DirectoryError(f"{address!r} is not an address of the form user@domain")
    return local.lower(), domain.lower()


def hash_password(password: str) -> str:
    """An argon2id hash (blocking: tens of milliseconds on purpose)."""
    if not password:
        raise DirectoryError("the password must not be empty")
    return argon2.hash(password)


def compile_pattern(pattern: str) -> re.Pattern:
    """The compiled alias pattern; DirectoryError for one that is invalid, or that could
    take exponential time to match (Python's ``re`` backtracks, and RCPT resolves aliases
    on the reactor thread: ``(a+)+b`` against a 64-letter local part would stall it)."""
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
    except re.error as e:
        raise DirectoryError(f"alias pattern {pattern!r} is not a valid regular expression: {e}")
    except (RecursionError, OverflowError) as e:  # "((((...", "a{99999999999999999999}"
        raise DirectoryError(f"alias pattern {pattern!r} is too large a regular expression "
                             f"({type(e).__name__})")
    if _ambiguous_repeat(_sre_parser.parse(pattern, re.IGNORECASE)):
        raise DirectoryError(f"alias pattern {pattern!r} repeats a group that itself repeats "
                             "or has alternatives, which can take exponential time to match; "
                             "write it without nesting, e.g. 'sales-.*', '(sales|info)-.+' "
                             "or '[ab]*' for '(a|b)*'")
    return compiled


_REPEATS = {_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", None)}


def _ambiguous_repeat(parsed, repeated=False) -> bool:
    """Does a variable repetition contain another one, or an alternation?"""
    for op, av in parsed:
        if op in _REPEATS:
            low, high, body = av
            many = low != high and (high is _sre.MAXREPEAT or high > 1)  # not a{3}
            if repeated and many:
                return True
            if _ambiguous_repeat(body, repeated or many):
                return True
        elif op is _sre.BRANCH:
            if repeated:
                return True
            if any(_ambiguous_repeat(branch, repeated) for branch in av[1]):
                return True
        elif op is _sre.SUBPATTERN:
            if _ambiguous_repeat(av[-1], repeated):
                return True
        elif op in (_sre.ASSERT, _sre.ASSERT_NOT):
            if _ambiguous_repeat(av[1], repeated):
                return True
    return False


class DomainFiles:
    """Where one domain's users and aliases live."""

    def __init__(self, mail_root: str, domain: str):
        self.dir = os.path.join(mail_root, "domains", domain)
        self.users = os.path.join(self.dir, "users.json")
        self.aliases = os.path.join(self.dir, "aliases.json")

    @contextlib.contextmanager
    def locked(self):
        """Exclusive lock for a read-modify-write of this domain's files."""
        durable.make_dirs(self.dir)
        fd = os.open(os.path.join(self.dir, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _read_json(path: str, empty):
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return empty
    except (OSError, ValueError) as e:
        raise DirectoryError(f"{path}: cannot be read ({e})")
    except RecursionError:
        raise DirectoryError(f"{path}: cannot be read (JSON nested too deeply)")


def _write_json(path: str, data) -> None:
    durable.write_atomic(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode())


def _parse_users(domain: str, data, path: str) -> dict[str, User]:
    try:
        return {
            local: User(local, domain, entry["password_hash"], bool(entry.get("admin", False)),
                        int(entry.get("password_generation", 1)))
            for local, entry in data.get("users", {}).items()
        }
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as e:
        raise DirectoryError(f"{path}: not a users file ({e!r})")


def _parse_aliases(data, path: str) -> list[Alias]:
    if not isinstance(data, list):
        raise DirectoryError(f"{path}: expected a list of {{pattern, target}} objects")
    try:
        aliases = [Alias(a["pattern"], a["target"], compile_pattern(a["pattern"])) for a in data]
    except (KeyError, TypeError) as e:
        raise DirectoryError(f"{path}: not an aliases file ({e!r})")
    if not all(isinstance(a.target, str) for a in aliases):  # resolve() reads it as text
        raise DirectoryError(f"{path}: an alias target is not a string")
    return aliases


class Directory:
    """The users and aliases of every local domain, kept in memory and refreshed from disk."""

    def __init__(self, mail_root: str, domains):
        self.mail_root = mail_root
        self.domains = tuple(d.lower() for d in domains)
        self._users: dict[str, dict[str, User]] = {d: {} for d in self.domains}
        self._aliases: dict[str, list[Alias]] = {d: [] for d in self.domains}
        self._stamps: dict[str, tuple] = {}

    def files(self, domain: str) -> DomainFiles:
        domain = domain.lower()
        if domain not in self.domains:
            raise DirectoryError(
                f"{domain} is not a local domain; add it to \"domains\" in config.json")
        return DomainFiles(self.mail_root, domain)

    # -- reading (blocking) -------------------------------------------------

    @staticmethod
    def _stamp(path: str):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def refresh(self) -> list[str]:
        """Reload every file whose stat changed; return the paths reloaded.

        A file that fails to parse keeps the previous contents in force and raises
        DirectoryError after the others have been read.
        """
        reloaded, errors = [], []
        for domain in self.domains:
            files = DomainFiles(self.mail_root, domain)
            for path, empty, apply in (
                (files.users, {}, lambda d, p, dom=domain: self._set_users(dom, d, p)),
                (files.aliases, [], lambda d, p, dom=domain: self._set_aliases(dom, d, p)),
            ):
                stamp = self._stamp(path)
                if path in self._stamps and self._stamps[path] == stamp:
                    continue
                try:
                    apply(_read_json(path, empty), path)
                except DirectoryError as e:
                    errors.append(str(e))
                    continue
                self._stamps[path] = stamp
                reloaded.append(path)
        if errors:
            raise DirectoryError("; ".join(errors))
        return reloaded

    def _set_users(self, domain, data, path):
        users = dict(self._users)
        users[domain] = _parse_users(domain, data, path)
        self._users = users

    def _set_aliases(self, domain, data, path):
        aliases = dict(self._aliases)
        aliases[domain] = _parse_aliases(data, path)
        self._aliases = aliases

    # -- lookups (in memory, safe on the reactor thread) ----------------------

    def is_local_domain(self, domain: str) -> bool:
        return domain.lower() in self._users

    def user(self, address: str):
        """The User with exactly this address, or None."""
        try:
            local, domain = split_address(address)
        except DirectoryError:
            return None
        return self._users.get(domain, {}).get(local)

    def resolve(self, address: str):
        """The User that mail for *address* is delivered to, or None (unknown or not local)."""
        try:
            local, domain = split_address(address)
        except DirectoryError:
            return None
        users = self._users.get(domain)
        if users is None:
            return None
        if local in users:
            return users[local]
        for alias in self._aliases.get(domain, ()):
            if alias.regex.fullmatch(local):
                return self._target(alias.target, domain)
        return None

    def _target(self, target: str, domain: str):
        if "@" in target:
            return self.user(target)
        return self._users.get(domain, {}).get(target.lower())

    def owns(self, user: User, address: str) -> bool:
        """May *user* send as *address*: its own address, or one that resolves to it."""
        resolved = self.resolve(address)
        return resolved is not None and resolved.address == user.address

    def aliases(self, domain: str) -> list[Alias]:
        return list(self._aliases.get(domain.lower(), ()))

    def users(self, domain: str) -> list[User]:
        return sorted(self._users.get(domain.lower(), {}).values(), key=lambda u: u.local)

    @staticmethod
    def verify_password(user: User, password: str) -> bool:
        """Check *password* against the stored hash (blocking: run it in a thread)."""
        try:
            return argon2.verify(password, user.password_hash)
        except (ValueError, TypeError):
            return False

    # -- changes (blocking; read-modify-write under the domain lock) -----------

    def _edit_users(self, domain: str, change):
        files = self.files(domain)
        with files.locked():
            data = _read_json(files.users, {})
            data.setdefault("users", {})
            result = change(data["users"])
            _write_json(files.users, data)
        self.refresh()
        return result

    def _edit_aliases(self, domain: str, change):
        files = self.files(domain)
        with files.locked():
            data = _read_json(files.aliases, [])
            _parse_aliases(data, files.aliases)
            result = change(data)
            _write_json(files.aliases, data)
        self.refresh()
        return result

    def add_user(self, address: str, password: str, admin: bool = False) -> User:
        local, domain = split_address(address)
        if not LOCAL_PART.fullmatch(local) or ".." in local:
            raise DirectoryError(
                f"{local!r} is not a usable user name: use letters, digits and . _ + - "
                "(at most 64, not starting or ending with a dot)")
        self.files(domain)
        password_hash = hash_password(password)

        def add(users):
            if local in users:
                raise DirectoryError(f"{local}@{domain} already exists; "
                                     f"change its password with `user passwd {local}@{domain}`")
            users[local] = {"password_hash": password_hash, "admin": admin,
                            "password_generation": 1}
        self._edit_users(domain, add)
        return self.user(address)

    def set_password(self, address: str, password: str) -> User:
        local, domain = split_address(address)
        password_hash = hash_password(password)

        def change(users):
            if local not in users:
                raise DirectoryError(f"no such user: {local}@{domain}")
            entry = users[local]
            entry["password_hash"] = password_hash
            entry["password_generation"] = int(entry.get("password_generation", 1)) + 1
        self._edit_users(domain, change)
        return self.user(address)

    def remove_user(self, address: str) -> None:
        local, domain = split_address(address)
        self.refresh()
        targets = [a.pattern for a in self.aliases(domain)
                   if self._target(a.target, domain) and self._target(a.target, domain).local == local]
        if targets:
            raise DirectoryError(
                f"{local}@{domain} is the target of the aliases {', '.join(targets)}; "
                "remove them first with `alias remove`")

        def remove(users):
            if local not in users:
                raise DirectoryError(f"no such user: {local}@{domain}")
            del users[local]
        self._edit_users(domain, remove)

    def add_alias(self, domain: str, pattern: str, target: str) -> Alias:
        domain = domain.lower()
        self.files(domain)
        regex = compile_pattern(pattern)
        if "@" in target:
            t_local, t_domain = split_address(target)
            target = t_local if t_domain == domain else f"{t_local}@{t_domain}"
        else:
            target = target.lower()
        self.refresh()
        if self._target(target, domain) is None:
            raise DirectoryError(
                f"alias target {target!r} is not an existing user; add it first with `user add`")

        def add(aliases):
            if any(a["pattern"] == pattern for a in aliases):
                raise DirectoryError(f"an alias with the pattern {pattern!r} already exists in {domain}")
            aliases.append({"pattern": pattern, "target": target})
        self._edit_aliases(domain, add)
        return Alias(pattern, target, regex)

    def remove_alias(self, domain: str, pattern: str) -> None:
        def remove(aliases):
            for i, a in enumerate(aliases):
                if a["pattern"] == pattern:
                    del aliases[i]
                    return
            raise DirectoryError(f"no alias with the pattern {pattern!r} in {domain.lower()}")
        self._edit_aliases(domain, remove)
