"""The client's IMAP connection: log in, list folders, page through messages, change them.

One ``MailSession`` belongs to the UI thread.  Every network failure surfaces as
``ConnectionLost`` and drops the connection; the next call logs in again and re-selects
the open folder, which is how the UI "reconnects on the next action".  A refusal by the
server (NO/BAD) is a ``ServerRefused`` carrying the server's own text.

Commands used, all RFC 3501 unless noted: STARTTLS, AUTHENTICATE PLAIN or LOGIN, LIST
(SPECIAL-USE attributes, RFC 6154), STATUS, SELECT, UID SEARCH, UID FETCH, UID STORE,
UID MOVE (RFC 6851) or else UID COPY + \\Deleted + UID EXPUNGE (RFC 4315) / EXPUNGE,
APPEND, IDLE (RFC 2177; see ``watch.py``).
"""

import imaplib
import logging
import socket
import ssl

from rmail.client import wire

log = logging.getLogger("rmail.client")

TIMEOUT = 60  # seconds a command may take before the connection counts as lost


class ConnectionLost(Exception):
    """The server went away; the next session call connects again."""


class ServerRefused(Exception):
    """The server answered NO or BAD; str() is a sentence for the status line."""


class LoginRefused(ServerRefused):
    """Wrong user or password, or no way to log in."""


class _OwnBuffer:
    """imaplib reads through this buffer instead of a file object.

    Two reasons: the IDLE loop must know whether a response is already waiting before
    it blocks in select(), and nothing the server sends in plaintext after STARTTLS's
    OK may be read as if it came over TLS (a buffered file object would hide both)."""

    _inbox = b""

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise self.abort("the server closed the connection")
        self._inbox += chunk

    def readline(self):
        while True:
            end = self._inbox.find(b"\n")
            if end >= 0:
                line, self._inbox = self._inbox[:end + 1], self._inbox[end + 1:]
                return line
            if len(self._inbox) > imaplib._MAXLINE:
                raise self.error("a response line is too long")
            self._fill()

    def read(self, size):
        chunks, have = [], 0
        if self._inbox:
            head, self._inbox = self._inbox[:size], self._inbox[size:]
            chunks.append(head)
            have = len(head)
        while have < size:
            chunk = self.sock.recv(min(size - have, 1 << 20))
            if not chunk:
                raise self.abort("the server closed the connection")
            chunks.append(chunk)
            have += len(chunk)
        return b"".join(chunks)

    def waiting(self) -> bool:
        """True when a response can be read without waiting for the network."""
        return bool(self._inbox) or (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0)

    def starttls(self, ssl_context=None):
        typ, dat = self._simple_command("STARTTLS")
        if typ != "OK":
            raise self.error("the server refused STARTTLS")
        if self._inbox:
            raise self.abort("the server sent data after agreeing to STARTTLS")
        self.sock = ssl_context.wrap_socket(self.sock, server_hostname=self.host)
        self._tls_established = True
        self._get_capabilities()
        return typ, dat


class PlainConnection(_OwnBuffer, imaplib.IMAP4):
    pass


class TLSConnection(_OwnBuffer, imaplib.IMAP4_SSL):
    pass


_NETWORK_ERRORS = (imaplib.IMAP4.abort, OSError, EOFError)


def tls_context(account) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=account.cafile)
    if account.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _describe(error) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return ("the server's certificate is not trusted (" + (error.verify_message or str(error))
                + "); use --cafile, or --insecure for a test server")
    if isinstance(error, socket.timeout):
        return "no answer from the server"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    text = str(error) or type(error).__name__
    return text.replace("socket error: ", "")


def open_connection(account, password, timeout=TIMEOUT):
    """A logged-in imaplib connection, secured as the account says.

    Raises LoginRefused (a sentence) or ConnectionLost (network, TLS)."""
    host, port = account.imap_address
    try:
        if account.tls == "tls":
            conn = TLSConnection(host, port, ssl_context=tls_context(account), timeout=timeout)
        else:
            conn = PlainConnection(host, port, timeout=timeout)
            if account.tls == "starttls":
                if "STARTTLS" not in conn.capabilities:
                    conn.shutdown()
                    raise LoginRefused(f"{host}:{port} does not offer STARTTLS; "
                                       "use --tls tls or another port")
                conn.starttls(tls_context(account))
        try:
            if "AUTH=PLAIN" in conn.capabilities:
                token = f"\0{account.user}\0{password}".encode()
                conn.authenticate("PLAIN", lambda _challenge: token)
            else:
                conn.login(account.user, password)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as e:
            conn.shutdown()
            raise LoginRefused(f"login as {account.user} refused: {_server_text(e)}")
    except _NETWORK_ERRORS as e:
        raise ConnectionLost(f"cannot reach {host}:{port}: {_describe(e)}") from e
    return conn


def _server_text(error) -> str:
    """imaplib words some refusals as the repr of the server's bytes: b'...'."""
    text = str(error).strip()
    if len(text) > 2 and text[:2] in ("b'", 'b"') and text[-1] == text[1]:
        text = text[2:-1]
    return text or "no reason given"


def _check(typ, data, what):
    if typ != "OK":
        detail = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
        raise ServerRefused(f"{what}: {detail or typ}")
    return data


class MailSession:
    """The UI's IMAP connection (see the module docstring)."""

    def __init__(self, account, password, timeout=TIMEOUT):
        self.account = account
        self._password = password
        self.timeout = timeout
        self.conn = None
        self.selected = None  # the folder the server has selected for us
        self.uidnext = None
        self.capabilities = frozenset()

    # --- connection -----------------------------------------------------------------

    def connect(self):
        self.conn = open_connection(self.account, self._password, self.timeout)
        self.capabilities = frozenset(self.conn.capabilities)
        log.info("connected to %s:%s as %s", *self.account.imap_address, self.account.user)
        if self.selected is not None:
            folder, self.selected = self.selected, None
            self.select(folder)

    @property
    def connected(self) -> bool:
        return self.conn is not None

    def close(self):
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.logout()
            except (*_NETWORK_ERRORS, imaplib.IMAP4.error):
                pass

    def _call(self, what, fn, *args):
        """Run one imaplib call; a network failure drops the connection."""
        if self.conn is None:
            self.connect()
        try:
            typ, data = fn(self.conn, *args)
        except _NETWORK_ERRORS as e:
            self._drop()
            raise ConnectionLost(f"connection to {self.account.host} lost: {_describe(e)}") from e
        except imaplib.IMAP4.error as e:
            raise ServerRefused(f"{what}: {_server_text(e)}")
        finally:
            # imaplib keeps every untagged response until asked for it; what the UI
            # needs has been read by now, and the IDLE watch reports changes.
            if self.conn is not None:
                self.conn.untagged_responses.clear()
        return _check(typ, data, what)

    def _drop(self):
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.shutdown()
            except OSError:
                pass

    # --- folders ---------------------------------------------------------------------

    def folders(self) -> list:
        """Every folder as wire.Mailbox, in the server's order."""
        data = self._call("LIST", lambda c: c.list('""', "*"))
        out = []
        for segments in wire.responses(data):
            box = wire.mailbox(segments)
            if box is not None:
                out.append(box)
        return out

    def status(self, folder) -> dict:
        """{MESSAGES, UNSEEN, UIDNEXT} of a folder that is not necessarily selected."""
        data = self._call(f"STATUS {folder}", lambda c: c.status(
            wire.folder_argument(folder), "(MESSAGES UNSEEN UIDNEXT)"))
        for segments in wire.responses(data):
            return wire.status(segments)
        return {}

    def select(self, folder) -> int:
        """Select *folder* (read-write); the number of messages in it."""
        self.selected = None
        data = self._call(f"SELECT {folder}",
                          lambda c: self._select_keeping_uidnext(c, folder))
        self.selected = folder
        return int(data[0]) if data and data[0] and data[0].isdigit() else 0

    def _select_keeping_uidnext(self, conn, folder):
        typ, data = conn.select(wire.folder_argument(folder))
        uidnext = conn.untagged_responses.get("UIDNEXT", [b""])[-1]
        self.uidnext = int(uidnext) if uidnext.isdigit() else None
        return typ, data

    # --- messages in the selected folder --------------------------------------------

    def check(self):
        """NOOP: the server tells this session about new and expunged messages with the
        answer (RFC 3501 section 6.1.2); until then SEARCH sees the folder as it was."""
        self._call("NOOP", lambda c: c.noop())

    def uids(self, criteria="ALL") -> list:
        data = self._call("SEARCH", lambda c: c.uid("SEARCH", criteria))
        return [int(u) for u in b" ".join(d for d in data if d).split() if u.isdigit()]

    def search(self, words: str) -> list:
        """UIDs of messages whose headers or body contain *words* (SEARCH TEXT)."""
        try:
            words.encode("ascii")
        except UnicodeEncodeError:
            def run(c):
                c.literal = words.encode("utf-8")
                return c.uid("SEARCH", "CHARSET", "UTF-8", "TEXT")
            data = self._call("SEARCH", run)
        else:
            data = self._call("SEARCH", lambda c: c.uid("SEARCH", "TEXT", wire.quoted(words)))
        return [int(u) for u in b" ".join(d for d in data if d).split() if u.isdigit()]

    def envelopes(self, uids) -> dict:
        """{uid: wire.Envelope} for *uids* of the selected folder."""
        if not uids:
            return {}
        data = self._call("FETCH", lambda c: c.uid("FETCH", wire.uid_set(uids),
                                                    wire.FETCH_ENVELOPES))
        return {uid: wire.envelope(uid, items) for uid, items in wire.fetch_items(data).items()}

    def flags(self, uids) -> dict:
        if not uids:
            return {}
        data = self._call("FETCH", lambda c: c.uid("FETCH", wire.uid_set(uids), "(UID FLAGS)"))
        return {uid: wire.flags(items.get("FLAGS"))
                for uid, items in wire.fetch_items(data).items()}

    def message(self, uid) -> bytes | None:
        """The whole message, without setting \\Seen (the UI marks it read itself)."""
        data = self._call("FETCH", lambda c: c.uid("FETCH", str(uid), "(UID BODY.PEEK[])"))
        items = wire.fetch_items(data).get(uid, {})
        for key, value in items.items():
            if key.startswith("BODY[") and isinstance(value, bytes):
                return bytes(value)
        return None

    def set_flags(self, uids, names, on: bool):
        if not uids:
            return
        op = "+FLAGS.SILENT" if on else "-FLAGS.SILENT"
        self._call("STORE", lambda c: c.uid("STORE", wire.uid_set(uids), op,
                                             "(" + " ".join(names) + ")"))

    def move(self, uids, folder):
        """Move messages to *folder*: UID MOVE, or COPY + \\Deleted + expunge where the
        server lacks MOVE (then plain EXPUNGE also removes other \\Deleted messages
        unless the server has UIDPLUS)."""
        if not uids:
            return
        target = wire.folder_argument(folder)
        if "MOVE" in self.capabilities:
            self._call(f"MOVE to {folder}", lambda c: c.uid("MOVE", wire.uid_set(uids), target))
            return
        self._call(f"COPY to {folder}", lambda c: c.uid("COPY", wire.uid_set(uids), target))
        self.expunge(uids)

    def expunge(self, uids):
        """Delete messages for good (used in Trash itself, and by move's fallback)."""
        self.set_flags(uids, ["\\Deleted"], True)
        if "UIDPLUS" in self.capabilities:
            self._call("EXPUNGE", lambda c: c.uid("EXPUNGE", wire.uid_set(uids)))
        else:
            self._call("EXPUNGE", lambda c: c.expunge())

    def append(self, folder, message: bytes, flags=("\\Seen",)):
        """Store a message in *folder* (the sent copy); creates the folder if told to."""
        flag_list = "(" + " ".join(flags) + ")" if flags else None
        target = wire.folder_argument(folder)
        try:
            self._call(f"APPEND to {folder}", lambda c: c.append(target, flag_list, None, message))
        except ServerRefused as e:
            if "TRYCREATE" not in str(e):
                raise
            self._call(f"CREATE {folder}", lambda c: c.create(target))
            self._call(f"APPEND to {folder}", lambda c: c.append(target, flag_list, None, message))
