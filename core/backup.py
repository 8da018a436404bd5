"""Backing up and restoring what an installation cannot make again.

Two kinds of thing, kept apart on purpose:

- the **database** (``db.sqlite3``, copied online with SQLite's backup API, so the gateway and the
  workers may keep writing meanwhile; PostgreSQL is dumped with ``pg_dump``, not here), and
- the **keys** in ``DATA_DIR`` when they were generated there rather than set in the
  environment: ``secrets.key`` (``SECRETS_KEY``: without it the DKIM private keys, token secrets
  and API tokens in the database can never be read again), ``django-secret.key``
  (``SECRET_KEY``: tracking and confirmation links already sent) and the self-signed TLS pair in
  ``tls/``.

A database dump alone reveals no secret (``core.crypto``); the dump and the keys together reveal
all, so they go to different directories, and should go to different places.
"""

import hashlib
import json
import os
import shutil
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings

DATABASE_FILE = "db.sqlite3"
MANIFEST = "manifest.json"
# The setting each key file stands for: a file is saved only when the setting came from it.
KEY_FILES = {"secrets.key": "SECRETS_KEY", "django-secret.key": "SECRET_KEY"}
TLS_DIR = "tls"


class BackupError(Exception):
    """A backup or restore that cannot go ahead; the message says why and what to do."""


@dataclass
class Outcome:
    written: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def backup(destination: Path, keys_destination: Path | None, database: dict) -> Outcome:
    """Write a consistent copy of the SQLite ``database`` (a ``DATABASES`` entry) into
    ``destination`` and the generated key files into ``keys_destination``."""
    destination, outcome = Path(destination).resolve(), Outcome()
    if keys_destination is not None:
        keys_destination = Path(keys_destination).resolve()
        if keys_destination == destination:
            raise BackupError(
                "--keys must be another directory than the database backup: the database "
                "and the keys that decrypt it should not be stored together"
            )
    _empty_directory(destination)
    if _is_sqlite(database):
        target = destination / DATABASE_FILE
        _copy_sqlite(Path(database["NAME"]), target)
        outcome.written.append(target)
    else:
        outcome.notes.append(
            "the database is not SQLite: dump it with "
            f'pg_dump --format=custom --file={destination / "postmark.dump"} "$DATABASE_URL"'
        )
    _write_manifest(destination, {"database": _vendor(database), "files": outcome.written})
    if keys_destination is None:
        outcome.notes.append("no --keys directory given: the key files were not saved")
        return outcome
    _empty_directory(keys_destination)
    keys = []
    for name, setting in KEY_FILES.items():
        source = settings.DATA_DIR / name
        if os.environ.get(setting):
            outcome.notes.append(
                f"{setting} is set in the environment: back up that environment file "
                "(e.g. /etc/postmark/postmark.env) with the keys"
            )
        elif source.exists():
            keys.append(_copy_private(source, keys_destination / name))
    tls = settings.DATA_DIR / TLS_DIR
    if tls.is_dir() and not settings.SMTP_TLS_CERT:
        (keys_destination / TLS_DIR).mkdir(mode=0o700)
        for source in sorted(tls.iterdir()):
            if source.is_file() and source.suffix in (".crt", ".key"):
                keys.append(_copy_private(source, keys_destination / TLS_DIR / source.name))
    _write_manifest(keys_destination, {"files": keys})
    outcome.written.extend(keys)
    return outcome


def restore(source: Path, keys_source: Path | None, database: dict, replace: bool) -> Outcome:
    """Put a backup made by ``backup`` back: the SQLite database over ``database``'s file and
    the key files into ``DATA_DIR``. Every process of the installation must be stopped."""
    source, outcome = Path(source).resolve(), Outcome()
    manifest = _read_manifest(source)
    if manifest.get("database") == "sqlite":
        if not _is_sqlite(database):
            raise BackupError(
                "this backup holds a SQLite database but DATABASE_URL names another database"
            )
        target = Path(database["NAME"])
        if _has_tables(target) and not replace:
            raise BackupError(
                f"{target} already holds data: stop every process of the installation and "
                "run the restore again with --replace"
            )
        _copy_sqlite(source / DATABASE_FILE, target)
        outcome.written.append(target)
    else:
        outcome.notes.append(
            "this backup holds no database: restore the PostgreSQL dump with "
            'pg_restore --clean --if-exists --no-owner --dbname "$DATABASE_URL" postmark.dump'
        )
    if keys_source is None:
        outcome.notes.append("no --keys directory given: the key files were not restored")
        return outcome
    keys_source = Path(keys_source).resolve()
    for name in _read_manifest(keys_source)["files"]:
        target = settings.DATA_DIR / name
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        outcome.written.append(_copy_private(keys_source / name, target))
    return outcome


def _is_sqlite(database: dict) -> bool:
    return database["ENGINE"] == "django.db.backends.sqlite3"


def _vendor(database: dict) -> str:
    return "sqlite" if _is_sqlite(database) else database["ENGINE"].rsplit(".", 1)[-1]


def _empty_directory(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BackupError(f"{path} is not an empty directory: give a new one for each backup")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _copy_sqlite(source: Path, target: Path) -> None:
    """Copy with SQLite's online backup API (a consistent snapshot, WAL included), then check
    the copy's integrity."""
    if not source.is_file():
        raise BackupError(f"no SQLite database at {source}")
    with (
        sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src,
        sqlite3.connect(target) as dst,
    ):
        src.backup(dst)
        result = dst.execute("PRAGMA integrity_check").fetchone()[0]
    src.close()
    dst.close()
    if result != "ok":
        raise BackupError(f"the copy at {target} failed SQLite's integrity check: {result}")


def _has_tables(path: Path) -> bool:
    if not path.exists() or path.stat().st_size == 0:
        return False
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        found = db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()
    db.close()
    return found[0] > 0


def _copy_private(source: Path, target: Path) -> Path:
    """Copy a key file readable by its owner only, replacing ``target`` atomically."""
    temporary = target.with_name(target.name + ".restoring")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out, open(source, "rb") as data:
        shutil.copyfileobj(data, out)
    os.replace(temporary, target)
    return target


def _write_manifest(directory: Path, content: dict) -> None:
    files = {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in content.pop("files")
    }
    manifest = {"created_at": datetime.now(UTC).isoformat(), **content, "files": files}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _read_manifest(directory: Path) -> dict:
    """The manifest of a backup directory, each file checked against its SHA-256."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{directory} is not a backup made by manage.py backup ({exc})") from None
    for name, expected in files.items():
        path = directory / name
        if Path(name).is_absolute() or ".." in Path(name).parts or not path.is_file():
            raise BackupError(f"{directory}: {name} is missing")
        if hashlib.sha256(path.read_bytes()).hexdigest() != expected:
            raise BackupError(f"{directory}: {name} does not match its checksum (damaged?)")
    return manifest
