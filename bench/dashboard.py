"""Admin page timings at scale: fill a throwaway PostgreSQL database with 1,000,000 messages and
100,000 bounces (``generate_series`` INSERT … SELECT, not the ORM row by row), then time GETs of
every admin page with Django's test client.

    python -m bench.dashboard [--messages 1000000] [--bounces 100000] [--repeat 5]
        [--admin-url postgres://postgres@127.0.0.1:5432/postgres]

``run()`` creates ``bench_dash_<pid>``, migrates it, fills it, times the pages and drops it again.
``fill()`` and ``time_pages()`` work on any configured database connection. Target: every page
under 300 ms (median of warm runs).
"""

import argparse
import contextlib
import os
import statistics
import sys
import time

from bench.common import POSTGRES_ADMIN_URL, django_env, throwaway_database

DEFAULT_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", POSTGRES_ADMIN_URL)
TARGET_MS = 300.0


def fill(connection, *, messages: int, bounces: int, servers: int = 10) -> dict:
    """Fill the (migrated, empty) database behind ``connection`` with ``servers`` servers and
    ``messages`` submissions, outbound messages, recipients and (95 %) Delivery events spread
    over 45 days, plus ``bounces`` bounces of mixed types. Returns row counts per table.

    The SQL names each table as its model does, so that it follows the models between apps."""
    from bounces.models import Bounce
    from messages.models import MessageEvent, OutboundMessage, Recipient, Submission
    from streams.models import MessageStream
    from streams.services import create_server

    stream_table, bounce_table = MessageStream._meta.db_table, Bounce._meta.db_table
    submission_table, message_table = Submission._meta.db_table, OutboundMessage._meta.db_table
    recipient_table, event_table = Recipient._meta.db_table, MessageEvent._meta.db_table

    for i in range(servers):
        create_server(f"Bench server {i + 1}")
    messages, bounces = int(messages), int(bounces)
    statements = [
        # Every non-inbound stream gets a share of the traffic.
        # S608: only the models' table names and integers from our own arguments are formatted in.
        f"""CREATE TEMP TABLE bench_streams AS
           SELECT id, server_id, stream_id, (row_number() OVER (ORDER BY id)) - 1 AS k
           FROM {stream_table} WHERE message_stream_type <> 'Inbound'""",  # noqa: S608
        f"""INSERT INTO {submission_table} (message_id, server_id, stream_id, endpoint,
              credential_kind, credential, auth_mechanism, client_address, client_helo,
              tls_version, mail_from, rcpt_to, size, raw, status, received_at, attempts)
           SELECT md5('m' || i)::uuid, s.server_id, s.id, 'transactional', 'smtp_token', 'bench',
              'PLAIN', '127.0.0.1', 'bench.example', 'TLSv1.3', 'app@example.com',
              jsonb_build_array('user' || (i % 50000) || '@example.net'), 200,
              convert_to('Subject: bench ' || i || E'\\r\\n\\r\\nHello', 'UTF8'), 'processed',
              now() - interval '45 days' * (i::float8 / {messages}), 1
           FROM generate_series(1, {messages}) AS i
           JOIN bench_streams s ON s.k = i % (SELECT count(*) FROM bench_streams)""",  # noqa: S608
        f"""INSERT INTO {message_table} (message_id, submission_id, server_id, stream_id,
              from_address, from_email, "to", cc, bcc, recipients, subject, tag, metadata,
              track_opens,
              track_links, message_id_header, size, content, status, received_at, processed_at,
              attempts)
           SELECT message_id, id, server_id, stream_id, 'App <app@example.com>',
              'app@example.com', rcpt_to, '[]',
              '[]', rcpt_to, 'Your order ' || id, 'tag' || (id % 50), '{{}}', false, 'None',
              '<' || message_id || '@bench.example>', 200,
              convert_to('Subject: bench', 'UTF8'), 'sent', received_at,
              received_at + interval '1 second', 1
           FROM {submission_table}""",  # noqa: S608
        f"""INSERT INTO {recipient_table} (message_id, email, status, attempts, last_reply,
              delayed_reported, updated_at)
           SELECT id, recipients->>0, 'delivered', 1, '250 2.0.0 ok', false, received_at
           FROM {message_table}""",  # noqa: S608
        f"""INSERT INTO {event_table} (server_id, stream_id, outbound_id, message_id, type,
              recipient, details, data, occurred_at)
           SELECT server_id, stream_id, id, message_id, 'Delivery', recipients->>0,
              '250 2.0.0 ok', '{{}}', received_at + interval '2 seconds'
           FROM {message_table} WHERE id % 20 <> 0""",  # noqa: S608
        f"""INSERT INTO {bounce_table} (server_id, stream_id, message_stream, type, message_id,
              email, from_address, subject, tag, metadata, details, content, bounced_at,
              inactive, can_activate)
           SELECT o.server_id, o.stream_id, s.stream_id,
              (ARRAY['HardBounce','SoftBounce','SMTPApiError','Transient',
                     'SpamComplaint'])[1 + (o.id / 7) % 5],
              o.message_id, o.recipients->>0, 'app@example.com', o.subject, o.tag, '{{}}',
              'bench bounce ' || o.id,
              'ErrorCode: 406' || E'\\r\\n' || 'Message: bench' || E'\\r\\n\\r\\n' || o.subject,
              o.received_at + interval '3 seconds', (o.id / 7) % 5 IN (0, 4),
              (o.id / 7) % 5 = 0
           FROM {message_table} o JOIN bench_streams s ON s.id = o.stream_id
           ORDER BY o.id LIMIT {bounces}""",  # noqa: S608
        "ANALYZE",
    ]
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)
    counts = {}
    with connection.cursor() as cursor:
        for table in (submission_table, message_table, recipient_table, event_table,
                      bounce_table):  # fmt: skip
            cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - the models' tables
            counts[table] = cursor.fetchone()[0]
    return counts


def admin_pages() -> list[tuple[str, str]]:
    """(label, URL) of every admin page worth timing, with real object ids. URL names come from the
    models (``admin:<app>_<model>_<view>``), so that they follow a model into another app."""
    from django.contrib.admin.templatetags.admin_urls import admin_urlname
    from django.urls import NoReverseMatch, reverse

    from bounces.models import Bounce
    from messages.models import OutboundMessage, Submission
    from servers.models import Server
    from streams.models import MessageStream, SmtpToken
    from webhooks.models import Webhook, WebhookDelivery

    def url(model, view: str, *args) -> str:
        return reverse(admin_urlname(model._meta, view), args=args)

    server = Server.objects.order_by("id").first()
    stream = MessageStream.objects.filter(server=server, stream_id="outbound").first()
    message = (
        OutboundMessage.objects.order_by("-id")
        .only("id", "message_id", "recipients", "subject")
        .first()
    )
    submission = Submission.objects.order_by("-id").only("id").first()
    bounce = Bounce.objects.order_by("-id").only("id", "email").first()
    error = Bounce.objects.filter(type="SMTPApiError").order_by("-id").only("id").first()
    if not SmtpToken.objects.exists():
        from streams.services import create_smtp_token

        create_smtp_token(stream)
    activity = url(OutboundMessage, "changelist")
    bounces = url(Bounce, "changelist")
    pages = [
        ("index", reverse("admin:index")),
        ("dashboard (7 days)", reverse("admin:dashboard")),
        ("dashboard (30 days)", reverse("admin:dashboard") + "?window=30d"),
        ("dashboard (one server)", reverse("admin:dashboard") + f"?server={server.pk}"),
        ("servers", url(Server, "changelist")),
        ("server page", url(Server, "change", server.pk)),
        ("streams", url(MessageStream, "changelist")),
        ("stream page", url(MessageStream, "change", stream.pk)),
        ("SMTP tokens", url(SmtpToken, "changelist")),
        ("submissions", url(Submission, "changelist")),
        ("submission page", url(Submission, "change", submission.pk)),
        ("activity", activity),
        ("activity: status", activity + "?status__exact=sent"),
        ("activity: server", activity + f"?server__id__exact={server.pk}"),
        ("activity: MessageID", activity + f"?q={message.message_id}"),
        ("activity: recipient search", activity + f"?q={message.recipients[0]}"),
        ("activity: sender search", activity + "?q=app@example.com"),
        ("activity: subject search", activity + f"?q={message.subject.split()[-1]}"),
        ("activity: status + received", activity + "?status=queued&received=7d"),
        ("message timeline", url(OutboundMessage, "change", message.pk)),
        ("bounces", bounces),
        ("bounces: SMTP API errors", bounces + "?type__exact=SMTPApiError"),
        ("bounces: server + inactive",
         bounces + f"?server__id__exact={server.pk}&inactive__exact=1"),
        ("bounces: email search", bounces + f"?q={bounce.email}"),
        ("bounce page", url(Bounce, "change", error.pk)),
        ("bounce raw source", url(Bounce, "dump", error.pk)),
        ("suppressions", url(MessageStream, "suppressions", stream.pk)),
    ]  # fmt: skip
    # Timed when the admin has them.
    for label, model in (("webhooks", Webhook), ("webhook deliveries", WebhookDelivery)):
        with contextlib.suppress(NoReverseMatch):
            pages.append((label, url(model, "changelist")))
    return pages


def time_pages(client, pages, repeat: int = 5) -> list[dict]:
    """GET each page ``repeat`` + 1 times; the first (cold) is reported apart from the median."""
    results = []
    for label, url in pages:
        runs = []
        status = None
        for _ in range(repeat + 1):
            started = time.perf_counter()
            response = client.get(url)
            runs.append((time.perf_counter() - started) * 1000)
            status = response.status_code
            if hasattr(response, "streaming_content"):
                b"".join(response.streaming_content)
        results.append(
            {
                "page": label,
                "url": url,
                "status": status,
                "cold_ms": runs[0],
                "median_ms": statistics.median(runs[1:]),
                "max_ms": max(runs[1:]),
            }
        )
    return results


def run(admin_url: str = DEFAULT_ADMIN_URL, *, messages: int = 1_000_000, bounces: int = 100_000,
        servers: int = 10, repeat: int = 5, out=sys.stdout) -> list[dict]:  # fmt: skip
    """Create ``bench_dash_<pid>``, fill it, time the admin pages, drop it. Must run in a process
    where Django is not set up yet (it configures Django for that database)."""
    name = f"bench_dash_{os.getpid()}"
    with contextlib.ExitStack() as stack:
        url = throwaway_database(stack, name, admin_url=admin_url)
        # Django runs in this very process: its settings read this environment at setup.
        os.environ.update(django_env(url, log_level=os.environ.get("LOG_LEVEL", "WARNING")))
        import django

        django.setup()
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.db import connection, connections
        from django.test import Client

        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        counts = fill(connection, messages=messages, bounces=bounces, servers=servers)
        print(f"filled {name} in {time.perf_counter() - started:.1f} s: {counts}", file=out)
        user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench")
        client = Client()
        client.force_login(user)
        results = time_pages(client, admin_pages(), repeat=repeat)
        print(f"{'page':34} {'status':>6} {'cold ms':>8} {'median ms':>10} {'max ms':>8}", file=out)
        for r in results:
            flag = "" if r["median_ms"] <= TARGET_MS else "  > 300 ms"
            print(f"{r['page']:34} {r['status']:>6} {r['cold_ms']:8.1f} {r['median_ms']:10.1f} "
                  f"{r['max_ms']:8.1f}{flag}", file=out)  # fmt: skip
        connections.close_all()
        return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin-url", default=DEFAULT_ADMIN_URL)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--bounces", type=int, default=100_000)
    parser.add_argument("--servers", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    results = run(args.admin_url, messages=args.messages, bounces=args.bounces,
                  servers=args.servers, repeat=args.repeat)  # fmt: skip
    slow = [r for r in results if r["median_ms"] > TARGET_MS or r["status"] != 200]
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
