"""The message that tells a data removal's requester it is done. It never names the erased
address (the message would be a new trace of it): only the request's ID. It goes through the
System server's ``outbound`` stream (``messages.system``), like the sender confirmations."""

import uuid
from email.message import EmailMessage
from email.utils import formataddr, formatdate

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from messages.confirmations import SMTP_POLICY
from messages.models import Submission
from messages.system import system_stream
from messages.tasks import enqueue_processing
from streams.models import CredentialKind, Endpoint


def completion_message(removal) -> EmailMessage:
    message = EmailMessage()
    message["From"] = formataddr(("Mail service", settings.SYSTEM_FROM))
    message["To"] = removal.requested_by
    message["Subject"] = f"Data removal {removal.pk} is complete"
    message["Date"] = formatdate(localtime=False)
    message.set_content(
        f"The data removal you asked for (ID {removal.pk}) is complete: what this mail service "
        "stored about the address, in every server, has been deleted.\n"
    )
    return message


def notify(removal) -> Submission:
    """Store the message as a submission of the System stream; processed after commit."""
    stream = system_stream()
    raw = completion_message(removal).as_bytes(policy=SMTP_POLICY)
    submission = Submission.objects.create(
        message_id=uuid.uuid4(),
        server_id=stream.server_id,
        stream=stream,
        endpoint=Endpoint.TRANSACTIONAL,
        credential_kind=CredentialKind.SERVER_TOKEN,
        credential="system",
        client_address="127.0.0.1",
        mail_from=settings.SYSTEM_FROM,
        rcpt_to=[removal.requested_by],
        size=len(raw),
        raw=raw,
        received_at=timezone.now(),
    )
    message_id = str(submission.message_id)
    transaction.on_commit(lambda: enqueue_processing([message_id]))
    return submission
