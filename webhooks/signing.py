"""Signing webhook posts, and the headers and body of each request.

Beyond Postmark, every POST is signed: ``X-Webhook-Signature: sha256=<hex>`` is the HMAC-SHA256,
under the webhook's signing secret, of ``<X-Webhook-Timestamp>.`` followed by the exact body bytes
(``signature``; ``verify_signature`` is the receiver's check). ``request_headers`` adds these, the
delivery's id, basic auth and the webhook's custom headers; ``encode`` gives the body's bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from django.conf import settings

from webhooks.guard import FORBIDDEN_HEADERS

SIGNATURE_HEADER = "X-Webhook-Signature"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
DELIVERY_HEADER = "X-Webhook-Delivery"


# --- Signing --------------------------------------------------------------------------------------


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str, body: bytes, signature_header: str, timestamp_header: str, tolerance: int = 300
) -> bool:
    """The receiver's check (the snippet in docs/user-guide/webhooks.md does the same)."""
    try:
        sent_at = int(timestamp_header)
    except (TypeError, ValueError):
        return False
    if abs(time.time() - sent_at) > tolerance:
        return False
    expected = signature(secret, timestamp_header, body)
    return hmac.compare_digest(expected, signature_header or "")


def request_headers(webhook, body: bytes, delivery_id: int) -> dict:
    import base64

    headers = {h["Name"]: h["Value"] for h in (webhook.http_headers or []) if isinstance(h, dict)}
    for name in list(headers):
        if name.lower() in FORBIDDEN_HEADERS or name.lower() in (
            "content-type",
            "user-agent",
            SIGNATURE_HEADER.lower(),
            TIMESTAMP_HEADER.lower(),
            DELIVERY_HEADER.lower(),
        ):
            headers.pop(name)
    headers["Content-Type"] = "application/json"
    headers["User-Agent"] = settings.WEBHOOK_USER_AGENT
    if webhook.http_auth_username or webhook.http_auth_password_encrypted:
        for name in [n for n in headers if n.lower() == "authorization"]:
            headers.pop(name)
        pair = f"{webhook.http_auth_username}:{webhook.http_auth_password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    stamp = str(int(time.time()))
    headers[TIMESTAMP_HEADER] = stamp
    headers[SIGNATURE_HEADER] = signature(webhook.signing_secret, stamp, body)
    headers[DELIVERY_HEADER] = str(delivery_id)
    return headers


def encode(payload: dict) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
