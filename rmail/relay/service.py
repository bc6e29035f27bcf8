"""The relay service: sends what is queued, retries, bounces, and stops cleanly.

Invariants (reactor thread; disk work in the thread pool through ``QueueDir``):

- a queue entry is written before ``enqueue``'s Deferred fires, and after every
  attempt it is saved (or, once finished, removed) before anything else is decided
  on it; a crash at any point therefore leaves recipients ``pending`` (tried again at
  start) or settled.  Removals are group-committed (one directory fsync per batch);
- an entry queued with ``hold`` waits for ``release`` (or ``cancel``): the policy
  queues a message before delivering its local copies, and sends nothing if those fail;
- one attempt round per entry at a time, at most ``MAX_ROUNDS`` rounds at once, the
  earliest due first (a heap, so a large queue costs log n per change); a round
  tries every due recipient, grouped by domain (all together with a smarthost), one
  session per destination host;
- 2yz delivers, 5yz fails at once, 4yz and connection trouble retry after
  ``relay.retry_intervals[attempts - 1]`` (the last repeating) until
  ``relay.max_queue_time`` has passed, when the recipient fails as expired;
- failed recipients are reported in one DSN per round to the envelope sender (into
  the sender's INBOX when the sender is local, else queued from ``<>``); an entry
  from ``<>`` is never bounced;
- on stop no new session starts, sessions in flight get ``STOP_GRACE`` seconds, then
  are cut off; their recipients stay pending, the attempt uncounted.

Each session, and each DNS failure, logs one line:
``relay: id=... host=... tls=... <rcpt> delivered|deferred|bounced "reply"``.
"""

import heapq
import time
from collections import defaultdict

from twisted.application import service
from twisted.internet import defer, reactor, task, threads
from twisted.logger import Logger
from twisted.python.failure import Failure

from rmail import crashpoint
from rmail.relay import control, dsn, results
from rmail.relay.client import Job, open_session
from rmail.relay.entry import DELIVERED, FAILED
from rmail.relay.queue import QueueDir, QueueLocked, new_id
from rmail.relay.routes import RouteError, Router

log = Logger(namespace="rmail.relay")

MAX_ROUNDS = 20  # entries being attempted at once (Postfix's per-destination default)
MAX_ADDRESSES = 10  # addresses tried per attempt, over all hosts
STOP_GRACE = 10  # seconds sessions in flight get at shutdown
LOCK_WAIT = 5  # seconds to wait at start for a `queue` command holding the lock
REPORT_RETRY = 60  # seconds before a bounce that could not be handed on is tried again


class RelayStartError(Exception):
    """The queue cannot be used; one line for the operator."""


class Stopping(Exception):
    pass


def _age(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} hours"
    return f"{seconds:.0f} seconds"


class RelayService(service.Service):
    name = "relay"

    def __init__(self, settings, directory, store, clock=reactor):
        self.settings = settings
        self.directory = directory
        self.store = store
        self.clock = clock
        self.queue = QueueDir(settings.config.mail_root_path)
        self.entries = {}  # queue ID -> QueueEntry
        self._rounds = {}  # queue ID -> Deferred of the round in flight
        self._doomed = set()  # IDs deleted while their round was in flight
        self._held = set()  # IDs queued but not released yet (see enqueue)
        self._report_after = {}  # queue ID -> when to try a failed bounce hand-off again
        self._due_at = {}  # queue ID -> when it is due, for entries waiting (not in a round)
        self._heap = []  # (due, queue ID), some stale: _due_at says which are current
        self._removals = []  # (queue ID, Deferred) waiting for the next removal batch
        self._removing = False
        self._sessions = set()
        self._waits = set()  # Deferreds to fail with Stopping at stop (DNS lookups)
        self._timer = None
        self._poller = None
        self._polling = False
        self._running = False
        self._prepared = False
        self._router = None
        self._router_key = None

    @property
    def config(self):
        return self.settings.config

    # -- start and stop ---------------------------------------------------------------

    def prepare(self):
        """Blocking start-up work: take the queue, repair and load it."""
        if self._prepared:
            return
        self.queue.prepare()
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                self.queue.lock()
                break
            except QueueLocked:
                if time.monotonic() > deadline:
                    raise RelayStartError(
                        f"the outbound queue {self.queue.root} is in use by another process "
                        "(another rmail on the same mail_root?); stop it first")
                time.sleep(0.1)
        control.remove_stale(self.queue)
        entries, notes = self.queue.load()
        for note in notes:
            log.warn("relay: {note}", note=note)
        self.entries = {e.id: e for e in entries}
        self._prepared = True
        if entries:
            log.info("relay: {n} messages in the queue", n=len(entries))

    def startService(self):
        self.prepare()
        super().startService()
        self._running = True
        self._poller = task.LoopingCall(self._poll_commands)
        self._poller.clock = self.clock
        self._poller.start(control.POLL, now=True)
        for entry in list(self.entries.values()):
            if entry.finished:  # a crash after the last save, before the removal
                self._remove(entry)
            else:
                self._touch(entry)
        self._schedule()

    @defer.inlineCallbacks
    def stopService(self):
        self._running = False
        super().stopService()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self._poller is not None and self._poller.running:
            self._poller.stop()
        waits, self._waits = self._waits, set()
        for wait in waits:
            wait.errback(Failure(Stopping()))
        rounds = list(self._rounds.values())
        if rounds:
            log.info("relay: stopping: waiting up to {grace} s for {n} attempts in flight",
                     grace=STOP_GRACE, n=len(rounds))
            cut = self.clock.callLater(STOP_GRACE, self._cut_off)
            yield defer.DeferredList(rounds)
            if cut.active():
                cut.cancel()
        self.queue.unlock()
        self._prepared = False
        log.info("relay: stopped; {n} messages stay queued", n=len(self.entries))

    def _cut_off(self):
        log.warn("relay: {n} sessions still running after {grace} s; cut off, their "
                 "recipients stay queued", n=len(self._sessions), grace=STOP_GRACE)
        for session in list(self._sessions):
            if session.transport is None:
                session.connecting.cancel()
            else:
                session.abort()

    def _stoppable(self, d):
        """*d*'s result, or Stopping as soon as the service stops (for DNS waits)."""
        out = defer.Deferred()
        self._waits.add(out)

        def fire(result):
            if out in self._waits:
                self._waits.discard(out)
                (out.errback if isinstance(result, Failure) else out.callback)(result)
            elif isinstance(result, Failure):
                return None  # nobody waits any more
        d.addBoth(fire)
        return out

    # -- queueing -------------------------------------------------------------------------

    def enqueue(self, message, sender: str, recipients, hold=False):
        """Queue a finished message (an IMessageWriter, whose file stays the caller's)
        for *recipients*; Deferred firing with the queue ID once it is durable.

        With *hold* nothing is sent until ``release``: the caller has more to make
        durable first (the local copies of the same message) and may ``cancel``."""
        queue_id = new_id(self.clock.seconds())
        if hold:
            self._held.add(queue_id)
        d = threads.deferToThread(self.queue.add, queue_id, sender, list(recipients),
                                  message.path)

        def added(entry):
            self.entries[entry.id] = entry
            log.info("relay: id={id} queued from=<{sender}> to={to} size={size}",
                     id=entry.id, sender=sender, size=entry.size,
                     to=",".join(f"<{r.address}>" for r in entry.recipients))
            self._touch(entry)
            self._schedule()
            return entry.id

        def failed(failure):
            self._held.discard(queue_id)
            return failure
        return d.addCallbacks(added, failed)

    def release(self, queue_id: str) -> None:
        """Let a held entry go (its message was accepted as a whole)."""
        self._held.discard(queue_id)
        if queue_id in self.entries:
            self._touch(self.entries[queue_id])
        self._schedule()

    def cancel(self, queue_id: str):
        """Take back a held entry (its message was not accepted after all)."""
        self._held.discard(queue_id)
        entry = self.entries.get(queue_id)
        if entry is None:
            return defer.succeed(None)
        log.info("relay: id={id} withdrawn: the rest of its delivery failed", id=queue_id)
        return self._remove(entry)

    @defer.inlineCallbacks
    def enqueue_bytes(self, data: bytes, sender: str, recipients):
        writer = self.store.new_message()
        try:
            writer.write(data)
            yield writer.finish()
            queue_id = yield self.enqueue(writer, sender, recipients)
        finally:
            writer.discard()
        return queue_id

    # -- scheduling ---------------------------------------------------------------------

    def _due(self, entry):
        if entry.id in self._held:
            return None
        due = entry.due()
        if entry.unreported():
            report = self._report_after.get(entry.id, 0)
            due = report if due is None else min(due, report)
        return due

    def _touch(self, entry):
        """Note when *entry* (changed, and not in a round) is next due."""
        due = None
        if entry.id in self.entries and entry.id not in self._rounds:
            due = self._due(entry)
        if due is None:
            self._due_at.pop(entry.id, None)
            return
        self._due_at[entry.id] = due
        heapq.heappush(self._heap, (due, entry.id))
        if len(self._heap) > 4 * len(self._due_at) + 64:  # drop the stale ones
            self._heap = [(d, i) for i, d in self._due_at.items()]
            heapq.heapify(self._heap)

    def _earliest(self):
        """(due, queue ID) of the entry due first, or None."""
        while self._heap:
            due, queue_id = self._heap[0]
            if self._due_at.get(queue_id) == due:
                return due, queue_id
            heapq.heappop(self._heap)
        return None

    def _schedule(self):
        """(Re)arm the one timer for the earliest entry not being attempted."""
        if not self._running:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if len(self._rounds) >= MAX_ROUNDS:
            return  # a round that ends schedules again
        earliest = self._earliest()
        if earliest is not None:
            delay = max(0.0, earliest[0] - self.clock.seconds())
            self._timer = self.clock.callLater(delay, self._run_due)

    def _run_due(self):
        self._timer = None
        if not self._running:
            return
        now = self.clock.seconds()
        ready = []
        while len(self._rounds) + len(ready) < MAX_ROUNDS:
            earliest = self._earliest()
            if earliest is None or earliest[0] > now:
                break
            heapq.heappop(self._heap)
            del self._due_at[earliest[1]]
            ready.append(earliest[1])
        for queue_id in ready:
            entry = self.entries[queue_id]
            d = self._round(entry)
            self._rounds[queue_id] = d
            d.addErrback(self._round_failed, entry)
            d.addBoth(self._round_done, queue_id)
        self._schedule()

    def _round_failed(self, failure, entry):
        """A bug or a disk error: log it, and leave the entry alone for a while rather
        than retrying it in a tight loop."""
        log.failure("relay: id={id}: the attempt failed; next try in {s} s", failure,
                    id=entry.id, s=REPORT_RETRY)
        later = self.clock.seconds() + REPORT_RETRY
        for r in entry.pending():
            r.next_attempt = max(r.next_attempt, later)
        if entry.unreported():
            self._report_after[entry.id] = later

    def _round_done(self, _, queue_id):
        self._rounds.pop(queue_id, None)
        if queue_id in self.entries:
            self._touch(self.entries[queue_id])
        self._schedule()

    # -- one round: every due recipient of one entry ----------------------------------------

    @defer.inlineCallbacks
    def _round(self, entry):
        now = self.clock.seconds()
        due = [r for r in entry.pending() if r.next_attempt <= now]
        relay = self.config.relay
        groups = defaultdict(list)
        for r in due:
            groups["" if relay.smarthost else r.domain].append(r)
        if groups:
            outcomes = yield defer.DeferredList(
                [self._attempt(entry, rcpts) for rcpts in groups.values()], consumeErrors=True)
            if entry.id in self._doomed:
                self._doomed.discard(entry.id)
                return
            if not entry.finished:  # else the removal below records the outcome
                yield threads.deferToThread(self.queue.save, entry)
            for ok, failure in outcomes:
                if not ok:  # what the other domains got is saved; now _round_failed
                    failure.raiseException()
        if entry.unreported() and self._running:
            yield self._report(entry)
        if entry.finished:
            yield self._remove(entry)

    @defer.inlineCallbacks
    def _attempt(self, entry, recipients):
        """One domain's due recipients: resolve, then try the hosts in order until one
        gives an answer that is not about the connection itself."""
        relay = self.config.relay
        try:
            hosts = yield self._stoppable(self._router_for(relay.dns_servers).route(
                recipients[0].domain, relay.port, relay.smarthost))
        except Stopping:
            return
        except RouteError as e:
            self._settle(entry, recipients, e.reply, "-", None)
            return
        targets = [(host, address) for host in hosts for address in host.addresses]
        targets = targets[:MAX_ADDRESSES]
        for i, (host, address) in enumerate(targets):
            if not self._running:
                return
            result = yield self._session(entry, recipients, host, address, True)
            if result.tls_failed is not None and self._running:
                log.warn("relay: id={id} host={host}: STARTTLS handshake failed ({reason}); "
                         "retrying the same host in clear", id=entry.id, host=result.label,
                         reason=result.tls_failed)
                result = yield self._session(entry, recipients, host, address, False)
            if result.interrupted:
                return  # cut off at shutdown: the attempt does not count
            if result.next_host and i < len(targets) - 1:
                self._log_attempt(entry, result, [
                    (r, "tries the next host", result.reply_for(r.address)) for r in recipients])
                continue
            self._settle(entry, recipients, result, result.label, result)
            return

    def _session(self, entry, recipients, host, address, use_tls):
        job = Job(entry.id, entry.sender, [r.address for r in recipients],
                  self.queue.message_path(entry.id), entry.size, self.config.hostname)
        session, d = open_session(job, host.name, address, host.port, use_tls, self.clock)
        self._sessions.add(session)

        def done(result):
            self._sessions.discard(session)
            return result
        return d.addCallback(done)

    def _settle(self, entry, recipients, outcome, label, result):
        """Record what an attempt got for each recipient (*outcome*: a SessionResult, or
        one RemoteReply for all) and decide what comes next; log the attempt."""
        now = self.clock.seconds()
        relay = self.config.relay
        verdicts = []
        for r in recipients:
            reply = outcome.reply_for(r.address) if result is not None else outcome
            r.attempts += 1
            r.last_attempt = now
            r.last_reply = str(reply)
            r.last_host = label if label != "-" else ""
            if reply.ok:
                crashpoint.reach("relay.accepted")
                r.status = DELIVERED
                verdict = "delivered"
            elif reply.permanent:
                r.status = FAILED
                verdict = "bounced"
            elif now - entry.created >= relay.max_queue_time:
                r.status = FAILED
                r.last_reply = str(results.EXPIRED(age=_age(now - entry.created), last=reply))
                verdict = "bounced"
            else:
                intervals = relay.retry_intervals or [60]
                wait = intervals[min(r.attempts, len(intervals)) - 1]
                r.next_attempt = max(now, min(now + wait, entry.created + relay.max_queue_time))
                verdict = "deferred"
            verdicts.append((r, verdict, r.last_reply))
        self._log_attempt(entry, result, verdicts, host=label)

    def _log_attempt(self, entry, result, verdicts, host=None):
        if result is None:
            tls = "-"
        else:
            tls = result.tls or ("failed" if result.tls_failed else "no")
        log.info("relay: id={id} from=<{sender}> host={host} tls={tls} attempt={attempt} "
                 "{outcome}", id=entry.id, sender=entry.sender,
                 host=host or result.label, tls=tls,
                 attempt=max(r.attempts for r, _, _ in verdicts) + (0 if host else 1),
                 outcome="; ".join(f'<{r.address}> {verdict} "{reply}"'
                                   for r, verdict, reply in verdicts))

    def _router_for(self, dns_servers):
        key = tuple(dns_servers or ())
        if self._router is None or key != self._router_key:
            self._router = Router(dns_servers, self.clock)
            self._router_key = key
        return self._router

    # -- bounces ----------------------------------------------------------------------------

    @defer.inlineCallbacks
    def _report(self, entry):
        failed = entry.unreported()
        if entry.sender == "":
            for r in failed:
                r.reported = True
            log.info("relay: id={id} undeliverable bounce to {to} dropped (a bounce is never "
                     "bounced)", id=entry.id, to=",".join(f"<{r.address}>" for r in failed))
            yield threads.deferToThread(self.queue.save, entry)
            return
        try:
            header = yield threads.deferToThread(self.queue.read_header, entry.id)
            data = dsn.build(self.config.hostname, entry, failed, header, self.clock.seconds())
            how = yield self._hand_on_bounce(entry.sender, data)
        except Exception:
            log.failure("relay: id={id}: cannot hand on the bounce to <{sender}>; trying again "
                        "in {s} s", id=entry.id, sender=entry.sender, s=REPORT_RETRY)
            self._report_after[entry.id] = self.clock.seconds() + REPORT_RETRY
            return
        self._report_after.pop(entry.id, None)
        for r in failed:
            r.reported = True
        yield threads.deferToThread(self.queue.save, entry)
        log.info("relay: id={id} bounce to <{sender}> for {to}: {how}", id=entry.id,
                 sender=entry.sender, to=",".join(f"<{r.address}>" for r in failed), how=how)

    @defer.inlineCallbacks
    def _hand_on_bounce(self, sender: str, data: bytes):
        domain = sender.rpartition("@")[2]
        if not self.directory.is_local_domain(domain):
            queue_id = yield self.enqueue_bytes(data, "", [sender])
            return f"queued as {queue_id}"
        user = self.directory.resolve(sender)
        if user is None:
            return "dropped: the sender is no longer a local user"
        writer = self.store.new_message()
        writer.write(b"Return-Path: <>\r\n" + data)
        try:
            yield writer.finish()
            yield self.store.deliver(writer, [user.address])
        except BaseException:
            writer.discard()
            raise
        return f"delivered to the INBOX of {user.address}"

    def _remove(self, entry):
        """Take *entry* out of the queue; Deferred firing once that is durable.  Removals
        are group-committed: while one batch is on its way to the disk the next gathers,
        so finishing N messages at once costs one directory fsync, not N."""
        self.entries.pop(entry.id, None)
        self._report_after.pop(entry.id, None)
        self._due_at.pop(entry.id, None)
        d = defer.Deferred()
        self._removals.append((entry.id, d))
        if not self._removing:
            self._remove_batch()
        return d

    def _remove_batch(self):
        batch, self._removals = self._removals, []
        self._removing = True
        done = threads.deferToThread(self.queue.remove, *(queue_id for queue_id, _ in batch))

        def finished(result):
            for _, d in batch:
                (d.errback if isinstance(result, Failure) else d.callback)(result)
            if self._removals:
                self._remove_batch()
            else:
                self._removing = False
        done.addBoth(finished)

    # -- operator commands (python run.py queue ...) --------------------------------------------

    def _poll_commands(self):
        if self._polling:
            return
        self._polling = True
        d = threads.deferToThread(control.take_requests, self.queue)
        d.addCallback(self._answer_all)
        d.addErrback(lambda f: log.failure("relay: reading queue commands failed", f))
        d.addBoth(lambda _: setattr(self, "_polling", False))

    @defer.inlineCallbacks
    def _answer_all(self, requests):
        for nonce, request in requests:
            try:
                reply = yield self.command(request)
            except Exception as e:
                log.failure("relay: queue command {request} failed", request=request)
                reply = {"ok": False, "error": f"the server could not do it: {e}"}
            yield threads.deferToThread(control.answer, self.queue, nonce, reply)

    @defer.inlineCallbacks
    def command(self, request: dict):
        """Carry out a ``queue retry|delete`` request; the answer for the CLI."""
        action = request.get("action")
        queue_id = request.get("id")
        if action == "retry" and request.get("all"):
            targets = list(self.entries.values())
        elif action in control.ACTIONS and isinstance(queue_id, str):
            if queue_id not in self.entries:
                return {"ok": False, "error": f"no message with queue ID {queue_id} in the queue"}
            targets = [self.entries[queue_id]]
        else:
            return {"ok": False, "error": f"unknown request {request!r}"}
        if action == "delete":
            entry = targets[0]
            pending = len(entry.pending())
            if entry.id in self._rounds:
                self._doomed.add(entry.id)
                note = " (an attempt in flight finishes first)"
            else:
                note = ""
            yield self._remove(entry)
            log.info("relay: id={id} deleted by the operator with {n} recipients pending; "
                     "no bounce sent", id=entry.id, n=pending)
            return {"ok": True, "message": f"deleted {entry.id}{note}"}
        now = self.clock.seconds()
        changed, busy = [], 0
        for entry in targets:
            if entry.id in self._rounds:
                busy += 1
                continue
            for r in entry.pending():
                r.next_attempt = now
            self._report_after.pop(entry.id, None)
            changed.append(entry)
        for entry in changed:
            yield threads.deferToThread(self.queue.save, entry)
            self._touch(entry)
        self._schedule()
        log.info("relay: retry requested by the operator for {n} messages", n=len(changed))
        message = f"{len(changed)} message{'s' if len(changed) != 1 else ''} will be attempted now"
        if busy:
            message += f"; {busy} already being attempted"
        return {"ok": True, "message": message}
