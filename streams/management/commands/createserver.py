import json

from django.core.management.base import BaseCommand, CommandError

from servers.models import DeliveryType, Server
from servers.services import server_json
from streams.services import create_server


class Command(BaseCommand):
    help = "Create a server with an API token and its default message streams."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--no-smtp", action="store_true", help="Create with SMTP access off.")
        parser.add_argument(
            "--live", action="store_true", help="Deliver mail (default: Sandbox, record only)."
        )
        parser.add_argument(
            "--json",
            action="store_true",
            dest="as_json",
            help="Print JSON in Postmark's field names.",
        )

    def handle(self, *args, name, no_smtp, live, as_json, **options):
        if Server.objects.filter(name=name).exists():
            raise CommandError(f"A server named {name!r} already exists.")
        server = create_server(
            name,
            smtp_api_activated=not no_smtp,
            delivery_type=DeliveryType.LIVE if live else DeliveryType.SANDBOX,
        )
        data = server_json(server)
        if as_json:
            self.stdout.write(json.dumps(data))
            return
        self.stdout.write(f"Server {server.id} {server.name!r} created ({server.delivery_type}).")
        self.stdout.write(f"  API token:       {data['ApiTokens'][0]}")
        self.stdout.write(f"  SMTP access:     {'on' if server.smtp_api_activated else 'off'}")
        self.stdout.write(f"  Message streams: {', '.join(data['MessageStreams'])}")
