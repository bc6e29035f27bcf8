"""The IMAP oracle against the real server: Dovecot's answers to 893 FETCHes and 81 SEARCHes.

The corpus and the checker come from the project's shared tools (copied under tests/).
Two SEARCH answers differ on purpose, where RFC 3501 / RFC 2231 and Dovecot disagree
(see tests/test_imap_search.py, RFC_OVER_DOVECOT).
"""

import contextlib
import io
import os

from tests.tools import imap_oracle

CORPUS = os.path.join(os.path.dirname(__file__), "corpus", "imap")
EXPECTED_DIFFERENCES = {
    'DIFF SEARCH SUBJECT "with language": missing [(none)] extra [052-encoded-words-malformed.eml]',
    "DIFF SEARCH 80:*: missing [(none)] extra [088-deep-nesting.eml]",
}


def test_every_fetch_and_search_answer_matches_dovecot(server):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        imap_oracle.main(["--host", "127.0.0.1", "--port", str(server.port("imap")),
                          "--user", "alice@example.com", "--password", "alice-pw",
                          "--corpus", CORPUS, "--timeout", "60"])
    lines = out.getvalue().splitlines()
    assert lines[-1] == "imap_oracle: 893 of 893 fetch answers match, 79 of 81 searches match"
    assert {line for line in lines if line.startswith("DIFF")} == EXPECTED_DIFFERENCES
