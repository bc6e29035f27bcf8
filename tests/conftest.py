"""Test harness: one real reactor in a background thread, real servers on 127.0.0.1.

Tests are plain functions that drive the server with blocking real clients (smtplib,
sockets, the run.py CLI); ``in_reactor`` runs a call on the reactor thread and waits
for its Deferred, so store and service objects are used exactly as the server uses
them.  Every wait is bounded.
"""

import os
import sys
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from twisted.internet import reactor, threads  # noqa: E402

from tests import harness  # noqa: E402

_reactor_thread = None


def pytest_configure(config):
    global _reactor_thread
    config._rmail_counts = {"passed": 0, "failed": 0, "skipped": 0}
    reactor.suggestThreadPoolSize(20)
    _reactor_thread = threading.Thread(
        target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True)
    _reactor_thread.start()


def pytest_runtest_logreport(report):
    counts = pytest_runtest_logreport.counts
    if report.when == "call" or report.outcome != "passed":
        if report.outcome == "passed":
            counts["passed"] += 1
        elif report.outcome == "failed":
            counts["failed"] += 1
        else:
            counts["skipped"] += 1


pytest_runtest_logreport.counts = {"passed": 0, "failed": 0, "skipped": 0}


def pytest_unconfigure(config):
    counts = pytest_runtest_logreport.counts
    line = f"{counts['passed']} passed, {counts['failed']} failed"
    if counts["skipped"]:
        line += f", {counts['skipped']} skipped"
    print("\n" + line)
    if _reactor_thread is not None:
        reactor.callFromThread(reactor.stop)
        _reactor_thread.join(10)


def in_reactor(fn, *args, **kwargs):
    """Run fn on the reactor thread; return its (Deferred) result, bounded in time."""
    return threads.blockingCallFromThread(reactor, harness.with_timeout, fn, *args, **kwargs)


@pytest.fixture
def server(tmp_path):
    """A running rmail on 127.0.0.1 with free ports, users alice/bob/sales@example.com."""
    srv = harness.Server(tmp_path, in_reactor)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def net():
    """Loopback DNS and SMTP receivers for the relay tests (``tests.relay_peers``)."""
    from tests.relay_peers import Network  # it imports this module
    peers = Network().start()
    yield peers
    peers.stop()
