import json

from django.core.management.base import BaseCommand, CommandError

from servers.models import Server
from servers.services import set_smtp_access


class Command(BaseCommand):
    help = "Switch a server's SMTP access on or off."

    def add_arguments(self, parser):
        parser.add_argument("--server", type=int, required=True, help="Server ID.")
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--on", action="store_true")
        group.add_argument("--off", action="store_true")
        parser.add_argument(
            "--json",
            action="store_true",
            dest="as_json",
            help="Print JSON in Postmark's field names.",
        )

    def handle(self, *args, server, on, off, as_json, **options):
        try:
            record = Server.objects.get(pk=server)
        except Server.DoesNotExist:
            raise CommandError(f"No server with ID {server}.") from None
        set_smtp_access(record, enabled=on)
        if as_json:
            data = {
                "ID": record.id,
                "Name": record.name,
                "SmtpApiActivated": record.smtp_api_activated,
            }
            self.stdout.write(json.dumps(data))
        else:
            state = "on" if record.smtp_api_activated else "off"
            self.stdout.write(f"SMTP access for server {record.id} {record.name!r} is {state}.")
