"""How ``python run.py queue retry|delete`` reaches the queue, with or without a server.

The running server holds ``queue/lock`` (an ``flock``, released by the kernel however
the process ends) and keeps the queue's state in memory, so the CLI must not rewrite
entries under it.  Instead it drops a request in ``queue/commands/{nonce}.request``;
the server looks there every ``POLL`` seconds, acts on its own in-memory entries
(saving them as usual), and leaves ``{nonce}.answer``, which the CLI reads and removes.
When no server holds the lock, the CLI takes it and edits the entries itself; a
server started meanwhile waits for the lock to be released (``QueueDir.lock``).

``queue list`` needs neither: entries are replaced atomically, so reading them while
the server runs is always consistent.
"""

import json
import os
import secrets
import time

from rmail import durable

POLL = 0.5  # seconds between the server's looks at commands/
ANSWER_TIMEOUT = 15  # seconds the CLI waits for a running server's answer

ACTIONS = ("retry", "delete")


class ControlError(Exception):
    """The request could not be carried out; one line for the operator."""


# -- the CLI's side --------------------------------------------------------------------

def submit(queue_dir, request: dict, timeout: float = ANSWER_TIMEOUT) -> dict:
    """Hand *request* to the running server and wait for its answer."""
    nonce = f"{int(time.time())}-{secrets.token_hex(4)}"
    request_path = os.path.join(queue_dir.commands_dir, nonce + ".request")
    answer_path = os.path.join(queue_dir.commands_dir, nonce + ".answer")
    durable.write_atomic(request_path, json.dumps(request).encode())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(answer_path, "rb") as f:
                answer = json.loads(f.read())
        except FileNotFoundError:
            time.sleep(0.05)
            continue
        os.unlink(answer_path)
        return answer
    try:
        os.unlink(request_path)
    except FileNotFoundError:
        pass  # taken just now; its answer will be left behind
    raise ControlError(f"the running server did not answer within {timeout:.0f} s; "
                       "is it stuck? (see its log)")


# -- the server's side ------------------------------------------------------------------

def take_requests(queue_dir) -> list[tuple[str, dict]]:
    """[(nonce, request)] waiting in commands/ (blocking; run in a thread)."""
    out = []
    try:
        names = sorted(os.listdir(queue_dir.commands_dir))
    except FileNotFoundError:
        return out
    for name in names:
        if not name.endswith(".request") or name.startswith("."):
            continue
        path = os.path.join(queue_dir.commands_dir, name)
        try:
            with open(path, "rb") as f:
                request = json.loads(f.read())
        except (OSError, ValueError):
            request = {}
        out.append((name[:-len(".request")], request if isinstance(request, dict) else {}))
    return out


def answer(queue_dir, nonce: str, reply: dict) -> None:
    """Leave the answer for the CLI and drop the request (blocking)."""
    durable.write_atomic(os.path.join(queue_dir.commands_dir, nonce + ".answer"),
                         json.dumps(reply).encode())
    try:
        os.unlink(os.path.join(queue_dir.commands_dir, nonce + ".request"))
    except FileNotFoundError:
        pass


def remove_stale(queue_dir, older_than: float = 3600) -> None:
    """Answers nobody collected (a CLI that gave up) are removed after an hour."""
    now = time.time()
    for name in os.listdir(queue_dir.commands_dir):
        path = os.path.join(queue_dir.commands_dir, name)
        try:
            if now - os.stat(path).st_mtime > older_than:
                os.unlink(path)
        except FileNotFoundError:
            pass


# -- the CLI's side, with no server running (it holds the lock itself) ----------------------

def offline(queue_dir, request: dict) -> dict:
    """Carry out *request* on the files, as the server would; the same answer shape."""
    from rmail.relay.entry import DamagedEntry
    if request.get("action") == "retry" and request.get("all"):
        ids = queue_dir.ids()
    else:
        ids = [request["id"]]
    entries = []
    for queue_id in ids:
        try:
            entries.append(queue_dir.read(queue_id))
        except KeyError:
            return {"ok": False, "error": f"no message with queue ID {queue_id} in the queue"}
        except DamagedEntry as e:
            if request.get("all"):
                continue
            return {"ok": False, "error": f"queue entry {queue_id} is damaged ({e}); the "
                                          "server quarantines it when it starts"}
    if request["action"] == "delete":
        queue_dir.remove(entries[0].id)
        return {"ok": True, "message": f"deleted {entries[0].id}"}
    now = time.time()
    for entry in entries:
        for r in entry.pending():
            r.next_attempt = now
        queue_dir.save(entry)
    n = len(entries)
    return {"ok": True, "message": f"{n} message{'s' if n != 1 else ''} will be attempted "
                                   "as soon as the server runs"}
