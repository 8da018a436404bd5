import json

from django.core.management.base import BaseCommand

from domains.details import domain_details
from domains.management.output import find_domain
from domains.services import rotate_dkim


class Command(BaseCommand):
    help = (
        "Start a DKIM key rotation: print the new key's record to publish beside the current "
        "one. The current key signs until verification sees the new record."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--json", action="store_true", dest="as_json")

    def handle(self, *args, name, as_json, **options):
        domain = find_domain(name)
        new_keys = rotate_dkim(domain)
        if as_json:
            self.stdout.write(json.dumps(domain_details(domain), indent=2))
            return
        self.stdout.write(f"New DKIM key(s) for {domain.name}: publish, beside the current one,")
        for key in new_keys:
            self.stdout.write("")
            self.stdout.write(f"  TXT {key.host}")
            self.stdout.write(f"      {key.text_value}")
        self.stdout.write("")
        self.stdout.write(
            f"then run: manage.py verifydomain {domain.name}. The new key signs from the check "
            "that sees it; the old record may be removed once verifydomain says it is safe."
        )
