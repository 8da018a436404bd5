"""The service's own mail: a sender signature's confirmation message.

``domains`` asks for it (``domains.signals.confirmation_requested``, connected in
``messages.apps``); it is built here and stored as a Submission of the System server's
``outbound`` stream (``messages.system``), so it takes the path every message takes
(processing, DKIM signing, delivery, bounces).
"""

import email.policy
import uuid
from email.message import EmailMessage
from email.utils import formataddr, formatdate

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from domains.confirmation import confirmation_token
from domains.models import SenderSignature
from messages.models import Submission
from messages.system import system_stream
from messages.tasks import enqueue_processing
from streams.models import CredentialKind, Endpoint


def confirmation_link(signature: SenderSignature) -> str:
    path = reverse("sender-confirm", args=[confirmation_token(signature)])
    return settings.TRACKING_BASE_URL.rstrip("/") + path


def confirmation_message(signature: SenderSignature) -> EmailMessage:
    days = max(1, settings.SENDER_CONFIRMATION_MAX_AGE // 86400)
    message = EmailMessage()
    message["From"] = formataddr(("Mail service", settings.SYSTEM_FROM))
    message["To"] = formataddr((signature.name, signature.email))
    message["Subject"] = f"Confirm {signature.email} as a sender"
    message["Date"] = formatdate(localtime=False)
    note = signature.confirmation_note.strip()
    lines = [
        f"Someone asked to send email as {signature.email}"
        + (f" ({signature.name})" if signature.name else "")
        + " through this mail service.",
        "",
    ]
    if note:
        lines += ["Their note:", "", *(f"    {line}" for line in note.splitlines()), ""]
    lines += [
        "To allow it, open this link and press Confirm:",
        "",
        confirmation_link(signature),
        "",
        f"The link is valid for {days} day{'s' if days != 1 else ''}. If you did not expect "
        "this message, ignore it: nothing is sent from your address until it is confirmed.",
    ]
    message.set_content("\n".join(lines) + "\n")
    return message


SMTP_POLICY = email.policy.SMTP  # CRLF line ends, as a message arrives over SMTP


def send_confirmation(sender=None, *, signature: SenderSignature, **kwargs) -> Submission:
    """Store the confirmation message as a submission of the System stream; processing starts
    once the caller's transaction commits."""
    return queue_system_message(confirmation_message(signature), signature.email)


def queue_system_message(message: EmailMessage, recipient: str) -> Submission:
    """Store one of the service's own messages as a submission of the System server's stream,
    as if it had come over SMTP; processing starts once the caller's transaction commits."""
    stream = system_stream()
    raw = message.as_bytes(policy=SMTP_POLICY)
    submission = Submission.objects.create(
        message_id=uuid.uuid4(),
        server_id=stream.server_id,
        stream=stream,
        endpoint=Endpoint.TRANSACTIONAL,
        credential_kind=CredentialKind.SERVER_TOKEN,
        credential="system",
        client_address="127.0.0.1",
        mail_from=settings.SYSTEM_FROM,
        rcpt_to=[recipient],
        size=len(raw),
        raw=raw,
        received_at=timezone.now(),
    )
    message_id = str(submission.message_id)
    transaction.on_commit(lambda: enqueue_processing([message_id]))
    return submission
