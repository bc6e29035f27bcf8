"""RFC 2047 encoded words in header values, decoded for people (ENVELOPE, the API's
listings) and, more leniently, for SEARCH the way Dovecot's search reads them.

Pure and byte-level like ``rmail.rfc5322``: bytes in, text out, no input makes it raise.

RFCs: 2047 (encoded words), 2231 §5 (a language in an encoded word's charset),
2045 §6.8 (base64).
"""

from __future__ import annotations

import binascii
import codecs
import re

_ENCODED_WORD = re.compile(
    rb"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([QqBb])\?([\x21-\x3e\x40-\x7e]+)\?=")
# How SEARCH finds words (Dovecot's message-header-decode): anywhere, even glued to
# other text, the text may be empty, and the charset takes anything up to the "?".
_ENCODED_WORD_ANYWHERE = re.compile(
    rb"=\?([\x21-\x3e\x40-\x7e]+?)\?([QqBb])\?([\x21-\x3e\x40-\x7e]*?)\?=")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")


def _text(data: bytes) -> str:
    """Raw header bytes as text: UTF-8 when they are, else ISO-8859-1."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _utf8_text(data: bytes) -> str:
    """Raw header bytes as SEARCH reads them: UTF-8, invalid bytes as U+FFFD."""
    return data.decode("utf-8", "replace")


def base64_octets(data: bytes) -> bytes:
    """Base64 (RFC 2045 §6.8) decoded as far as it goes: bytes outside the alphabet
    are skipped, missing padding is tolerated and a dangling last character dropped."""
    data = _NOT_BASE64.sub(b"", data)
    data = data[:len(data) - (len(data) % 4 == 1)]
    return binascii.a2b_base64(data + b"=" * (-len(data) % 4))


def _decode_word(encoding: bytes, text: bytes):
    """The octets of one encoded word, or None when it is malformed."""
    try:
        if encoding in b"Qq":
            return binascii.a2b_qp(text, header=True)
        text = text.rstrip(b"=")
        if len(text) % 4 == 1:
            return None
        return binascii.a2b_base64(text + b"=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def _charset_text(data: bytes, charset: bytes):
    """*data* decoded from *charset*, or None when Python has no text codec by that name."""
    try:
        if not codecs.lookup(charset.decode("ascii"))._is_text_encoding:
            return None
        return data.decode(charset.decode("ascii"), "replace")
    except (LookupError, ValueError, TypeError, UnicodeError):
        return None


def decode_words(value: bytes, search: bool = False) -> str:
    """RFC 2047 decoding of a header value, leniently: encoded words separated only by
    whitespace are joined, and the octets of a run in one charset are decoded together
    (so a character split across two words survives); RFC 2231 §5 language suffixes
    (``=?UTF-8*en?Q?...?=``) are accepted; a word that is malformed, glued to other
    text or in an unknown charset is left as it is; base64 may lack its padding.

    ``search=True`` reads the value as Dovecot's SEARCH does, which finds more than a
    reader should be shown: words glued to other text and words with empty text are
    decoded too, a word in an unknown charset is read as UTF-8, malformed base64 as far
    as it goes (``base64_octets``), and 8-bit bytes outside words as UTF-8 with U+FFFD
    for invalid bytes (never ISO-8859-1)."""
    if search:
        text = _utf8_text           # the caller unfolded the value; a bare CR is text
    else:
        text = _text
        value = value.replace(b"\r", b"").replace(b"\n", b"")
    out = []
    run = None                          # [charset, octets, start, end] of encoded words
    pos = 0
    for m in (_ENCODED_WORD_ANYWHERE if search else _ENCODED_WORD).finditer(value):
        s, e = m.span()
        charset = m.group(1)
        if search:
            charset = charset.partition(b"*")[0]
            if _charset_text(b"", charset) is None:
                charset = b"utf-8"
            octets = (binascii.a2b_qp(m.group(3), header=True) if m.group(2) in b"Qq"
                      else base64_octets(m.group(3)))
        else:
            if (s > 0 and value[s - 1] not in b" \t(") or \
                    (e < len(value) and value[e] not in b" \t)"):
                continue                # RFC 2047 §5: a word must stand alone
            octets = _decode_word(m.group(2), m.group(3))
            if octets is None or _charset_text(b"", charset) is None:
                continue
        between = value[pos:s]
        adjacent = run is not None and not between.strip(b" \t")
        if adjacent and run[0].lower() == charset.lower():
            run[1] += octets
            run[3] = e
        else:
            if run is not None:
                out.append(_run_text(value, run))
            if not adjacent:
                out.append(text(between))
            run = [charset, octets, s, e]
        pos = e
    if run is not None:
        out.append(_run_text(value, run))
    out.append(text(value[pos:]))
    return "".join(out)


def _run_text(value: bytes, run) -> str:
    text = _charset_text(run[1], run[0])
    return text if text is not None else _text(value[run[2]:run[3]])
