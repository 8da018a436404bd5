from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from core.backup import BackupError, restore


class Command(BaseCommand):
    help = (
        "Restore a backup made by manage.py backup: the SQLite database from SOURCE and the key "
        "files from --keys into DATA_DIR. Stop every process of the installation first."
    )

    def add_arguments(self, parser):
        parser.add_argument("source", help="The directory manage.py backup wrote.")
        parser.add_argument("--keys", help="The key directory manage.py backup wrote.")
        parser.add_argument(
            "--replace", action="store_true", help="Overwrite a database that holds data."
        )

    def handle(self, *args, source, keys, replace, **options):
        connections.close_all()
        try:
            outcome = restore(source, keys, connections["default"].settings_dict, replace)
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        for path in outcome.written:
            self.stdout.write(f"restored {path}")
        for note in outcome.notes:
            self.stdout.write(f"note: {note}")
