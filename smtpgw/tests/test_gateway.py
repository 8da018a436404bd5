"""The gateway through real SMTP sessions against a running ``manage.py runsmtp`` process."""

import asyncio
import base64
import smtplib
import time

import aiosmtplib
import pytest
from django.core.mail import EmailMessage
from django.core.mail.backends.smtp import EmailBackend

from conftest import MESSAGE, insecure, queued_id, send
from messages.models import Submission
from servers.models import AccountToken
from servers.services import set_smtp_access
from smtpgw.tests.test_sasl import client_digest_response
from streams.models import IpCredential, SmtpToken
from streams.services import get_stream

pytestmark = pytest.mark.django_db(transaction=True)


def stored(message_id: str) -> Submission:
    return Submission.objects.select_related("server", "stream").get(message_id=message_id)


def digest_md5(client: smtplib.SMTP, user: str, password: str):
    """DIGEST-MD5 as curl and msmtp do it, driven through smtplib's generic AUTH loop."""
    rounds = []

    def answer(challenge: bytes | None) -> str:
        rounds.append(challenge)
        if len(rounds) == 1:
            response, expected_rspauth = client_digest_response(challenge, user, password)
            rounds.append(expected_rspauth)
            return response.decode()
        assert challenge == f"rspauth={rounds[1]}".encode(), "server must prove the secret"
        return ""

    return client.auth("DIGEST-MD5", answer, initial_response_ok=False)


# --- EHLO and TLS -----------------------------------------------------------------------------


def test_ehlo_advertises_the_extensions(gateway):
    client = gateway.smtp()
    features = client.ehlo_resp.decode().splitlines()[1:]
    assert features == [
        "SIZE 10485760",
        "8BITMIME",
        "SMTPUTF8",
        "STARTTLS",
        "PIPELINING",
        "ENHANCEDSTATUSCODES",
        "AUTH CRAM-MD5 DIGEST-MD5 PLAIN LOGIN",
    ]
    client.starttls(context=insecure())
    client.ehlo("client.example")
    assert not client.has_extn("starttls")
    assert client.esmtp_features["auth"].split() == ["CRAM-MD5", "DIGEST-MD5", "PLAIN", "LOGIN"]
    assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
    client.quit()


def test_helo_works_and_refuses_auth_without_ehlo(gateway):
    client = smtplib.SMTP("127.0.0.1", gateway.port, timeout=10)
    code, _ = client.helo("client.example")
    assert code == 250
    code, reply = client.docmd("AUTH", "PLAIN")
    assert code == 500
    client.quit()


# --- AUTH mechanisms and credential kinds -----------------------------------------------------


@pytest.mark.parametrize("mechanism", ["CRAM-MD5", "PLAIN", "LOGIN", "DIGEST-MD5"])
@pytest.mark.parametrize("kind", ["smtp_token", "server_token"])
def test_each_mechanism_with_each_credential_kind(gateway, creds, mechanism, kind):
    user, password = (
        (creds.access_key, creds.secret)
        if kind == "smtp_token"
        else (creds.server_token, creds.server_token)
    )
    client = gateway.smtp()
    if mechanism == "DIGEST-MD5":
        code, _ = digest_md5(client, user, password)
    else:
        client.user, client.password = user, password
        method = {"CRAM-MD5": client.auth_cram_md5, "PLAIN": client.auth_plain}.get(
            mechanism, client.auth_login
        )
        code, _ = client.auth(mechanism, method)
    assert code == 235
    message_id = send(client, rcpts=["to@example.net", "cc@example.net", "bcc@example.net"])
    client.quit()
    row = stored(message_id)
    assert row.server == creds.server
    assert row.credential_kind == kind
    assert row.auth_mechanism == mechanism
    assert row.stream == (get_stream(creds.server, "outbound") if kind == "smtp_token" else None)
    assert bytes(row.raw) == MESSAGE
    assert row.rcpt_to == ["to@example.net", "cc@example.net", "bcc@example.net"]
    assert row.mail_from == "app@example.com"
    assert row.endpoint == "transactional"
    assert row.client_address == "127.0.0.1"
    assert row.client_helo == "client.example"
    assert row.tls_version == ""
    assert row.size == len(MESSAGE)


@pytest.mark.parametrize("mechanism", ["CRAM-MD5", "PLAIN", "LOGIN", "DIGEST-MD5"])
def test_each_mechanism_after_starttls(gateway, creds, mechanism):
    client = gateway.smtp()
    client.starttls(context=insecure())
    client.ehlo("client.example")
    if mechanism == "DIGEST-MD5":
        code, _ = digest_md5(client, creds.access_key, creds.secret)
    else:
        client.user, client.password = creds.access_key, creds.secret
        method = {"CRAM-MD5": client.auth_cram_md5, "PLAIN": client.auth_plain}.get(
            mechanism, client.auth_login
        )
        code, _ = client.auth(mechanism, method)
    assert code == 235
    row = stored(send(client))
    client.quit()
    assert row.tls_version in ("TLSv1.2", "TLSv1.3")


def test_implicit_tls_accepts_auth(gateway, creds):
    """aiosmtpd alone refuses AUTH after implicit TLS (its issues #274/#281)."""
    client = gateway.smtp_tls()
    assert "auth" in client.esmtp_features
    assert not client.has_extn("starttls")
    client.login(creds.access_key, creds.secret)
    row = stored(send(client))
    client.quit()
    assert row.tls_version in ("TLSv1.2", "TLSv1.3")
    assert row.stream.stream_id == "outbound"


def test_smtp_token_records_its_last_use(gateway, creds):
    """Noted just after the accept commits (at most once a minute per token and process)."""
    client = gateway.smtp()
    client.login(creds.access_key, creds.secret)
    send(client)
    client.quit()
    deadline = time.monotonic() + 10
    token = SmtpToken.objects.get(access_key=creds.access_key)
    while token.last_used_at is None and time.monotonic() < deadline:
        time.sleep(0.05)
        token.refresh_from_db()
    assert token.last_used_at is not None
    assert token.last_used_from == "127.0.0.1"


def test_aiosmtplib(gateway, creds):
    async def go():
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=gateway.port, start_tls=True, tls_context=insecure()
        )
        await client.connect()
        await client.login(creds.access_key, creds.secret)
        errors, reply = await client.sendmail("app@example.com", ["user@example.net"], MESSAGE)
        await client.quit()
        return errors, reply

    errors, reply = asyncio.run(go())
    assert errors == {}
    assert stored(queued_id(reply.encode())).server == creds.server


def test_django_email_backend(gateway, creds):
    backend = EmailBackend(
        host="127.0.0.1",
        port=gateway.port,
        username=creds.server_token,
        password=creds.server_token,
        use_tls=False,
        timeout=10,
    )
    message = EmailMessage(
        "Welcome",
        "Hello from Django",
        "app@example.com",
        ["user@example.net"],
        cc=["copy@example.net"],
        headers={"X-PM-Message-Stream": "outbound", "X-PM-Tag": "welcome"},
    )
    assert backend.send_messages([message]) == 1
    row = Submission.objects.get(server=creds.server)
    assert row.rcpt_to == ["user@example.net", "copy@example.net"]
    assert b"X-PM-Tag: welcome" in bytes(row.raw)
    assert row.credential_kind == "server_token"


def test_broadcast_token_at_the_broadcast_endpoint(gateway, creds):
    client = gateway.smtp(gateway.broadcast_port)
    client.login(creds.broadcast_key, creds.broadcast_secret)
    row = stored(send(client))
    client.quit()
    assert row.endpoint == "broadcast"
    assert row.stream.stream_id == "broadcast"


def test_ip_credential_submits_without_auth(gateway, creds):
    IpCredential.objects.create(stream=get_stream(creds.server, "outbound"), cidr="127.0.0.0/8")
    client = gateway.smtp()
    row = stored(send(client))
    client.quit()
    assert row.credential_kind == "ip"
    assert row.credential == "127.0.0.0/8"
    assert row.auth_mechanism == ""


def test_pipelining(gateway, creds):
    """A client may send MAIL, RCPT and DATA without waiting for each reply."""
    plain = base64.b64encode(f"\0{creds.access_key}\0{creds.secret}".encode()).decode()
    import socket

    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.recv(1024)
        sock.sendall(
            b"EHLO pipeline.example\r\n"
            + f"AUTH PLAIN {plain}\r\n".encode()
            + b"MAIL FROM:<app@example.com>\r\nRCPT TO:<a@example.net>\r\n"
            + b"RCPT TO:<b@example.net>\r\nDATA\r\n"
        )
        replies = b""
        while replies.count(b"\r\n354 ") < 1 and not replies.startswith(b"354"):
            chunk = sock.recv(4096)
            assert chunk, replies
            replies += chunk
        sock.sendall(MESSAGE + b".\r\nQUIT\r\n")
        while b"221 " not in replies:
            chunk = sock.recv(4096)
            if not chunk:
                break
            replies += chunk
    text = replies.decode()
    assert "235 2.7.0" in text
    assert "queued as" in text
    assert Submission.objects.filter(server=creds.server).count() == 1


# --- refusals ---------------------------------------------------------------------------------


def test_mail_without_auth_is_refused(gateway, creds):
    client = gateway.smtp()
    code, reply = client.mail("app@example.com")
    assert (code, reply) == (530, b"5.7.0 Authentication required")
    code, _ = client.rcpt("user@example.net")
    assert code == 530
    client.quit()
    assert Submission.objects.count() == 0


def test_wrong_secret(gateway, creds):
    client = gateway.smtp()
    with pytest.raises(smtplib.SMTPAuthenticationError) as info:
        client.login(creds.access_key, creds.secret + "x")
    assert info.value.smtp_code == 535
    assert info.value.smtp_error == b"5.7.8 Authentication credentials invalid"


def test_unknown_user(gateway, creds):
    client = gateway.smtp()
    with pytest.raises(smtplib.SMTPAuthenticationError):
        client.login("nobody", "nothing")


def test_smtp_switched_off(gateway, creds):
    set_smtp_access(creds.server, False)
    for user, password in [
        (creds.server_token, creds.server_token),
        (creds.access_key, creds.secret),
    ]:
        client = gateway.smtp()
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            client.login(user, password)
        assert info.value.smtp_code == 535
        assert b"SMTP access is disabled for this server" in info.value.smtp_error


def test_revoked_token(gateway, creds):
    SmtpToken.objects.get(access_key=creds.access_key).revoke()
    client = gateway.smtp()
    with pytest.raises(smtplib.SMTPAuthenticationError) as info:
        client.login(creds.access_key, creds.secret)
    assert info.value.smtp_code == 535
    assert b"revoked" in info.value.smtp_error


def test_account_token_gets_a_hint(gateway, creds):
    account = AccountToken.issue().token
    client = gateway.smtp()
    with pytest.raises(smtplib.SMTPAuthenticationError) as info:
        client.login(account, account)
    assert info.value.smtp_code == 535
    assert b"account token" in info.value.smtp_error
    assert b"server API token" in info.value.smtp_error


def test_unknown_mechanism(gateway, creds):
    client = gateway.smtp()
    code, reply = client.docmd("AUTH", "XOAUTH2 abc")
    assert code == 504


def test_broadcast_stream_at_the_transactional_endpoint(gateway, creds):
    client = gateway.smtp()
    client.login(creds.broadcast_key, creds.broadcast_secret)
    code, reply = client.mail("app@example.com")
    assert code == 550
    assert b"'broadcast' is a Broadcasts stream" in reply
    assert b"broadcast SMTP endpoint" in reply
    client.quit()


def test_transactional_stream_at_the_broadcast_endpoint(gateway, creds):
    client = gateway.smtp(gateway.broadcast_port)
    client.login(creds.access_key, creds.secret)
    code, reply = client.mail("app@example.com")
    assert code == 550
    assert b"transactional SMTP endpoint" in reply


def test_the_51st_recipient(gateway, creds):
    client = gateway.smtp()
    client.login(creds.access_key, creds.secret)
    client.mail("app@example.com")
    for i in range(50):
        assert client.rcpt(f"user{i}@example.net")[0] == 250
    code, reply = client.rcpt("user50@example.net")
    assert code == 452
    assert reply.startswith(b"4.5.3")
    code, reply = client.data(MESSAGE)
    assert code == 250
    assert len(stored(queued_id(reply)).rcpt_to) == 50


def test_size_declared_too_big(gateway, creds):
    client = gateway.smtp()
    client.login(creds.access_key, creds.secret)
    code, reply = client.mail("app@example.com", ["SIZE=20000000"])
    assert code == 552
    assert reply.startswith(b"5.3.4")


def test_oversize_data_is_refused(gateway, creds):
    client = gateway.smtp()
    client.login(creds.access_key, creds.secret)
    client.mail("app@example.com")
    client.rcpt("user@example.net")
    body = (b"x" * 998 + b"\r\n") * 11_000  # about 11 MB
    code, reply = client.data(MESSAGE + body)
    assert code == 552
    assert reply.startswith(b"5.3.4")
    assert Submission.objects.count() == 0
    # The session is still usable.
    assert send(client)


def test_overlong_line_is_refused(gateway, creds):
    client = gateway.smtp()
    client.login(creds.access_key, creds.secret)
    client.mail("app@example.com")
    client.rcpt("user@example.net")
    code, reply = client.data(MESSAGE + b"y" * 5000 + b"\r\n")
    assert code == 500
    assert Submission.objects.count() == 0


def test_smuggling_is_refused(gateway, creds):
    import socket

    plain = base64.b64encode(f"\0{creds.access_key}\0{creds.secret}".encode())
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        file = sock.makefile("rb")

        def command(line: bytes) -> bytes:
            sock.sendall(line)
            reply = file.readline()
            while reply[3:4] == b"-":
                reply = file.readline()
            return reply

        file.readline()
        command(b"EHLO x\r\n")
        assert command(b"AUTH PLAIN " + plain + b"\r\n").startswith(b"235")
        command(b"MAIL FROM:<app@example.com>\r\n")
        command(b"RCPT TO:<user@example.net>\r\n")
        assert command(b"DATA\r\n").startswith(b"354")
        smuggled = b"Subject: hi\r\n\r\nhello\n.\r\nMAIL FROM:<ceo@example.com>\r\n"
        reply = command(smuggled + b"\r\n.\r\n")
        assert reply.startswith(b"550 5.5.2"), reply
    assert Submission.objects.count() == 0


def test_eight_bit_and_utf8_envelopes(gateway, creds):
    client = gateway.smtp()
    client.login(creds.access_key, creds.secret)
    message = "Subject: Grüße\r\n\r\nŻółć gęślą jaźń\r\n".encode("iso-8859-2", "replace")
    client.mail("app@example.com", ["SMTPUTF8", "BODY=8BITMIME"])
    client.rcpt("josé@example.net")
    code, reply = client.data(message)
    assert code == 250
    row = stored(queued_id(reply))
    assert bytes(row.raw) == message
    assert row.rcpt_to == ["josé@example.net"]
