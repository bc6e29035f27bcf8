"""Running the API's Klein routes for one request, and writing what they answer.

Klein's own resource (``KleinResource.render``) binds a werkzeug map adapter to the
request's host, adapts the request to ``IKleinRequest``, watches ``notifyFinish`` twice
and runs a chain of error-handler Deferreds, for every request; on ``GET /folders`` that
machinery cost as much CPU as the route itself.  The API needs none of it: a route
answers bytes, a Deferred of bytes, or None once it has written the body itself
(``rmail.web.stream``), and every failure becomes one JSON answer (``API.failed``).  So
the router matches the raw path against the app's ``url_map`` through one adapter bound
at start (the API has no host-specific routes), calls the endpoint through Klein
(``execute_endpoint`` binds the API instance and makes coroutines Deferreds), and writes
the answer.

A route is never cancelled when its client goes away: a store operation cancelled
half-way would be committed without its change being announced to IMAP sessions.  Its
answer is dropped instead, and a failure after the client left is only logged.
"""

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server

from rmail.store.interfaces import StoreError
from rmail.web.errors import ApiError

log = Logger(namespace="rmail.web")


class Router:
    def __init__(self, app, failed):
        """*app*: the Klein app bound to the API; *failed*: (request, Failure) -> the
        JSON body answering that failure (status and headers set on the request)."""
        self.app = app
        self.failed = failed
        self._routes = app.url_map.bind("rmail")

    def render(self, request):
        """A resource's render: the body, or NOT_DONE_YET while a Deferred runs."""
        try:
            rule, arguments = self._routes.match(request.path.decode("ascii"),
                                                 request.method.decode("ascii"),
                                                 return_rule=True)
            answer = self.app.execute_endpoint(rule.endpoint, request, **arguments)
        except Exception:
            return self.failed(request, Failure())
        if not isinstance(answer, defer.Deferred):
            return answer if answer is not None else b""
        answer.addCallbacks(self._answered, self._failed, (request,), None, (request,))
        return server.NOT_DONE_YET

    def _answered(self, body, request):
        if request.finished or request._disconnected:  # the client left meanwhile
            return
        if body:
            request.write(body)
        request.finish()

    def _failed(self, failure, request):
        if request._disconnected:
            if not failure.check(ApiError, StoreError):
                log.failure("http: request {id}: a route failed after its client went away",
                            failure, id=request.id)
            return
        if request.startedWriting:  # a streamed body broke off: closed, never taken as whole
            log.failure("http: request {id}: the response broke off", failure, id=request.id)
            request.channel.transport.abortConnection()
            return
        self._answered(self.failed(request, failure), request)
