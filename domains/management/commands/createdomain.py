import json

from django.core.management.base import BaseCommand, CommandError

from domains.details import domain_details
from domains.management.output import records_table
from domains.services import IdentityError, create_domain


class Command(BaseCommand):
    help = (
        "Add a sending domain and print the DNS records to publish (a DKIM key, the Return-Path "
        "CNAME, SPF); run verifydomain once they are published."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="e.g. shop.example")
        parser.add_argument(
            "--return-path",
            default=None,
            help="The custom Return-Path domain, a subdomain of NAME (default pm-bounces.NAME).",
        )
        parser.add_argument(
            "--ed25519", action="store_true", help="Also sign with an Ed25519 key (RFC 8463)."
        )
        parser.add_argument(
            "--json",
            action="store_true",
            dest="as_json",
            help="Print Postmark's domain details (DKIMPendingHost, ReturnPathDomain, …).",
        )

    def handle(self, *args, name, return_path, ed25519, as_json, **options):
        try:
            domain = create_domain(name, return_path=return_path, ed25519=ed25519)
        except IdentityError as exc:
            raise CommandError(exc.message) from None
        if as_json:
            self.stdout.write(json.dumps(domain_details(domain), indent=2))
            return
        self.stdout.write(f"Domain {domain.name} added (ID {domain.pk}).")
        self.stdout.write("")
        self.stdout.write(records_table(domain))
        self.stdout.write(
            f"Publish these records, then run: manage.py verifydomain {domain.name}\n"
            "(or wait: unverified domains are checked again every few hours)."
        )
