"""Submissions that are not mail to send: the endpoints whose accepted messages an app above this
one takes over (the inbound MX's, taken by ``inbound``). That app registers an ``Intake`` for its
endpoint when it is ready; processing then hands each such submission to it instead of making an
outbound message, with the same leases, tries and terminal states as any other submission.
"""

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Intake:
    """``read(raw, rcpt_to, mail_from)`` runs before the transaction (parsing; it must not
    raise for what a message holds) and returns what ``store(submission, raw, read)`` needs;
    ``store`` runs inside the submission's transaction, locked, and returns the submission's new
    status (``processed`` or ``failed``). ``fail(submission, error_name, raw)`` records a
    submission whose tries of processing all failed (it must not need the message parsed)."""

    read: Callable
    store: Callable
    fail: Callable


INTAKES: dict[str, Intake] = {}


def register(endpoint: str, intake: Intake) -> None:
    INTAKES[endpoint] = intake


def intake_for(endpoint: str) -> Intake | None:
    return INTAKES.get(endpoint)
