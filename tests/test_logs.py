"""The log line format: timestamp, namespace, text, and tracebacks for failures."""

import imaplib
import io
import json
import os
import re
import smtplib
import subprocess
import sys

from twisted.logger import Logger, LogPublisher

from rmail.logs import text_observer
from tests import harness


def _logger():
    out = io.StringIO()
    publisher = LogPublisher(text_observer(out))
    return Logger(namespace="rmail.test", observer=publisher), out


def test_one_line_per_event_with_namespace_and_text():
    log, out = _logger()
    log.info("smtp: session={session} result={result}", session="ab12", result="250 2.0.0")
    line = out.getvalue()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \[rmail\.test\] "
                        r"smtp: session=ab12 result=250 2\.0\.0\n", line)


def test_failures_carry_their_traceback():
    log, out = _logger()
    try:
        1 / 0
    except ZeroDivisionError:
        log.failure("store: write failed")
    text = out.getvalue()
    assert "store: write failed" in text and "ZeroDivisionError" in text


def test_json_log_lines_carry_the_transaction_fields(tmp_path):
    """`run.py --log-format json`: one JSON object per line, with the fields of the SMTP
    transaction and of each login as keys."""
    config = harness.write_config(tmp_path)
    harness.add_users(config, {"alice@example.com": "pw"})
    proc = subprocess.Popen(
        [sys.executable, os.path.join(harness.ROOT, "run.py"), "--log-format", "json",
         "--config", config], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"), cwd=str(tmp_path))
    try:
        wrapper = harness.Process.__new__(harness.Process)
        wrapper.proc, wrapper.output = proc, b""
        line = wrapper.wait_for_output(rb'"text": "rmail: serving')
        smtp_port = int(re.search(rb"SMTP [\d.]+:(\d+)", line).group(1))
        imap_port = int(re.search(rb"IMAP \(STARTTLS\) [\d.]+:(\d+)", line).group(1))
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=harness.TIMEOUT) as s:
            s.sendmail("x@ext.example", ["alice@example.com"], b"Subject: j\r\n\r\nx\r\n")
        imap = imaplib.IMAP4("127.0.0.1", imap_port)
        try:
            imap.login("alice@example.com", "wrong")
        except imaplib.IMAP4.error:
            pass
        imap.logout()
        smtp = json.loads(wrapper.wait_for_output(rb'"namespace": "rmail.smtp".*"result"'))
        assert smtp["level"] == "info" and smtp["sender"] == "x@ext.example"
        assert smtp["recipients"] == "<alice@example.com>" and smtp["result"].startswith("250")
        assert smtp["client"].startswith("127.0.0.1") and int(smtp["size"]) > 0
        assert "from=<x@ext.example>" in smtp["text"]
        login = json.loads(wrapper.wait_for_output(rb'"text": "auth: imap login .*failed'))
        assert login["username"] == "alice@example.com" and login["remote"].startswith("127.0.0.1")
    finally:
        proc.terminate()
        proc.wait(timeout=harness.TIMEOUT)
    for raw in proc.stdout.read().splitlines() if proc.stdout else ():
        json.loads(raw)  # every line is JSON, to the last
