"""Create the demo admin user, server, SMTP token and sender domain on first run, and print how
to use them.

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
from servers.models import Server
from streams.services import create_server, create_smtp_token, get_stream

DEMO_SERVER = "Demo server"
DEMO_FROM = "app@example.com"


class Command(BaseCommand):
    help = "Create the demo admin user, server and SMTP token if none exist, and print them."

    def add_arguments(self, parser):
        parser.add_argument("--web", default="http://127.0.0.1:8000")
        parser.add_argument("--smtp-host", default="127.0.0.1")
        parser.add_argument("--smtp-port", default="2525")

    def handle(self, *args, web, smtp_host, smtp_port, **options):
        path = settings.DATA_DIR / "demo-credentials.json"
        creds = json.loads(path.read_text()) if path.exists() else {}
        creds.update(self.ensure_admin(creds))
        creds.update(self.ensure_server(creds))
        self.ensure_sender_domain()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(creds, fh, indent=2)
        self.print_summary(creds, web, smtp_host, smtp_port)

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

    def print_summary(self, creds, web, smtp_host, smtp_port):
        out = self.stdout.write
        out("")
        out(f"  Admin:          {web}/admin/")
        if "admin_user" in creds:
            out(f"  Login:          {creds['admin_user']} / {creds['admin_password']}")
        out(f"  Demo server:    ID {creds['server_id']} (Sandbox: mail is recorded, not delivered)")
        out(f"  Server token:   {creds['server_token']}")
        out(f"  SMTP token:     {creds['smtp_access_key']} / {creds['smtp_secret_key']}")
        out("  Send a first message:")
        out(
            f"    swaks --server {smtp_host}:{smtp_port} --auth PLAIN"
            f" --auth-user {creds['smtp_access_key']} --auth-password {creds['smtp_secret_key']}"
            f" --from {DEMO_FROM} --to user@example.net --h-Subject hello --body 'Hello!'"
        )
        out(
            f"  Sender:         {DEMO_FROM.rpartition('@')[2]} is verified for the demo only; add "
            "your own domain with manage.py createdomain."
        )
        out("")
