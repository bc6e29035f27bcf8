"""`python run.py queue list|retry|delete` as real processes, against a running server
and against a stopped one."""

import re
import subprocess
import sys

import pytest

from tests import harness
from tests.harness import ROOT, Process, assert_one_line_error
from tests.relay_peers import queued, relay_overrides, submit, wait_until


def queue_cli(config, *args):
    return subprocess.run([sys.executable, "run.py", "queue", *args, "--config", str(config)],
                          cwd=ROOT, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)


def ok(result) -> str:
    assert result.returncode == 0, (result.returncode, result.stderr.decode())
    return result.stdout.decode()


@pytest.fixture
def deferred_two(tmp_path, net):
    """A running rmail with two messages deferred for an hour (their MX refuses)."""
    net.dns.set("later.test", (10, "mx-closed.ext.test"))
    config = harness.write_config(tmp_path, **relay_overrides(
        net, relay__retry_intervals=[3600]))
    harness.add_users(config)
    proc = Process(config)
    submit(proc.ports["submission"], ["x@later.test", "y@later.test"], subject="first")
    submit(proc.ports["submission"], ["z@later.test"], subject="second")
    wait_until(lambda: len(queued(config)) == 2 and all(
        r["attempts"] for e in queued(config) for r in e["recipients"]), "two deferred messages")
    ids = [e["id"] for e in queued(config)]
    yield proc, config, ids
    proc.stop()


def test_list_shows_id_sender_recipients_attempts_next_attempt_and_last_reply(deferred_two):
    proc, config, ids = deferred_two
    out = ok(queue_cli(config, "list"))
    lines = out.splitlines()
    assert re.match(rf"{ids[0]}  \d+ bytes  queued \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d  "
                    r"from <alice@example.com>$", lines[0]), lines[0]
    assert re.match(r"    <x@later.test>  pending  attempts=1  next=\d{4}-\d\d-\d\d "
                    r"\d\d:\d\d:\d\d  last: 421 4\.4\.1 Cannot connect to "
                    r"mx-closed\.ext\.test\[127\.0\.0\.4\]", lines[1]), lines[1]
    assert lines[3].startswith(ids[1]) and "<z@later.test>  pending" in lines[4]
    assert lines[-1] == "2 messages, 3 recipients pending"


def test_retry_and_delete_act_on_the_running_server(deferred_two, net):
    proc, config, ids = deferred_two
    net.dns.set("later.test", (10, "mx-clear.ext.test"))
    assert ok(queue_cli(config, "retry", ids[0])).strip() == "1 message will be attempted now"
    (msg,) = net.clear.wait_for_messages(1)
    assert msg.header("Subject") == "first" and sorted(msg.recipients) == ["x@later.test",
                                                                           "y@later.test"]
    wait_until(lambda: [e["id"] for e in queued(config)] == [ids[1]], "the first one gone")
    assert ok(queue_cli(config, "delete", ids[1])).strip() == f"deleted {ids[1]}"
    assert queued(config) == []
    proc.wait_for_output(rf"relay: id={ids[1]} deleted by the operator".encode())
    assert ok(queue_cli(config, "list")).strip() == "the queue is empty"
    assert len(net.clear.messages) == 1


def test_retry_all_on_the_running_server(deferred_two, net):
    proc, config, ids = deferred_two
    net.dns.set("later.test", (10, "mx-clear.ext.test"))
    assert ok(queue_cli(config, "retry", "--all")).strip() == "2 messages will be attempted now"
    net.clear.wait_for_messages(2)
    wait_until(lambda: not queued(config), "an empty queue")


def test_unknown_and_malformed_ids_are_one_line_errors(deferred_two):
    proc, config, ids = deferred_two
    assert_one_line_error(queue_cli(config, "delete", "0123456789abcdef"),
                          "no message with queue ID 0123456789abcdef")
    assert_one_line_error(queue_cli(config, "retry", "../../etc"), "is not a queue ID")
    assert_one_line_error(queue_cli(config, "retry"), "give a queue ID or --all")
    assert len(queued(config)) == 2


def test_commands_work_with_the_server_stopped(deferred_two, net):
    """No server: the CLI takes the queue's lock and edits the entries itself; the next
    start honours what it did."""
    proc, config, ids = deferred_two
    proc.stop()
    assert "2 messages, 3 recipients pending" in ok(queue_cli(config, "list"))
    assert ok(queue_cli(config, "delete", ids[1])).strip() == f"deleted {ids[1]}"
    assert ok(queue_cli(config, "retry", ids[0])).strip() == \
        "1 message will be attempted as soon as the server runs"
    net.dns.set("later.test", (10, "mx-clear.ext.test"))
    again = Process(config)
    try:
        (msg,) = net.clear.wait_for_messages(1)
        wait_until(lambda: not queued(config), "an empty queue")
    finally:
        again.stop()
    assert msg.header("Subject") == "first"
