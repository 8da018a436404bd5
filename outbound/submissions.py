"""Durable accept: the records the gateway commits before it answers 250.

This is the hottest write of the service, so a batch of rows (plain dicts) is inserted with one
``executemany``, each value adapted by its model field, rather than model instances through
``bulk_create``. On PostgreSQL it bypasses Django's client-side parameter binding (which would
escape every raw message into the SQL text) for server-side binding, with the raw bytes sent in
binary: the same rows for a fraction of the CPU.
"""

import time
from functools import cache

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

from outbound.models import Submission
from streams.models import SmtpToken

LAST_USED_EVERY = 60.0  # seconds between updates of one token's last_used_at, per process
_last_used: dict[str, float] = {}


@cache
def _insert(vendor: str) -> tuple[str, tuple]:
    connection = connections[DEFAULT_DB_ALIAS]
    fields = tuple(f for f in Submission._meta.concrete_fields if not f.primary_key)
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    binary = "%b" if vendor == "postgresql" else "%s"
    values = ", ".join(binary if f.attname == "raw" else "%s" for f in fields)
    # Only names from the model's own metadata go into the statement; values are parameters.
    sql = f"INSERT INTO {quote(Submission._meta.db_table)} ({columns}) VALUES ({values})"  # noqa: S608
    return sql, fields


def save_submissions(rows: list[dict]) -> None:
    """Commit a batch of accepted SMTP transactions in one transaction (one fsync per batch).
    Each row holds Submission field names; missing fields take their defaults."""
    connection = connections[DEFAULT_DB_ALIAS]
    sql, fields = _insert(connection.vendor)
    params = [
        [
            f.get_db_prep_save(row[f.attname] if f.attname in row else f.get_default(), connection)
            for f in fields
        ]
        for row in rows
    ]
    with transaction.atomic():
        if connection.vendor == "postgresql":
            import psycopg

            with psycopg.Cursor(connection.connection) as cursor:
                cursor.executemany(sql, params)
        else:
            with connection.cursor() as cursor:
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
