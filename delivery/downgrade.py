"""8-bit content for a next hop that does not offer 8BITMIME (RFC 6152): the message converted
to 7-bit, as Postfix does, or the reason it cannot be.

Only what must change changes, at the byte level (``core.mime``), never re-serialised by the
``email`` package: every body part that holds 8-bit bytes in the 7bit/8bit/binary transfer
encoding (or none declared) is encoded quoted-printable and its Content-Transfer-Encoding field
says so; a multipart is converted part by part, a message/rfc822 part inside its own parts, and
either's 8bit label becomes 7bit; every other part, header field, boundary and line stays as it
was. Decoding the result gives back the bytes that would have been sent with 8BITMIME. Stray
8-bit bytes in a quoted-printable part are encoded as the decoder would have read them, in a
base64 part (where decoders skip them) dropped, and in a multipart's preamble or epilogue (which
MIME readers ignore, RFC 2046 §5.1.1) replaced by ``?``.

Header fields cannot be converted this way (RFC 2047 encoding would change what they say): a
header with raw 8-bit bytes is ``Unconvertible`` unless the next hop offers SMTPUTF8 (RFC 6532)
and the headers are UTF-8, and so is a part whose transfer encoding or type forbids it. The
content given is CRLF-terminated (``delivery.content.crlf``); signing comes after (the signature
must cover the bytes sent).
"""

import binascii
import email.parser
import email.policy
import re

from core.mime import fields, split_message

MAX_DEPTH = 30  # nested multiparts and messages followed at most this deep

_EIGHT_BIT = re.compile(rb"[\x80-\xff]")
_IDENTITY = ("7bit", "8bit", "binary")
# message/* types whose body must stay 7bit, 8bit or binary (RFC 2046 §5.2): never encoded.
_UNENCODABLE = ("message/partial", "message/external-body")


class Unconvertible(ValueError):
    """The message holds 8-bit bytes that cannot be converted to 7-bit; says where."""


def is_8bit(content: bytes) -> bool:
    return not content.isascii()


def seven_bit(content: bytes, utf8_headers: bool = False) -> bytes:
    """``content`` with every 8-bit body part encoded quoted-printable (see the module's
    docstring). ``utf8_headers``: the next hop offers SMTPUTF8, so UTF-8 header fields may stay
    as they are. Unconvertible when the message cannot be converted."""
    if not is_8bit(content):
        return content
    return _message(content, utf8_headers, 0)


def _message(raw: bytes, utf8_headers: bool, depth: int) -> bytes:
    """A message (the one sent, or one enclosed in it) converted, with a MIME-Version field
    added if it had none (a Content-Transfer-Encoding field means nothing without one)."""
    converted = _entity(raw, utf8_headers, "text/plain", depth)
    if converted is raw:
        return raw
    header_block, _, body = _split(converted)
    if any(name == "mime-version" for name, _ in fields(header_block)):
        return converted
    return _with_fields(header_block, [b"MIME-Version: 1.0"], body)


def _split(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """``core.mime.split_message``, for an entity that may have no header fields at all."""
    if raw.startswith(b"\r\n"):  # the body starts after the blank line
        return b"", b"\r\n", raw[2:]
    return split_message(raw)


def _entity(raw: bytes, utf8_headers: bool, default_type: str, depth: int) -> bytes:
    """One entity (the message, a body part, an enclosed message) converted; ``raw`` itself
    when nothing in it needed to be."""
    header_block, separator, body = _split(raw)
    if is_8bit(header_block):
        _check_headers(header_block, utf8_headers)
    if not is_8bit(body):
        return raw
    if depth > MAX_DEPTH:
        raise Unconvertible(f"8-bit content nested more than {MAX_DEPTH} MIME levels deep")
    headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(
        header_block + b"\r\n\r\n"
    )
    headers.set_default_type(default_type)
    content_type = headers.get_content_type()
    encoding = str(headers.get("content-transfer-encoding") or "7bit").strip().lower()
    if content_type.startswith("multipart/"):
        boundary = headers.get_boundary()
        if not boundary or not boundary.isascii():
            raise Unconvertible(
                f"a {content_type} part without a usable boundary holds 8-bit bytes"
            )
        child = "message/rfc822" if content_type == "multipart/digest" else "text/plain"
        new_body = _multipart(body, boundary.encode("ascii"), utf8_headers, child, depth + 1)
        return _relabelled(header_block, encoding, new_body)
    if content_type in ("message/rfc822", "message/news"):
        if encoding not in _IDENTITY:
            raise Unconvertible(
                f"an enclosed message in the {encoding!r} encoding holds 8-bit bytes"
            )
        new_body = _message(body, utf8_headers, depth + 1)
        return _relabelled(header_block, encoding, new_body)
    if content_type in _UNENCODABLE:
        raise Unconvertible(f"a {content_type} part holds 8-bit bytes and may not be encoded")
    if encoding in _IDENTITY:
        return _with_encoding(header_block, _quoted_printable(body))
    if encoding == "quoted-printable":
        return _with_encoding(header_block, _quoted_printable(binascii.a2b_qp(body)))
    if encoding == "base64":
        return header_block + separator + _EIGHT_BIT.sub(b"", body)
    raise Unconvertible(f"a body part in the transfer encoding {encoding!r} holds 8-bit bytes")


def _check_headers(header_block: bytes, utf8_headers: bool) -> None:
    names = sorted({name or "?" for name, raw in fields(header_block) if is_8bit(raw)})
    where = f"the header field(s) {', '.join(names)}"
    if not utf8_headers:
        raise Unconvertible(f"{where} hold raw 8-bit characters, which cannot be converted")
    try:
        header_block.decode("utf-8")
    except UnicodeDecodeError:
        raise Unconvertible(f"{where} hold 8-bit characters that are not UTF-8") from None


def _multipart(body: bytes, boundary: bytes, utf8_headers: bool, child: str, depth: int) -> bytes:
    """The body of a multipart with each part converted. The line break before a delimiter
    belongs to the delimiter (RFC 2046 §5.1.1); delimiters, and the preamble and epilogue but
    for their 8-bit bytes, stay as they are. Without a close delimiter the last part runs to the
    end."""
    delimiter = re.compile(rb"(?m)^--" + re.escape(boundary) + rb"(--)?[ \t]*\r?$")
    pieces: list[bytes] = []
    position, closed = 0, False
    for match in delimiter.finditer(body):
        end = match.start()
        if end - 2 >= position and body[end - 2 : end] == b"\r\n":
            end -= 2
        text = body[position:end]
        pieces.append(_entity(text, utf8_headers, child, depth) if pieces else _ignored(text))
        position = match.end() + (body[match.end() : match.end() + 1] == b"\n")
        pieces.append(body[end:position])
        if match.group(1):
            closed = True
            break
    if not pieces:
        raise Unconvertible("a multipart body without a delimiter holds 8-bit bytes")
    rest = body[position:]
    pieces.append(_ignored(rest) if closed else _entity(rest, utf8_headers, child, depth))
    return b"".join(pieces)


def _ignored(text: bytes) -> bytes:
    """A preamble or an epilogue, which MIME readers ignore: its 8-bit bytes become ``?``."""
    return _EIGHT_BIT.sub(b"?", text)


def _quoted_printable(data: bytes) -> bytes:
    """``data`` (CRLF line ends) encoded quoted-printable, its line breaks kept as they are."""
    encoded = binascii.b2a_qp(data.replace(b"\r\n", b"\n"), quotetabs=False, istext=True)
    return encoded.replace(b"\n", b"\r\n")


def _relabelled(header_block: bytes, encoding: str, new_body: bytes) -> bytes:
    """A multipart or enclosed message whose parts are all 7-bit now: labelled 7bit where it
    said 8bit or binary (RFC 2045 §6.4: a composite type's label is its parts' widest)."""
    if encoding in ("8bit", "binary"):
        return _with_fields(_without(header_block, "content-transfer-encoding"),
                            [b"Content-Transfer-Encoding: 7bit"], new_body)  # fmt: skip
    return header_block + b"\r\n\r\n" + new_body if header_block else b"\r\n" + new_body


def _with_encoding(header_block: bytes, new_body: bytes) -> bytes:
    return _with_fields(
        _without(header_block, "content-transfer-encoding"),
        [b"Content-Transfer-Encoding: quoted-printable"],
        new_body,
    )


def _without(header_block: bytes, name: str) -> bytes:
    return b"".join(raw for field, raw in fields(header_block) if field != name)


def _with_fields(header_block: bytes, added: list[bytes], body: bytes) -> bytes:
    block = (
        header_block if not header_block or header_block.endswith(b"\n") else header_block + b"\r\n"
    )
    return block + b"".join(field + b"\r\n" for field in added) + b"\r\n" + body
