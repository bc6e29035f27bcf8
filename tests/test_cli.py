"""`python run.py user|alias ...` as real processes, alone and against a running server."""

import json
import os
import re
import smtplib
import subprocess
import sys
import time
import uuid

import pytest

from rmail import config as rconfig
from rmail.directory import Directory
from tests import harness

ROOT = harness.ROOT
CLI_TIMEOUT = 60


def run_cli(*args, config=None):
    """`python run.py ARGS [--config CONFIG]` as a real process, the way people type it."""
    argv = [sys.executable, "run.py", *args]
    if config is not None:
        argv += ["--config", str(config)]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=CLI_TIMEOUT,
                          stdin=subprocess.DEVNULL)


def ok(result):
    assert result.returncode == 0, (result.returncode, result.stderr.decode())
    assert "Traceback" not in result.stderr.decode()
    return result.stdout.decode()


one_line_error = harness.assert_one_line_error


@pytest.fixture
def config_path(tmp_path):
    """A config (domains example.com and example.org, mail_root next to it) with no users."""
    return harness.write_config(tmp_path)


def domain_file(config_path, domain, name):
    config = rconfig.load(config_path)
    return os.path.join(config.mail_root_path, "domains", domain, name)


def reload_directory(config_path) -> Directory:
    config = rconfig.load(config_path)
    directory = Directory(config.mail_root_path, config.domains)
    directory.refresh()
    return directory


def alias_lines(output):
    """`alias list` output as [(pattern, target)] in printed order."""
    pairs = []
    for line in output.strip().splitlines():
        m = re.fullmatch(r"(\S+)\s+->\s+(\S+)", line.strip())
        assert m, line
        pairs.append((m.group(1), m.group(2)))
    return pairs


# -- help ---------------------------------------------------------------------------------

def test_help_exits_0_and_lists_the_commands():
    out = ok(run_cli("--help"))
    for command in ("init", "user", "alias", "serve"):
        assert command in out


def test_user_help_exits_0_and_lists_the_actions():
    out = ok(run_cli("user", "--help"))
    for action in ("add", "passwd", "remove", "list"):
        assert action in out


# -- where --config may go ------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["user", "list", "example.com", "--config", "CONFIG"],
    ["user", "--config", "CONFIG", "list", "example.com"],
    ["alias", "list", "example.com", "--config", "CONFIG"],
    ["--config", "CONFIG", "user", "list", "example.com"],
])
def test_config_option_is_accepted_where_people_put_it(config_path, argv):
    harness.add_users(config_path, {"alice@example.com": "pw"})
    argv = [config_path if a == "CONFIG" else a for a in argv]
    out = ok(run_cli(*argv))
    if argv[0] == "user" or "user" in argv:
        assert out.split() == ["alice@example.com", "admin"]


# -- users --------------------------------------------------------------------------------

def test_user_add_then_list(config_path):
    out = ok(run_cli("user", "add", "alice@example.com", "--password", "s3cret-alice",
                     config=config_path))
    assert "alice@example.com" in out
    ok(run_cli("user", "add", "bob@example.com", "--password", "s3cret-bob", config=config_path))
    listed = ok(run_cli("user", "list", "example.com", config=config_path)).split()
    assert listed == ["alice@example.com", "bob@example.com"]
    # The other domain is listed separately and is empty.
    assert ok(run_cli("user", "list", "example.org", config=config_path)).strip() == ""


def test_users_json_holds_an_argon2_hash_never_the_password(config_path):
    password = "plaintext-" + uuid.uuid4().hex
    ok(run_cli("user", "add", "alice@example.com", "--password", password, config=config_path))
    path = domain_file(config_path, "example.com", "users.json")
    raw = open(path, "rb").read()
    assert password.encode() not in raw
    entry = json.loads(raw)["users"]["alice"]
    assert entry["password_hash"].startswith("$argon2")
    assert entry["admin"] is False
    user = reload_directory(config_path).user("alice@example.com")
    assert Directory.verify_password(user, password)
    assert not Directory.verify_password(user, password + "x")


def test_user_add_admin_marks_admin(config_path):
    ok(run_cli("user", "add", "boss@example.com", "--password", "pw", "--admin", config=config_path))
    ok(run_cli("user", "add", "worker@example.com", "--password", "pw", config=config_path))
    users = json.loads(open(domain_file(config_path, "example.com", "users.json")).read())["users"]
    assert users["boss"]["admin"] is True
    assert users["worker"]["admin"] is False
    directory = reload_directory(config_path)
    assert directory.user("boss@example.com").admin is True
    assert directory.user("worker@example.com").admin is False
    listed = ok(run_cli("user", "list", "example.com", config=config_path)).splitlines()
    assert [line.split() for line in listed] == [["boss@example.com", "admin"], ["worker@example.com"]]


def test_adding_the_same_user_twice_fails(config_path):
    ok(run_cli("user", "add", "alice@example.com", "--password", "first", config=config_path))
    before = open(domain_file(config_path, "example.com", "users.json"), "rb").read()
    one_line_error(run_cli("user", "add", "alice@example.com", "--password", "second",
                           config=config_path), "alice@example.com")
    assert open(domain_file(config_path, "example.com", "users.json"), "rb").read() == before
    user = reload_directory(config_path).user("alice@example.com")
    assert Directory.verify_password(user, "first")


def test_adding_a_user_in_a_non_local_domain_names_the_fix(config_path):
    line = one_line_error(run_cli("user", "add", "x@elsewhere.net", "--password", "pw",
                                  config=config_path), "elsewhere.net")
    assert "domains" in line and "config.json" in line
    assert not os.path.exists(domain_file(config_path, "elsewhere.net", "users.json"))


@pytest.mark.parametrize("address", [".alice@example.com", "al ice@example.com",
                                     "alice.@example.com", "al..ice@example.com", "not-an-address"])
def test_adding_a_user_with_a_bad_local_part_fails(config_path, address):
    one_line_error(run_cli("user", "add", address, "--password", "pw", config=config_path))
    assert reload_directory(config_path).users("example.com") == []


def test_user_passwd_changes_the_password(config_path):
    ok(run_cli("user", "add", "alice@example.com", "--password", "old-pw", config=config_path))
    before = reload_directory(config_path).user("alice@example.com")
    ok(run_cli("user", "passwd", "alice@example.com", "--password", "new-pw", config=config_path))
    after = reload_directory(config_path).user("alice@example.com")
    assert Directory.verify_password(after, "new-pw")
    assert not Directory.verify_password(after, "old-pw")
    assert after.password_generation > before.password_generation
    raw = open(domain_file(config_path, "example.com", "users.json"), "rb").read()
    assert b"new-pw" not in raw


def test_user_passwd_of_an_unknown_user_fails(config_path):
    ok(run_cli("user", "add", "alice@example.com", "--password", "pw", config=config_path))
    one_line_error(run_cli("user", "passwd", "nobody@example.com", "--password", "pw",
                           config=config_path), "nobody@example.com")
    assert [u.local for u in reload_directory(config_path).users("example.com")] == ["alice"]


def test_user_remove(config_path):
    ok(run_cli("user", "add", "alice@example.com", "--password", "pw", config=config_path))
    ok(run_cli("user", "add", "bob@example.com", "--password", "pw", config=config_path))
    ok(run_cli("user", "remove", "alice@example.com", config=config_path))
    assert ok(run_cli("user", "list", "example.com", config=config_path)).split() == ["bob@example.com"]
    assert reload_directory(config_path).user("alice@example.com") is None
    one_line_error(run_cli("user", "remove", "alice@example.com", config=config_path), "alice")


def test_removing_an_alias_target_is_refused_naming_the_alias(config_path):
    ok(run_cli("user", "add", "sales@example.com", "--password", "pw", config=config_path))
    ok(run_cli("alias", "add", "example.com", "sales-.*", "sales", config=config_path))
    one_line_error(run_cli("user", "remove", "sales@example.com", config=config_path), "sales-.*")
    assert reload_directory(config_path).user("sales@example.com") is not None
    ok(run_cli("alias", "remove", "example.com", "sales-.*", config=config_path))
    ok(run_cli("user", "remove", "sales@example.com", config=config_path))
    assert reload_directory(config_path).user("sales@example.com") is None


# -- aliases ------------------------------------------------------------------------------

@pytest.fixture
def with_users(config_path):
    harness.add_users(config_path, {"alice@example.com": "pw", "sales@example.com": "pw"})
    return config_path


def test_alias_list_prints_in_declaration_order(with_users):
    ok(run_cli("alias", "add", "example.com", "sales-.*", "sales", config=with_users))
    ok(run_cli("alias", "add", "example.com", ".*", "alice", config=with_users))
    pairs = alias_lines(ok(run_cli("alias", "list", "example.com", config=with_users)))
    assert pairs == [("sales-.*", "sales"), (".*", "alice")]


def test_alias_list_keeps_declaration_order_not_sorted(with_users):
    ok(run_cli("alias", "add", "example.com", "zz", "alice", config=with_users))
    ok(run_cli("alias", "add", "example.com", "aa", "sales", config=with_users))
    pairs = alias_lines(ok(run_cli("alias", "list", "example.com", config=with_users)))
    assert pairs == [("zz", "alice"), ("aa", "sales")]


def test_aliases_json_is_a_list_in_declaration_order(with_users):
    ok(run_cli("alias", "add", "example.com", "sales-.*", "sales", config=with_users))
    ok(run_cli("alias", "add", "example.com", ".*", "alice", config=with_users))
    data = json.loads(open(domain_file(with_users, "example.com", "aliases.json")).read())
    assert data == [{"pattern": "sales-.*", "target": "sales"},
                    {"pattern": ".*", "target": "alice"}]


def test_a_duplicate_alias_pattern_is_refused(with_users):
    ok(run_cli("alias", "add", "example.com", "sales-.*", "sales", config=with_users))
    one_line_error(run_cli("alias", "add", "example.com", "sales-.*", "alice", config=with_users),
                   "sales-.*")
    pairs = alias_lines(ok(run_cli("alias", "list", "example.com", config=with_users)))
    assert pairs == [("sales-.*", "sales")]


def test_a_bad_regex_is_a_one_line_error(with_users):
    one_line_error(run_cli("alias", "add", "example.com", "(", "alice", config=with_users))
    assert ok(run_cli("alias", "list", "example.com", config=with_users)).strip() == ""


def test_an_alias_pattern_that_could_backtrack_forever_is_refused(with_users):
    """(a+)+b against a long local part would stall the server at RCPT: refused at add,
    while the usual shapes are taken."""
    for pattern in ("(a+)+b", "(x|xx)+", "(?:.*-)*"):
        one_line_error(run_cli("alias", "add", "example.com", pattern, "alice",
                               config=with_users), "exponential")
    ok(run_cli("alias", "add", "example.com", "(sales|info)-.+", "alice", config=with_users))
    pairs = alias_lines(ok(run_cli("alias", "list", "example.com", config=with_users)))
    assert pairs == [("(sales|info)-.+", "alice")]


def test_an_alias_target_must_be_an_existing_user(with_users):
    one_line_error(run_cli("alias", "add", "example.com", "info", "nobody", config=with_users),
                   "nobody")
    one_line_error(run_cli("alias", "add", "example.com", "info", "nobody@example.org",
                           config=with_users), "nobody")
    assert ok(run_cli("alias", "list", "example.com", config=with_users)).strip() == ""


def test_alias_remove(with_users):
    ok(run_cli("alias", "add", "example.com", "sales-.*", "sales", config=with_users))
    ok(run_cli("alias", "add", "example.com", ".*", "alice", config=with_users))
    ok(run_cli("alias", "remove", "example.com", "sales-.*", config=with_users))
    pairs = alias_lines(ok(run_cli("alias", "list", "example.com", config=with_users)))
    assert pairs == [(".*", "alice")]
    data = json.loads(open(domain_file(with_users, "example.com", "aliases.json")).read())
    assert data == [{"pattern": ".*", "target": "alice"}]


def test_removing_a_missing_alias_fails(with_users):
    ok(run_cli("alias", "add", "example.com", ".*", "alice", config=with_users))
    one_line_error(run_cli("alias", "remove", "example.com", "sales-.*", config=with_users),
                   "sales-.*")
    assert alias_lines(ok(run_cli("alias", "list", "example.com", config=with_users))) == [(".*", "alice")]


# -- a running server sees CLI changes --------------------------------------------------------

SPEC_LATENCY = 1.0  # SPEC: CLI changes are seen by a running server within one second
PROBE_SLACK = 0.5  # the probe's own SMTP connections and thread scheduling


def rcpt_code(server, address):
    """The reply code a real SMTP client gets for RCPT TO:<address> on port 25."""
    s = smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10)
    try:
        s.ehlo("client.example.com")
        code, _ = s.mail("someone@external.example")
        assert code == 250
        code, _ = s.rcpt(address)
        return code
    finally:
        s.close()


def wait_for_rcpt(server, address, expected):
    """Poll (bounded) until RCPT gets *expected*; return the seconds it took."""
    start = time.monotonic()
    server.wait_for(lambda: rcpt_code(server, address) == expected,
                    f"RCPT TO:<{address}> to get {expected}")
    return time.monotonic() - start


def send(server, recipients, subject):
    s = smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10)
    try:
        refused = s.sendmail("someone@external.example", recipients,
                             f"From: someone@external.example\r\nSubject: {subject}\r\n\r\nbody\r\n")
        s.quit()
    finally:
        s.close()
    assert refused == {}


def with_subject(server, address, subject):
    needle = f"Subject: {subject}\r\n".encode()
    return [m for m in server.messages(address) if needle in m[2]]


def test_running_server_sees_a_new_user_without_restart(server):
    assert rcpt_code(server, "dave@example.com") == 550
    ok(run_cli("user", "add", "dave@example.com", "--password", "x", config=server.config_path))
    elapsed = wait_for_rcpt(server, "dave@example.com", 250)
    assert elapsed < SPEC_LATENCY + PROBE_SLACK, elapsed
    send(server, ["dave@example.com"], "hello dave")
    server.wait_for(lambda: with_subject(server, "dave@example.com", "hello dave"), "dave's mail")


def test_running_server_sees_alias_add_and_remove(server):
    assert rcpt_code(server, "info@example.com") == 550
    ok(run_cli("alias", "add", "example.com", "info", "bob", config=server.config_path))
    elapsed = wait_for_rcpt(server, "info@example.com", 250)
    assert elapsed < SPEC_LATENCY + PROBE_SLACK, elapsed
    send(server, ["info@example.com"], "for info")
    server.wait_for(lambda: with_subject(server, "bob@example.com", "for info"), "info's mail at bob")
    assert with_subject(server, "alice@example.com", "for info") == []

    ok(run_cli("alias", "remove", "example.com", "info", config=server.config_path))
    elapsed = wait_for_rcpt(server, "info@example.com", 550)
    assert elapsed < SPEC_LATENCY + PROBE_SLACK, elapsed
    assert rcpt_code(server, "bob@example.com") == 250


def test_resolution_order_through_real_delivery(server):
    ok(run_cli("alias", "add", "example.com", "sales-.*", "sales", config=server.config_path))
    ok(run_cli("alias", "add", "example.com", ".*", "alice", config=server.config_path))
    wait_for_rcpt(server, "anything-else@example.com", 250)
    wait_for_rcpt(server, "sales-eu@example.com", 250)

    send(server, ["bob@example.com"], "to bob")
    send(server, ["sales-eu@example.com"], "to sales-eu")
    send(server, ["anything-else@example.com"], "to anything-else")

    # An exact user comes first: the catch-all does not take bob's mail.
    server.wait_for(lambda: with_subject(server, "bob@example.com", "to bob"), "bob's mail")
    assert with_subject(server, "alice@example.com", "to bob") == []
    # The first matching pattern in declaration order wins: sales-.* before .*.
    server.wait_for(lambda: with_subject(server, "sales@example.com", "to sales-eu"), "sales-eu")
    assert with_subject(server, "alice@example.com", "to sales-eu") == []
    # Anything else falls through to the catch-all.
    server.wait_for(lambda: with_subject(server, "alice@example.com", "to anything-else"), "catch-all")
    assert with_subject(server, "bob@example.com", "to anything-else") == []
    assert with_subject(server, "sales@example.com", "to anything-else") == []


def test_alias_and_user_in_one_transaction_are_stored_once(server):
    ok(run_cli("alias", "add", "example.com", "sales-.*", "sales", config=server.config_path))
    ok(run_cli("alias", "add", "example.com", ".*", "alice", config=server.config_path))
    wait_for_rcpt(server, "sales-eu@example.com", 250)
    send(server, ["sales-eu@example.com", "sales@example.com"], "twice named")
    server.wait_for(lambda: with_subject(server, "sales@example.com", "twice named"), "sales' mail")
    assert len(with_subject(server, "sales@example.com", "twice named")) == 1
    assert len(server.messages("sales@example.com")) == 1
    assert with_subject(server, "alice@example.com", "twice named") == []
