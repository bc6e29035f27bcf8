"""The HTTP listener: Twisted Web's Site with the API's wire-level rules.

What happens here, before any route runs:

- **Size.**  A body over ``smtp.max_message_size`` is refused with 413 as soon as its
  Content-Length is known, before a byte of it is read (and before ``100 Continue``),
  or, for a chunked body, as soon as the running count passes the limit.  The
  response is sent at once, the write side is closed, and whatever the client still
  sends is read and dropped for a few seconds (``LINGER``) so that it can read the
  answer instead of a reset.
- **Where bodies go.**  A message upload streams to the spool (``rmail.web.upload``);
  other bodies (JSON, autodiscover XML) are kept in memory, never in a temporary file
  written from the reactor thread.  An upload whose token is not valid is refused with
  401 before its body is read.
- **CORS.**  Every response carries ``Access-Control-Allow-Origin`` as
  ``http.cors_origins`` allows; ``OPTIONS`` on any path is a 204 preflight answer.
- **Paths.**  The routes (``rmail.web.router``) match the raw path, still percent-encoded,
  so ``/folders/Archive%2F2024/messages`` names the folder ``Archive/2024`` and can never
  be confused with deeper paths; routes decode their own segments.
- **No HTML.**  Twisted's own error pages (a malformed request, a failure while
  processing) are replaced with JSON ``{"error": ...}``.

Graceful stop (``rmail.listener``): idle keep-alive connections close at once,
requests in flight finish (connections close after their response), and whatever is
left after the grace period is aborted.
"""

import io
import itertools

from twisted.internet import reactor
from twisted.logger import Logger
from twisted.web import http, resource, server

from rmail.listener import Listener
from rmail.web import upload
from rmail.web.router import Router
from rmail.web.errors import JSON, ApiError, error_body, too_large

log = Logger(namespace="rmail.web")

IDLE_TIMEOUT = 300  # seconds a keep-alive connection may sit idle
LINGER = 5.0  # seconds to drain a refused body before closing

PREFLIGHT_HEADERS = {
    b"Access-Control-Allow-Methods": b"GET, POST, PATCH, DELETE, OPTIONS",
    b"Access-Control-Allow-Headers": b"Authorization, Content-Type",
    b"Access-Control-Max-Age": b"86400",
}

# Response headers a browser script may read besides the simple ones (RFC 6750, 9110).
EXPOSED_HEADERS = b"Location, Retry-After, WWW-Authenticate"

_request_ids = itertools.count(1)


def allowed_origin(origins, origin: bytes | None) -> bytes | None:
    """The Access-Control-Allow-Origin value for a request from *origin*, if any."""
    if "*" in origins:
        return b"*"
    if origin is not None and origin.decode("latin-1") in origins:
        return origin
    return None


class ApiRequest(server.Request):
    """A request whose body is counted against the limit and goes where the route wants."""

    defaultContentType = JSON
    _parsePOSTFormSubmission = False  # the API reads JSON itself, never form fields
    refused = False
    upload = None  # a MessageUpload when the body is a message on its way to the spool

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.received = 0
        self.id = next(_request_ids)
        self._paused = False

    def __repr__(self):  # Twisted's decodes the URI as ASCII: its log lines would be lost
        return "<ApiRequest %d %s %s>" % (self.id, self.method.decode("latin-1"),
                                          self.uri.decode("ascii", "backslashreplace"))

    @property
    def remote(self) -> str:
        return getattr(self.getClientAddress(), "host", "?")

    def gotLength(self, length):
        self.content = self.upload if self.upload is not None else io.BytesIO()

    def handleContentChunk(self, data):
        if self.refused:
            return
        self.received += len(data)
        limit = self.channel.site.max_body
        if self.received > limit:
            self.channel.refuse(self, too_large(limit))
            return
        self.content.write(data)
        if self.upload is not None and self.upload.writer.backlog > upload.HIGH_WATER:
            self._pause_reading()

    def _pause_reading(self):
        if self._paused:
            return
        self._paused = True
        self.channel.transport.pauseProducing()
        d = self.upload.writer.when_below(upload.LOW_WATER)
        d.addCallback(self._resume_reading)

    def _resume_reading(self, _):
        self._paused = False
        channel = getattr(self, "channel", None)
        if channel is not None and channel.transport is not None and not self.refused:
            channel.transport.resumeProducing()

    def requestReceived(self, command, path, version):
        if self.refused:  # answered already; the rest of the body was only drained
            return
        super().requestReceived(command, path, version)

    def processingFailed(self, reason):
        """Anything that escaped the routes' own handling: 500 in JSON, the trace in the log."""
        log.failure("http: request {id} {method} {path} failed", reason, id=self.id,
                    method=self.method.decode("latin-1"), path=self.path.decode("latin-1"))
        if self.finished or self._disconnected:
            return reason
        if self.startedWriting:
            self.finish()
            return reason
        body = error_body(f"internal error (request {self.id}); see the server log")
        self.setResponseCode(500)
        self.setHeader(b"Content-Type", JSON)
        self.setHeader(b"Content-Length", b"%d" % len(body))
        self.write(body)
        self.finish()
        return reason


class ApiChannel(http.HTTPChannel):
    """One HTTP connection; refuses bodies early and drains what follows a refusal."""

    _draining = False
    _linger = None
    _secure = None

    def connectionMade(self):
        super().connectionMade()
        self.site.session_opened(self)

    def isSecure(self):
        """Kept: Twisted and Klein ask several times per request, and each asking adapts
        the transport to ISSLTransport (a listener is TLS or not from its first byte)."""
        if self._secure is None:
            self._secure = super().isSecure()
        return self._secure

    def connectionLost(self, reason):
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        super().connectionLost(reason)
        self.site.session_closed(self)

    def allHeadersReceived(self):
        request = self.requests[-1]
        try:
            if self.length is not None and self.length > self.site.max_body:
                raise too_large(self.site.max_body)
            request.upload = self.site.api.body_for(self._command, self._path,
                                                    request.requestHeaders)
        except ApiError as e:
            self.refuse(request, e)
            return
        super().allHeadersReceived()

    def refuse(self, request, error: ApiError):
        """Answer *request* with *error* now, whatever of its body is still to come."""
        request.refused = True
        if request.upload is not None:
            request.upload.discard()
        log.info("http: {remote} {method} {path}: {status} {error}", remote=request.remote,
                 method=getattr(self, "_command", b"?").decode("latin-1"),
                 path=getattr(self, "_path", b"?").split(b"?")[0].decode("latin-1"),
                 status=error.status, error=error.message)
        body = error_body(error.message)
        headers = {b"Content-Type": JSON, b"Content-Length": b"%d" % len(body),
                   b"Connection": b"close", **error.headers}
        origin = allowed_origin(self.site.cors_origins, request.getHeader(b"origin"))
        if origin is not None:
            headers[b"Access-Control-Allow-Origin"] = origin
        phrase = http.RESPONSES.get(error.status, b"Error")
        head = b"HTTP/1.1 %d %s\r\n" % (error.status, phrase)
        head += b"".join(b"%s: %s\r\n" % item for item in headers.items())
        self.transport.write(head + b"\r\n" + body)
        self._drain()

    def _drain(self):
        self._draining = True
        self.persistent = False
        self.setTimeout(None)
        self.transport.loseWriteConnection()
        self._linger = self.callLater(LINGER, self.transport.abortConnection)

    def dataReceived(self, data):
        if not self._draining:
            super().dataReceived(data)

    def lineReceived(self, line):
        if not self._draining:
            super().lineReceived(line)

    def rawDataReceived(self, data):
        if not self._draining:
            super().rawDataReceived(data)

    def _respondToBadRequestAndDisconnect(self):
        """A request Twisted cannot parse (bad request line, header, chunking): JSON 400."""
        body = error_body("malformed HTTP request")
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                             % (len(body), body))
        self.loseConnection()

    def shut_down(self):
        if not self.requests:
            self.loseConnection()
        else:
            self.persistent = False  # close once the response in flight is sent


class ApiResource(resource.Resource):
    """The root: CORS on every response, OPTIONS answered, then the routes."""

    isLeaf = True

    def __init__(self, site_settings, router):
        super().__init__()
        self.settings = site_settings
        self.router = router

    def render(self, request):
        origin = allowed_origin(self.settings.config.http.cors_origins,
                                request.getHeader(b"origin"))
        if origin is not None:
            request.setHeader(b"Access-Control-Allow-Origin", origin)
            request.setHeader(b"Access-Control-Expose-Headers", EXPOSED_HEADERS)
            if origin != b"*":
                request.setHeader(b"Vary", b"Origin")
        if request.method == b"OPTIONS":
            for name, value in PREFLIGHT_HEADERS.items():
                request.setHeader(name, value)
            request.setResponseCode(204)
            return b""
        try:
            request.path.decode("ascii")
            request.getRequestHostname().decode("utf-8").encode("idna")
        except UnicodeError:
            return _error(request, 400, "the request path must be ASCII and Host a host name "
                                        "(percent-encode the rest as UTF-8)")
        if b"//" in request.path:  # an empty segment names nothing
            return _error(request, 404, f"no such endpoint: {request.path.decode()}")
        return self.router.render(request)


def _error(request, status: int, message: str) -> bytes:
    log.info("http: {remote} {method} {path}: {status} {error}", remote=request.remote,
             method=request.method.decode("latin-1"), path=request.path.decode("latin-1"),
             status=status, error=message)
    body = error_body(message)
    request.setResponseCode(status)
    request.setHeader(b"Content-Length", b"%d" % len(body))
    return body


class ApiSite(Listener, server.Site):
    """The factory of the ``http`` listener.

    ``sessions`` is the set of open connections (what the service counts and shuts
    down, as for SMTP and IMAP); the API uses no web sessions, so Twisted's own use of
    that name never arises.
    """

    protocol = ApiChannel
    requestFactory = ApiRequest
    noisy = False

    def __init__(self, settings, api, gate=None, clock=reactor):
        root = ApiResource(settings, Router(api.app, api.failed))
        super().__init__(root, timeout=IDLE_TIMEOUT,
                         parsePOSTFormSubmission=False)  # (else requests get the Site's True)
        self.settings = settings
        self.api = api
        self.init_listener(gate, clock)

    @property
    def max_body(self) -> int:
        return self.settings.config.smtp.max_message_size

    @property
    def cors_origins(self):
        return self.settings.config.http.cors_origins

    def log(self, request):
        """No access log: logins, sends, alias changes and refusals log their own line."""

    def getSession(self, uid):
        raise NotImplementedError("the API keeps no web sessions")

    def refusal(self, why):
        body = error_body(f"too many connections from your address ({why})")
        return (b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
                b"Retry-After: 60\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (len(body), body))
