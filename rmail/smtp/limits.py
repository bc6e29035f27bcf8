"""The SMTP server's fixed limits, each with the RFC it comes from.

What an operator may tune is in config.json (``smtp.max_message_size``,
``max_recipients``, ``max_command_line``, ``max_errors``, ``idle_timeout``); these are
the protocol's own.
"""

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

# Unread pipelined input kept while a command is answered; beyond it reading pauses.
PIPELINE_BUFFER = 64 * 1024
