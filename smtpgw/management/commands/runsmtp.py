from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from smtpgw.runner import serve
from streams.listeners import Listener


class Command(BaseCommand):
    help = "Run the SMTP gateway (Postmark's transactional and broadcast SMTP endpoints)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--listen",
            action="append",
            metavar="KIND[+tls]=HOST:PORT",
            help="A listener, repeatable; KIND is transactional or broadcast, +tls for implicit "
            "TLS. Default: SMTP_LISTEN.",
        )
        parser.add_argument(
            "--processes",
            type=int,
            default=settings.SMTP_PROCESSES,
            help="Processes sharing the ports (SO_REUSEPORT).",
        )

    def handle(self, *args, listen, processes, **options):
        specs = listen or settings.SMTP_LISTEN
        try:
            listeners = [Listener.parse(spec) for spec in specs]
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if not listeners:
            raise CommandError("No listener: give --listen or set SMTP_LISTEN.")
        raise SystemExit(serve(listeners, processes))
