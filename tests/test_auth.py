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


def test_a_burst_of_parallel_bad_logins_is_cut_at_the_lockout(tmp_path, monkeypatch):
    """Fifty wrong passwords at once from one address: only as many are checked (argon2)
    as it may fail before its lockout; the rest are refused unchecked, a second later."""
    from twisted.internet import defer
    from rmail.auth import REFUSAL_DELAY, TooManyFailures
    directory = Directory(str(tmp_path), ["example.com"])
    directory.add_user("alice@example.com", "right")
    clock = task.Clock()
    auth = Authenticator(directory, clock)
    checked = []  # a spy around the real argon2 check
    real = Directory.verify_password
    monkeypatch.setattr(Directory, "verify_password",
                        staticmethod(lambda u, p: checked.append(p) or real(u, p)))

    def burst():
        ds = [auth.login(UsernamePassword(b"alice@example.com", b"wrong"), "192.0.2.9", "test")
              for _ in range(50)]
        answered_at_once = sum(1 for d in ds if d.called)
        clock.advance(REFUSAL_DELAY)
        done = defer.DeferredList(ds, consumeErrors=True)
        return done.addCallback(lambda results: (answered_at_once, results))
    answered_at_once, results = in_reactor(burst)
    assert answered_at_once == 0  # refusals wait REFUSAL_DELAY; checks take their time
    assert all(not ok for ok, _ in results)
    assert len(checked) == 11  # login_failures (10) + 1 checked: that one locks it out
    assert sum(1 for _, f in results if f.check(TooManyFailures)) == 39

    def locked_out():
        d = auth.login(UsernamePassword(b"alice@example.com", b"right"), "192.0.2.9", "test")
        clock.advance(REFUSAL_DELAY)
        return d
    with pytest.raises(TooManyFailures):  # the right password included
        in_reactor(locked_out)
    assert _login(auth, "alice@example.com", "right") is not None  # other addresses: fine
