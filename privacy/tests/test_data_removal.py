"""Data removals (compat §15): every stored trace of an address, seeded in every kind of row on
two servers, is gone after the removal runs in a real worker, found by reading every column of
every table; the other addresses' rows stay. Also the API's shape and errors, postmark.js's
``requestDataRemoval``/``getDataRemovalStatus`` over HTTP, the admin, and the beat's resumption
of a removal whose task was lost."""

import json
import re
import uuid

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from bounces.models import Bounce, Dump
from conftest import accepted_submission, wait_for
from inbound.models import InboundMessage
from inbound.parsing import parse as parse_inbound
from messages.models import MessageEvent, OutboundMessage, Recipient
from privacy.models import DataRemoval
from privacy.removal import erase_address, run_removal
from servers.models import AccountToken
from streams.models import Suppression
from streams.services import get_stream
from webhooks.models import Webhook, WebhookAttempt, WebhookDelivery

ADDRESS = "Ann.Erase@Example.NET"
# Addresses that must stay: another one, and one that contains the erased one.
OTHERS = ("bob@example.net", "mann.erase@example.net")


@pytest.fixture
def account_token(db):
    return AccountToken.issue("ops").token


@pytest.fixture
def account(account_token):
    return Client(HTTP_X_POSTMARK_ACCOUNT_TOKEN=account_token)


def seed(server, address: str, spelled: str | None = None) -> None:
    """Every kind of row about ``address`` on ``server`` (written as ``spelled``)."""
    spelled = spelled or address
    stream = get_stream(server, "outbound")
    raw = (
        f"From: app@example.com\r\nTo: Ann <{spelled}>\r\nSubject: hello\r\n\r\nHi {spelled}\r\n"
    ).encode()
    submission = accepted_submission(
        server, raw, rcpts=[spelled], stream=stream, status="processed"
    )
    message = OutboundMessage.objects.create(
        message_id=submission.message_id, submission=submission, server=server, stream=stream,
        from_address="app@example.com", to=[spelled], recipients=[spelled.lower()],
        subject="hello", content=raw, status="sent", received_at=timezone.now(),
        metadata={"customer": spelled},
    )  # fmt: skip
    Recipient.objects.create(message=message, email=spelled.lower(), status="delivered")
    webhook = Webhook.objects.create(
        stream=stream, url="https://hooks.example.com/x", delivery_enabled=True
    )
    now = timezone.now()
    for kind, data in (
        ("Delivery", {"Recipient": spelled}),
        ("Open", {"Recipient": spelled, "FirstOpen": True, "UserAgent": "Mail"}),
        ("Click", {"Recipient": spelled, "OriginalLink": "https://example.com/"}),
    ):
        event = MessageEvent.objects.create(
            server=server, stream=stream, outbound=message, message_id=message.message_id,
            type=kind, recipient=spelled.lower(), data=data, occurred_at=now,
        )  # fmt: skip
        delivery = WebhookDelivery.objects.create(
            webhook=webhook, event=event, status="failed",
            payload=json.dumps({"RecordType": kind, "Recipient": spelled}),
            last_error=f"refused {spelled}",
        )  # fmt: skip
        WebhookAttempt.objects.create(
            delivery=delivery, number=1, started_at=now, status_code=500,
            response_excerpt=f"no such user {spelled}",
        )  # fmt: skip
    dump = Dump.objects.create(text=raw.decode())
    bounce = Bounce.objects.create(
        server=server, stream=stream, message_stream="outbound", type="HardBounce",
        message_id=uuid.uuid4(), email=spelled.lower(), details=f"550 {spelled} unknown",
        content=f"Final-Recipient: rfc822; {spelled}\r\n", source=dump, bounced_at=now,
        inactive=True,
    )  # fmt: skip
    MessageEvent.objects.create(
        server=server, stream=stream, message_id=bounce.message_id, type="Bounce",
        recipient=spelled.lower(), bounce=bounce, details=bounce.details, occurred_at=now,
    )  # fmt: skip
    Suppression.objects.create(
        stream=stream, email=spelled.lower(), reason="HardBounce", origin="Recipient",
        bounce=bounce,
    )  # fmt: skip
    # A submission not processed yet.
    accepted_submission(server, raw, rcpts=[spelled])
    # Mail from the address to the server's inbound address.
    inbound_to = f"{server.inbound_hash}@inbound.example.com"
    inbound_raw = (
        f"From: Ann <{spelled}>\r\nTo: {inbound_to}\r\nSubject: re: ticket\r\n\r\n"
        f"Thanks. -- {spelled}\r\n"
    ).encode()
    parsed = parse_inbound(inbound_raw, inbound_to, spelled)
    InboundMessage.objects.create(
        message_id=uuid.uuid4(), server=server, stream=get_stream(server, "inbound"),
        status="processed", from_email=spelled.lower(), to=inbound_to, subject="re: ticket",
        original_recipient=inbound_to, received_at=now, payload=parsed.payload, raw=inbound_raw,
    )  # fmt: skip


def tables_naming(address: str) -> dict[str, int]:
    """{table: rows} of every table with a column (text, JSON or bytes) naming ``address`` in
    any letter case (as a whole address: "mann.erase@…" does not name "ann.erase@…")."""
    wanted = re.compile(r"(?<![\w.%+'=-])" + re.escape(address) + r"(?![\w.-])", re.IGNORECASE)
    found = {}
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            rows = 0
            for row in cursor.fetchall():
                for value in row:
                    if isinstance(value, memoryview | bytes | bytearray):
                        value = bytes(value).decode("latin-1")
                    if isinstance(value, str) and wanted.search(value):
                        rows += 1
                        break
            if rows:
                found[table] = rows
    return found


def seed_everything(server, other_server):
    seed(server, ADDRESS)
    seed(other_server, ADDRESS, spelled=ADDRESS.upper())
    for other in OTHERS:
        seed(server, other)


def test_the_search_sees_every_kind_of_seeded_row(server, other_server):
    """The check below is only worth its green if it sees the rows before."""
    seed_everything(server, other_server)
    found = tables_naming(ADDRESS)
    for table in (
        "outbound_submission", "outbound_outboundmessage", "outbound_recipient",
        "outbound_messageevent", "bounces_bounce", "bounces_dump", "streams_suppression",
        "webhooks_webhookdelivery", "webhooks_webhookattempt", "inbound_inboundmessage",
    ):  # fmt: skip
        assert table in found, (table, found)


def test_erase_address_leaves_no_trace_and_keeps_the_others(server, other_server):
    seed_everything(server, other_server)
    kept = {other: tables_naming(other) for other in OTHERS}
    counts = erase_address(ADDRESS.lower())
    assert tables_naming(ADDRESS) == {}
    assert counts["messages"] == 2 and counts["suppressions"] == 2 and counts["bounces"] == 2
    assert counts["inbound_messages"] == 2
    # "mann.erase@…" contains the erased address: whole addresses only.
    assert {other: tables_naming(other) for other in OTHERS} == kept
    assert erase_address(ADDRESS)["messages"] == 0  # again: nothing left


@pytest.mark.django_db(transaction=True)
def test_a_removal_asked_through_postmark_js_runs_in_a_worker(
    live_server, postmark_js, account_token, server, other_server, worker
):
    seed_everything(server, other_server)
    kept = {other: tables_naming(other) for other in OTHERS}
    asked = postmark_js(live_server.url, "Account", account_token, "requestDataRemoval", {
        "RequestedBy": "dpo@example.org", "RequestedFor": ADDRESS, "NotifyWhenCompleted": True,
    })  # fmt: skip
    assert asked["ok"], asked
    removal_id = asked["result"]["ID"]
    assert removal_id > 0 and asked["result"]["Status"] in ("Pending", "Done")

    def status():
        outcome = postmark_js(
            live_server.url, "Account", account_token, "getDataRemovalStatus", removal_id
        )
        assert outcome["ok"], outcome
        return outcome["result"]["Status"]

    wait_for(lambda: status() == "Done", timeout=60, what="the removal")
    assert tables_naming(ADDRESS) == {}
    assert {other: tables_naming(other) for other in OTHERS} == kept
    removal = DataRemoval.objects.get(pk=removal_id)
    assert removal.requested_for == "" and removal.removed["messages"] == 2
    # The requester is told, in a message that does not name the address.
    told = OutboundMessage.objects.filter(recipients__icontains="dpo@example.org")
    wait_for(told.exists, timeout=60, what="the completion message")
    assert tables_naming(ADDRESS) == {}


@pytest.mark.parametrize(
    "body",
    [
        {},
        "",
        {"RequestedBy": "dpo@example.org"},
        {"RequestedFor": "not an address"},
        {"RequestedFor": 5},
        {"RequestedFor": ADDRESS, "NotifyWhenCompleted": "maybe"},
        {"RequestedFor": ADDRESS, "NotifyWhenCompleted": True},  # whom to tell?
        {"RequestedFor": "a@" + "b" * 320 + ".com"},
    ],
)
def test_bad_requests_are_1300(account, body):
    data = body if isinstance(body, str) else json.dumps(body)
    response = account.post("/data-removals", data, content_type="application/json")
    assert response.status_code == 422, response.content
    assert json.loads(response.content)["ErrorCode"] == 1300
    assert not DataRemoval.objects.exists()


def test_status_and_unknown_ids(account, server):
    response = account.post(
        "/Data-Removals/", json.dumps({"RequestedFor": ADDRESS}), content_type="application/json"
    )
    body = json.loads(response.content)
    assert response.status_code == 200 and body["Status"] == "Pending" and set(body) == {
        "ID", "Status",
    }  # fmt: skip
    assert json.loads(account.get(f"/data-removals/{body['ID']}").content) == body
    run_removal(body["ID"])
    assert json.loads(account.get(f"/data-removals/{body['ID']}").content)["Status"] == "Done"
    for bad in ("999999", "abc", "-1"):
        response = account.get(f"/data-removals/{bad}")
        assert response.status_code == 422 and json.loads(response.content)["ErrorCode"] == 1301
    server_api = Client(HTTP_X_POSTMARK_SERVER_TOKEN=server.tokens.first().token)
    assert server_api.get(f"/data-removals/{body['ID']}").status_code == 401


def test_a_lost_removal_is_queued_again_by_the_beat(db, monkeypatch, settings):
    from privacy import tasks

    settings.DATA_REMOVAL_RETRY_AFTER = 60
    old = DataRemoval.objects.create(requested_for=ADDRESS)
    DataRemoval.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timezone.timedelta(minutes=5)
    )
    DataRemoval.objects.create(requested_for=ADDRESS)  # just asked: its task is on its way
    queued = []
    monkeypatch.setattr(tasks.remove_data, "delay", queued.append)
    assert tasks.resume_removals() == 1 and queued == [old.pk]


def test_an_operator_asks_for_a_removal_in_the_admin(client, django_user_model, server):
    seed(server, ADDRESS)
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    response = client.post(
        "/admin/privacy/dataremoval/add/",
        {"requested_for": ADDRESS, "requested_by": "", "notify_when_completed": ""},
    )
    assert response.status_code == 302, response.content[-2000:]
    removal = DataRemoval.objects.get()
    assert removal.status == "Pending"
    run_removal(removal.pk)
    assert tables_naming(ADDRESS) == {}
    assert client.get("/admin/privacy/dataremoval/").status_code == 200
    assert client.get(f"/admin/privacy/dataremoval/{removal.pk}/change/").status_code == 200
