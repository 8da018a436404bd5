"""Bounce and suppression objects in Postmark's field names, as plain functions (the API and the
webhooks share them). Every field is always present and never null (compat §3)."""

from datetime import UTC, datetime


def timestamp(value: datetime | None) -> str:
    """ISO 8601 in UTC with microseconds and ``Z``, e.g. ``2019-11-05T16:33:54.907025Z``."""
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def bounce_json(bounce, content: bool = False, metadata: bool = False) -> dict:
    """The Postmark bounce object. ``content=True`` adds ``Content`` (the dump), as the
    single-bounce GET and webhooks with content do; ``metadata=True`` adds ``Metadata``."""
    kind = bounce.bounce_type
    data = {
        "RecordType": "Bounce",
        "ID": bounce.id,
        "Type": kind.type,
        "TypeCode": kind.code,
        "Name": kind.name,
        "Tag": bounce.tag or "",
        "MessageID": str(bounce.message_id) if bounce.message_id else "",
        "ServerID": bounce.server_id,
        "MessageStream": bounce.message_stream or "",
        "Description": kind.description,
        "Details": bounce.details or "",
        "Email": bounce.email or "",
        "From": bounce.from_address or "",
        "BouncedAt": timestamp(bounce.bounced_at),
        "DumpAvailable": bounce.dump_available,
        "Inactive": bool(bounce.inactive),
        "CanActivate": bool(bounce.can_activate),
        "Subject": bounce.subject or "",
    }
    if metadata:
        values = bounce.metadata if isinstance(bounce.metadata, dict) else {}
        data["Metadata"] = {str(k): "" if v is None else str(v) for k, v in values.items()}
    if content:
        data["Content"] = bounce.dump_text
    return data


def suppression_json(suppression) -> dict:
    return {
        "EmailAddress": suppression.email,
        "SuppressionReason": suppression.reason,
        "Origin": suppression.origin,
        "CreatedAt": timestamp(suppression.created_at),
    }


# --- Webhook payloads (compat §4) -----------------------------------------------------------------
