"""Liveness and readiness, as plain functions the web app and the gateway both answer with.

Alive means the process answers at all. Ready means it can do its work: the database answers, the
broker accepts a connection (with the embedded filesystem queue there is nothing to reach) and
every migration is applied (a process started from newer code than the schema must not take
traffic yet).
"""

import contextlib
import json

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections


def check_database() -> str:
    """'' when the database answers, else why not."""
    connection = connections[DEFAULT_DB_ALIAS]
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        with contextlib.suppress(Exception):  # the connection is broken anyway
            connection.close()
        return _describe(exc)
    return ""


def check_broker() -> str:
    """'' when the Celery broker accepts a connection, else why not."""
    if settings.EMBEDDED_BROKER:
        return ""
    from celery import current_app as app  # the project's (postmark_site.celery)

    try:
        with app.connection_for_write(settings.CELERY_BROKER_URL) as connection:
            connection.ensure_connection(max_retries=1, timeout=settings.HEALTH_CHECK_TIMEOUT)
    except Exception as exc:
        return _describe(exc)
    return ""


def check_migrations() -> str:
    """'' when every migration is applied, else which are not (needs the database)."""
    from django.db.migrations.executor import MigrationExecutor

    try:
        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:
        return _describe(exc)
    if not plan:
        return ""
    names = [f"{migration.app_label}.{migration.name}" for migration, _ in plan]
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return f"{len(names)} migration(s) not applied: {', '.join(names[:5])}{more}"


CHECKS = {"database": check_database, "broker": check_broker, "migrations": check_migrations}


def readiness() -> tuple[bool, dict]:
    """Run every check: (ready, {"status": ..., "checks": {name: "ok" or the failure}})."""
    results = {}
    for name, check in CHECKS.items():
        if name == "migrations" and results.get("database") != "ok":
            results[name] = "not checked: the database is unavailable"
            continue
        problem = check()
        results[name] = problem or "ok"
    ready = all(value == "ok" for value in results.values())
    failed = [name for name, value in results.items() if value != "ok"]
    body = {"status": "ready" if ready else "unavailable", "checks": results}
    if failed:
        body["failed"] = failed
    return ready, body


def liveness() -> dict:
    return {"status": "alive"}


def encode(body: dict) -> bytes:
    return json.dumps(body, sort_keys=False).encode() + b"\n"


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"[:300]
