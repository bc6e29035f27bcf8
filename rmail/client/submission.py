"""Sending: SMTP submission (RFC 6409) with STARTTLS or TLS and AUTH, one connection a message.

The sent copy is stored afterwards by the caller (APPEND to the \\Sent folder), since
that is an IMAP matter; this module only hands the message to the server.
"""

import smtplib
import socket
import ssl
from email.utils import getaddresses

from rmail.client.session import tls_context

TIMEOUT = 60


class SubmissionRefused(Exception):
    """The message was not accepted; str() is a sentence for the status line."""


def recipients(message) -> list:
    """Every envelope recipient: To, Cc and Bcc (Bcc never goes out as a header)."""
    values = [str(v) for key in ("To", "Cc", "Bcc") for v in message.get_all(key, [])]
    return [address for _name, address in getaddresses(values) if address]


def submit(account, password, message) -> list:
    """Send *message* (an email.message.EmailMessage); the recipients it went to."""
    host, port = account.smtp_address
    to = recipients(message)
    if not to:
        raise SubmissionRefused("the message has no recipients")
    try:
        if account.tls == "tls":
            smtp = smtplib.SMTP_SSL(host, port, timeout=TIMEOUT, context=tls_context(account))
        else:
            smtp = smtplib.SMTP(host, port, timeout=TIMEOUT)
        try:
            smtp.ehlo()
            if account.tls == "starttls":
                if not smtp.has_extn("starttls"):
                    raise SubmissionRefused(f"{host}:{port} does not offer STARTTLS")
                smtp.starttls(context=tls_context(account))
                smtp.ehlo()
            if smtp.has_extn("auth"):
                smtp.login(account.user, password)
            smtp.send_message(message, from_addr=account.user, to_addrs=to)
        finally:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
    except smtplib.SMTPRecipientsRefused as e:
        refused = ", ".join(f"{a} ({code} {text.decode('utf-8', 'replace')})"
                            for a, (code, text) in e.recipients.items())
        raise SubmissionRefused(f"recipients refused: {refused}") from e
    except smtplib.SMTPAuthenticationError as e:
        raise SubmissionRefused(f"login to {host}:{port} refused: {_reply(e)}") from e
    except smtplib.SMTPResponseException as e:
        raise SubmissionRefused(f"{host}:{port} refused the message: {_reply(e)}") from e
    except ssl.SSLCertVerificationError as e:
        raise SubmissionRefused(f"{host}:{port}: the certificate is not trusted "
                                f"({e.verify_message}); use --cafile, or --insecure "
                                "for a test server") from e
    except (smtplib.SMTPException, OSError) as e:
        why = "no answer" if isinstance(e, socket.timeout) else (str(e) or type(e).__name__)
        raise SubmissionRefused(f"cannot send through {host}:{port}: {why}") from e
    return to


def _reply(error) -> str:
    text = error.smtp_error
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{error.smtp_code} {text}"
