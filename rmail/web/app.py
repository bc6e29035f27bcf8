"""The API's routes (docs/http.md describes each for clients).

A route translates HTTP into calls on the mail logic and back, and holds no policy:
logins go through ``rmail.auth.Authenticator`` (the checker and brute-force throttle
SMTP and IMAP use), sending through ``rmail.delivery.MailPolicy`` (the checks and the
delivery path of SMTP submission), aliases through ``rmail.directory.Directory`` (the
validation the CLI uses), and mail through the store's asynchronous interface.  So
nothing here blocks the reactor thread: store calls return Deferreds, directory
writes and CPU-heavy work (building a message, summarising a page) go to the thread
pool, and message files are streamed (``rmail.web.stream``).

Path segments arrive still percent-encoded (see ``rmail.web.site``) and are decoded
here, each on its own, so a folder name may contain ``/``.
"""

import functools
import re

from klein import Klein
from twisted.cred import credentials, error as cred_error
from twisted.internet import defer, threads
from twisted.logger import Logger
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from rmail import auth, crashpoint
from rmail.delivery import Refused
from rmail.directory import DirectoryError, split_address
from rmail.store.interfaces import StoreError
from rmail.web import autoconfig, compose, inputs, listing
from rmail.web.errors import (
    JSON, ApiError, bad_request, body, forbidden, from_store, not_found,
    too_large, unauthorized,
)
from rmail.web.stream import FileStream, open_message
from rmail.web.tokens import InvalidToken, NoKey, TokenIssuer
from rmail.web.upload import MessageUpload

log = Logger(namespace="rmail.web")

SEEN = "\\Seen"
SENT = "\\Sent"
_UPLOAD_PATH = re.compile(rb"/folders/[^/]+/messages")  # the one route whose body is a message


def _respond(request, status: int, payload) -> bytes:
    return _json(request, status, body(payload))


def _json(request, status: int, data: bytes) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", JSON)
    request.setHeader(b"Content-Length", b"%d" % len(data))
    return data


@functools.lru_cache(maxsize=1024)
def _folder_list(infos: tuple) -> bytes:
    """GET /folders's body for one listing (FolderInfos are frozen, so a listing is a key)."""
    return body({"folders": [
        {"name": f.name, "messages": f.messages, "unseen": f.unseen,
         "uidnext": f.uidnext, "special_use": f.special_use} for f in infos]})


def _no_content(request) -> bytes:
    request.setResponseCode(204)
    return b""


def _xml(request, document: bytes) -> bytes:
    request.setHeader(b"Content-Type", autoconfig.XML)
    request.setHeader(b"Content-Length", b"%d" % len(document))
    return document


def _request_body(request) -> bytes:
    return request.content.getvalue()


_PARSE_INLINE = 64 * 1024  # JSON bodies larger than this are parsed in the thread pool


def _json_body(request):
    """Deferred dict: the request's JSON object (a body of megabytes, say a long message
    to send, is parsed off the reactor thread)."""
    raw = _request_body(request)
    if len(raw) <= _PARSE_INLINE:
        return defer.maybeDeferred(inputs.json_object, raw)
    return threads.deferToThread(inputs.json_object, raw)


class API:
    """The routes, bound to one server's settings, directory, store and policy."""

    app = Klein()
    # Routes match raw segments; "//" is simply not found, never redirected (werkzeug's
    # redirects would be HTML).  No rule ends in "/", so a trailing "/" is not found too.
    app.url_map.merge_slashes = False

    def __init__(self, settings, directory, store, authenticator, policy, ports):
        self.settings = settings  # .config is the config in force (replaced on SIGHUP)
        self.directory = directory
        self.store = store
        self.authenticator = authenticator
        self.policy = policy
        self.ports = ports  # () -> {listener key: bound port}
        self.tokens = TokenIssuer(settings, directory)

    @property
    def config(self):
        return self.settings.config

    # -- authentication --------------------------------------------------------------

    def authenticated(self, headers):
        """The User of the request's bearer token; 401 otherwise."""
        values = headers.getRawHeaders(b"authorization")
        if not values:
            raise unauthorized("no token: log in with POST /auth/login and send "
                               "'Authorization: Bearer <token>'")
        scheme, _, token = values[0].decode("latin-1").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("expected 'Authorization: Bearer <token>'")
        try:
            return self.tokens.verify(token.strip())
        except InvalidToken as e:
            raise ApiError(401, str(e), {b"WWW-Authenticate":
                                         b'Bearer realm="rmail", error="invalid_token"'})

    def _user(self, request):
        return self.authenticated(request.requestHeaders)

    def body_for(self, method: bytes, path: bytes, headers):
        """Called once the headers are in: where this request's body goes.

        A message upload streams to the spool, and only for a valid token (so an
        anonymous client cannot make the server write anything); None keeps the body
        in memory."""
        if method != b"POST" or not _UPLOAD_PATH.fullmatch(path.split(b"?")[0]):
            return None
        self.authenticated(headers)
        return MessageUpload(self.store.new_message())

    # -- errors -------------------------------------------------------------------------

    def _refused(self, request, error: ApiError) -> bytes:
        log.info("http: {remote} {method} {path}: {status} {error}", remote=request.remote,
                 method=request.method.decode("latin-1"), path=request.path.decode("latin-1"),
                 status=error.status, error=error.message)
        for name, value in error.headers.items():
            request.setHeader(name, value)
        return _respond(request, error.status, {"error": error.message})

    def failed(self, request, failure) -> bytes:
        """The JSON answer to whatever a route (or matching its path) raised."""
        error = failure.value
        if isinstance(error, ApiError):
            return self._refused(request, error)
        if isinstance(error, StoreError):
            return self._refused(request, from_store(error))
        if isinstance(error, MethodNotAllowed):
            allowed = [m for m in error.valid_methods or () if m != "HEAD"]
            return self._refused(request, ApiError(
                405, f"{request.method.decode('latin-1')} is not allowed here; "
                     f"allowed: {', '.join(allowed)}",
                {b"Allow": ", ".join(allowed + ["OPTIONS"]).encode()}))
        if isinstance(error, HTTPException):  # NotFound, or a redirect werkzeug would send
            return self._refused(request, not_found(
                f"no such endpoint: {request.method.decode('latin-1')} "
                f"{request.path.decode('latin-1')} (the endpoints are listed in docs/http.md)"))
        if isinstance(error, OSError):  # a failed write or fsync (disk full, I/O error)
            log.failure("http: request {id}: storage error", failure, id=request.id)
            return self._refused(request, ApiError(
                507, f"the mail store could not write (request {request.id}); try again later"))
        log.failure("http: request {id} {method} {path} failed", failure, id=request.id,
                    method=request.method.decode("latin-1"), path=request.path.decode("latin-1"))
        return _respond(request, 500, {
            "error": f"internal error (request {request.id}); see the server log"})

    # -- login ----------------------------------------------------------------------------

    @app.route("/auth/login", methods=["POST"])
    async def login(self, request):
        data = inputs.fields(await _json_body(request),
                             {"username": str, "password": str}, {"domain": str})
        address = _login_address(data["username"].strip(), data.get("domain"))
        try:
            self.tokens.key()
        except NoKey as e:
            log.error("http: login refused: {error}", error=e)
            raise ApiError(503, str(e))
        creds = credentials.UsernamePassword(address.encode("utf-8"),
                                             data["password"].encode("utf-8"))
        try:
            user = await self.authenticator.login(creds, request.remote, "http")
        except auth.TooManyFailures as e:
            raise ApiError(429, "too many failed logins from your address; try again later",
                           {b"Retry-After": b"%d" % e.retry_after})
        except cred_error.UnauthorizedLogin:
            raise unauthorized("wrong username or password")
        return _respond(request, 200, {"token": self.tokens.issue(user),
                                       "expires_in": self.tokens.ttl})

    # -- folders and messages ---------------------------------------------------------------

    @app.route("/folders", methods=["GET"])
    def folders(self, request):
        """Not a coroutine, and the body encoded once per listing: clients poll this, and
        while nothing changes the store answers from memory (``IUserStore.folders``), so
        the answer costs no thread hop, no task and no JSON encoding."""
        user = self._user(request)
        d = self.store.user(user.address).folders()
        return d.addCallback(lambda infos: _json(request, 200, _folder_list(tuple(infos))))

    @app.route("/folders/<folder>/messages", methods=["GET"])
    async def list_messages(self, request, folder):
        user = self._user(request)
        name = inputs.path_text(folder, "folder name")
        offset = inputs.query_number(request, "offset", 0, 0, 10**9)
        limit = inputs.query_number(request, "limit", listing.DEFAULT_LIMIT, 1, listing.MAX_LIMIT)
        shard = self.store.user(user.address)
        total, uids = await shard.page(name, offset, limit)
        rows = await shard.messages(name, uids, summaries=False, headers=True) if uids else []
        page = await threads.deferToThread(
            lambda: [listing.summary(info) for info in reversed(rows)])
        return _respond(request, 200, {"total": total, "offset": offset, "limit": limit,
                                       "messages": page})

    @app.route("/folders/<folder>/messages", methods=["POST"])
    async def append_message(self, request, folder):
        user = self._user(request)
        name = inputs.path_text(folder, "folder name")
        upload = request.upload
        shard = self.store.user(user.address)
        await shard.uidvalidity(name)  # refuse an unknown folder before the fsync
        if upload.size == 0:
            raise bad_request("the body is empty; send the raw message (message/rfc822)")
        writer = upload.take()
        try:
            await writer.finish()
            uid = await shard.append(name, writer)
        except BaseException:
            writer.discard()
            raise
        log.info("http: {remote} {user} appended UID {uid} ({size} bytes) to {folder}",
                 remote=request.remote, user=user.address, uid=uid, size=writer.size,
                 folder=name)
        request.setHeader(b"Location", b"/folders/%s/messages/%d" % (folder.encode(), uid))
        crashpoint.reach("http.before-201")
        if crashpoint.armed("http.after-201"):
            request.notifyFinish().addBoth(
                lambda _: crashpoint.after_flush(request.transport, "http.after-201"))
        return _respond(request, 201, {"uid": uid})

    async def _message(self, request, folder, uid):
        user = self._user(request)
        name = inputs.path_text(folder, "folder name")
        number = inputs.uid(uid)
        return self.store.user(user.address), name, number

    @app.route("/folders/<folder>/messages/<uid>", methods=["GET"])
    async def get_message(self, request, folder, uid):
        shard, name, number = await self._message(request, folder, uid)
        infos = await shard.messages(name, [number], summaries=False)
        if not infos:
            raise not_found(f"no message with UID {number} in {name!r}")
        try:
            f, size = await open_message(infos[0].path)
        except FileNotFoundError:
            raise not_found(f"no message with UID {number} in {name!r}")
        request.setHeader(b"Content-Type", b"message/rfc822")
        request.setHeader(b"Content-Length", b"%d" % size)
        if request.method == b"HEAD":
            await threads.deferToThread(f.close)
            return b""
        await FileStream(request, f).run()

    @app.route("/folders/<folder>/messages/<uid>", methods=["DELETE"])
    async def delete_message(self, request, folder, uid):
        shard, name, number = await self._message(request, folder, uid)
        removed = await shard.remove(name, [number])
        if not removed:
            raise not_found(f"no message with UID {number} in {name!r}")
        return _no_content(request)

    @app.route("/folders/<folder>/messages/<uid>/flags", methods=["PATCH"])
    async def set_flags(self, request, folder, uid):
        shard, name, number = await self._message(request, folder, uid)
        data = inputs.fields(await _json_body(request), {"flags": list})
        changed = await shard.set_flags(name, [number], data["flags"], "replace")
        if number not in changed:
            raise not_found(f"no message with UID {number} in {name!r}")
        return _respond(request, 200, {"uid": number, "flags": sorted(changed[number])})

    # -- sending ----------------------------------------------------------------------------

    @app.route("/messages/send", methods=["POST"])
    async def send(self, request):
        user = self._user(request)
        data = inputs.fields(await _json_body(request),
                             {"to": list, "subject": str, "body": str},
                             {"cc": list, "bcc": list, "html": str})
        to, cc, bcc = (data.get(k, []) for k in ("to", "cc", "bcc"))
        for field, values in (("to", to), ("cc", cc), ("bcc", bcc)):
            for value in values:
                compose.check_address(value, field)
        recipients = list({a.lower(): a for a in [*to, *cc, *bcc]}.values())
        if not recipients:
            raise bad_request("no recipients: give at least one address in to, cc or bcc")
        if len(recipients) > self.config.smtp.max_recipients:
            raise bad_request(f"too many recipients: at most {self.config.smtp.max_recipients} "
                              "(smtp.max_recipients)")
        try:
            targets = self.policy.check_submission(user, user.address, recipients)
        except Refused as e:
            raise _refusal(e)
        message_id = compose.message_id(self.config.hostname)
        raw = await threads.deferToThread(compose.build, user.address, to, cc, data["subject"],
                                          data["body"], data.get("html"), message_id)
        if len(raw) > self.config.smtp.max_message_size:
            raise too_large(self.config.smtp.max_message_size)
        trace = compose.trace_headers(user.address, request.remote, self.config.hostname,
                                      f"H{request.id}")
        await self.policy.deliver(await self._spooled(trace + raw), targets)
        log.info("http: {remote} {user} sent {message_id} to {recipients} ({size} bytes)",
                 remote=request.remote, user=user.address, message_id=message_id,
                 recipients=",".join(f"<{r}>" for r in recipients), size=len(raw))
        await self._keep_sent_copy(user, raw)
        return _respond(request, 202, {"message_id": message_id})

    async def _spooled(self, data: bytes):
        """A finished (fsynced) store message holding *data*."""
        writer = self.store.new_message()
        writer.write(data)
        try:
            return await writer.finish()
        except BaseException:
            writer.discard()
            raise

    async def _keep_sent_copy(self, user, raw: bytes):
        """The sent message into the user's Sent folder (the one with \\Sent), seen."""
        shard = self.store.user(user.address)
        try:
            folders = await shard.folders()
            sent = next((f.name for f in folders if f.special_use == SENT), None)
            if sent is None:
                sent = "Sent"
                if all(f.name != sent for f in folders):
                    await shard.create_folder(sent)
            writer = await self._spooled(raw)
            try:
                await shard.append(sent, writer, flags=[SEEN])
            except BaseException:
                writer.discard()
                raise
        except Exception:
            # The message is delivered already; failing the request now would invite
            # the client to send it twice.
            log.failure("http: {user}: the copy for Sent could not be stored", user=user.address)

    # -- aliases ------------------------------------------------------------------------------

    def _admin(self, request):
        user = self._user(request)
        if not user.admin:
            raise forbidden(f"only an administrator of {user.domain} may change its aliases")
        return user

    @app.route("/aliases", methods=["GET"])
    def list_aliases(self, request):
        user = self._user(request)
        return _respond(request, 200, {
            "domain": user.domain,
            "aliases": [a.to_json() for a in self.directory.aliases(user.domain)]})

    @app.route("/aliases", methods=["POST"])
    async def add_alias(self, request):
        user = self._admin(request)
        data = inputs.fields(await _json_body(request),
                             {"pattern": str, "target": str})
        if not data["pattern"]:
            raise bad_request("pattern: expected a regular expression, got an empty string")
        try:
            alias = await threads.deferToThread(self.directory.add_alias, user.domain,
                                                data["pattern"], data["target"])
        except DirectoryError as e:
            raise bad_request(str(e))
        log.info("http: {remote} {user} added alias {pattern} -> {target} in {domain}",
                 remote=request.remote, user=user.address, pattern=alias.pattern,
                 target=alias.target, domain=user.domain)
        return _respond(request, 201, alias.to_json())

    @app.route("/aliases/<pattern>", methods=["DELETE"])
    async def remove_alias(self, request, pattern):
        user = self._admin(request)
        pattern = inputs.path_text(pattern, "alias pattern")
        missing = not_found(f"no alias with the pattern {pattern!r} in {user.domain}")
        if all(a.pattern != pattern for a in self.directory.aliases(user.domain)):
            raise missing
        try:
            await threads.deferToThread(self.directory.remove_alias, user.domain, pattern)
        except DirectoryError:
            raise missing
        log.info("http: {remote} {user} removed alias {pattern} in {domain}",
                 remote=request.remote, user=user.address, pattern=pattern, domain=user.domain)
        return _no_content(request)

    # -- account set-up for mail clients ---------------------------------------------------------

    def _local_address(self, text: str) -> str:
        try:
            _, domain = split_address(text)
        except DirectoryError as e:
            raise bad_request(str(e))
        if not self.directory.is_local_domain(domain):
            raise not_found(f"{domain} is not a domain served here")
        return text.strip()

    @app.route("/.well-known/autoconfig/mail/config-v1.1.xml", methods=["GET"])
    @app.route("/mail/config-v1.1.xml", methods=["GET"])
    def client_config(self, request):
        values = request.args.get(b"emailaddress")
        address = None
        if values:
            address = self._local_address(values[0].decode("utf-8", "replace"))
        return _xml(request, autoconfig.client_config(
            self.config.hostname, self.config.domains, self.ports(), address))

    @app.route("/autodiscover/autodiscover.xml", methods=["POST"])
    @app.route("/Autodiscover/Autodiscover.xml", methods=["POST"])
    def autodiscover(self, request):
        raw = _request_body(request)
        if len(raw) > autoconfig.MAX_REQUEST:  # a real one is a few hundred bytes
            raise ApiError(413, f"an autodiscover request is at most {autoconfig.MAX_REQUEST} "
                                "bytes")
        address = self._local_address(autoconfig.requested_address(raw))
        return _xml(request, autoconfig.autodiscover(self.config.hostname, self.ports(), address))


def _login_address(username: str, domain) -> str:
    """The seed's ``username`` + ``domain``, or a full address in ``username``."""
    if not username:
        raise bad_request("username: expected a user name or a full address, got \"\"")
    if "@" in username:
        if domain is not None and domain.strip().lower() != username.rpartition("@")[2].lower():
            raise bad_request("domain does not match the domain of the address in username")
        return username
    if not domain or not domain.strip():
        raise bad_request("missing field 'domain' (or give the full address as username)")
    return f"{username}@{domain.strip()}"


def _refusal(refused: Refused) -> ApiError:
    if refused.reason == Refused.RELAY_DENIED:
        return forbidden("Relay not permitted")
    if refused.reason == Refused.SENDER_NOT_OWNED:
        return forbidden(f"you may not send as {refused.address}")
    return bad_request(f"unknown recipient {refused.address}: no such user here")
