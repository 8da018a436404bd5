"""Durable accept: the records the gateway commits before it answers 250.

This is the hottest write of the service, so rows are plain dicts inserted with one
``executemany`` per batch, each value adapted by its model field, rather than model instances
through ``bulk_create``: the same SQL for a fraction of the Python work.
"""

import time
from functools import cache

from django.db import connection, transaction
from django.utils import timezone

from .models import SmtpToken, Submission

LAST_USED_EVERY = 60.0  # seconds between updates of one token's last_used_at, per process
_last_used: dict[str, float] = {}


@cache
def _insert(vendor: str) -> tuple[str, tuple]:
    fields = tuple(f for f in Submission._meta.concrete_fields if not f.primary_key)
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    table = quote(Submission._meta.db_table)
    # Only names from the model's own metadata go into the statement; values are parameters.
    return f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", fields  # noqa: S608


def save_submissions(rows: list[dict]) -> None:
    """Commit a batch of accepted SMTP transactions in one transaction (one fsync per batch).
    Each row holds Submission field names; missing fields take their defaults."""
    sql, fields = _insert(connection.vendor)
    params = []
    for row in rows:
        params.append(
            [
                f.get_db_prep_save(
                    row[f.attname] if f.attname in row else f.get_default(), connection
                )
                for f in fields
            ]
        )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, params)


def note_token_use(rows: list[dict]) -> None:
    """Record when SMTP tokens were last used, at most once a minute per token, outside the
    accept transaction so that concurrent gateway processes never wait on each other for it."""
    now = time.monotonic()
    latest: dict[str, str] = {}
    for row in rows:
        if row.get("credential_kind") == "smtp_token":
            latest[row["credential"]] = row["client_address"]
    for access_key, address in latest.items():
        if now - _last_used.get(access_key, -LAST_USED_EVERY) >= LAST_USED_EVERY:
            _last_used[access_key] = now
            SmtpToken.objects.filter(access_key=access_key).update(
                last_used_at=timezone.now(), last_used_from=address
            )
