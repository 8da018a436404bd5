"""Byte-exact header handling for accepted messages.

Messages arrive in every charset and transfer encoding, sometimes broken. Re-serialising them with
the ``email`` package would re-fold, re-encode or mangle what it does not understand, so headers are
read and rewritten here at the byte level and the body is passed on untouched. Nothing in this
module raises on bad input.
"""

import contextlib
import email.utils
import re
import warnings

from core import encoded_words

FIELD_NAME = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:")
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
UNFOLD = re.compile(r"\r?\n[ \t]+")
CHARSET_PARAM = re.compile(rb'charset\s*=\s*"?([A-Za-z0-9._:+-]+)"?', re.I)


def split_message(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(header block, separator, body). The header ends at the first empty line, whatever the
    line endings (LF LF, CRLF CRLF, LF CRLF, CRLF LF): the separator is the last header line's
    ending and that empty line (only the empty line when the message starts with one), or b''
    when there is none and the whole message is header."""
    if raw.startswith((b"\r\n", b"\n")):
        blank = 2 if raw.startswith(b"\r\n") else 1
        return b"", raw[:blank], raw[blank:]
    found = [i for i in (raw.find(b"\n\n"), raw.find(b"\n\r\n")) if i != -1]
    if not found:
        return raw, b"", b""
    line_feed = min(found)  # the line feed that ends the last header line
    header_end = line_feed - 1 if raw[line_feed - 1 : line_feed] == b"\r" else line_feed
    body_start = line_feed + (2 if raw[line_feed + 1 : line_feed + 2] == b"\n" else 3)
    return raw[:header_end], raw[header_end:body_start], raw[body_start:]


def _field_ends(header_block: bytes) -> list[int]:
    """The offsets where the fields of a header block end: after every line break (CRLF, LF or
    a lone CR, as ``bytes.splitlines`` has them) that no space or tab follows. The line breaks
    are marked with bytes methods (same length, so offsets stay), leaving one LF per field
    boundary: one Python step per field, however many lines a field is folded over."""
    marks = header_block
    if b"\r" in marks:
        marks = marks.replace(b"\r\n", b"\x00\n").replace(b"\r", b"\n")
    marks = marks.replace(b"\n ", b"\x00 ").replace(b"\n\t", b"\x00\t")
    ends = []
    found = marks.find(b"\n")
    while found != -1:
        ends.append(found + 1)
        found = marks.find(b"\n", found + 1)
    if not ends or ends[-1] != len(header_block):
        ends.append(len(header_block))
    return ends


def fields(header_block: bytes) -> list[tuple[str, bytes]]:
    """The header fields in order, as (lower-case name, raw bytes with continuation lines), in
    time linear in the block however its fields are folded.

    A line that is neither a field nor a continuation (malformed) is kept with the field before it,
    under the name ''."""
    result: list[tuple[str, bytes]] = []
    start = 0
    for end in _field_ends(header_block):
        raw_field = header_block[start:end]
        start = end
        if raw_field:
            match = FIELD_NAME.match(raw_field)
            result.append((match.group(1).decode("ascii").lower() if match else "", raw_field))
    return result


def declared_charset(header_block: bytes) -> str:
    """The charset named in the top-level Content-Type, if it is one Python knows."""
    for name, raw in fields(header_block):
        if name == "content-type":
            match = CHARSET_PARAM.search(raw)
            if match:
                charset = match.group(1).decode("ascii").lower()
                try:
                    b"a".decode(charset)
                    return charset
                except (LookupError, UnicodeError):  # unknown, or a codec that refuses all
                    return ""
    return ""


def decode_bytes(data: bytes, charset: str = "") -> str:
    """Text from bytes: UTF-8 if valid, else the declared charset, else UTF-8 with replacement
    characters. ASCII always survives, except NUL, which no text column of PostgreSQL can hold:
    it becomes U+FFFD, as does a lone surrogate."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
        if charset:
            # UnicodeError, not only UnicodeDecodeError: some codecs (e.g. "undefined") refuse
            # everything with the base class.
            with contextlib.suppress(UnicodeError, LookupError), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. unicode_escape warns of bad escapes
                text = data.decode(charset)
        text = text or data.decode("utf-8", "replace")
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    # A codec such as unicode_escape can yield lone surrogates, which UTF-8 (and PostgreSQL)
    # cannot hold.
    return LONE_SURROGATE.sub("\ufffd", text)


def field_value(raw_field: bytes, charset: str = "") -> str:
    """The unfolded, RFC 2047-decoded value of a raw header field, without NUL (an encoded word
    can carry one, and no text column of PostgreSQL holds it)."""
    _, _, value = raw_field.partition(b":")
    text = decode_bytes(value, charset)
    if "\n" in text:
        text = UNFOLD.sub(" ", text)
    text = text.strip()
    if "=?" not in text:
        return text
    try:
        text = encoded_words.decode(text)
    except Exception:  # malformed encoded words: keep the text as it came
        return text
    return text.replace("\x00", "")


def header_name(raw_field: bytes) -> str:
    """The field name as written (case preserved)."""
    match = FIELD_NAME.match(raw_field)
    return match.group(1).decode("ascii") if match else ""


def addresses(values: list[str]) -> list[str]:
    """The addr-specs named in address header values (To, Cc …)."""
    try:
        pairs = email.utils.getaddresses(values)
    except Exception:
        return []
    return [addr for _, addr in pairs if addr and "@" in addr]


def first_address(value: str) -> str:
    """The first addr-spec in one header value (``Shop <shop@example.com>`` → the address)."""
    found = addresses([value])
    return found[0] if found else ""


def rewrite(raw: bytes, drop, add: list[bytes], prepend: list[bytes] = ()) -> bytes:
    """The message with the header fields for which ``drop(name)`` is true removed, ``add``
    fields appended to the header block and ``prepend`` fields put on top of it (trace fields);
    the body is untouched. Added fields may be folded with CRLF: they take the block's line
    ending."""
    header_block, separator, body = split_message(raw)
    eol = b"\r\n" if b"\r\n" in header_block or not header_block else b"\n"
    kept = [raw_field for name, raw_field in fields(header_block) if not drop(name)]
    block = b"".join(field.replace(b"\r\n", eol) + eol for field in prepend)
    block += b"".join(kept)
    if block and not block.endswith(b"\n"):
        block += eol
    block += b"".join(field.replace(b"\r\n", eol) + eol for field in add)
    if not separator:
        blank = eol
    elif not header_block:
        blank = separator  # the message starts with its empty line
    else:  # the empty line after the last header line's ending (which the block has now)
        blank = separator[1:] if separator.startswith(b"\n") else separator[2:]
    return block + blank + body
