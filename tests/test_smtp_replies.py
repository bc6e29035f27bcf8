"""The reply catalogue is self-consistent (RFC 3463 / RFC 2034)."""

import re

from rmail.smtp import replies


def test_every_enhanced_code_agrees_with_its_basic_code():
    """The class digit of an enhanced code is the first digit of its reply code (RFC 3463 2)."""
    for name, reply in replies.ALL.items():
        if reply.enhanced:
            assert re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", reply.enhanced), name
            assert reply.enhanced[0] == str(reply.code)[0], name


def test_only_greeting_ehlo_and_intermediate_replies_lack_an_enhanced_code():
    """RFC 2034 3: every reply but the greeting, EHLO/HELO and 3yz carries an enhanced code."""
    bare = {name for name, reply in replies.ALL.items() if not reply.enhanced}
    assert bare == {"GREETING", "EHLO", "HELO", "START_DATA"}


def test_multiline_rendering():
    lines = replies.Reply(250, "", "a\nb\nc").lines()
    assert lines == [b"250-a", b"250-b", b"250 c"]
    assert replies.USER_UNKNOWN.lines() == [b"550 5.1.1 User unknown"]
