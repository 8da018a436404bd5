"""The message that tells a data removal's requester it is done. It never names the erased
address (the message would be a new trace of it): only the request's ID. It goes through the
System server's ``outbound`` stream (``messages.system``), like the sender confirmations."""

from email.message import EmailMessage
from email.utils import formataddr, formatdate

from django.conf import settings

from messages.confirmations import queue_system_message
from messages.models import Submission


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
    return queue_system_message(completion_message(removal), removal.requested_by)
