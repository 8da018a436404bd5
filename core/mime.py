"""Byte-exact header handling for accepted messages.

Messages arrive in every charset and transfer encoding, sometimes broken. Re-serialising them with
the ``email`` package would re-fold, re-encode or mangle what it does not understand, so headers are
read and rewritten here at the byte level and the body is passed on untouched. Nothing in this
module raises on bad input.
"""

import contextlib
import email.header
import email.utils
import re
import warnings

FIELD_NAME = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:")
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
CHARSET_PARAM = re.compile(rb'charset\s*=\s*"?([A-Za-z0-9._:+-]+)"?', re.I)


def split_message(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(header block, separator, body); the separator is the blank line, or b'' if none."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        index = raw.find(separator)
        if index != -1:
            return raw[:index], separator, raw[index + len(separator) :]
    if raw.startswith((b"\r\n", b"\n")):
        return b"", raw[: 2 if raw.startswith(b"\r\n") else 1], raw.lstrip(b"\r\n")
    return raw, b"", b""


def fields(header_block: bytes) -> list[tuple[str, bytes]]:
    """The header fields in order, as (lower-case name, raw bytes with continuation lines).

    A line that is neither a field nor a continuation (malformed) is kept with the field before it,
    under the name ''."""
    result: list[tuple[str, bytes]] = []
    for line in header_block.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and result:
            name, raw = result[-1]
            result[-1] = (name, raw + line)
            continue
        match = FIELD_NAME.match(line)
        name = match.group(1).decode("ascii").lower() if match else ""
        result.append((name, line))
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
    text = re.sub(r"\r?\n[ \t]+", " ", text).strip()
    if "=?" not in text:
        return text
    try:
        text = str(email.header.make_header(email.header.decode_header(text)))
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


def rewrite(raw: bytes, drop, add: list[bytes]) -> bytes:
    """The message with the header fields for which ``drop(name)`` is true removed and ``add``
    fields appended to the header block; the body is untouched."""
    header_block, separator, body = split_message(raw)
    eol = b"\r\n" if b"\r\n" in header_block or not header_block else b"\n"
    kept = [raw_field for name, raw_field in fields(header_block) if not drop(name)]
    block = b"".join(kept)
    if block and not block.endswith(b"\n"):
        block += eol
    block += b"".join(field + eol for field in add)
    return block + (separator[len(eol) :] if separator else eol) + body
