import json

from django.core.management.base import BaseCommand

from servers.models import AccountToken


class Command(BaseCommand):
    help = "Create an account API token (X-Postmark-Account-Token)."

    def add_arguments(self, parser):
        parser.add_argument("--name", default="")
        parser.add_argument(
            "--json",
            action="store_true",
            dest="as_json",
            help="Print JSON in Postmark's field names.",
        )

    def handle(self, *args, name, as_json, **options):
        token = AccountToken.issue(name)
        if as_json:
            self.stdout.write(json.dumps({"AccountToken": token.token, "Name": token.name}))
        else:
            self.stdout.write(f"Account API token: {token.token}")
