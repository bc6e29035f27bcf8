"""The queue across restarts, kill -9 and SIGTERM, on real rmail processes."""

import signal
import subprocess
import sys

from tests import harness
from tests.harness import ROOT, Process
from tests.relay_peers import (
    queued, relay_overrides, submit, wait_queue_empty, wait_until,
)


def configure(tmp_path, net, **overrides):
    config = harness.write_config(tmp_path, **relay_overrides(net, **overrides))
    harness.add_users(config)
    return config


def queue_cli(config, *args):
    return subprocess.run([sys.executable, "run.py", "queue", *args, "--config", str(config)],
                          cwd=ROOT, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)


def subjects(receiver):
    return sorted(m.header("Subject") for m in receiver.messages)


def test_restart_with_a_non_empty_queue_delivers_everything(tmp_path, net):
    """Messages deferred before a clean stop are still queued after it, and go out once
    the server is back and the destination answers."""
    net.dns.set("later.test", (10, "mx-closed.ext.test"))
    config = configure(tmp_path, net)
    proc = Process(config)
    try:
        for n in range(3):
            submit(proc.ports["submission"], ["x@later.test"], subject=f"m{n}")
        wait_until(lambda: len(queued(config)) == 3 and all(
            e["recipients"][0]["attempts"] for e in queued(config)), "three deferred messages")
    finally:
        proc.stop()
    assert proc.proc.returncode == 0
    listing = queue_cli(config, "list").stdout.decode()
    assert listing.count("<x@later.test>  pending") == 3, listing
    assert "3 messages, 3 recipients pending" in listing
    net.dns.set("later.test", (10, "mx-clear.ext.test"))
    proc = Process(config)
    try:
        net.clear.wait_for_messages(3)
        wait_queue_empty(config)
    finally:
        proc.stop()
    assert subjects(net.clear) == ["m0", "m1", "m2"]
    assert queue_cli(config, "list").stdout.decode().strip() == "the queue is empty"


def test_kill_9_during_delivery_then_restart_loses_nothing(tmp_path, net):
    """kill -9 while sessions wait for the receiver's answer to the final dot: after a
    restart every message is delivered, and (no 250 having been given) exactly once."""
    net.clear.hold = True
    net.dns.set("hold.test", (10, "mx-clear.ext.test"))
    config = configure(tmp_path, net)
    proc = Process(config)
    try:
        for n in range(5):
            submit(proc.ports["submission"], [f"r{n}@hold.test"], subject=f"k{n}")
        wait_until(lambda: len(net.clear.held) == 5, "five deliveries in flight")
    finally:
        proc.proc.kill()
        proc.wait()
    assert proc.proc.returncode == -signal.SIGKILL
    assert net.clear.messages == [] and len(queued(config)) == 5
    net.clear.hold = False
    net.clear.held = []
    proc = Process(config)
    try:
        net.clear.wait_for_messages(5)
        wait_queue_empty(config)
    finally:
        proc.stop()
    assert subjects(net.clear) == ["k0", "k1", "k2", "k3", "k4"]


def test_sigterm_waits_for_the_attempt_in_flight(tmp_path, net):
    """SIGTERM: no new attempts, the one in flight may finish (and is recorded)."""
    net.clear.hold = True
    net.dns.set("hold.test", (10, "mx-clear.ext.test"))
    config = configure(tmp_path, net)
    proc = Process(config)
    submit(proc.ports["submission"], ["x@hold.test"], subject="in flight")
    wait_until(lambda: net.clear.held, "a delivery in flight")
    proc.signal(signal.SIGTERM)
    proc.wait_for_output(rb"relay: stopping: waiting up to 10 s for 1 attempts in flight")
    net.clear.release()
    assert proc.wait() == 0
    assert subjects(net.clear) == ["in flight"]
    assert queued(config) == []


def test_sigterm_cuts_a_stuck_attempt_off_and_keeps_the_message(tmp_path, net):
    """An attempt that does not finish within the grace period is cut off; its message
    stays queued, the attempt not counted, and goes out after the restart."""
    net.clear.hold = True
    net.dns.set("hold.test", (10, "mx-clear.ext.test"))
    config = configure(tmp_path, net)
    proc = Process(config)
    submit(proc.ports["submission"], ["x@hold.test"], subject="stuck")
    wait_until(lambda: net.clear.held, "a delivery in flight")
    proc.signal(signal.SIGTERM)
    assert proc.wait(timeout=harness.TIMEOUT + 15) == 0
    assert b"cut off, their recipients stay queued" in proc.output
    (entry,) = queued(config)
    assert entry["recipients"][0]["status"] == "pending"
    assert entry["recipients"][0]["attempts"] == 0
    net.clear.hold = False
    proc = Process(config)
    try:
        net.clear.wait_for_messages(1)
        wait_queue_empty(config)
    finally:
        proc.stop()
    assert subjects(net.clear) == ["stuck"]
