"""The HTTP API's readers of client input (rmail/web/inputs.py): a JSON body
(``json_object``) checked against each endpoint's fields (``fields``), a path segment
(``path_text``, ``uid``) and a query number (``query_number``).

Each reader documents ``ApiError`` (400, a sentence for the client) for bad input; the
API answers anything else with 500, so any other exception is a crash.  Every reader gets
the whole input.
"""

import harness

with harness.instrumented():
    from rmail.web import inputs
    from rmail.web.errors import ApiError

EXPECTED = (ApiError,)

# The endpoints' fields, as rmail/web/app.py asks for them.
FIELDS = [
    ({"username": str, "password": str}, {"domain": str}),  # POST /auth/login
    ({"flags": list}, None),  # PATCH .../flags
    ({"to": list, "subject": str, "body": str}, {"cc": list, "bcc": list, "html": str}),  # send
    ({"pattern": str, "target": str}, None),  # POST /aliases
]


class _Request:
    def __init__(self, value: bytes):
        self.args = {b"offset": [value], b"limit": [value, b"1"]}


def _refused(read, *args):
    try:
        read(*args)
    except ApiError:
        pass


def test_one_input(data: bytes):
    request = _Request(data)
    _refused(inputs.query_number, request, "offset", 0, 0, 10**9)
    _refused(inputs.query_number, request, "limit", 25, 1, 100)
    _refused(inputs.query_number, request, "missing", 25, 1, 100)
    for segment in (data.decode("latin-1"), data.decode("utf-8", "surrogateescape")):
        _refused(inputs.path_text, segment, "folder name")
        _refused(inputs.uid, segment)
    body = inputs.json_object(data)
    for required, optional in FIELDS:
        _refused(inputs.fields, body, required, optional)


if __name__ == "__main__":
    harness.main(test_one_input, EXPECTED)
