"""The login path: the verified-login cache never lets a wrong or changed password in."""

import pytest
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


def test_a_burst_of_parallel_bad_logins_is_cut_at_the_lockout(tmp_path):
    """Fifty wrong passwords at once from one address: only as many are checked (argon2)
    as it may fail before its lockout; the rest are refused at once, unchecked."""
    from twisted.internet import defer
    from rmail.auth import TooManyFailures
    directory = Directory(str(tmp_path), ["example.com"])
    directory.add_user("alice@example.com", "right")
    auth = Authenticator(directory, task.Clock())

    def burst():
        ds = [auth.login(UsernamePassword(b"alice@example.com", b"wrong"), "192.0.2.9", "test")
              for _ in range(50)]
        refused_at_once = sum(1 for d in ds if d.called)
        done = defer.DeferredList(ds, consumeErrors=True)
        return done.addCallback(lambda results: (refused_at_once, results))
    refused_at_once, results = in_reactor(burst)
    assert all(not ok for ok, _ in results)
    assert refused_at_once == 50 - 11  # login_failures (10) + 1 checked, then locked
    assert sum(1 for _, f in results if f.check(TooManyFailures)) == 39
    # Locked out now, the right password included; other addresses are not.
    right = UsernamePassword(b"alice@example.com", b"right")
    with pytest.raises(TooManyFailures):
        in_reactor(auth.login, right, "192.0.2.9", "test")
    assert _login(auth, "alice@example.com", "right") is not None  # from 192.0.2.1
