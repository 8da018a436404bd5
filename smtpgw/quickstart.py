"""What ``make run`` prints once the demo data exists: where everything listens, read from the
real settings (WEB_BIND, SMTP_LISTEN and its TLS, the certificate, SMTP_HTTP), the demo
credentials, a first message with swaks over STARTTLS, where to see it, and the one-line local
sink that Live mail can be relayed to. ``ensuredemo`` prints it; ``lines`` is a plain function
the tests read.
"""

from django.conf import settings
from django.urls import reverse

from core.hostnames import local_name_warnings
from streams import snippets
from streams.listeners import Endpoint, Listener, certificate_file

# Where the gateway's /metrics is served under `make run` when SMTP_HTTP is not set (the
# Procfile's smtp line passes the same default to runsmtp --http).
QUICKSTART_SMTP_HTTP = "127.0.0.1:9025"
# The local sink for Live mail: aiosmtpd's own debugging server prints every message it takes.
SINK_ADDRESS = "127.0.0.1:1025"
SINK_COMMAND = f".venv/bin/python -m aiosmtpd -n -l {SINK_ADDRESS}"
SINK_RELAY = f"smtp://{SINK_ADDRESS}"


def _listeners() -> list[Listener]:
    found = []
    for spec in settings.SMTP_LISTEN:
        try:
            found.append(Listener.parse(spec))
        except ValueError:
            continue
    return found


def smtp_http() -> str:
    return settings.SMTP_HTTP or QUICKSTART_SMTP_HTTP


def _url(host_port: str) -> str:
    host, _, port = host_port.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if host in ("0.0.0.0", "::"):  # noqa: S104 - a wildcard is reached on the loopback address
        host = "127.0.0.1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def first_message_target(creds: dict) -> snippets.Target | None:
    """The first transactional listener as dialled from this machine (its own address, a
    wildcard on the loopback one), a STARTTLS one first, with the demo SMTP token."""
    found = [listener for listener in _listeners() if listener.endpoint == "transactional"]
    found.sort(key=lambda listener: listener.implicit_tls)
    if not found:
        return None
    listener = found[0]
    host = listener.host
    if host in ("0.0.0.0", "::", "*", ""):  # noqa: S104 - a wildcard is dialled on loopback
        host = "127.0.0.1"
    endpoint = Endpoint("transactional", host)
    (endpoint.tls_ports if listener.implicit_tls else endpoint.starttls_ports).append(listener.port)
    return snippets.Target.of(endpoint, creds["smtp_access_key"], creds["smtp_secret_key"])


def delivery_line(live: bool) -> str:
    if not live:
        return "Sandbox: mail is recorded, not delivered; each message is in the admin"
    if settings.OUTBOUND_SMTP_RELAY:
        relay = settings.OUTBOUND_SMTP_RELAY
        shown = relay.split("@", 1)[1] if "@" in relay else relay.split("://", 1)[-1]
        return f"Live: relayed to {shown}"
    if settings.OUTBOUND_DIRECT_MX:
        return "Live: delivered to each recipient domain's MX hosts"
    return "Live, but no OUTBOUND_SMTP_RELAY and OUTBOUND_DIRECT_MX off: mail waits, deferred"


def lines(creds: dict, server, demo_from: str) -> list[str]:
    """The banner, one string per line."""
    web = settings.WEB_URL
    cert, self_signed = certificate_file()
    out = ["", f"  Admin:          {web}/admin/"]
    if "admin_user" in creds:
        out.append(f"  Login:          {creds['admin_user']} / {creds['admin_password']}")
    live = server.delivery_type == "Live"
    out += [
        f"  Demo server:    ID {server.pk}, {delivery_line(live)}",
        f"  Server token:   {creds['server_token']}",
        f"  SMTP token:     {creds['smtp_access_key']} / {creds['smtp_secret_key']}",
        f"  HTTP API:       {web}/email (X-Postmark-Server-Token)",
    ]
    for listener in _listeners():
        tls = "implicit TLS" if listener.implicit_tls else "STARTTLS"
        if listener.endpoint == "bounce":
            tls = "bounce MX, STARTTLS"
        out.append(f"  SMTP {listener.endpoint}: {listener.host}:{listener.port} ({tls})")
    where = f"self-signed, {cert}" if self_signed else f"SMTP_TLS_CERT {cert}"
    out.append(f"  Certificate:    {where}")
    out += [
        f"  Metrics:        {web}/metrics (workers), {_url(smtp_http())}/metrics (gateway)",
        "",
        "  Send a first message (STARTTLS; swaks does not check the certificate):",
    ]
    target = first_message_target(creds)
    if target is not None:
        for n, line in enumerate(
            snippets.swaks(target).replace(snippets.FROM, demo_from).split("\n")
        ):
            out.append(("    " if n == 0 else "      ") + line.strip())
    changelist = reverse("admin:outbound_outboundmessage_changelist")
    out.append(f"  See it:         {web}{changelist}")
    out += [
        "",
        "  Live mail to a local sink that prints each message (another terminal):",
        f"    {SINK_COMMAND}",
        f"    OUTBOUND_SMTP_RELAY={SINK_RELAY} make run   # then: manage.py ensuredemo --live",
        "  Other ports: copy .env.ports.example to .env.",
        f"  Sender:         {demo_from.rpartition('@')[2]} is verified for the demo only; add "
        "your own domain with manage.py createdomain.",
    ]
    warnings = local_name_warnings()
    if warnings:
        out += ["", "  Names only this machine knows (fine for a trial, not for mail to others):"]
        out += [f"  - {w.sentence}" for w in warnings]
    out.append("")
    return out
