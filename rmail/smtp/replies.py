"""Every SMTP reply rmail sends, once, with its enhanced status code.

RFC 5321 section 4.2 gives the basic codes, RFC 3463 the enhanced ones (class.subject.detail)
and RFC 2034 says that every reply but the greeting and EHLO carries one once
ENHANCEDSTATUSCODES is advertised.  ``Reply.lines`` renders a reply; texts with
``{}`` take arguments through ``Reply.format``.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    code: int
    enhanced: str  # "" for the greeting and EHLO, which carry none (RFC 2034 section 3)
    text: str

    def format(self, *args, **kwargs) -> "Reply":
        return Reply(self.code, self.enhanced, self.text.format(*args, **kwargs))

    def lines(self) -> list[bytes]:
        parts = self.text.split("\n")
        out = []
        for i, part in enumerate(parts):
            sep = " " if i == len(parts) - 1 else "-"
            prefix = f"{self.code}{sep}{self.enhanced + ' ' if self.enhanced else ''}"
            out.append((prefix + part).encode("utf-8"))
        return out

    @property
    def permanent(self) -> bool:
        return self.code >= 500


# 2yz: success
GREETING = Reply(220, "", "{} ESMTP rmail")                              # 4.3.1
EHLO = Reply(250, "", "{}")                                              # 4.1.1.1
HELO = Reply(250, "", "{}")
OK = Reply(250, "2.0.0", "OK")
SENDER_OK = Reply(250, "2.1.0", "OK")
RECIPIENT_OK = Reply(250, "2.1.5", "OK")
ACCEPTED = Reply(250, "2.0.0", "OK: message accepted for delivery")
VRFY = Reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")
HELP = Reply(214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP "
                           "STARTTLS AUTH")
CLOSING = Reply(221, "2.0.0", "{} closing connection")
READY_FOR_TLS = Reply(220, "2.0.0", "Ready to start TLS")
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")

# 3yz: intermediate
START_DATA = Reply(354, "", "End data with <CR><LF>.<CR><LF>")

# 4yz: transient failure
SHUTTING_DOWN = Reply(421, "4.3.2", "{} Service shutting down, try again later")
TIMEOUT = Reply(421, "4.4.2", "{} Timeout, closing connection")
TOO_MANY_ERRORS = Reply(421, "4.7.0", "{} Too many errors, closing connection")
LOCAL_ERROR = Reply(451, "4.3.0", "Internal error, try again later (session {})")
STORAGE_ERROR = Reply(452, "4.3.1", "Insufficient system storage, try again later")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")         # RFC 5321 4.5.3.1.10
TLS_UNAVAILABLE = Reply(454, "4.7.0", "TLS not available")
AUTH_LOCKED = Reply(454, "4.7.0", "Too many failed logins from your address, try again later")
AUTH_TEMPORARY = Reply(454, "4.7.0", "Temporary authentication failure")

# 5yz: permanent failure
LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long")                     # 4.5.3.1.4
SYNTAX_ERROR = Reply(500, "5.5.2", "Syntax error, command unrecognized")
BAD_ARGUMENTS = Reply(501, "5.5.4", "Syntax: {}")
BAD_SENDER_SYNTAX = Reply(501, "5.1.7", "Bad sender address syntax")
BAD_RECIPIENT_SYNTAX = Reply(501, "5.1.3", "Bad recipient address syntax")
BAD_BASE64 = Reply(501, "5.5.2", "Cannot decode Base64 response")        # RFC 4954 4
AUTH_ABORTED = Reply(501, "5.7.0", "Authentication aborted")
NOT_IMPLEMENTED = Reply(502, "5.5.1", "Command not implemented")
NEED_HELO = Reply(503, "5.5.1", "Send EHLO or HELO first")
NESTED_MAIL = Reply(503, "5.5.1", "Sender already specified")
NEED_MAIL = Reply(503, "5.5.1", "Need MAIL before RCPT")
NEED_RCPT = Reply(503, "5.5.1", "Need RCPT before DATA")
ALREADY_AUTHENTICATED = Reply(503, "5.5.1", "Already authenticated")
AUTH_IN_TRANSACTION = Reply(503, "5.5.1", "AUTH not permitted during a mail transaction")
TLS_ACTIVE = Reply(503, "5.5.1", "TLS already active")
UNKNOWN_MECHANISM = Reply(504, "5.5.4", "Unrecognized authentication mechanism")
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")
ENCRYPTION_REQUIRED = Reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
USER_UNKNOWN = Reply(550, "5.1.1", "User unknown")
RELAY_DENIED = Reply(550, "5.7.1", "Relay not permitted")
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
SENDER_NOT_OWNED = Reply(553, "5.7.1", "Sender address not owned by the authenticated user")
PATH_TOO_LONG = Reply(501, "5.1.3", "Address too long")                   # 4.5.3.1.1-3
DATA_LINE_TOO_LONG = Reply(554, "5.6.0", "Message has a line longer than 998 octets")
UNSUPPORTED_PARAMETER = Reply(555, "5.5.4", "Unsupported parameter {}")

ALL = {name: value for name, value in globals().items() if isinstance(value, Reply)}
