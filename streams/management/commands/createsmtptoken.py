import json

from django.core.management.base import BaseCommand, CommandError

from servers.models import Server
from streams.services import StreamError, create_smtp_token, get_stream


class Command(BaseCommand):
    help = "Generate SMTP credentials for one message stream. The secret key is shown only now."

    def add_arguments(self, parser):
        parser.add_argument("--server", type=int, required=True, help="Server ID.")
        parser.add_argument("--stream", required=True, help="Message stream ID, e.g. outbound.")
        parser.add_argument(
            "--json",
            action="store_true",
            dest="as_json",
            help="Print JSON in Postmark's field names.",
        )

    def handle(self, *args, server, stream, as_json, **options):
        try:
            record = Server.objects.get(pk=server)
        except Server.DoesNotExist:
            raise CommandError(f"No server with ID {server}.") from None
        try:
            token, secret = create_smtp_token(get_stream(record, stream))
        except StreamError as exc:
            raise CommandError(exc.message) from None
        data = {
            "AccessKey": token.access_key,
            "SecretKey": secret,
            "MessageStream": token.stream.stream_id,
            "ServerID": record.id,
        }
        if as_json:
            self.stdout.write(json.dumps(data))
            return
        self.stdout.write(f"SMTP token for server {record.id}, stream {stream!r}:")
        self.stdout.write(f"  Access key (user name): {token.access_key}")
        self.stdout.write(f"  Secret key (password):  {secret}")
        self.stdout.write("  The secret key is shown only this once; store it now.")
