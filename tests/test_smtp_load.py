"""Concurrency: many clients at once, every accepted message stored exactly once."""

import collections
import re
import smtplib
import threading

from tests.harness import TIMEOUT

CLIENTS = 20
MESSAGES = 50


def test_20_clients_x_50_messages_each_stored_exactly_once(server):
    """20 concurrent clients send 50 messages each to two users; every 250 is stored once."""
    port = server.port("smtp")
    accepted = collections.Counter()
    errors = []

    def client(n):
        try:
            for i in range(MESSAGES):
                tag = f"c{n}-m{i}"
                recipients = ["alice@example.com"] + (["bob@example.com"] if i % 5 == 0 else [])
                s = smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT)
                s.sendmail(f"load{n}@ext.example", recipients,
                           f"Message-ID: <{tag}@load>\r\nSubject: {tag}\r\n\r\nbody {tag}\r\n")
                s.quit()
                for r in recipients:
                    accepted[(r, tag)] += 1
        except Exception as e:  # collected and asserted below
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert sum(accepted.values()) == CLIENTS * MESSAGES + CLIENTS * MESSAGES // 5

    for address in ("alice@example.com", "bob@example.com"):
        stored = collections.Counter()
        uids = []
        for uid, _, data in server.messages(address):
            uids.append(uid)
            stored[(address, re.search(rb"Subject: (\S+)", data).group(1).decode())] += 1
        expected = {key: n for key, n in accepted.items() if key[0] == address}
        assert stored == expected
        assert uids == list(range(1, len(uids) + 1))
