"""kill -9 at random moments under load, about 20 times, then the ledger check.

Ten threads send over SMTP without pause (one or two recipients a message), while the
server is SIGKILLed at a random moment 0.05-0.5 s after it starts serving, and started
again.  No named crash point: the kill lands wherever the process happens to be, in the
middle of DATA, a fsync, a commit or a reply.  Afterwards every acknowledged message
must be stored exactly once, none twice; UIDs only grow across restarts, UIDVALIDITY
holds, and the spool is empty after every start.  The seed is printed (and can be set
with RMAIL_CRASH_SEED) so a failure can be replayed.
"""

import os
import random
import signal
import smtplib
import threading
import time


from tests.harness import Process
from tests.ledger import Ledger, config_with_users, kill

USERS = {"alice@example.com": "alice-pw", "bob@example.com": "bob-pw"}
KILLS = 20
SENDERS = 10
FOLDERS = [("alice@example.com", "INBOX"), ("bob@example.com", "INBOX")]
RECIPIENTS = [["alice@example.com"], ["bob@example.com"], ["alice@example.com", "bob@example.com"]]


class Target:
    """The port senders should use now (None between a kill and the next start)."""

    def __init__(self):
        self.cond = threading.Condition()
        self.port = None
        self.generation = 0
        self.done = False

    def publish(self, port):
        with self.cond:
            self.port = port
            self.generation += 1
            self.cond.notify_all()

    def wait(self, after_generation, timeout=5):
        """(port, generation) of a server newer than *after_generation*, or None when done."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self.done and (self.port is None or self.generation <= after_generation):
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)
            return None if self.done else (self.port, self.generation)


def sender(k, target, ledger, errors):
    """Send continuously; after any error (the server died), wait for the next server."""
    failed = 0  # the newest generation whose server this sender saw fail
    while not target.done:
        current = target.wait(failed)
        if current is None:
            continue
        port, generation = current
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=5) as s:
                for i in range(1000):
                    if target.done or target.generation != generation:
                        break
                    ledger.smtp(s, RECIPIENTS[(k + i) % len(RECIPIENTS)], size=(k * 997) % 3000)
        except (OSError, smtplib.SMTPException):
            failed = generation
        except Exception as e:  # a bug in the test itself: report it, never hang
            errors.append(repr(e))
            return


def test_random_kills_lose_and_duplicate_nothing(tmp_path_factory, tmp_path):
    seed = int(os.environ.get("RMAIL_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    print(f"crash loop seed: {seed} (replay with RMAIL_CRASH_SEED={seed})")
    rng = random.Random(seed)
    config = config_with_users(tmp_path, tmp_path_factory.mktemp("users"), USERS)
    mail_root = os.path.join(str(tmp_path), "data")
    ledger = Ledger(USERS)
    target, errors, problems = Target(), [], []
    threads = [threading.Thread(target=sender, args=(k, target, ledger, errors), daemon=True)
               for k in range(SENDERS)]
    for t in threads:
        t.start()
    kills = 0
    proc = None
    try:
        for kills in range(1, KILLS + 1):
            proc = Process(config)
            # UIDNEXT at every start would cost two argon2 logins a restart: the first and
            # last start note it, and the check's epoch order covers the ones between.
            problems += ledger.epoch_start(proc.ports["imap"], mail_root, FOLDERS,
                                           status=kills == 1)
            target.publish(proc.ports["smtp"])
            time.sleep(rng.uniform(0.05, 0.5))
            target.publish(None)
            os.kill(proc.proc.pid, signal.SIGKILL)
            assert proc.wait() == -signal.SIGKILL
        proc = Process(config)
        problems += ledger.epoch_start(proc.ports["imap"], mail_root, FOLDERS)
        target.done = True
        target.publish(None)
        for t in threads:
            t.join(10)
        result = ledger.check(proc.ports["imap"])
    finally:
        target.done = True
        target.publish(None)
        if proc is not None:
            kill(proc)
    print(f"crash loop: {kills} kills, {result['acked']} acknowledged, {result['lost']} lost, "
          f"{result['duplicated']} duplicated, {result['unacked_stored']} stored unacknowledged")
    assert errors == []
    assert problems + result["problems"] == []
    assert result["acked"] >= KILLS  # the load really ran between the kills
