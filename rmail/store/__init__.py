"""Mail storage: one backend-neutral, Deferred-returning interface and its backends."""

from rmail.store import workers
from rmail.store.hub import ChangeHub
from rmail.store.shardstore import ShardStore


def open_store(config, hub=None, describe=None):
    """The IMailStore that ``storage.backend`` names (not yet opened).

    *describe* (raw message -> summary tuple) is computed once per delivered message and
    kept in the index; see rmail.imap.fetch.describe."""
    workers.configure(config.storage.threads)
    backends = {"shard": ShardStore}
    return backends[config.storage.backend](config.mail_root_path, hub or ChangeHub(), describe)
