import json

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from domains.services import IdentityError, create_sender, request_confirmation


class Command(BaseCommand):
    help = (
        "Add a sender signature (a single From address). Unless --confirmed, a confirmation "
        "message with a link is sent to the address."
    )

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--name", default="")
        parser.add_argument("--reply-to", default="")
        parser.add_argument("--note", default="", help="A personal note for the confirmation.")
        parser.add_argument(
            "--confirmed",
            action="store_true",
            help="Confirmed at once (the operator vouches for the address): no message is sent.",
        )
        parser.add_argument("--json", action="store_true", dest="as_json")

    def handle(self, *args, email, name, reply_to, note, confirmed, as_json, **options):
        try:
            with transaction.atomic():  # the signature and its confirmation message, or neither
                signature = create_sender(
                    email, name=name, reply_to=reply_to, note=note, confirmed=confirmed
                )
                if not confirmed:
                    request_confirmation(signature)
        except IdentityError as exc:
            raise CommandError(exc.message) from None
        if as_json:
            data = {
                "ID": signature.pk,
                "Name": signature.name,
                "Domain": signature.domain,
                "EmailAddress": signature.email,
                "ReplyToEmailAddress": signature.reply_to,
                "Confirmed": signature.confirmed,
            }
            self.stdout.write(json.dumps(data, indent=2))
        elif confirmed:
            self.stdout.write(f"Sender signature {signature.email} added, confirmed.")
        else:
            self.stdout.write(
                f"Sender signature {signature.email} added; a confirmation message was sent to "
                "it. Mail From this address is refused (ErrorCode 401) until it is confirmed."
            )
