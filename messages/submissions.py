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

from messages.models import Submission
from streams.models import SmtpToken

LAST_USED_EVERY = 60.0  # seconds between updates of one token's last_used_at, per process
_last_used: dict[str, float] = {}


@cache
def _insert(vendor: str, model=Submission, returning: bool = False) -> tuple[str, tuple]:
    connection = connections[DEFAULT_DB_ALIAS]
    fields = tuple(f for f in model._meta.concrete_fields if not f.primary_key)
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    binary = "%b" if vendor == "postgresql" else "%s"
    values = ", ".join(binary if f.get_internal_type() == "BinaryField" else "%s" for f in fields)
    # Only names from the model's own metadata go into the statement; values are parameters.
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({values})"  # noqa: S608
    if returning:
        sql += f" RETURNING {quote(model._meta.pk.column)}"
    return sql, fields


def insert_rows(model, rows: list[dict], returning: bool = False) -> list[int] | None:
    """Insert ``rows`` (dicts of ``model`` field names; missing fields take their defaults) with
    one ``executemany``, within the caller's transaction; with ``returning``, the new primary
    keys in order. On PostgreSQL values are bound server-side, binary fields in binary (see the
    module's docstring); elsewhere it is ``bulk_create``'s work, done once."""
    connection = connections[DEFAULT_DB_ALIAS]
    if not rows:
        return [] if returning else None
    sql, fields = _insert(connection.vendor, model, returning)
    now = timezone.now()
    params = [[f.get_db_prep_save(_value(f, row, now), connection) for f in fields] for row in rows]
    if connection.vendor != "postgresql":
        if not returning:
            with connection.cursor() as cursor:
                cursor.executemany(sql, params)
            return None
        made = model.objects.bulk_create([model(**row) for row in rows])
        return [obj.pk for obj in made]
    import psycopg

    connection.ensure_connection()
    # The driver's errors become Django's, as through a Django cursor (core.db).
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.executemany(sql, params, returning=returning)
        if not returning:
            return None
        ids = []
        while True:
            ids.append(cursor.fetchone()[0])
            if not cursor.nextset():
                return ids


def _value(field, row: dict, now):
    if field.attname in row:
        return row[field.attname]
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return now
    return field.get_default()


def model_row(obj) -> dict:
    """The values of a model instance an insert needs (as ``save`` would write them)."""
    return {
        f.attname: f.pre_save(obj, True) for f in obj._meta.concrete_fields if not f.primary_key
    }


def save_submissions(rows: list[dict]) -> None:
    """Commit a batch of accepted SMTP transactions in one transaction (one fsync per batch).
    Each row holds Submission field names; missing fields take their defaults."""
    with transaction.atomic():
        insert_rows(Submission, rows)


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
