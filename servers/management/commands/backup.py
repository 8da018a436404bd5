from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from core.backup import BackupError, backup


class Command(BaseCommand):
    help = (
        "Back up the SQLite database (online, consistent) into DESTINATION and the key files "
        "generated in DATA_DIR (secrets.key, django-secret.key, the self-signed TLS pair) into "
        "--keys, another directory: keep the two apart. PostgreSQL: use pg_dump (printed)."
    )

    def add_arguments(self, parser):
        parser.add_argument("destination", help="A new or empty directory for the database.")
        parser.add_argument("--keys", help="A new or empty directory for the key files.")

    def handle(self, *args, destination, keys, **options):
        try:
            outcome = backup(destination, keys, connections["default"].settings_dict)
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        for path in outcome.written:
            self.stdout.write(f"saved {path}")
        for note in outcome.notes:
            self.stdout.write(f"note: {note}")
