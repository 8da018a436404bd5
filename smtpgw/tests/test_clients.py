"""The gateway with the SMTP clients people really use: swaks, curl and msmtp."""

import shutil
import subprocess

import pytest

from conftest import IN_CI
from messages.models import Submission

pytestmark = [pytest.mark.clients, pytest.mark.django_db(transaction=True)]

EML = (
    "From: App <app@example.com>\r\n"
    "To: User <user@example.net>\r\n"
    "Subject: Hello from a real client\r\n"
    "X-PM-Tag: cli\r\n"
    "\r\n"
    "Hello.\r\n"
)


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install it, as .ci/run does)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def run(args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kwargs)


def swaks(gateway, user, password, mechanism, *extra):
    return run(
        [
            tool("swaks"),
            "--server",
            f"127.0.0.1:{gateway.port}",
            "--auth",
            mechanism,
            "--auth-user",
            user,
            "--auth-password",
            password,
            "--from",
            "app@example.com",
            "--to",
            "user@example.net",
            "--h-Subject",
            "hi from swaks",
            "--add-header",
            "X-PM-Tag: welcome",
            "--add-header",
            "X-PM-Metadata-client-id: 42",
            "--body",
            "hello",
            *extra,
        ]
    )


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "starttls"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5", "DIGEST-MD5"])
def test_swaks(gateway, creds, mechanism, tls):
    result = swaks(gateway, creds.access_key, creds.secret, mechanism, *(["-tls"] if tls else []))
    assert result.returncode == 0, result.stdout + result.stderr
    row = Submission.objects.get(server=creds.server)
    assert row.auth_mechanism == mechanism
    assert row.stream.stream_id == "outbound"
    assert bool(row.tls_version) is tls
    assert b"X-PM-Metadata-client-id: 42" in bytes(row.raw)


def test_swaks_with_the_server_token_and_implicit_tls(gateway, creds):
    result = run(
        [
            tool("swaks"),
            "--server",
            f"127.0.0.1:{gateway.tls_port}",
            "--tls-on-connect",
            "--auth",
            "CRAM-MD5",
            "--auth-user",
            creds.server_token,
            "--auth-password",
            creds.server_token,
            "--from",
            "app@example.com",
            "--to",
            "user@example.net",
            "--add-header",
            "X-PM-Message-Stream: outbound",
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    row = Submission.objects.get(server=creds.server)
    assert row.credential_kind == "server_token"
    assert row.tls_version


def test_swaks_wrong_password_exits_28(gateway, creds):
    result = swaks(gateway, creds.access_key, "wrong", "CRAM-MD5", "--quit-after", "AUTH")
    assert result.returncode == 28, result.stdout + result.stderr
    assert "535 5.7.8" in result.stdout


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "starttls"])
def test_curl_with_its_default_mechanism(gateway, creds, tmp_path, tls):
    """Without --login-options curl picks the strongest mechanism offered: DIGEST-MD5."""
    eml = tmp_path / "mail.eml"
    eml.write_text(EML)
    result = run(
        [
            tool("curl"),
            "--silent",
            "--show-error",
            "--verbose",
            "--url",
            f"smtp://127.0.0.1:{gateway.port}/client.example",
            *(["--ssl-reqd", "-k"] if tls else []),
            "--user",
            f"{creds.access_key}:{creds.secret}",
            "--mail-from",
            "app@example.com",
            "--mail-rcpt",
            "user@example.net",
            "--upload-file",
            str(eml),
        ]
    )
    assert result.returncode == 0, result.stderr
    assert "AUTH DIGEST-MD5" in result.stderr
    row = Submission.objects.get(server=creds.server)
    assert row.auth_mechanism == "DIGEST-MD5"
    assert b"X-PM-Tag: cli" in bytes(row.raw)


def test_curl_wrong_password_exits_67(gateway, creds, tmp_path):
    eml = tmp_path / "mail.eml"
    eml.write_text(EML)
    result = run(
        [
            tool("curl"),
            "--silent",
            "--url",
            f"smtp://127.0.0.1:{gateway.port}/client.example",
            "--user",
            f"{creds.access_key}:wrong",
            "--mail-from",
            "app@example.com",
            "--mail-rcpt",
            "user@example.net",
            "--upload-file",
            str(eml),
        ]
    )
    assert result.returncode == 67


@pytest.mark.parametrize(
    ("auth", "tls"), [("digest-md5", True), ("cram-md5", False), ("plain", True), ("login", False)]
)
def test_msmtp(gateway, creds, auth, tls):
    result = run(
        [
            tool("msmtp"),
            "--host=127.0.0.1",
            f"--port={gateway.port}",
            f"--auth={auth}",
            f"--user={creds.access_key}",
            f"--passwordeval=echo {creds.secret}",
            f"--tls={'on' if tls else 'off'}",
            "--tls-starttls=on",
            "--tls-certcheck=off",
            "--from=app@example.com",
            "user@example.net",
        ],
        input=EML,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    row = Submission.objects.get(server=creds.server)
    assert row.auth_mechanism == auth.upper()
    assert bool(row.tls_version) is tls
