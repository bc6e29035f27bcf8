"""Reading what a client sent: JSON bodies, query numbers, path segments.

Each reader raises ``ApiError(400)`` with a sentence naming the field and what was
expected, so a client learns exactly what to fix.  Bodies are checked strictly: a
field of the wrong type or a field the endpoint does not know is refused rather than
ignored, because a typo (``"too"`` for ``"to"``) silently ignored sends mail wrong.
"""

import json
import re
from urllib.parse import unquote

from rmail.web.errors import bad_request

_NUMBER = re.compile(rb"[0-9]{1,10}")
UID_MAX = 2**32 - 1  # RFC 3501 section 2.3.1.1: a UID is a 32-bit number


def json_object(raw: bytes) -> dict:
    """The request body as a JSON object."""
    if not raw.strip():
        raise bad_request("the body is empty; send a JSON object")
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise bad_request("the body is not UTF-8")
    except json.JSONDecodeError as e:
        raise bad_request(f"the body is not valid JSON (line {e.lineno}, column {e.colno}: "
                          f"{e.msg})")
    except RecursionError:  # "[[[[...": json's parser recurses once per level
        raise bad_request("the body's JSON is nested too deeply")
    except ValueError:  # a number of over 4300 digits: int()'s limit for text
        raise bad_request("the body holds a number too long to read")
    if not isinstance(value, dict):
        raise bad_request("the body must be a JSON object")
    try:  # "\ud800" escapes decode to lone surrogates, which no later step can encode
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request("the body holds a \\u escape that is not a Unicode character")
    except RecursionError:
        raise bad_request("the body's JSON is nested too deeply")
    return value


_TYPE_NAMES = {str: "a string", list: "a list of strings"}


def fields(data: dict, required: dict, optional: dict | None = None) -> dict:
    """Check *data* against ``{name: type}``; return the fields present.

    A ``list`` field must be a list of strings."""
    optional = optional or {}
    unknown = sorted(set(data) - set(required) - set(optional))
    if unknown:
        known = ", ".join(sorted([*required, *optional]))
        raise bad_request(f"unknown field {unknown[0]!r} (known fields: {known})")
    for name in required:
        if name not in data:
            raise bad_request(f"missing field {name!r}")
    out = {}
    for name, kind in {**required, **optional}.items():
        if name not in data:
            continue
        value = data[name]
        ok = isinstance(value, kind) and (
            kind is not list or all(isinstance(v, str) for v in value))
        if not ok:
            raise bad_request(f"{name}: expected {_TYPE_NAMES[kind]}, got {json.dumps(value)}")
        out[name] = value
    return out


def query_number(request, name: str, default: int, low: int, high: int) -> int:
    """A non-negative integer query parameter within [low, high]."""
    values = request.args.get(name.encode())
    if not values:
        return default
    raw = values[0]
    if not _NUMBER.fullmatch(raw) or not low <= int(raw) <= high:
        shown = raw.decode("utf-8", "replace")
        raise bad_request(f"{name}: expected a whole number from {low} to {high}, got {shown!r}")
    return int(raw)


def path_text(segment: str, what: str) -> str:
    """A percent-encoded path segment (``Archive%2F2024``) as text."""
    try:
        text = unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise bad_request(f"the {what} in the path is not UTF-8 once percent-decoded")
    if not text:
        raise bad_request(f"the {what} in the path is empty")
    return text


def uid(segment: str) -> int:
    if not re.fullmatch(r"[0-9]{1,10}", segment) or not 1 <= int(segment) <= UID_MAX:
        raise bad_request(f"the message UID must be a number from 1 to {UID_MAX}, "
                          f"got {unquote(segment)!r}")
    return int(segment)
