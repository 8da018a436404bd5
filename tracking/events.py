"""Recording opens and clicks: the Open and Click events of a message, with the reader's user
agent classified (``tracking.agents``), and finding the message a token names.
"""

import uuid

from django.db import transaction

from messages.events import record_message_event
from messages.models import MessageEvent, OutboundMessage
from tracking.agents import classify_user_agent

GEO_FIELDS = (
    "CountryISOCode",
    "Country",
    "RegionISOCode",
    "Region",
    "City",
    "Zip",
    "Coords",
    "IP",
)


def _reader(user_agent: str) -> dict:
    user_agent = (user_agent or "")[:2000]
    return {
        "UserAgent": user_agent,
        **classify_user_agent(user_agent),
        "Geo": dict.fromkeys(GEO_FIELDS, ""),  # no geolocation database here
    }


def message_for(message_id: uuid.UUID) -> OutboundMessage | None:
    return OutboundMessage.objects.filter(message_id=message_id).first()


def record_open(message: OutboundMessage, recipient: str, user_agent: str) -> MessageEvent:
    """An Open event; ``FirstOpen`` is true for the first open of ``message`` by ``recipient``."""
    with transaction.atomic():
        # Serialise opens of one message (PostgreSQL) so that only one can be the first.
        OutboundMessage.objects.select_for_update().filter(pk=message.pk).exists()
        first = not MessageEvent.objects.filter(
            outbound=message, type=MessageEvent.Type.OPEN, recipient=recipient
        ).exists()
        return record_message_event(
            message,
            MessageEvent.Type.OPEN,
            recipient,
            data={"FirstOpen": first, **_reader(user_agent), "ReadSeconds": 0},
        )


def record_click(
    message: OutboundMessage, recipient: str, url: str, location: str, user_agent: str
) -> MessageEvent:
    """A Click event on ``url`` (``location`` is "HTML" or "Text")."""
    return record_message_event(
        message,
        MessageEvent.Type.CLICK,
        recipient,
        data={"OriginalLink": url, "ClickLocation": location, **_reader(user_agent)},
    )
