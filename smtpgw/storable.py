"""What the service can store: the rules an envelope value passes before the durable accept.

Every value a client gives in the envelope (EHLO name, MAIL FROM, RCPT TO) ends up in a column of
``outbound.Submission`` (or, after processing, of ``outbound.Recipient``). A value the database
cannot hold must be refused at the command that carried it, with its reason; otherwise it would
reach the group committer and fail a whole batch of other senders' messages.

The policy:

- text must be valid UTF-8 (RFC 6531 allows UTF-8 addresses; other 8-bit bytes are refused, not
  guessed at): the command parser keeps undecodable bytes as lone surrogates, which no database
  encoding can store;
- no NUL (PostgreSQL refuses it in text and JSON) and, in addresses and EHLO names, no other control
  character either (RFC 5321 allows none);
- no longer than the column that will hold it, read from the model field.
"""

import re
from functools import cache

from django.db import models

from messages.models import Recipient, Submission

CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


@cache
def column_length(model: type[models.Model], name: str) -> int | None:
    """The max_length of ``model.name`` (None when the column has no limit)."""
    return model._meta.get_field(name).max_length


def sender_max_length() -> int:
    return column_length(Submission, "mail_from")


def recipient_max_length() -> int:
    return column_length(Recipient, "email")


def helo_max_length() -> int:
    return column_length(Submission, "client_helo")


def storage_problem(value: str, max_length: int | None = None) -> str:
    """Why a database text column cannot hold ``value`` (as a phrase), or '' when it can."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "it is not valid UTF-8"
    if "\x00" in value:
        return "it contains a NUL character"
    if max_length is not None and len(value) > max_length:
        return f"it is longer than {max_length} characters"
    return ""


def text_problem(value: str, max_length: int | None) -> str:
    """:func:`storage_problem`, and no control character either (addresses, EHLO names)."""
    problem = storage_problem(value, max_length)
    if problem:
        return problem
    if CONTROL_CHARACTER.search(value):
        return "it contains a control character"
    return ""


def sender_refusal(address: str) -> str:
    """The reply to MAIL FROM for a sender address the service cannot store, or ''."""
    problem = text_problem(address, sender_max_length())
    return f"553 5.1.7 Sender address refused: {problem}" if problem else ""


def recipient_refusal(address: str) -> str:
    """The reply to RCPT TO for a recipient address the service cannot store, or ''."""
    problem = text_problem(address, recipient_max_length())
    return f"501 5.1.3 Recipient address refused: {problem}" if problem else ""


def helo_refusal(name: str) -> str:
    """The reply to HELO/EHLO for a client name the service cannot store, or ''."""
    problem = text_problem(name, helo_max_length())
    return f"501 5.5.4 HELO/EHLO name refused: {problem}" if problem else ""


def row_problem(row: dict) -> str:
    """For a Submission row about to be committed: the first value the database cannot hold, as
    '<field>: <phrase>', or ''. The commands have refused such values already; this is the last
    check before the group committer, so that one row can never fail a batch."""
    for name, value in row.items():
        field = Submission._meta.get_field(name)
        if isinstance(value, str):
            problem = storage_problem(value, field.max_length)
        elif isinstance(field, models.JSONField):
            problem = _json_problem(value)
        else:
            problem = ""
        if problem:
            return f"{name}: {problem}"
    return ""


def _json_problem(value) -> str:
    """PostgreSQL's jsonb holds neither NUL nor lone surrogates, in keys or values."""
    if isinstance(value, str):
        return storage_problem(value)
    if isinstance(value, dict):
        for key, item in value.items():
            problem = _json_problem(key) or _json_problem(item)
            if problem:
                return problem
    if isinstance(value, list | tuple):
        for item in value:
            problem = _json_problem(item)
            if problem:
                return problem
    return ""
