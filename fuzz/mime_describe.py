"""MIME parsing at delivery: ``rmail.imap.fetch.describe``, what the store computes once
per delivered message (ENVELOPE, BODY, BODYSTRUCTURE, the header block for SEARCH and,
where describe computes one, the API's preview), through rmail/mime.py, mimeparts.py,
rfc5322.py and rfc2047.py.

The input is the raw message.  rmail/mime.py promises "No input bytes make it raise",
so every exception is a crash; so is a broken invariant it states (BODY[] is exactly
RFC822.SIZE octets long).  The seeds are a few of tests/corpus/imap's messages.
"""

import harness

with harness.instrumented():
    from rmail import mime
    from rmail.imap import fetch

EXPECTED = ()


def test_one_input(data: bytes):
    envelope, body, bodystructure, header = fetch.describe(data)[:4]  # (then the preview)
    assert all(isinstance(x, bytes) for x in (envelope, body, bodystructure, header))
    assert envelope.startswith(b"(") and body.startswith(b"(") and \
        bodystructure.startswith(b"("), "not a parenthesized list"
    # mime.py's invariant: BODY[] is exactly RFC822.SIZE octets long.
    assert mime.rfc822_size(data) == len(mime.section(data)), "RFC822.SIZE is not len(BODY[])"


if __name__ == "__main__":
    harness.main(test_one_input, EXPECTED)
