"""Create the demo admin user, server, SMTP token and sender domain on first run, and print how
to use them (``smtpgw.quickstart``: the banner, from the real settings).

The demo server is Sandbox: what it takes is recorded, not delivered, and every message can be
read in the admin. ``--live`` switches it to Live, for mail relayed to a local sink (the banner
prints the one line that starts one) or onward.

The demo's sender domain (``example.com``, the From of the printed swaks command) is marked
verified without DNS: an active DKIM key, ``dkim_verified`` on and periodic checks off, since no
DNS publishes its records. This is for the demo only; a real domain is added with
``createdomain`` and verified from its published records.

The secrets are generated once and kept in DATA_DIR/demo-credentials.json (mode 0600) so that later
runs can print them again; everything else stores only what the service itself needs.
"""

import json
import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from core import dkim_keys as keys
from domains.models import DkimKey, Domain
from servers.models import DeliveryType, Server
from smtpgw import quickstart, tls
from streams.services import create_server, create_smtp_token, get_stream

DEMO_SERVER = "Demo server"
DEMO_FROM = "app@example.com"


class Command(BaseCommand):
    help = "Create the demo admin user, server and SMTP token if none exist, and print them."

    def add_arguments(self, parser):
        parser.add_argument(
            "--live",
            action="store_true",
            help="Switch the demo server to Live (mail is relayed: OUTBOUND_SMTP_RELAY).",
        )

    def handle(self, *args, live, **options):
        path = settings.DATA_DIR / "demo-credentials.json"
        creds = json.loads(path.read_text()) if path.exists() else {}
        creds.update(self.ensure_admin(creds))
        creds.update(self.ensure_server(creds))
        self.ensure_sender_domain()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(creds, fh, indent=2)
        server = Server.objects.filter(pk=creds["server_id"]).first() or Server.objects.get(
            name=DEMO_SERVER
        )
        if live and server.delivery_type != DeliveryType.LIVE:
            server.delivery_type = DeliveryType.LIVE
            server.save(update_fields=["delivery_type"])
        tls.certificate_paths()  # the self-signed pair the banner and the snippets name
        self.stdout.write("\n".join(quickstart.lines(creds, server, DEMO_FROM)))

    def ensure_admin(self, creds):
        users = get_user_model()
        if users.objects.filter(is_superuser=True).exists():
            return {}
        password = secrets.token_urlsafe(12)
        users.objects.create_superuser("admin", "admin@example.com", password)
        return {"admin_user": "admin", "admin_password": password}

    def ensure_server(self, creds):
        if Server.objects.filter(name=DEMO_SERVER).exists() and "smtp_access_key" in creds:
            return {}
        server = Server.objects.filter(name=DEMO_SERVER).first() or create_server(DEMO_SERVER)
        token, secret = create_smtp_token(get_stream(server, "outbound"))
        return {
            "server_id": server.id,
            "server_token": server.api_tokens[0],
            "smtp_access_key": token.access_key,
            "smtp_secret_key": secret,
        }

    def ensure_sender_domain(self):
        """The demo sender's domain, verified for the demo (see the module's docstring)."""
        name = DEMO_FROM.rpartition("@")[2]
        if Domain.objects.filter(name=name).exists():
            return
        domain = Domain.objects.create(name=name, return_path_domain=f"pm-bounces.{name}",
                                       dkim_verified=True, periodic_checks=False)  # fmt: skip
        DkimKey.generate(domain, keys.RSA, state=DkimKey.State.ACTIVE)
