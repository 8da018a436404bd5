from datetime import UTC

from django.core.management.base import BaseCommand
from django.utils import timezone

from core import crypto
from servers.rotation import rotate_secrets


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret and recompute every look-up digest under the newest key "
        "of SECRETS_KEY (comma-separated, newest first). Runs online; afterwards it says until "
        "when the old key must stay configured (the VERP return paths it tagged take reports for "
        "DELIVERY_GIVE_UP_AFTER + VERP_ACCEPT_DAYS)."
    )

    def handle(self, *args, **options):
        keys = crypto.configured_keys()
        if len(keys) == 1:
            self.stdout.write("One key is configured: secrets are rewritten under it all the same.")
        for label, count in rotate_secrets().items():
            self.stdout.write(f"{label}: {count} row(s) rewritten under the newest key")
        if len(keys) > 1:
            until = (timezone.now() + crypto.tag_lifetime()).astimezone(UTC)
            self.stdout.write(
                f"Keep the older key(s) in SECRETS_KEY until {until:%Y-%m-%d %H:%M} UTC "
                "(DELIVERY_GIVE_UP_AFTER + VERP_ACCEPT_DAYS from now): mail sent before the "
                "rotation has VERP return paths tagged under them, which take bounce reports "
                "until then. Drop them after that date and restart."
            )
