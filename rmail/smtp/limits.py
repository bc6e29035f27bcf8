"""The SMTP server's limits, each with the RFC it comes from.

The message size and recipient count are config keys (``smtp.max_message_size``,
``smtp.max_recipients``); these are the protocol's own.
"""

# RFC 5321 4.5.3.1.4: a command line is at most 512 octets with its CRLF.  MAIL and RCPT
# may carry extension parameters (RFC 5321 4.5.3.1.4 allows extensions to raise the limit;
# SIZE, BODY and AUTH= add at most ~600), so they get an allowance.
COMMAND_LINE = 512
MAIL_RCPT_LINE = 2048
# RFC 4954 section 4: an AUTH command line, with its initial response, up to 12288 octets.
AUTH_LINE = 12288
# Nothing longer is buffered while looking for the end of a command line.
MAX_LINE = AUTH_LINE

# RFC 5321 4.5.3.1.6: a text line is at most 1000 octets with its CRLF.
DATA_LINE = 1000

# RFC 5321 4.5.3.1.1-3: local part 64 octets, domain 255, path 256 with the brackets.
LOCAL_PART = 64
DOMAIN = 255
PATH = 256

# Errors (5yz/4yz replies to commands) before the server gives up on a client.
MAX_ERRORS = 20

# RFC 5321 4.5.3.2.7: the server waits at least 5 minutes for the next command.
IDLE_TIMEOUT = 300

# Unread pipelined input kept while a command is answered; beyond it reading pauses.
PIPELINE_BUFFER = 64 * 1024

# How long SIGTERM waits for transactions in flight before closing connections.
SHUTDOWN_GRACE = 30
