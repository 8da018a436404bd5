"""Webhook payloads (compat §4) and the webhook object of the API, in Postmark's field names."""

from bounces.serializers import bounce_json, timestamp
from bounces.types import BOUNCE_EVENTS, SPAM_COMPLAINT, bounce_type

# --- Webhook payloads (compat §4) -----------------------------------------------------------------


def _strings(values) -> dict:
    if not isinstance(values, dict):
        return {}
    return {str(k): "" if v is None else str(v) for k, v in values.items()}


def _tag_and_metadata(event) -> tuple[str, dict]:
    outbound = event.outbound
    if outbound is not None:
        return outbound.tag or "", _strings(outbound.metadata)
    bounce = event.bounce
    if bounce is not None:
        return bounce.tag or "", _strings(bounce.metadata)
    return "", {}


def _stream_id(event) -> str:
    if event.stream is not None:
        return event.stream.stream_id
    if event.bounce is not None:
        return event.bounce.message_stream or ""
    return ""


def _agent(data: dict) -> dict:
    unknown = {"Name": "Unknown", "Company": "Unknown", "Family": "Unknown"}
    return {
        "UserAgent": data.get("UserAgent") or "",
        "Platform": data.get("Platform") or "Unknown",
        "Client": data.get("Client") or dict(unknown),
        "OS": data.get("OS") or dict(unknown),
        "Geo": data.get("Geo") or {},
    }


def bounce_webhook_json(bounce, include_content: bool = False) -> dict:
    """Bounce and SpamComplaint payloads: the bounce object plus ``Metadata`` (and ``Content``
    with IncludeContent). A spam complaint says so in RecordType and can never be reactivated."""
    data = bounce_json(bounce, content=include_content, metadata=True)
    if bounce.type == SPAM_COMPLAINT:
        data["RecordType"] = bounce_type(SPAM_COMPLAINT).event
        data["CanActivate"] = False
    return data


def webhook_payload(event, include_content: bool = False) -> dict:
    """The Postmark webhook payload of a ``streams.models.MessageEvent``."""
    kind = event.type
    if kind in BOUNCE_EVENTS:
        return bounce_webhook_json(event.bounce, include_content=include_content)
    tag, metadata = _tag_and_metadata(event)
    message_id = str(event.message_id) if event.message_id else ""
    data = event.data if isinstance(event.data, dict) else {}
    if kind == "Delivery":
        return {
            "RecordType": "Delivery",
            "ServerID": event.server_id,
            "MessageStream": _stream_id(event),
            "MessageID": message_id,
            "Recipient": event.recipient,
            "Tag": tag,
            "DeliveredAt": timestamp(event.occurred_at),
            "Details": event.details or "",
            "Metadata": metadata,
        }
    if kind == "Open":
        return {
            "RecordType": "Open",
            "MessageStream": _stream_id(event),
            "Metadata": metadata,
            "FirstOpen": bool(data.get("FirstOpen")),
            "Recipient": event.recipient,
            "MessageID": message_id,
            "ReceivedAt": timestamp(event.occurred_at),
            **_agent(data),
            "ReadSeconds": int(data.get("ReadSeconds") or 0),
            "Tag": tag,
        }
    if kind == "Click":
        return {
            "RecordType": "Click",
            "MessageStream": _stream_id(event),
            "Metadata": metadata,
            "Recipient": event.recipient,
            "MessageID": message_id,
            "ReceivedAt": timestamp(event.occurred_at),
            **_agent(data),
            "ClickLocation": data.get("ClickLocation") or "HTML",
            "OriginalLink": data.get("OriginalLink") or "",
            "Tag": tag,
        }
    if kind == "SubscriptionChange":
        return {
            "RecordType": "SubscriptionChange",
            "MessageID": message_id,
            "ServerID": event.server_id,
            "MessageStream": _stream_id(event),
            "ChangedAt": timestamp(event.occurred_at),
            "Recipient": event.recipient,
            "Origin": data.get("Origin") or "",
            "SuppressSending": bool(data.get("SuppressSending")),
            "SuppressionReason": data.get("SuppressionReason") or "",
            "Tag": tag,
            "Metadata": metadata,
        }
    raise ValueError(f"no webhook payload for event type {kind!r}")


def webhook_json(webhook) -> dict:
    """A webhook as Postmark's Webhooks API shows it, plus our ``SigningSecret``."""
    return {
        "ID": webhook.id,
        "Url": webhook.url,
        "MessageStream": webhook.stream.stream_id,
        "HttpAuth": {
            "Username": webhook.http_auth_username or "",
            "Password": webhook.http_auth_password or "",
        },
        "HttpHeaders": [
            {"Name": str(h.get("Name", "")), "Value": str(h.get("Value", ""))}
            for h in (webhook.http_headers or [])
            if isinstance(h, dict)
        ],
        "Triggers": {
            "Open": {
                "Enabled": webhook.open_enabled,
                "PostFirstOpenOnly": webhook.open_post_first_open_only,
            },
            "Click": {"Enabled": webhook.click_enabled},
            "Delivery": {"Enabled": webhook.delivery_enabled},
            "Bounce": {
                "Enabled": webhook.bounce_enabled,
                "IncludeContent": webhook.bounce_include_content,
            },
            "SpamComplaint": {
                "Enabled": webhook.spam_complaint_enabled,
                "IncludeContent": webhook.spam_complaint_include_content,
            },
            "SubscriptionChange": {"Enabled": webhook.subscription_change_enabled},
        },
        "SigningSecret": webhook.signing_secret,
    }
