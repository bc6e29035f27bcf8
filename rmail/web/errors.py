"""Errors of the HTTP API: every refusal is ``{"error": "..."}`` with its status.

An ``ApiError`` carries the status and one sentence for the person reading it.  Store
and directory refusals become API errors here, in one table, so that a route never
decides a status code for a store exception on its own.  Anything unexpected is a 500
naming a request id that also appears in the log, never the exception text.
"""

import json

from rmail.store import interfaces as store

JSON = b"application/json"


class ApiError(Exception):
    """A refused request: ``status`` and a message for people (``headers`` to add)."""

    def __init__(self, status: int, message: str, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def unauthorized(message: str) -> ApiError:
    # RFC 6750 section 3: a bearer-protected resource names its scheme.
    return ApiError(401, message, {b"WWW-Authenticate": b'Bearer realm="rmail"'})


def forbidden(message: str) -> ApiError:
    return ApiError(403, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"the body is larger than the limit of {limit} bytes "
                         "(smtp.max_message_size)")


# Store refusals (rmail.store.interfaces) and the status each one means for the API.
_STORE_STATUS = (
    (store.InvalidFolderName, 400),
    (store.InvalidFlag, 400),
    (store.NoSuchFolder, 404),
    (store.NoSuchMessage, 404),
    (store.FolderExists, 409),
    (store.FolderNotDeletable, 409),
)


def from_store(error: store.StoreError) -> ApiError:
    for kind, status in _STORE_STATUS:
        if isinstance(error, kind):
            return ApiError(status, str(error))
    return ApiError(400, str(error))


def body(payload) -> bytes:
    """A JSON response body (UTF-8, no ASCII escaping of names people wrote)."""
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


def error_body(message: str) -> bytes:
    return body({"error": message})
