"""One taxonomy of database errors (``core.db``): which say the database is unavailable (the work
is retried, and not at fault) and which are the work's own, for every driver and whichever way
the error arrives (the driver's own, or Django's wrapping it); and the raw fast paths raise
Django's errors like any Django cursor."""

import sqlite3

import psycopg
import pytest
from django.db import DatabaseError, IntegrityError, OperationalError, ProgrammingError, connection
from psycopg import errors as pg

from core.db import is_database_unavailable, raise_if_unavailable, retry_while_unavailable


def sqlite_error(statement: str) -> sqlite3.Error:
    """A real error from SQLite (with its result code), from ``statement``."""
    try:
        sqlite3.connect(":memory:").execute(statement)
    except sqlite3.Error as exc:
        return exc
    raise AssertionError(f"{statement} did not fail")


def sqlite_locked(tmp_path) -> sqlite3.Error:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None, timeout=0)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        sqlite3.connect(path, timeout=0).execute("SELECT * FROM t")
    except sqlite3.Error as exc:
        return exc
    finally:
        holder.close()
    raise AssertionError("not locked")


def django_wrapped(error: Exception) -> Exception:
    """``error`` as Django's cursors raise it (the driver's error as ``__cause__``)."""
    try:
        with connection.wrap_database_errors:
            raise error
    except Exception as exc:
        return exc
    raise AssertionError("not raised")


UNAVAILABLE = {
    "psycopg connection lost": psycopg.OperationalError("server closed the connection"),
    "psycopg closed connection": psycopg.InterfaceError("the connection is closed"),
    "admin shutdown (a restart)": pg.AdminShutdown("terminating connection"),
    "cannot connect now (starting up)": pg.CannotConnectNow("the database system is starting"),
    "too many connections": pg.TooManyConnections("sorry, too many clients already"),
    "serialization failure": pg.SerializationFailure("could not serialize access"),
    "deadlock": pg.DeadlockDetected("deadlock detected"),
    "statement timeout": pg.QueryCanceled("canceling statement due to statement timeout"),
    "disk full": pg.DiskFull("could not extend file"),
    "read-only standby after a failover": pg.ReadOnlySqlTransaction("read-only transaction"),
    "Django, no driver error behind": OperationalError("connection already closed"),
    "sqlite disk I/O, no code": sqlite3.OperationalError("disk I/O error"),
    "sqlite full, no code": sqlite3.OperationalError("database or disk is full"),
}
NOT_UNAVAILABLE = {
    "psycopg unique violation": pg.UniqueViolation("duplicate key value"),
    "psycopg undefined table": pg.UndefinedTable('relation "x" does not exist'),
    "psycopg value too long": pg.StringDataRightTruncation("value too long"),
    "psycopg program limit (the statement's)": pg.ProgramLimitExceeded("index row too large"),
    "Django integrity": IntegrityError("UNIQUE constraint failed"),
    "Django programming": ProgrammingError("syntax error"),
    "not a database error": ValueError("bad value"),
    "sqlite no such table": sqlite_error("SELECT * FROM nope"),
    "sqlite syntax": sqlite_error("SELEKT 1"),
}


@pytest.mark.parametrize("error", UNAVAILABLE.values(), ids=UNAVAILABLE.keys())
def test_unavailable_the_drivers_error_or_djangos(error):
    assert is_database_unavailable(error)
    assert is_database_unavailable(django_wrapped(error))


@pytest.mark.parametrize("error", NOT_UNAVAILABLE.values(), ids=NOT_UNAVAILABLE.keys())
def test_the_works_own_error_the_drivers_or_djangos(error):
    assert not is_database_unavailable(error)
    assert not is_database_unavailable(django_wrapped(error))


def test_sqlite_by_its_result_code(tmp_path):
    locked = sqlite_locked(tmp_path)
    assert locked.sqlite_errorcode == sqlite3.SQLITE_BUSY
    assert is_database_unavailable(locked)
    assert is_database_unavailable(django_wrapped(locked))
    refused = sqlite_error("SELECT * FROM nope")
    assert refused.sqlite_errorcode == sqlite3.SQLITE_ERROR
    assert not is_database_unavailable(refused)


def test_a_drivers_error_is_raised_again_as_djangos():
    """What the tasks' ``autoretry_for=(DatabaseError,)`` retries."""
    with pytest.raises(OperationalError) as raised:
        raise_if_unavailable(pg.AdminShutdown("terminating connection"))
    assert isinstance(raised.value.__cause__, pg.AdminShutdown)
    raise_if_unavailable(pg.UniqueViolation("duplicate"))  # the work's own: not raised here


def test_retried_while_unavailable_then_given_up(transactional_db):
    """``retry_while_unavailable`` (outside a transaction): tries again after an unavailable
    database, reconnecting; never after the work's own error; gives up after its patience."""
    pauses, calls = [], []

    def twice_unavailable():
        calls.append(1)
        if len(calls) <= 2:
            raise pg.AdminShutdown("terminating connection")
        return "recorded"

    assert retry_while_unavailable(twice_unavailable, 60, "test", sleep=pauses.append) == "recorded"
    assert pauses == [0.1, 0.2]

    def refused():
        raise pg.UniqueViolation("duplicate")

    with pytest.raises(pg.UniqueViolation):
        retry_while_unavailable(refused, 60, "test", sleep=pauses.append)
    assert pauses == [0.1, 0.2]

    def always_unavailable():
        raise OperationalError("gone")

    with pytest.raises(OperationalError):
        retry_while_unavailable(always_unavailable, 0.5, "test", sleep=lambda s: None)


@pytest.mark.django_db
def test_not_retried_inside_a_transaction():
    """Inside a transaction (here the test's), a statement that failed cannot be tried again
    alone: the caller's transaction is what is retried."""
    calls = []

    def unavailable():
        calls.append(1)
        raise OperationalError("gone")

    with pytest.raises(OperationalError):
        retry_while_unavailable(unavailable, 60, "test", sleep=lambda s: None)
    assert calls == [1]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the raw fast paths are PostgreSQL's")
@pytest.mark.django_db
def test_the_raw_fast_paths_raise_djangos_errors(monkeypatch, server):
    """``insert_rows`` and ``record_event_with`` write through psycopg directly; its errors come
    out as Django's (as from any Django cursor), the driver's error as their cause."""
    from messages.events import record_event_with
    from messages.models import MessageEvent, Recipient
    from messages.submissions import insert_rows

    def shutdown(*args, **kwargs):
        raise pg.AdminShutdown("terminating connection due to administrator command")

    monkeypatch.setattr(psycopg.Cursor, "execute", shutdown)
    monkeypatch.setattr(psycopg.Cursor, "executemany", shutdown)
    table = Recipient._meta.db_table
    attempts = [
        lambda: insert_rows(MessageEvent, [{"server_id": server.pk, "type": "Delivery"}]),
        lambda: record_event_with(
            (f"UPDATE {table} SET errors = 0 WHERE id = %s", [0]),  # noqa: S608
            server_id=server.pk,
            type="Delivery",
            recipient="x@example.net",
        ),
    ]
    for attempt in attempts:
        with pytest.raises(DatabaseError) as raised:
            attempt()
        assert isinstance(raised.value, OperationalError)
        assert isinstance(raised.value.__cause__, pg.AdminShutdown)
        assert is_database_unavailable(raised.value)
