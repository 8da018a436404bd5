import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from servers.models import Server
from streams.models import IpCredential
from streams.services import StreamError, get_stream


class Command(BaseCommand):
    help = "Let hosts in a network submit to a stream without SMTP AUTH (an IP credential)."

    def add_arguments(self, parser):
        parser.add_argument("--server", type=int, required=True, help="Server ID.")
        parser.add_argument("--stream", required=True, help="Message stream ID, e.g. outbound.")
        parser.add_argument("--cidr", required=True, help="e.g. 127.0.0.1/32 or 192.0.2.0/24")
        parser.add_argument("--description", default="")
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="Print JSON in Postmark's style."
        )

    def handle(self, *args, server, stream, cidr, description, as_json, **options):
        try:
            record = Server.objects.get(pk=server)
            credential = IpCredential(
                stream=get_stream(record, stream), cidr=cidr, description=description
            )
            credential.full_clean()
        except Server.DoesNotExist:
            raise CommandError(f"No server with ID {server}.") from None
        except StreamError as exc:
            raise CommandError(exc.message) from None
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        credential.save()
        data = {
            "ID": credential.id,
            "CIDR": credential.cidr,
            "MessageStream": stream,
            "ServerID": server,
        }
        if as_json:
            self.stdout.write(json.dumps(data))
        else:
            self.stdout.write(
                f"Hosts in {credential.cidr} may now send to server {server}, stream {stream!r}, "
                "without AUTH."
            )
