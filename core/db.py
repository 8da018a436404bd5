"""Database errors, one taxonomy: is this error the database being unavailable, or the work's own?

Work that meets an *unavailable* database (a lost connection, a restart or failover, a lock held
too long, a full disk) is retried whole, later: it is never the fault of the message or the
submission at hand, so nothing is counted against it. Any other error (a statement or a value the
database refuses) is the work's own and is handled as such. ``is_database_unavailable`` makes that
call for every driver this service runs on, whichever way the error arrives: as Django's exception
(its cursors wrap the driver's), or as the driver's own, raised by a fast path that writes through
the driver directly (those run under ``connection.wrap_database_errors`` too, so that they raise
Django's). ``retry_while_unavailable`` waits for the database to answer again, for a result that
must be recorded rather than the work done twice (a remote server's 250 in hand).
"""

import logging
import sqlite3
import time
from collections.abc import Callable

import psycopg
from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    InterfaceError,
    OperationalError,
    connections,
)

log = logging.getLogger(__name__)

# SQLite raises OperationalError for the database's state and for the statement's own faults alike
# ("no such table", "too many SQL variables" are SQLITE_ERROR): only these primary result codes say
# the database could not do the work, however good the statement.
SQLITE_UNAVAILABLE = {
    sqlite3.SQLITE_BUSY,  # database is locked (by another process, past the timeout)
    sqlite3.SQLITE_LOCKED,  # database table is locked
    sqlite3.SQLITE_NOMEM,
    sqlite3.SQLITE_READONLY,  # e.g. the file or its directory made read-only
    sqlite3.SQLITE_INTERRUPT,
    sqlite3.SQLITE_IOERR,  # disk I/O error
    sqlite3.SQLITE_CORRUPT,  # the file, not the work: retried until an operator repairs it
    sqlite3.SQLITE_FULL,  # database or disk is full
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PROTOCOL,
    sqlite3.SQLITE_NOTADB,
}
# The same, by SQLite's messages, for an error that carries no result code.
SQLITE_UNAVAILABLE_MESSAGES = (
    "database is locked",
    "database table is locked",
    "out of memory",
    "readonly database",
    "interrupted",
    "disk i/o error",
    "database disk image is malformed",
    "database or disk is full",
    "unable to open database file",
    "locking protocol",
    "file is not a database",
)
# PostgreSQL: psycopg's OperationalError and InterfaceError (connection lost, admin shutdown,
# cannot connect now, too many connections, serialization failure, deadlock, lock not available,
# statement timeout, disk full, authentication) are the database's state, except class 54, whose
# limits are the statement's (an index row or a statement too large). A read-only transaction
# (25006) is a standby answering after a failover.
POSTGRES_NOT_UNAVAILABLE_CLASSES = ("54",)
POSTGRES_UNAVAILABLE_STATES = ("25006",)


def _driver_error(exc: BaseException) -> BaseException | None:
    """The driver's error behind ``exc``: ``exc`` itself, or the one Django's wrapper chained."""
    for candidate in (exc, exc.__cause__):
        if isinstance(candidate, sqlite3.Error | psycopg.Error):
            return candidate
    return None


def _sqlite_unavailable(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in SQLITE_UNAVAILABLE  # an extended code's primary code
    text = str(error).lower()
    return any(message in text for message in SQLITE_UNAVAILABLE_MESSAGES)


def _postgres_unavailable(error: psycopg.Error) -> bool:
    state = getattr(error, "sqlstate", None) or ""
    if state in POSTGRES_UNAVAILABLE_STATES:
        return True
    if state[:2] in POSTGRES_NOT_UNAVAILABLE_CLASSES:
        return False
    return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is unavailable (the work is to be retried later, and is
    not at fault), rather than that it refused this work."""
    driver = _driver_error(exc)
    if isinstance(driver, sqlite3.Error):
        return _sqlite_unavailable(driver)
    if isinstance(driver, psycopg.Error):
        return _postgres_unavailable(driver)
    # Django's own (a closed connection, a connection that could not be made), with no driver
    # error behind it.
    return isinstance(exc, OperationalError | InterfaceError)


def raise_if_unavailable(exc: Exception) -> None:
    """Raise ``exc`` again if it says the database is unavailable, as Django's ``DatabaseError``
    (what the tasks' ``autoretry_for`` retries) should it be the driver's own."""
    if not is_database_unavailable(exc):
        return
    if isinstance(exc, DatabaseError):
        raise exc
    raise OperationalError(f"the database is unavailable: {exc}") from exc


def forget_connection(using: str = DEFAULT_DB_ALIAS) -> None:
    """Close the connection after an unavailable database, so that the next statement reconnects
    (the database may have restarted); never inside a transaction, which is the caller's."""
    connection = connections[using]
    if connection.in_atomic_block:
        return
    try:
        connection.close()
    except Exception as exc:  # closing a connection already gone can fail too
        log.debug("closing the database connection failed: %s", exc)


def retry_while_unavailable(
    work: Callable,
    patience: float,
    what: str,
    using: str = DEFAULT_DB_ALIAS,
    sleep: Callable[[float], None] = time.sleep,
):
    """``work()``, tried again while the database is unavailable (reconnecting each time, waiting
    0.1 s and doubling up to 5 s between tries) for up to ``patience`` seconds; returns what it
    returns, or raises its last error. Only outside a transaction: inside one, the caller's
    transaction is what has to be retried. ``what`` names the work in the log."""
    deadline = time.monotonic() + patience
    pause = 0.1
    while True:
        try:
            return work()
        except Exception as exc:
            if (
                not is_database_unavailable(exc)
                or connections[using].in_atomic_block
                or time.monotonic() + pause > deadline
            ):
                raise
            log.warning("%s: the database is unavailable (%s); trying again", what, exc)
        forget_connection(using)
        sleep(pause)
        pause = min(pause * 2, 5.0)
