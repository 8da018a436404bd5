"""Server side of the SASL mechanisms CRAM-MD5 (RFC 2195) and DIGEST-MD5 (RFC 2831).

Pure stdlib, no I/O: the SMTP layer base64-decodes client responses, calls these
functions and base64-encodes what they return.  Every function that consumes client
input either returns a result or raises :class:`SaslError`; verification functions
return ``False``/``None`` on a bad response and never raise.

DIGEST-MD5 is only offered with ``qop=auth`` (no integrity/confidentiality layer) and
a single exchange per nonce, so ``nc`` must always be ``00000001``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets
import time

__all__ = [
    "SaslError",
    "cram_md5_challenge",
    "cram_md5_parse",
    "cram_md5_verify",
    "digest_md5_challenge",
    "digest_md5_ha1",
    "digest_md5_parse",
    "digest_md5_response_value",
    "digest_md5_rspauth_message",
    "digest_md5_secret",
    "digest_md5_verify",
]

# RFC 2831 §2.1.2: "The size of a digest-response is less than 4096 bytes."
MAX_RESPONSE_LENGTH = 4096

DIGEST_MD5_REQUIRED = ("username", "nonce", "cnonce", "nc", "response", "digest-uri")

_LWS = " \t\r\n"
# RFC 2616 "separators" (plus CTLs) may not appear in a token.
_SEPARATORS = frozenset('()<>@,;:\\"/[]?={} \t')


class SaslError(ValueError):
    """Malformed SASL client response (syntax error, not a wrong password)."""


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def _has_ctl(value: str) -> bool:
    # NUL and friends would break the caller (e.g. PostgreSQL rejects NUL in text).
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)


def _candidate_encodings(value: str) -> list[bytes]:
    """Byte strings a client may have hashed for ``value``: ISO-8859-1 first, then UTF-8.

    RFC 2831 §2.1.2.1 says UTF-8 strings that are representable in ISO-8859-1 "must be
    converted to ISO 8859-1 before being hashed" (Cyrus SASL does this per string), while
    many clients (curl, most libraries) simply hash the UTF-8 bytes.  For ASCII both are
    identical, so only one candidate is produced.
    """
    out: list[bytes] = []
    for encoding in ("latin-1", "utf-8"):
        try:
            encoded = value.encode(encoding)
        except UnicodeError:
            continue
        if encoded not in out:
            out.append(encoded)
    return out


def _rfc_encode(value: str) -> bytes:
    try:
        return value.encode("latin-1")
    except UnicodeError:
        return value.encode("utf-8")


# --------------------------------------------------------------------------- CRAM-MD5


def cram_md5_challenge(hostname: str) -> bytes:
    """Return a fresh RFC 2195 challenge ``<random.timestamp@hostname>`` (not base64)."""
    host = hostname.strip() or "localhost"
    return f"<{secrets.randbits(64)}.{time.time_ns()}@{host}>".encode()


def cram_md5_parse(response: bytes) -> tuple[str, str]:
    """Split a decoded CRAM-MD5 response into ``(username, lower-case hexdigest)``.

    The digest is the last space-separated token, so usernames may contain spaces.
    """
    try:
        text = response.decode("utf-8")
    except (UnicodeDecodeError, AttributeError) as exc:
        raise SaslError("CRAM-MD5 response is not valid UTF-8") from exc
    text = text.strip(_LWS)
    username, sep, digest = text.rpartition(" ")
    username = username.rstrip(_LWS)
    if not sep or not username:
        raise SaslError("CRAM-MD5 response must be 'username hexdigest'")
    if _has_ctl(username):
        raise SaslError("control character in CRAM-MD5 username")
    if len(digest) != 32 or any(c not in "0123456789abcdefABCDEF" for c in digest):
        raise SaslError("CRAM-MD5 digest must be 32 hex digits")
    return username, digest.lower()


def cram_md5_verify(password: str, challenge: bytes, hexdigest: str) -> bool:
    """Check ``hexdigest`` == HMAC-MD5(password, challenge), in constant time.

    The password is tried as UTF-8 and (if representable) ISO-8859-1.
    """
    try:
        given = hexdigest.lower().encode("ascii")
    except (UnicodeError, AttributeError):
        return False
    ok = False
    for key in _candidate_encodings(password):
        expected = hmac.new(key, challenge, hashlib.md5).hexdigest().encode("ascii")
        ok |= hmac.compare_digest(expected, given)
    return ok


# ------------------------------------------------------------------------- DIGEST-MD5


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def digest_md5_challenge(realm: str) -> tuple[bytes, str]:
    """Return ``(challenge, nonce)``; the challenge is raw bytes, the caller base64s it."""
    nonce = secrets.token_urlsafe(24)
    challenge = (
        f'realm={_quote(realm)},nonce={_quote(nonce)},qop="auth",charset=utf-8,algorithm=md5-sess'
    )
    return challenge.encode("utf-8"), nonce


def _split_directives(text: str) -> list[tuple[str, str]]:
    """Tokenise ``key=value`` pairs per the RFC 2831 ``#rule`` (empty elements allowed)."""
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while True:
        # Skip LWS and empty list elements ("a=b, ,c=d").
        while i < n and (text[i] in _LWS or text[i] == ","):
            i += 1
        if i >= n:
            return pairs
        start = i
        while i < n and 0x20 < ord(text[i]) < 0x7F and text[i] not in _SEPARATORS:
            i += 1
        key = text[start:i]
        if not key:
            raise SaslError(f"expected directive name at offset {start}")
        while i < n and text[i] in _LWS:
            i += 1
        if i >= n or text[i] != "=":
            raise SaslError(f"missing '=' after {key!r}")
        i += 1
        while i < n and text[i] in _LWS:
            i += 1
        if i < n and text[i] == '"':
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise SaslError(f"unterminated quoted value for {key!r}")
                c = text[i]
                if c == "\\":
                    if i + 1 >= n:
                        raise SaslError(f"unterminated quoted value for {key!r}")
                    chars.append(text[i + 1])
                    i += 2
                elif c == '"':
                    i += 1
                    break
                else:
                    chars.append(c)
                    i += 1
            value = "".join(chars)
        else:
            start = i
            while i < n and text[i] != ",":
                i += 1
            value = text[start:i].rstrip(_LWS)
            if not value or any(c in _LWS or c == '"' for c in value):
                raise SaslError(f"invalid unquoted value for {key!r}")
        while i < n and text[i] in _LWS:
            i += 1
        if i < n and text[i] != ",":
            raise SaslError(f"unexpected data after value of {key!r}")
        pairs.append((key, value))


def digest_md5_parse(response: bytes) -> dict[str, str]:
    """Parse a client digest-response into ``{lower-case key: value}``.

    Values may be quoted (with backslash escapes) or bare tokens.  With
    ``charset=utf-8`` values must be valid UTF-8; without it RFC 2831 says ISO-8859-1,
    so each value is decoded as UTF-8 when valid and as ISO-8859-1 otherwise.
    """
    if not isinstance(response, (bytes, bytearray, memoryview)):
        raise SaslError("response must be bytes")
    response = bytes(response)
    if not response.strip():
        raise SaslError("empty DIGEST-MD5 response")
    if len(response) >= MAX_RESPONSE_LENGTH:
        raise SaslError("DIGEST-MD5 response too long")
    # latin-1 maps bytes 1:1 onto code points, so we can tokenise first and decode later.
    raw_pairs = _split_directives(response.decode("latin-1"))

    fields: dict[str, str] = {}
    for key, value in raw_pairs:
        key = key.lower()
        if key in fields:
            raise SaslError(f"duplicate directive {key!r}")
        fields[key] = value

    charset = fields.get("charset")
    if charset is not None and charset.lower() != "utf-8":
        raise SaslError(f"unsupported charset {charset!r}")
    for key, value in fields.items():
        raw = value.encode("latin-1")
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            if charset is not None:
                raise SaslError(f"value of {key!r} is not valid UTF-8") from None
            # no charset: the value stays ISO-8859-1 (already decoded that way)
        if _has_ctl(value):
            raise SaslError(f"control character in value of {key!r}")
        fields[key] = value

    for key in DIGEST_MD5_REQUIRED:
        if not fields.get(key):
            raise SaslError(f"missing directive {key!r}")
    return fields


def digest_md5_secret(username: bytes, realm: bytes, password: bytes) -> bytes:
    """``H({ username-value, ":", realm-value, ":", passwd })`` on already-encoded bytes."""
    return _md5(username + b":" + realm + b":" + password)


def digest_md5_ha1(username: str, realm: str, password: str) -> bytes:
    """The 16-byte ``H(user:realm:pass)`` using the RFC 2831 encoding rule.

    Each string is hashed as ISO-8859-1 when representable, else as UTF-8; this is what
    the RFC mandates both with ``charset=utf-8`` and without it.
    """
    return digest_md5_secret(_rfc_encode(username), _rfc_encode(realm), _rfc_encode(password))


def digest_md5_response_value(
    secret: bytes,
    *,
    nonce: str,
    cnonce: str,
    nc: str,
    digest_uri: str,
    qop: str = "auth",
    authzid: bytes | None = None,
    rspauth: bool = False,
) -> str:
    """RFC 2831 §2.1.2.1 ``response-value`` (or ``rspauth`` when ``rspauth=True``).

    ``secret`` is :func:`digest_md5_ha1` / :func:`digest_md5_secret`;
    ``authzid`` is appended to A1 only when not ``None``.
    """
    a1 = secret + b":" + nonce.encode("utf-8") + b":" + cnonce.encode("utf-8")
    if authzid is not None:
        a1 += b":" + authzid
    a2 = (b"" if rspauth else b"AUTHENTICATE") + b":" + digest_uri.encode("utf-8")
    kd = b":".join(
        [
            _md5(a1).hex().encode(),
            nonce.encode("utf-8"),
            nc.encode("utf-8"),
            cnonce.encode("utf-8"),
            qop.encode("utf-8"),
            _md5(a2).hex().encode(),
        ]
    )
    return _md5(kd).hex()


def _ascii_eq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


def digest_md5_verify(
    fields: dict[str, str], password: str, expected_nonce: str, realm: str
) -> str | None:
    """Verify a parsed digest-response; return the hex ``rspauth`` or ``None`` on failure.

    ``realm`` is the realm we advertised.  The ``digest-uri`` is only required to be
    ``smtp/...`` because clients put whatever host they dialled there (often an IP).
    Alternative encodings of the credentials are tried (see :func:`_candidate_encodings`).
    """
    try:
        return _digest_md5_verify(fields, password, expected_nonce, realm)
    except (KeyError, TypeError, AttributeError, UnicodeError, ValueError):
        return None


def _digest_md5_verify(
    fields: dict[str, str], password: str, expected_nonce: str, realm: str
) -> str | None:
    if any(not isinstance(fields.get(k), str) or not fields[k] for k in DIGEST_MD5_REQUIRED):
        return None
    if not _ascii_eq(fields["nonce"], expected_nonce):
        return None
    qop = fields.get("qop", "auth")
    if qop.lower() != "auth":
        return None
    nc = fields["nc"]
    if nc.lower() != "00000001":  # one authentication per nonce: anything else is a replay
        return None
    if fields.get("algorithm", "md5-sess").lower() != "md5-sess":
        return None
    charset = fields.get("charset")
    if charset is not None and charset.lower() != "utf-8":
        return None
    digest_uri = fields["digest-uri"]
    if not digest_uri.lower().startswith("smtp/") or len(digest_uri) <= len("smtp/"):
        return None
    client_realm = fields.get("realm")
    if client_realm is not None and client_realm != realm:
        return None
    used_realm = client_realm if client_realm is not None else ""
    given = fields["response"].lower().encode("utf-8")

    authzid = fields.get("authzid")
    candidates = itertools.product(
        _candidate_encodings(fields["username"]),
        _candidate_encodings(used_realm),
        _candidate_encodings(password),
        _candidate_encodings(authzid) if authzid is not None else [None],
    )
    match: str | None = None
    for user_b, realm_b, pass_b, authzid_b in candidates:
        secret = digest_md5_secret(user_b, realm_b, pass_b)
        params = {
            "nonce": fields["nonce"],
            "cnonce": fields["cnonce"],
            "nc": nc,
            "digest_uri": digest_uri,
            "qop": qop,
            "authzid": authzid_b,
        }
        expected = digest_md5_response_value(secret, **params).encode("ascii")
        if hmac.compare_digest(expected, given) and match is None:
            match = digest_md5_response_value(secret, rspauth=True, **params)
    return match


def digest_md5_rspauth_message(rspauth: str) -> bytes:
    """The server's second challenge (before base64): ``rspauth=<hex>``."""
    return b"rspauth=" + rspauth.encode("ascii")
