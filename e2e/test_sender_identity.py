"""The sender rule through the real gateway and a real worker: an unverified From becomes an
SMTPApiError with Postmark's sentence (seen through the bounce API), or a 550 5.7.1 in the session
for a server in strict mode; a confirmed signature or a verified domain sends."""

import pytest
from django.test import Client

from bounces.models import Bounce
from conftest import send, wait_for
from domains.services import confirm_sender, create_sender
from messages.models import OutboundMessage, Submission
from servers.models import Server

pytestmark = pytest.mark.django_db(transaction=True)

UNKNOWN = (
    "The 'From' address you supplied (news@unverified.test) is not a Sender Signature on your "
    "account. Please add and confirm this address in order to be able to use it in the 'From' "
    "field of your messages."
)


def message(sender: str) -> bytes:
    return (
        f"From: News <{sender}>\r\nTo: ann@example.net\r\nSubject: Hi\r\n"
        f"Message-ID: <hi@unverified.test>\r\n\r\nHello.\r\n"
    ).encode()


def test_an_unverified_from_is_an_smtp_api_error_400_in_the_bounce_api(gateway, creds, worker):
    client = gateway.smtp()
    client.login(creds.server_token, creds.server_token)
    message_id = send(client, message("news@unverified.test"), rcpts=["ann@example.net"])
    client.quit()
    wait_for(lambda: Bounce.objects.filter(message_id=message_id).exists(), what="the error")
    assert not OutboundMessage.objects.filter(message_id=message_id).exists()
    api = Client(HTTP_X_POSTMARK_SERVER_TOKEN=creds.server_token)
    listed = api.get("/bounces", {"count": 10, "offset": 0, "type": "SMTPApiError"}).json()
    assert listed["TotalCount"] == 1
    bounce = listed["Bounces"][0]
    assert (bounce["Email"], bounce["From"]) == ("ann@example.net", "news@unverified.test")
    dump = api.get(f"/bounces/{bounce['ID']}/dump").json()["Body"]
    assert f"ErrorCode: 400\r\nMessage: {UNKNOWN}\r\n" in dump


def test_an_unconfirmed_signature_is_error_401(gateway, creds, worker):
    create_sender("news@unverified.test")
    client = gateway.smtp()
    client.login(creds.server_token, creds.server_token)
    message_id = send(client, message("news@unverified.test"), rcpts=["ann@example.net"])
    client.quit()
    wait_for(lambda: Bounce.objects.filter(message_id=message_id).exists(), what="the error")
    bounce = Bounce.objects.get(message_id=message_id)
    assert bounce.details == "Sender signature not confirmed."
    assert "ErrorCode: 401\r\nMessage: Sender signature not confirmed.\r\n" in bounce.dump_text


def test_strict_mode_refuses_an_unverified_from_with_550_5_7_1(gateway, creds, worker):
    Server.objects.filter(pk=creds.server.pk).update(strict_smtp=True)
    client = gateway.smtp()
    client.login(creds.server_token, creds.server_token)
    client.mail("bounces@unverified.test")
    client.rcpt("ann@example.net")
    code, reply = client.data(message("news@unverified.test"))
    assert code == 550
    assert reply == f"5.7.1 {UNKNOWN} (ErrorCode 400)".encode()
    confirm_sender(create_sender("news@unverified.test"))
    client.mail("bounces@unverified.test")
    client.rcpt("ann@example.net")
    code, _ = client.data(message("news@unverified.test"))
    assert code == 250
    client.quit()
    wait_for(lambda: Submission.objects.filter(status="processed").exists(), what="processing")
