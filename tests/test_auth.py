"""The login path: the verified-login cache never lets a wrong or changed password in."""

from twisted.cred import error
from twisted.cred.credentials import UsernamePassword
from twisted.internet import task

from rmail.auth import Authenticator
from rmail.directory import Directory
from tests.conftest import in_reactor


def _login(auth, user, password):
    try:
        return in_reactor(auth.login, UsernamePassword(user, password), "192.0.2.1", "test")
    except error.UnauthorizedLogin:
        return None


def test_cache_hits_only_the_same_password_and_hash(tmp_path, monkeypatch):
    directory = Directory(str(tmp_path), ["example.com"])
    directory.add_user("alice@example.com", "right")
    clock = task.Clock()
    auth = Authenticator(directory, clock)
    calls = []  # a spy around the real argon2 check, to count hash verifications
    real = Directory.verify_password
    monkeypatch.setattr(Directory, "verify_password",
                        staticmethod(lambda u, p: calls.append(p) or real(u, p)))
    assert _login(auth, "alice@example.com", "right").address == "alice@example.com"
    assert _login(auth, "alice@example.com", "right") is not None
    assert calls == ["right"]  # the second login did not hash again
    assert _login(auth, "alice@example.com", "wrong") is None
    directory.set_password("alice@example.com", "new")
    assert _login(auth, "alice@example.com", "right") is None  # old password, new hash
    assert _login(auth, "alice@example.com", "new") is not None
    clock.advance(601)  # past VerifiedCache.TTL
    calls.clear()
    assert _login(auth, "alice@example.com", "new") is not None
    assert calls == ["new"]  # expired: verified again
