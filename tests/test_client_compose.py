"""Composing with the terminal client: reply headers, quoting, reply-all, forwards, drafts."""

import email
import email.policy

import pytest

from rmail.client import compose
from rmail.client.reading import parse

ORIGINAL = (b"From: Bob Smith <bob@example.com>\r\n"
            b"To: alice@example.com, Carol <carol@example.org>\r\n"
            b"Cc: sales@example.com, ALICE@example.com\r\n"
            b"Subject: Lunch on Friday\r\n"
            b"Date: Thu, 26 Nov 2026 09:00:00 +0000\r\n"
            b"Message-ID: <lunch-1@example.com>\r\n"
            b"References: <older@example.com>\r\n"
            b"\r\n"
            b"Shall we meet at noon?\r\n"
            b"> earlier quote\r\n"
            b"\r\n"
            b"Bob\r\n")

ME = "alice@example.com"


def test_reply_headers_and_quoting():
    draft = compose.reply(parse(ORIGINAL), ME, {ME}, answers=("INBOX", 7))
    assert draft.to == "Bob Smith <bob@example.com>"
    assert draft.cc == ""
    assert draft.subject == "Re: Lunch on Friday"
    assert draft.in_reply_to == "<lunch-1@example.com>"
    assert draft.references == "<older@example.com> <lunch-1@example.com>"
    assert draft.answers == ("INBOX", 7)
    assert draft.body == ("\n\nOn Thu, 26 Nov 2026 09:00:00 +0000, Bob Smith wrote:\n"
                          "> Shall we meet at noon?\n>> earlier quote\n>\n> Bob\n")


@pytest.mark.parametrize("subject,expected", [
    ("Lunch", "Re: Lunch"), ("Re: Lunch", "Re: Lunch"), ("RE: Lunch", "RE: Lunch"),
    ("re:Lunch", "re:Lunch"), ("Re[2]: Lunch", "Re[2]: Lunch"), ("Rental", "Re: Rental"),
    ("", "Re: ")])
def test_re_prefix_is_added_once(subject, expected):
    assert compose.reply_subject(subject) == expected


def test_forward_prefix_is_added_once():
    assert compose.forward_subject("Lunch") == "Fwd: Lunch"
    assert compose.forward_subject("Fwd: Lunch") == "Fwd: Lunch"
    assert compose.forward_subject("FW: Lunch") == "FW: Lunch"


def test_reply_all_copies_everyone_but_me():
    draft = compose.reply(parse(ORIGINAL), ME, {ME}, everyone=True)
    assert draft.to == "Bob Smith <bob@example.com>"
    assert draft.cc == "Carol <carol@example.org>, sales@example.com"


def test_reply_goes_to_reply_to_and_without_references_uses_in_reply_to():
    raw = (b"From: list@example.org\r\nReply-To: Team <team@example.org>\r\n"
           b"To: alice@example.com\r\nSubject: Re: Plans\r\n"
           b"In-Reply-To: <parent@example.org>\r\nMessage-ID: <child@example.org>\r\n\r\nOk\r\n")
    draft = compose.reply(parse(raw), ME, {ME}, everyone=True)
    assert draft.to == "Team <team@example.org>" and draft.cc == ""
    assert draft.subject == "Re: Plans"
    assert draft.references == "<parent@example.org> <child@example.org>"


def test_replying_to_my_own_sent_message_goes_to_its_recipients():
    raw = (b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: Hi\r\n"
           b"Message-ID: <mine@example.com>\r\n\r\nHello\r\n")
    draft = compose.reply(parse(raw), ME, {ME})
    assert draft.to == "bob@example.com"


def test_forward_inlines_the_text_and_carries_attachments():
    raw = (b"From: Bob <bob@example.com>\r\nTo: alice@example.com\r\nSubject: Report\r\n"
           b"Date: Thu, 26 Nov 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
           b"--b\r\nContent-Type: text/plain\r\n\r\nNumbers attached.\r\n"
           b"--b\r\nContent-Type: text/csv\r\nContent-Disposition: attachment; filename=q3.csv\r\n"
           b"\r\na,b\r\n1,2\r\n--b--\r\n")
    draft = compose.forward(parse(raw), raw, ME)
    assert draft.subject == "Fwd: Report" and draft.to == "" and draft.in_reply_to == ""
    assert "---------- Forwarded message ----------\nFrom: Bob <bob@example.com>\n" in draft.body
    assert "Subject: Report\n" in draft.body and "\nNumbers attached.\n" in draft.body
    assert [(a.name, a.content_type, a.data) for a in draft.attachments] == \
        [("q3.csv", "text/csv", b"a,b\r\n1,2")]  # the last CRLF belongs to the boundary
    message = compose.build(compose.read_draft(
        compose.draft_text(draft).replace("To: \n", "To: carol@example.org\n"), draft))
    parts = [p.get_filename() for p in message.iter_attachments()]
    assert parts == ["q3.csv"]


def test_forward_as_attachment_attaches_the_original():
    draft = compose.forward(parse(ORIGINAL), ORIGINAL, ME, as_attachment=True)
    draft.to = "carol@example.org"
    message = compose.build(draft)
    (part,) = list(message.iter_attachments())
    assert part.get_content_type() == "message/rfc822"
    inner = part.get_content()
    assert inner["Message-ID"] == "<lunch-1@example.com>"
    assert "Shall we meet at noon?" in inner.get_body().get_content()


def test_draft_round_trip_through_text():
    draft = compose.reply(parse(ORIGINAL), ME, {ME}, everyone=True)
    text = compose.draft_text(draft)
    assert text.startswith("From: alice@example.com\nTo: Bob Smith <bob@example.com>\n"
                           "Cc: Carol <carol@example.org>, sales@example.com\nBcc: \n"
                           "Subject: Re: Lunch on Friday\n\n")
    row = compose.body_line(text)
    lines = text.split("\n")
    lines[row] = "Noon works."
    edited = compose.read_draft("\n".join(lines).replace("Bcc: ", "Bcc: boss@example.com"), draft)
    assert edited.bcc == "boss@example.com"
    assert edited.body.startswith("Noon works.\n\nOn Thu")
    assert edited.in_reply_to == "<lunch-1@example.com>"  # kept from the draft


def test_build_sets_threading_and_date_headers():
    draft = compose.read_draft(compose.draft_text(
        compose.reply(parse(ORIGINAL), ME, {ME})), compose.reply(parse(ORIGINAL), ME, {ME}))
    message = compose.build(draft)
    assert message["In-Reply-To"] == "<lunch-1@example.com>"
    assert message["References"] == "<older@example.com> <lunch-1@example.com>"
    assert message["Message-ID"].endswith("@example.com>")
    assert message["Date"] and message["From"] == ME
    again = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert "> Shall we meet at noon?" in again.get_content()


def test_unicode_subject_and_body_survive():
    draft = compose.Draft(sender=ME, to="jürgen@example.org", subject="Grüße",
                          body="Schöne Grüße\n")
    data = compose.build(draft).as_bytes()
    again = email.message_from_bytes(data, policy=email.policy.default)
    assert again["Subject"] == "Grüße" and again.get_content() == "Schöne Grüße\n"


@pytest.mark.parametrize("text,needle", [
    ("From: alice@example.com\nTo: \nSubject: x\n\nbody", "no recipient"),
    ("From: alice@example.com\nTo: bob\nSubject: x\n\nbody", "'bob' is not a mail address"),
    ("From: alice@example.com\nTo: bob@example.com\nSubjct: x\n\nbody", "'Subjct: x'"),
    ("From: alice@example.com\nTo: bob@example.com\nAttach: /nonexistent/file\n\nbody",
     "Attach: /nonexistent/file"),
])
def test_bad_drafts_say_what_to_fix(text, needle):
    with pytest.raises(compose.DraftError) as caught:
        compose.read_draft(text, compose.new_message(ME))
    assert needle in str(caught.value)


def test_attach_a_file_by_path(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"remember the milk\n")
    draft = compose.read_draft(f"To: bob@example.com\nSubject: notes\nAttach: {path}\n\nsee file",
                               compose.new_message(ME))
    message = compose.build(draft)
    (part,) = list(message.iter_attachments())
    assert part.get_filename() == "notes.txt" and part.get_content_type() == "text/plain"
    assert part.get_content() == "remember the milk\n"
    # dropping an Attach: line drops the file
    text = compose.draft_text(draft)
    assert "Attach: notes.txt (18 B)" in text
    assert compose.read_draft(text.replace("Attach: notes.txt (18 B)\n", ""), draft).attachments == []
    assert compose.read_draft(text, draft).attachments == draft.attachments
