"""Data removal requests (compat §15): recorded, then carried out by the ``privacy.remove_data``
task (``privacy.removal.erase_address``), from the API or the admin. A request that is still
Pending after ``DATA_REMOVAL_RETRY_AFTER`` seconds (its task was lost with a broker, or a worker
died) is queued again by the beat (``privacy.resume_removals``)."""

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from privacy.models import DataRemoval
from privacy.tasks import remove_data

MAX_ADDRESS_LENGTH = DataRemoval._meta.get_field("requested_for").max_length


class RemovalError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def check_address(value, name: str, required: bool = True) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RemovalError(f"{name} is required: an email address.")
        return ""
    if not isinstance(value, str):
        raise RemovalError(f"{name} must be an email address.")
    address = value.strip()
    if len(address) > MAX_ADDRESS_LENGTH:
        raise RemovalError(f"{name} must not be longer than {MAX_ADDRESS_LENGTH} characters.")
    try:
        validate_email(address)
    except ValidationError:
        raise RemovalError(f"{name} '{address}' is not a valid email address.") from None
    return address


def request_removal(
    requested_for: str, requested_by: str = "", notify_when_completed: bool = False
) -> DataRemoval:
    """Record a removal and queue its task once the caller's transaction commits."""
    removal = DataRemoval.objects.create(
        requested_for=check_address(requested_for, "RequestedFor"),
        requested_by=check_address(requested_by, "RequestedBy", required=notify_when_completed),
        notify_when_completed=notify_when_completed,
    )
    queue(removal)
    return removal


def queue(removal: DataRemoval) -> None:
    removal_id = removal.pk
    transaction.on_commit(lambda: remove_data.delay(removal_id))
