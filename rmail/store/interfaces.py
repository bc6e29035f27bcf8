"""The store's contract: what every backend provides, and what each call fires with.

Every method that touches storage returns a Deferred and never blocks the reactor
thread.  A Deferred that fires means the change is durable: message data fsynced,
its name in place, the index committed.  Failures are the exceptions below; anything
else is a bug or an I/O error (``OSError``), which protocols answer as a temporary
failure.

Changes are announced on the store's ``hub`` (see ``rmail.store.hub``) after they are
committed, on the reactor thread, so every session sees mail from SMTP, IMAP and HTTP
the same way.
"""

from dataclasses import dataclass
from typing import NamedTuple, Optional

from zope.interface import Attribute, Interface


class StoreError(Exception):
    """A refused store operation; the message is one sentence for people."""


class InvalidFolderName(StoreError):
    pass


class InvalidFlag(StoreError):
    pass


class NoSuchFolder(StoreError):
    pass


class FolderExists(StoreError):
    pass


class FolderNotDeletable(StoreError):
    """INBOX, or a folder that still has sub-folders."""


class NoSuchMessage(StoreError):
    pass


@dataclass(frozen=True)
class FolderInfo:
    name: str
    special_use: Optional[str]
    subscribed: bool
    uidvalidity: int
    uidnext: int
    messages: int
    unseen: int
    recent: int = 0  # messages no session has seen yet (RFC 3501 2.3.2)


class MessageInfo(NamedTuple):
    """One message as the index knows it (a tuple: folders of 10,000 are built often)."""

    uid: int
    flags: frozenset
    size: int
    internaldate: float  # seconds since the epoch
    path: str  # the message file; read it from a thread
    # Computed once at delivery by the store's describer (None when not available):
    # IMAP's ENVELOPE, BODY and BODYSTRUCTURE, so list views never open the file.
    envelope: Optional[bytes] = None
    body: Optional[bytes] = None
    bodystructure: Optional[bytes] = None
    header: Optional[bytes] = None  # the raw header block, for SEARCH (when asked for)
    preview: Optional[str] = None  # the text's opening words (asked for with the header)
    # SEARCH's texts of a few header fields (``rmail.imap.searchtext.kept_texts``), when
    # asked for; then ``header`` comes too, but only where these were not computed.
    texts: Optional[list] = None


class IMessageWriter(Interface):
    """A message being received: written in chunks, fsynced by ``finish``."""

    size = Attribute("Bytes written so far.")
    backlog = Attribute("Bytes accepted by write() but not yet on disk.")
    finished = Attribute("True once finish(), take() or discard() was called.")

    def write(data):
        """Append bytes; the disk write happens later, off the reactor thread."""

    def finish():
        """Deferred firing once every byte is written and fsynced; then deliverable."""

    def take():
        """The whole message as bytes if none of it has gone to the disk yet (the writer
        is then finished and the taker writes it durably to its spool path), else None."""

    def discard():
        """Drop the message (Deferred); nothing of it becomes visible anywhere."""


class IUserStore(Interface):
    """One user's folders and messages."""

    address = Attribute("The user's address.")

    def folders():
        """Deferred list of FolderInfo, sorted by name, INBOX first."""

    def status(folder):
        """Deferred FolderInfo; NoSuchFolder."""

    def uidvalidity(folder):
        """Deferred UIDVALIDITY of *folder* (cheaper than status); NoSuchFolder."""

    def create_folder(folder):
        """Create *folder* and missing parents; FolderExists, InvalidFolderName."""

    def delete_folder(folder):
        """Delete a folder and its messages; FolderNotDeletable for INBOX or with children."""

    def rename_folder(old, new):
        """Rename with its sub-folders; renaming INBOX moves its messages (RFC 3501 6.3.5)."""

    def subscribe(folder, subscribed):
        """Record the subscription state of *folder*."""

    def append(folder, message, flags=(), internaldate=None):
        """Deliver an IMessageWriter's message into *folder*; Deferred new UID.  One not
        finished yet is finished by the store (in its commit's turn, when it can)."""

    def messages(folder, uids=None, summaries=True, headers=False, texts=False,
                 containing=()):
        """Deferred list of MessageInfo in UID order (all, or those of *uids* that exist);
        without *summaries* the cached ENVELOPE/BODY/BODYSTRUCTURE are left out (None),
        with *headers* each message's header block is read from the index, with *texts*
        the header texts kept for SEARCH.  *containing*: (kept text's position, string)
        pairs; then only messages whose kept texts hold each string are listed (and those
        with none kept: the caller tests them itself)."""

    def page(folder, offset, limit):
        """Deferred (number of messages, [UIDs of one page, newest first]): the messages
        *offset* to *offset* + *limit* counting from the highest UID down."""

    def select(folder, claim_recent=True):
        """Deferred (FolderInfo, [(UID, flags)] in UID order, [UIDs \\Recent for this
        session]) read together; with *claim_recent* those messages stop being \\Recent
        for everyone else (RFC 3501 2.3.2), which is remembered across restarts."""

    def claim_recent(folder, uid):
        """A session with *folder* selected was told of its messages up to *uid* first:
        they stop being \\Recent for everyone else (RFC 3501 2.3.2).  Answers nothing:
        what the store reads next counts them so."""

    def set_flags(folder, uids, flags, mode="replace"):
        """mode replace/add/remove; Deferred {uid: new flags} for the messages that exist."""

    def expunge(folder, uids=None):
        """Remove messages flagged \\Deleted (only among *uids* when given); Deferred UIDs."""

    def remove(folder, uids):
        """Remove messages whatever their flags; Deferred list of UIDs removed."""

    def copy(source, uids, target):
        """Deferred list of (source UID, new UID) pairs, in UID order."""

    def move(source, uids, target):
        """As copy, and the originals are gone, in one transaction (RFC 6851)."""


class IMailStore(Interface):
    """All users' mail."""

    hub = Attribute("The ChangeHub announcing committed changes.")

    def open():
        """Deferred: prepare storage and repair what a crash left (spool leftovers)."""

    def new_message():
        """A fresh IMessageWriter."""

    def deliver(message, addresses, folder="INBOX"):
        """Deliver one finished message to each user's *folder*; Deferred {address: uid}."""

    def user(address):
        """The IUserStore of a local user (cheap; storage opens on first use)."""

    def close():
        """Deferred: finish writes in progress and release files."""
