from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from smtpgw.metrics import parse_address
from smtpgw.proxy import trusted_networks
from smtpgw.runner import serve
from streams.listeners import Listener, shared_addresses


class Command(BaseCommand):
    help = "Run the SMTP gateway (Postmark's transactional and broadcast SMTP endpoints)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--listen",
            action="append",
            metavar="KIND[+proxy][+tls]=HOST:PORT",
            help="A listener, repeatable; KIND is transactional or broadcast, +tls for implicit "
            "TLS, +proxy for a PROXY protocol header from a balancer in SMTP_PROXY_TRUSTED. "
            "Default: SMTP_LISTEN.",
        )
        parser.add_argument(
            "--processes",
            type=int,
            default=settings.SMTP_PROCESSES,
            help="Processes sharing the ports (SO_REUSEPORT).",
        )

        parser.add_argument(
            "--http",
            metavar="HOST:PORT",
            default=settings.SMTP_HTTP or None,
            help="Serve /healthz, /readyz and /metrics (Prometheus) for the gateway processes "
            "here. Default: SMTP_HTTP (none).",
        )

    def handle(self, *args, listen, processes, http, **options):
        specs = listen or settings.SMTP_LISTEN
        try:
            listeners = [Listener.parse(spec) for spec in specs]
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if not listeners:
            raise CommandError("No listener: give --listen or set SMTP_LISTEN.")
        shared = shared_addresses(listeners)
        if shared:
            raise CommandError(
                f"Two listeners on {', '.join(shared)}: each needs an address of its own (the "
                "processes share ports, so both would bind and split the connections)."
            )
        try:
            trusted = trusted_networks(settings.SMTP_PROXY_TRUSTED)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if any(listener.proxy for listener in listeners) and not trusted:
            raise CommandError(
                "A +proxy listener needs SMTP_PROXY_TRUSTED: the load balancers' addresses "
                "(CIDRs) whose PROXY headers are believed."
            )
        try:
            address = parse_address(http) if http else None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        raise SystemExit(serve(listeners, processes, address))
