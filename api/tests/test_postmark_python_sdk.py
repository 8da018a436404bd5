"""Postmark's official Python SDK (``postmark-python``, imported as ``postmark``) over real HTTP
(live_server) with only its base URL changed: ``stats.*``, ``server.get/edit`` and
``outbound.send_bulk/get_bulk_status`` read and write this service's answers into its own
(pydantic) models, which check every field name and type."""

import datetime

import pytest

postmark = pytest.importorskip("postmark.sync")

from api.bulk import send_bulk  # noqa: E402
from messages.models import OutboundMessage  # noqa: E402

STATS = [
    "overview", "sent_counts", "bounce_counts", "spam_counts", "tracked_counts", "open_counts",
    "platform_usage", "email_client_usage", "click_counts", "browser_usage",
    "browser_platform_usage", "click_location",
]  # fmt: skip


@pytest.fixture
def client(live_server, server):
    token = server.tokens.first().token
    with postmark.ServerClient(token, retries=0, base_url=live_server.url) as sdk:
        yield sdk


@pytest.mark.parametrize("method", STATS)
def test_every_stat_reads_into_the_sdk_models(client, method):
    today = datetime.date.today()
    answer = getattr(client.stats, method)(
        tag="news", from_date=today - datetime.timedelta(days=7), to_date=today
    )
    assert answer is not None


def test_the_server_is_read_and_edited(client, server):
    before = client.server.get()
    assert before.name == server.name
    edited = client.server.edit(name="Renamed by the SDK", track_opens=True)
    assert edited.name == "Renamed by the SDK" and edited.track_opens is True
    assert client.server.get().name == "Renamed by the SDK"


def test_send_bulk_and_its_status(client):
    answer = client.outbound.send_bulk(
        {
            "From": "app@example.com",
            "Subject": "Hi {{name}}",
            "TextBody": "Hello {{name}}",
            "Messages": [
                {"To": f"u{n}@example.net", "TemplateModel": {"name": f"N{n}"}} for n in range(3)
            ],
        }
    )
    assert answer.status.value == "Accepted" and answer.id
    status = client.outbound.get_bulk_status(answer.id)
    assert status.id == answer.id and status.total_messages == 3
    assert status.subject == "Hi {{name}}"
    send_bulk(answer.id)  # the background task's work, here in the test's process
    status = client.outbound.get_bulk_status(answer.id)
    assert status.status.value == "Completed" and status.percentage_completed == 100.0
    assert sorted(OutboundMessage.objects.values_list("subject", flat=True)) == [
        "Hi N0", "Hi N1", "Hi N2",
    ]  # fmt: skip
