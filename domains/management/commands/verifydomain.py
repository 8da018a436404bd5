import json

from django.core.management.base import BaseCommand

from domains.management.output import checks_table, find_domain
from domains.verification import verify_domain


class Command(BaseCommand):
    help = "Look a domain's DNS records up now (DKIM, Return-Path, SPF) and print what was found."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--json", action="store_true", dest="as_json")

    def handle(self, *args, name, as_json, **options):
        domain = find_domain(name)
        checks = verify_domain(domain)
        if as_json:
            self.stdout.write(json.dumps([c.as_dict() for c in checks], indent=2))
        else:
            self.stdout.write(checks_table(domain, checks))
