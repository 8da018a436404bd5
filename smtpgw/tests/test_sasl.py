"""Tests for smtpgw.sasl (pure Python, no Django needed)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import re

import pytest

from smtpgw import sasl
from smtpgw.sasl import SaslError

pytestmark = pytest.mark.no_db

# ------------------------------------------------------------------ independent client


def _h(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def _hx(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _client_parse_challenge(challenge: bytes) -> dict[str, str]:
    """Deliberately naive regex parser, independent of the server's tokenizer."""
    out = {}
    for key, quoted, bare in re.findall(
        r'([A-Za-z-]+)=(?:"((?:[^"\\]|\\.)*)"|([^,]*))', challenge.decode("utf-8")
    ):
        out[key.lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted or not bare else bare
    return out


def _q(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def client_digest_response(
    challenge: bytes,
    username: str,
    password: str,
    *,
    host: str = "127.0.0.1",
    serv_type: str = "smtp",
    quote_nc: bool = False,
    charset: bool = True,
    send_realm: bool = True,
    authzid: str | None = None,
    mode: str = "utf8",
    cnonce: str = "OA6MHXh6VqTrRk",
    nc: str = "00000001",
    nonce: str | None = None,
    qop: str = "auth",
) -> tuple[bytes, str]:
    """Compute a digest-response the way real clients do; return (wire bytes, rspauth).

    mode "utf8": hash the UTF-8 bytes (curl, msmtp/gsasl, most libraries).
    mode "cyrus": RFC 2831 rule, each of user/realm/pass hashed as ISO-8859-1 if possible.
    mode "latin1": no charset directive, everything ISO-8859-1 on the wire and in the hash.
    """
    ch = _client_parse_challenge(challenge)
    realm = ch.get("realm", "") if send_realm else ""
    nonce = ch["nonce"] if nonce is None else nonce
    wire = "latin-1" if mode == "latin1" else "utf-8"

    def enc(s: str) -> bytes:
        if mode in ("cyrus", "latin1"):
            try:
                return s.encode("latin-1")
            except UnicodeEncodeError:
                pass
        return s.encode("utf-8")

    uri = f"{serv_type}/{host}"
    a1 = _h(enc(username) + b":" + enc(realm) + b":" + enc(password))
    a1 += f":{nonce}:{cnonce}".encode()
    if authzid is not None:
        a1 += b":" + authzid.encode(wire)

    def kd(a2: str) -> str:
        return _hx(f"{_hx(a1)}:{nonce}:{nc}:{cnonce}:{qop}:{_hx(a2.encode())}".encode())

    parts = []
    if charset:
        parts.append("charset=utf-8")
    parts.append(f"username={_q(username)}")
    if send_realm:
        parts.append(f"realm={_q(realm)}")
    parts += [
        f"nonce={_q(nonce)}",
        f"cnonce={_q(cnonce)}",
        f"nc={_q(nc)}" if quote_nc else f"nc={nc}",
        f"digest-uri={_q(uri)}",
        f"response={kd('AUTHENTICATE:' + uri)}",
        f"qop={qop}",
    ]
    if authzid is not None:
        parts.append(f"authzid={_q(authzid)}")
    return ",".join(parts).encode(wire), kd(":" + uri)


def server_roundtrip(response: bytes, password: str, nonce: str, realm: str) -> str | None:
    return sasl.digest_md5_verify(sasl.digest_md5_parse(response), password, nonce, realm)


# ------------------------------------------------------------------------- CRAM-MD5

RFC2195_CHALLENGE = b"<1896.697170952@postoffice.reston.mci.net>"
RFC2195_DIGEST = "b913a602c7eda7a495b4e6e7334d3890"


def test_cram_md5_rfc2195_example():
    # RFC 2195 §2: the client response as sent on the wire (base64).
    decoded = base64.b64decode("dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw")
    user, digest = sasl.cram_md5_parse(decoded)
    assert (user, digest) == ("tim", RFC2195_DIGEST)
    assert sasl.cram_md5_verify("tanstaaftanstaaf", RFC2195_CHALLENGE, digest)
    assert sasl.cram_md5_verify("tanstaaftanstaaf", RFC2195_CHALLENGE, digest.upper())
    assert not sasl.cram_md5_verify("tanstaaf", RFC2195_CHALLENGE, digest)
    assert not sasl.cram_md5_verify("tanstaaftanstaaf", RFC2195_CHALLENGE + b"x", digest)


def test_cram_md5_challenge_format_and_uniqueness():
    challenges = {sasl.cram_md5_challenge("mail.example.com") for _ in range(200)}
    assert len(challenges) == 200
    for c in challenges:
        assert re.fullmatch(rb"<\d+\.\d+@mail\.example\.com>", c)


@pytest.mark.parametrize("password", ["s3cret", "pässwörd", "пароль"])
def test_cram_md5_roundtrip(password):
    challenge = sasl.cram_md5_challenge("gw.local")
    digest = hmac.new(password.encode(), challenge, hashlib.md5).hexdigest()
    user, parsed = sasl.cram_md5_parse(f"john doe {digest}".encode())
    assert user == "john doe"  # split on the LAST space
    assert sasl.cram_md5_verify(password, challenge, parsed)
    assert not sasl.cram_md5_verify(password + "x", challenge, parsed)


def test_cram_md5_latin1_password_accepted():
    challenge = sasl.cram_md5_challenge("gw.local")
    digest = hmac.new("pässwörd".encode("latin-1"), challenge, hashlib.md5).hexdigest()
    assert sasl.cram_md5_verify("pässwörd", challenge, digest)


@pytest.mark.parametrize(
    "response",
    [
        b"",
        b"   ",
        b"tim",
        b"tim ",
        b" " + RFC2195_DIGEST.encode(),
        b"tim b913a602c7eda7a495b4e6e7334d389",  # 31 hex digits
        b"tim b913a602c7eda7a495b4e6e7334d3890a",
        b"tim z913a602c7eda7a495b4e6e7334d3890",
        b"\xff\xfe " + RFC2195_DIGEST.encode(),
        b"t\x00im " + RFC2195_DIGEST.encode(),
    ],
)
def test_cram_md5_parse_malformed(response):
    with pytest.raises(SaslError):
        sasl.cram_md5_parse(response)


@pytest.mark.parametrize("digest", ["", "xyz", "ä" * 32, "B913A602C7EDA7A495B4E6E7334D3890" * 2])
def test_cram_md5_verify_bad_digest_is_false(digest):
    assert sasl.cram_md5_verify("tanstaaftanstaaf", RFC2195_CHALLENGE, digest) is False


# --------------------------------------------------------------- DIGEST-MD5 RFC example

RFC2831_RESPONSE = (
    b'charset=utf-8,username="chris",realm="elwood.innosoft.com",'
    b'nonce="OA6MG9tEQGm2hh",nc=00000001,cnonce="OA6MHXh6VqTrRk",'
    b'digest-uri="imap/elwood.innosoft.com",response=d388dad90d4bbd760a152321f2143af7,'
    b"qop=auth"
)


def test_digest_md5_rfc2831_example_math():
    secret = sasl.digest_md5_ha1("chris", "elwood.innosoft.com", "secret")
    params = {
        "nonce": "OA6MG9tEQGm2hh",
        "cnonce": "OA6MHXh6VqTrRk",
        "nc": "00000001",
        "digest_uri": "imap/elwood.innosoft.com",
    }
    assert sasl.digest_md5_response_value(secret, **params) == "d388dad90d4bbd760a152321f2143af7"
    rspauth = sasl.digest_md5_response_value(secret, rspauth=True, **params)
    assert rspauth == "ea40f60335c427b5527b84dbabcdfffd"
    assert sasl.digest_md5_rspauth_message(rspauth) == b"rspauth=ea40f60335c427b5527b84dbabcdfffd"


def test_digest_md5_rfc2831_example_parse_and_imap_uri_rejected():
    fields = sasl.digest_md5_parse(RFC2831_RESPONSE)
    assert fields == {
        "charset": "utf-8",
        "username": "chris",
        "realm": "elwood.innosoft.com",
        "nonce": "OA6MG9tEQGm2hh",
        "nc": "00000001",
        "cnonce": "OA6MHXh6VqTrRk",
        "digest-uri": "imap/elwood.innosoft.com",
        "response": "d388dad90d4bbd760a152321f2143af7",
        "qop": "auth",
    }
    # Correct response, but for IMAP: an SMTP server must not accept it.
    assert sasl.digest_md5_verify(fields, "secret", "OA6MG9tEQGm2hh", "elwood.innosoft.com") is None


def test_digest_md5_rfc2831_example_server_challenge_parses():
    example = (
        b'realm="elwood.innosoft.com",nonce="OA6MG9tEQGm2hh",qop="auth",'
        b"algorithm=md5-sess,charset=utf-8"
    )
    with pytest.raises(SaslError, match="username"):
        sasl.digest_md5_parse(example)  # syntax is fine, required client fields are missing


# ------------------------------------------------------------------ DIGEST-MD5 challenge


def test_digest_md5_challenge_contents():
    challenge, nonce = sasl.digest_md5_challenge('mail "x" \\ example')
    assert isinstance(challenge, bytes)
    ch = _client_parse_challenge(challenge)
    assert ch == {
        "realm": 'mail "x" \\ example',
        "nonce": nonce,
        "qop": "auth",
        "charset": "utf-8",
        "algorithm": "md5-sess",
    }
    assert len(nonce) >= 16
    assert sasl.digest_md5_challenge("r")[1] != sasl.digest_md5_challenge("r")[1]
    assert b'qop="auth"' in challenge and b"charset=utf-8" in challenge


# ------------------------------------------------------------------ DIGEST-MD5 roundtrip

REALM = "mail.example.com"


@pytest.mark.parametrize("quote_nc", [False, True])
@pytest.mark.parametrize("charset", [True, False])
@pytest.mark.parametrize("host", ["127.0.0.1", "mail.example.com", "[::1]", "10.0.0.5"])
@pytest.mark.parametrize("authzid", [None, "other@example.com"])
def test_digest_md5_roundtrip(quote_nc, charset, host, authzid):
    challenge, nonce = sasl.digest_md5_challenge(REALM)
    response, rspauth = client_digest_response(
        challenge,
        "user@example.com",
        "s3cr3t pass",
        host=host,
        quote_nc=quote_nc,
        charset=charset,
        authzid=authzid,
    )
    fields = sasl.digest_md5_parse(response)
    if authzid:
        assert fields["authzid"] == authzid
    assert sasl.digest_md5_verify(fields, "s3cr3t pass", nonce, REALM) == rspauth
    assert sasl.digest_md5_verify(fields, "s3cr3t pasS", nonce, REALM) is None


@pytest.mark.parametrize("mode", ["utf8", "cyrus", "latin1"])
@pytest.mark.parametrize(
    ("username", "password"),
    [("jörg", "pässwörd"), ("ascii", "pässwörd"), ("jörg", "ascii"), ("ascii", "ascii")],
)
@pytest.mark.parametrize("authzid", [None, "zoë"])
def test_digest_md5_non_ascii_encodings(mode, username, password, authzid):
    challenge, nonce = sasl.digest_md5_challenge("réalm")
    response, rspauth = client_digest_response(
        challenge, username, password, mode=mode, charset=mode != "latin1", authzid=authzid
    )
    fields = sasl.digest_md5_parse(response)
    assert fields["username"] == username
    assert fields["realm"] == "réalm"
    assert sasl.digest_md5_verify(fields, password, nonce, "réalm") == rspauth
    assert sasl.digest_md5_verify(fields, password + "!", nonce, "réalm") is None


@pytest.mark.parametrize("mode", ["utf8", "cyrus"])
def test_digest_md5_non_latin1_password(mode):
    challenge, nonce = sasl.digest_md5_challenge(REALM)
    response, rspauth = client_digest_response(challenge, "иван", "пароль€", mode=mode)
    assert server_roundtrip(response, "пароль€", nonce, REALM) == rspauth


def test_digest_md5_realm_omitted_by_client_uses_empty_realm():
    challenge, nonce = sasl.digest_md5_challenge(REALM)
    response, rspauth = client_digest_response(challenge, "u", "p", send_realm=False)
    fields = sasl.digest_md5_parse(response)
    assert "realm" not in fields
    assert sasl.digest_md5_verify(fields, "p", nonce, REALM) == rspauth


def test_digest_md5_qop_absent_means_auth():
    challenge, nonce = sasl.digest_md5_challenge(REALM)
    response, rspauth = client_digest_response(challenge, "u", "p")
    response = response.replace(b",qop=auth", b"")
    assert b"qop" not in response
    assert server_roundtrip(response, "p", nonce, REALM) == rspauth


def test_digest_md5_case_insensitive_keys_and_uri_prefix():
    challenge, nonce = sasl.digest_md5_challenge(REALM)
    response, rspauth = client_digest_response(challenge, "u", "p", serv_type="SMTP")
    response = response.replace(b"username=", b"UserName=").replace(b"nc=", b"NC=")
    assert server_roundtrip(response, "p", nonce, REALM) == rspauth


# --------------------------------------------------------------- DIGEST-MD5 rejections


def _fresh(**kwargs):
    challenge, nonce = sasl.digest_md5_challenge(REALM)
    kwargs.setdefault("username", "user")
    kwargs.setdefault("password", "pw")
    response, _rspauth = client_digest_response(challenge, **kwargs)
    return response, nonce


def test_digest_md5_wrong_password():
    response, nonce = _fresh()
    assert server_roundtrip(response, "PW", nonce, REALM) is None
    assert server_roundtrip(response, "", nonce, REALM) is None


def test_digest_md5_wrong_nonce():
    response, nonce = _fresh()
    _, other_nonce = sasl.digest_md5_challenge(REALM)
    assert server_roundtrip(response, "pw", other_nonce, REALM) is None
    # Client computed a valid response for a nonce we did not issue.
    response, nonce = _fresh(nonce="attacker-chosen")
    assert server_roundtrip(response, "pw", nonce, REALM) is None


@pytest.mark.parametrize("nc", ["00000002", "00000000", "0000001", "ffffffff", "1"])
@pytest.mark.parametrize("quote_nc", [False, True])
def test_digest_md5_other_nc_rejected(nc, quote_nc):
    # Correctly computed for that nc, but we only ever allow one use of a nonce.
    response, nonce = _fresh(nc=nc, quote_nc=quote_nc)
    assert server_roundtrip(response, "pw", nonce, REALM) is None


@pytest.mark.parametrize("qop", ["auth-int", "auth-conf", "bogus"])
def test_digest_md5_other_qop_rejected(qop):
    response, nonce = _fresh(qop=qop)
    assert server_roundtrip(response, "pw", nonce, REALM) is None


@pytest.mark.parametrize("serv_type", ["imap", "pop", "ldap", "smtpx", "http"])
def test_digest_md5_non_smtp_uri_rejected(serv_type):
    response, nonce = _fresh(serv_type=serv_type)
    assert server_roundtrip(response, "pw", nonce, REALM) is None


def test_digest_md5_realm_mismatch_rejected():
    response, nonce = _fresh()
    assert server_roundtrip(response, "pw", nonce, "other.example.com") is None


def test_digest_md5_algorithm_other_than_md5_sess_rejected():
    response, nonce = _fresh()
    assert server_roundtrip(response + b",algorithm=md5", "pw", nonce, REALM) is None
    assert server_roundtrip(response + b",algorithm=md5-sess", "pw", nonce, REALM) is not None


def test_digest_md5_tampered_fields_rejected():
    response, nonce = _fresh(authzid="user")
    fields = sasl.digest_md5_parse(response)
    assert sasl.digest_md5_verify(fields, "pw", nonce, REALM) is not None
    for key, value in [
        ("username", "admin"),
        ("cnonce", "x"),
        ("authzid", "admin"),
        ("digest-uri", "smtp/evil"),
        ("response", "0" * 32),
        ("response", "not hex at all ünïcode"),
    ]:
        assert sasl.digest_md5_verify({**fields, key: value}, "pw", nonce, REALM) is None
    without_authzid = {k: v for k, v in fields.items() if k != "authzid"}
    assert sasl.digest_md5_verify(without_authzid, "pw", nonce, REALM) is None


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"username": "u"},
        {"username": None, "nonce": 1},
        dict.fromkeys(sasl.DIGEST_MD5_REQUIRED, ""),
        dict.fromkeys(sasl.DIGEST_MD5_REQUIRED, "x"),
    ],
)
def test_digest_md5_verify_garbage_dicts_return_none(fields):
    assert sasl.digest_md5_verify(fields, "pw", "x", REALM) is None


# ------------------------------------------------------------------- parser robustness

VALID = b'username="u",nonce="n",cnonce="c",nc=00000001,digest-uri="smtp/h",response=abc,qop=auth'


def test_parse_whitespace_commas_and_escapes():
    text = (
        b'  USERNAME = "a \\"quoted\\", name\\\\" ,, \t\r\n realm="x,y=z" ,nonce=n,'
        b' cnonce = "c" , nc = "00000001",digest-uri="smtp/1.2.3.4",response=ABC, qop = auth ,'
    )
    fields = sasl.digest_md5_parse(text)
    assert fields["username"] == 'a "quoted", name\\'
    assert fields["realm"] == "x,y=z"
    assert fields["nonce"] == "n"
    assert fields["cnonce"] == "c"
    assert fields["nc"] == "00000001"
    assert fields["digest-uri"] == "smtp/1.2.3.4"
    assert fields["response"] == "ABC"
    assert fields["qop"] == "auth"
    assert "charset" not in fields


def test_parse_empty_quoted_optional_value_and_unknown_directives():
    fields = sasl.digest_md5_parse(VALID + b',realm="",maxbuf=65536,x-custom="1"')
    assert fields["realm"] == ""
    assert fields["maxbuf"] == "65536"
    assert fields["x-custom"] == "1"


def test_parse_latin1_without_charset():
    fields = sasl.digest_md5_parse(VALID.replace(b'"u"', '"jörg"'.encode("latin-1")))
    assert fields["username"] == "jörg"


@pytest.mark.parametrize(
    "response",
    [
        b"",
        b"   \r\n",
        b",,,",
        b"username",
        b'username="unterminated',
        b'username="ends in backslash\\',
        VALID + b",username=again",
        VALID + b",USERNAME=again",
        VALID + b",charset=utf-8,charset=utf-8",
        VALID + b",=value",
        VALID + b",realm",
        VALID + b',realm="x"junk',
        VALID + b",realm=two words",
        VALID + b',realm=a"b',
        VALID + b",realm=",
        VALID + b",charset=iso-8859-1",
        VALID.replace(b'"u"', b'"\xff\xfe"') + b",charset=utf-8",
        VALID.replace(b'"u"', b'"u\x00"'),
        VALID.replace(b'"u"', b'"u\nx"'),
        b"\xc3\xa9=1," + VALID,
        b"a" * 5000,
        VALID + b"," + b"x" * 4096 + b"=1",
        b"\x00\x01\x02",
        "ünïcode=1".encode(),
    ]
    + [
        VALID.replace(part, b"")
        for part in (
            b'username="u",',
            b'nonce="n",',
            b'cnonce="c",',
            b"nc=00000001,",
            b'digest-uri="smtp/h",',
            b"response=abc,",
        )
    ]
    + [VALID.replace(b'"u"', b'""')],
)
def test_parse_malformed_raises_sasl_error(response):
    with pytest.raises(SaslError):
        sasl.digest_md5_parse(response)


@pytest.mark.parametrize("response", [None, "str not bytes", 42])
def test_parse_wrong_type_raises_sasl_error(response):
    with pytest.raises(SaslError):
        sasl.digest_md5_parse(response)


def test_sasl_error_is_value_error():
    assert issubclass(SaslError, ValueError)


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(4)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            del buf[min(pos, len(buf) - 1)]
        elif op == 1:
            buf[pos:pos] = bytes([rng.choice(b'",=\\ \t\r\n\x00\xff\xc3aZ0')])
        elif op == 2 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        else:
            buf[pos:pos] = buf[rng.randrange(len(buf) + 1) :][: rng.randrange(20)]
    return bytes(buf)


def test_fuzz_parse_and_verify_only_raise_sasl_error():
    rng = random.Random(2831)
    challenge, nonce = sasl.digest_md5_challenge(REALM)
    seeds = [VALID, RFC2831_RESPONSE]
    for kwargs in ({}, {"authzid": "zoë", "mode": "cyrus"}, {"charset": False, "quote_nc": True}):
        seeds.append(client_digest_response(challenge, "user", "pw", **kwargs)[0])
    parsed_ok = 0
    for i in range(6000):
        if i % 3 == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        else:
            data = _mutate(rng, rng.choice(seeds))
        try:
            fields = sasl.digest_md5_parse(data)
        except SaslError:
            pass
        else:
            parsed_ok += 1
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
            result = sasl.digest_md5_verify(fields, "pw", nonce, REALM)
            assert result is None or re.fullmatch("[0-9a-f]{32}", result)
        try:
            _user, digest = sasl.cram_md5_parse(data)
        except SaslError:
            pass
        else:
            assert isinstance(sasl.cram_md5_verify("pw", b"<1.2@h>", digest), bool)
    assert parsed_ok > 100  # the mutations must exercise the success path too
