from django.core.management.base import BaseCommand

from core import crypto
from servers.rotation import rotate_secrets


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret and recompute every look-up digest under the newest key "
        "of SECRETS_KEY (comma-separated, newest first). Runs online; afterwards drop the old key."
    )

    def handle(self, *args, **options):
        keys = crypto.configured_keys()
        if len(keys) == 1:
            self.stdout.write("One key is configured: secrets are rewritten under it all the same.")
        for label, count in rotate_secrets().items():
            self.stdout.write(f"{label}: {count} row(s) rewritten under the newest key")
