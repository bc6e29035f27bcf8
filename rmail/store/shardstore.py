"""The shard backend's IMailStore: the spool, one ``Shard`` per user, and delivery of
one received message into several users' shards with a single copy on disk.

The layout and the durability order are described once, in ``rmail.store.shard``.
"""

import fcntl
import os

from twisted.internet import defer, threads
from twisted.logger import Logger
from zope.interface import implementer

from rmail import durable
from rmail.store import hub as changes, names
from rmail.store.interfaces import IMailStore, StoreError
from rmail.store.shard import Shard
from rmail.store.spool import MessageWriter

log = Logger(namespace="rmail.store")


@implementer(IMailStore)
class ShardStore:
    def __init__(self, mail_root: str, hub=None, describe=None):
        self.mail_root = mail_root
        self.describe = describe  # raw bytes -> (envelope, body, bodystructure), at delivery
        self.spool_dir = os.path.join(mail_root, "spool")
        self.hub = hub or changes.ChangeHub()
        self._shards: dict[str, Shard] = {}
        self._spool_lock = None  # the spool directory's fd, flock()ed while this store owns it

    def shard_path(self, address: str) -> str:
        local, _, domain = address.lower().rpartition("@")
        for part in (local, domain):
            if not part or part in (".", "..") or "/" in part or "\0" in part:
                raise StoreError(f"{address!r} cannot name a mailbox")
        return os.path.join(self.mail_root, "domains", domain, "mailboxes", local)

    def open(self):
        return threads.deferToThread(self._prepare)

    def _prepare(self):
        durable.make_dirs(self.spool_dir)
        # The spool is swept only by the process that owns it (an flock on the directory,
        # held until close): a second rmail started by mistake on the same mail_root must
        # not delete the files the running one is receiving into.
        if self._spool_lock is None:
            fd = os.open(self.spool_dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                log.warn("store: {dir} is in use by another process; its files are left alone",
                         dir=self.spool_dir)
                return
            self._spool_lock = fd
        for name in sorted(os.listdir(self.spool_dir)):
            os.unlink(os.path.join(self.spool_dir, name))
            log.info("store: removed unacknowledged spool file {name}", name=name)

    def new_message(self):
        return MessageWriter(self.spool_dir)

    def user(self, address: str) -> Shard:
        address = address.lower()
        shard = self._shards.get(address)
        if shard is None:
            shard = self._shards[address] = Shard(self.shard_path(address), address, self.hub,
                                                  self.describe)
        return shard

    def deliver(self, message, addresses, folder=names.INBOX):
        """One finished message into each user's *folder*; Deferred {address: uid}.

        The spool file is renamed into the only mailbox, or linked into each of several
        and then removed: one copy on disk however many users receive it.
        """
        addresses = list(dict.fromkeys(a.lower() for a in addresses))
        if not addresses:
            return message.discard().addCallback(lambda _: {})
        consume = len(addresses) == 1
        shards = [self.user(a) for a in addresses]
        # Several users: open every shard first, so that one which cannot be opened fails
        # the delivery before any copy is placed; otherwise the others would keep a copy
        # of a message the sender was told to retry, and get it again at every retry.
        unopened = [s.ready() for s in shards if not s.is_open] if not consume else []
        d = defer.gatherResults(unopened, consumeErrors=True)

        def place(_):
            ds = [s.add_file(folder, message.path, message.size, consume=consume)
                  for s in shards]
            # Every shard finishes (links the file or fails) before the spool file goes,
            # so one shard's failure cannot make another's link fail as well.
            d = defer.DeferredList(ds, consumeErrors=True)

            def done(results):
                if not consume:
                    d2 = threads.deferToThread(_unlink_quietly, message.path)
                    return d2.addCallback(lambda _: results)
                return results
            return d.addCallback(done)
        d.addCallback(place)

        def outcome(results):
            for ok, value in results:
                if not ok:
                    return value  # the first failure
            return dict(zip(addresses, [value for _, value in results]))

        def first_error(failure):
            return failure.value.subFailure if failure.check(defer.FirstError) else failure
        return d.addCallbacks(outcome, first_error)

    def close(self):
        def release(result):
            if self._spool_lock is not None:
                os.close(self._spool_lock)  # closing releases the flock
                self._spool_lock = None
            return result
        d = defer.gatherResults([s.close() for s in self._shards.values()])
        return d.addBoth(release)


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
