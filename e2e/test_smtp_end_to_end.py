"""From SMTP to processed records, with every part real: the gateway process, the broker, a
Celery worker process, the database."""

import pytest
from django.conf import settings

from bounces.models import Bounce
from conftest import MESSAGE, send, subprocess_env, wait_for
from messages.models import OutboundMessage, Submission
from messages.tasks import requeue_stuck_submissions
from servers.models import Server
from streams.services import get_stream
from streams.suppressions import suppress

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_message_is_processed_by_a_real_worker(gateway, creds, worker):
    client = gateway.smtp()
    client.login(creds.server_token, creds.server_token)
    message = MESSAGE.replace(b"Subject: Hello\r\n", b"Subject: Hello\r\nX-PM-Tag: welcome\r\n")
    message_id = send(client, message, rcpts=["user@example.net", "hidden@example.net"])
    client.quit()
    wait_for(
        lambda: OutboundMessage.objects.filter(message_id=message_id).exists(), what="outbound"
    )
    out = OutboundMessage.objects.get(message_id=message_id)
    assert out.tag == "welcome"
    assert out.bcc == ["hidden@example.net"]
    assert Submission.objects.get(message_id=message_id).status == "processed"


def test_unknown_stream_becomes_an_smtp_api_error(gateway, creds, worker):
    client = gateway.smtp()
    client.login(creds.server_token, creds.server_token)
    message = b"X-PM-Message-Stream: does-not-exist\r\n" + MESSAGE
    message_id = send(client, message)
    client.quit()
    wait_for(lambda: Bounce.objects.filter(message_id=message_id).exists(), what="the bounce")
    bounce = Bounce.objects.get(message_id=message_id)
    assert bounce.type == "SMTPApiError"
    assert bounce.message_stream == "outbound"  # where the default bounce query finds it
    assert "'does-not-exist'" in bounce.details
    assert "ErrorCode: 1235" in bounce.dump_text
    assert "Message-ID: <hello@example.com>" in bounce.dump_text


def test_strict_mode_refuses_in_session_and_still_records(gateway, creds, worker):
    Server.objects.filter(pk=creds.server.pk).update(strict_smtp=True)
    suppress(get_stream(creds.server, "outbound"), "gone@example.net", "HardBounce", "Recipient")
    client = gateway.smtp()
    client.login(creds.access_key, creds.secret)
    client.mail("app@example.com")
    client.rcpt("gone@example.net")
    client.rcpt("here@example.net")
    code, reply = client.data(MESSAGE)
    assert code == 550
    assert reply.startswith(b"5.1.1 You tried to send to recipient(s) that have been marked as ")
    assert b"Found inactive addresses: gone@example.net." in reply
    assert b"(ErrorCode 406)" in reply
    wait_for(lambda: Bounce.objects.exists(), what="the SMTPApiError record")
    assert Bounce.objects.get().email == "gone@example.net"
    wait_for(lambda: Submission.objects.get().status == "failed", what="processing")
    assert not OutboundMessage.objects.exists()  # refused in the session: nothing is sent

    client.mail("app@example.com")
    client.rcpt("here@example.net")
    code, reply = client.data(MESSAGE)
    assert code == 250
    client.quit()


def test_the_sweep_recovers_work_whose_task_was_lost(gateway, creds, start_process):
    """No worker is running while the message is accepted; the sweep queues it again later."""
    client = gateway.smtp()
    client.login(creds.access_key, creds.secret)
    message_id = send(client)
    client.quit()
    # Simulate the task being lost: drop the queue, then let the sweep run with no grace period.
    for path in (settings.DATA_DIR / "queue").glob("*.msg"):
        path.unlink()
    assert requeue_stuck_submissions(older_than_seconds=0) >= 1
    process = start_process(
        ["-m", "celery", "-A", "postmark_site", "worker", "-l", "info", "--pool", "solo"],
        env=subprocess_env(CELERY_BROKER_URL=""),
        name="worker",
    )
    process.wait_for("ready", timeout=60)
    wait_for(
        lambda: OutboundMessage.objects.filter(message_id=message_id).exists(), what="outbound"
    )


@pytest.mark.parametrize(
    ("header_eol", "blank"),
    [(b"\n", b"\r\n"), (b"\n", b"\n"), (b"\r\n", b"\n")],
    ids=["LF CRLF", "LF LF", "CRLF LF"],
)
def test_body_lines_after_the_first_empty_line_are_never_header_fields(
    gateway, creds, worker, header_eol, blank
):
    """LF-only headers with a CRLF body were split at the body's first CRLF CRLF: a body line
    ``X-PM-Tag:`` tagged the message, and a body line ``Bcc:`` was cut from what was delivered."""
    from smtpgw.tests.test_storable import Session, plain

    header = header_eol.join(
        [b"From: App <app@example.com>", b"To: user@example.net", b"Subject: Hello"]
    )
    body = b"Hello.\r\nBcc: hidden@example.org\r\nX-PM-Tag: from-the-body\r\n\r\nEnd.\r\n"
    session = Session(gateway.port)
    assert session.command(b"EHLO client.example").startswith(b"250")
    assert session.command(plain(creds.access_key, creds.secret)).startswith(b"235")
    assert session.command(b"MAIL FROM:<app@example.com>").startswith(b"250")
    assert session.command(b"RCPT TO:<user@example.net>").startswith(b"250")
    assert session.command(b"DATA").startswith(b"354")
    reply = session.command(header + header_eol + blank + body + b".")
    session.close()
    assert reply.startswith(b"250 2.0.0 Ok: queued as"), reply
    message_id = reply.decode().rsplit(" ", 1)[1].strip()
    wait_for(
        lambda: OutboundMessage.objects.filter(message_id=message_id).exists(), what="outbound"
    )
    out = OutboundMessage.objects.get(message_id=message_id)
    assert (out.tag, out.subject) == ("", "Hello")
    assert bytes(out.content).endswith(blank + body)  # the body as it came, Bcc: line and all
