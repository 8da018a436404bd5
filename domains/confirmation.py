"""The confirmation of a sender signature: the signed link its message carries, checked by the
confirmation page (``domains.views``), and how often such a message may be sent.

The token is signed with the site's SECRET_KEY (``django.core.signing``, salted for this use)
and carries the signature's ID and address, so it confirms that address only, and it expires
after SENDER_CONFIRMATION_MAX_AGE (7 days by default). Nothing is stored: a new confirmation
message makes a new link, and the old ones stay valid until they expire.

Whoever holds the account token chooses the address and a personal note, so the message could be
used to flood a stranger: at most SENDER_CONFIRMATIONS_PER_ADDRESS_PER_DAY messages go to one
address in any 24 hours, and SENDER_CONFIRMATIONS_PER_HOUR from the account in any hour
(``ConfirmationSent`` rows, by address: deleting and adding a signature again counts on).
"""

import math
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.utils import timezone

from domains.models import ConfirmationSent, SenderSignature

SALT = "domains.sender-confirmation"


class TokenError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def confirmation_token(signature: SenderSignature) -> str:
    return signing.TimestampSigner(salt=SALT).sign_object(
        {"id": signature.pk, "email": signature.email}
    )


def signature_for_token(token: str) -> SenderSignature:
    """The signature a confirmation link is for, or TokenError saying why not."""
    signer = signing.TimestampSigner(salt=SALT)
    try:
        data = signer.unsign_object(token, max_age=settings.SENDER_CONFIRMATION_MAX_AGE)
    except signing.SignatureExpired:
        raise TokenError(
            "This confirmation link has expired. Ask for a new confirmation message "
            "(Resend confirmation) and use the link it brings."
        ) from None
    except (signing.BadSignature, ValueError, TypeError):
        raise TokenError(
            "This confirmation link is not valid: it may have been cut or changed. Copy the "
            "whole link from the confirmation message, or ask for a new one."
        ) from None
    signature = (
        SenderSignature.objects.filter(pk=data.get("id"), email=data.get("email")).first()
        if isinstance(data, dict)
        else None
    )
    if signature is None:
        raise TokenError("This sender signature no longer exists.")
    return signature


# --- How often ---------------------------------------------------------------------------------

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Wait:
    """Why no confirmation message may go now, and for how many seconds."""

    seconds: int
    message: str


def _wait(rows, limit: int, window: timedelta, now) -> int | None:
    """Seconds until fewer than ``limit`` of ``rows`` (ConfirmationSent) lie in ``window``."""
    if limit <= 0:
        return None
    times = list(rows.filter(sent_at__gt=now - window).order_by("-sent_at")
                 .values_list("sent_at", flat=True)[:limit])  # fmt: skip
    if len(times) < limit:
        return None
    return max(1, math.ceil((times[-1] + window - now).total_seconds()))


def confirmation_wait(email: str, now=None) -> Wait | None:
    """None when a confirmation message may go to ``email`` now; else how long to wait."""
    now = now or timezone.now()
    per_address = settings.SENDER_CONFIRMATIONS_PER_ADDRESS_PER_DAY
    seconds = _wait(ConfirmationSent.objects.filter(email=email), per_address, DAY, now)
    if seconds is not None:
        return Wait(
            seconds,
            f"Too many confirmation messages to {email}: at most {per_address} in 24 hours. "
            f"Try again in {_duration(seconds)}, or ask the service's operators to confirm it.",
        )
    per_hour = settings.SENDER_CONFIRMATIONS_PER_HOUR
    seconds = _wait(ConfirmationSent.objects.all(), per_hour, HOUR, now)
    if seconds is not None:
        return Wait(
            seconds,
            f"Too many confirmation messages from this account: at most {per_hour} in an hour. "
            f"Try again in {_duration(seconds)}.",
        )
    return None


def record_confirmation(email: str, now=None) -> None:
    """Count a confirmation message to ``email``; forget those older than any limit looks at."""
    now = now or timezone.now()
    ConfirmationSent.objects.filter(sent_at__lte=now - DAY).delete()
    ConfirmationSent.objects.create(email=email, sent_at=now)


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} seconds"
    minutes = math.ceil(seconds / 60)
    if minutes < 120:
        return f"{minutes} minutes"
    return f"{minutes // 60} hours {minutes % 60} minutes"
