"""What a mail client sees of a folder, read over IMAP with imaplib, as plain data.

Used by the migrate and import tests to compare a real server's answers with what the
source held: UIDVALIDITY, UIDNEXT, and per UID the flags, INTERNALDATE and bytes.
"""

import imaplib
import re
import subprocess
import sys
import time

from tests import harness

CLI_TIMEOUT = 120


def run_cli(*args, config=None, env=None):
    """`python run.py ARGS [--config CONFIG]` as a real process."""
    argv = [sys.executable, "run.py", *args]
    if config is not None:
        argv += ["--config", str(config)]
    return subprocess.run(argv, cwd=harness.ROOT, capture_output=True, timeout=CLI_TIMEOUT,
                          stdin=subprocess.DEVNULL, env=env)


def ok(result) -> str:
    err = result.stderr.decode()
    assert result.returncode == 0, (result.returncode, err, result.stdout.decode())
    assert "Traceback" not in err, err
    return result.stdout.decode()


def imap_date(epoch: float) -> str:
    """INTERNALDATE as the server writes it (UTC, whole seconds)."""
    return time.strftime("%d-%b-%Y %H:%M:%S +0000", time.gmtime(int(epoch)))


class Client:
    def __init__(self, port, address, password):
        self.imap = imaplib.IMAP4("127.0.0.1", port, timeout=harness.TIMEOUT)
        self.imap.login(address, password)

    def close(self):
        self.imap.logout()

    def folders(self) -> list:
        status, data = self.imap.list()
        assert status == "OK", data
        names = []
        for line in data:
            m = re.match(rb'\(.*?\) "/" (.*)$', line)
            assert m, line
            name = m.group(1)
            names.append((name[1:-1] if name.startswith(b'"') else name).decode())
        return sorted(names)

    def folder(self, name: str) -> dict:
        """{"uidvalidity", "uidnext", "messages": {uid: (flags, internaldate, bytes)}}."""
        quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        status, data = self.imap.status(quoted, "(UIDNEXT UIDVALIDITY MESSAGES)")
        assert status == "OK", data
        numbers = dict(re.findall(rb"(UIDNEXT|UIDVALIDITY|MESSAGES) (\d+)", data[0]))
        status, data = self.imap.select(quoted, readonly=True)
        assert status == "OK", data
        messages = {}
        if int(numbers[b"MESSAGES"]):
            status, data = self.imap.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[])")
            assert status == "OK", data
            for item in data:
                if not isinstance(item, tuple):
                    continue
                head, body = item
                uid = int(re.search(rb"UID (\d+)", head).group(1))
                flags = re.search(rb"FLAGS \(([^)]*)\)", head).group(1).decode().split()
                date = re.search(rb'INTERNALDATE "([^"]+)"', head).group(1).decode()
                messages[uid] = (frozenset(flags), date, body)
        self.imap.close()
        return {"uidvalidity": int(numbers[b"UIDVALIDITY"]), "uidnext": int(numbers[b"UIDNEXT"]),
                "messages": messages}

    def search(self, folder: str, *criteria) -> list:
        self.imap.select('"' + folder + '"', readonly=True)
        status, data = self.imap.uid("SEARCH", *criteria)
        assert status == "OK", data
        self.imap.close()
        return [int(u) for u in data[0].split()]

    def envelope_subject(self, folder: str, uid: int) -> bytes:
        self.imap.select('"' + folder + '"', readonly=True)
        status, data = self.imap.uid("FETCH", str(uid), "(ENVELOPE)")
        assert status == "OK", data
        self.imap.close()
        return data[0] if isinstance(data[0], bytes) else data[0][0]
