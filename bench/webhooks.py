"""Webhook throughput: N events posted by one real Celery worker process to a local receiver.

    DATA_DIR=/tmp/whbench python -m bench.webhooks --events 2000
    DATA_DIR=/tmp/whbench python -m bench.webhooks --broker amqp://guest:guest@127.0.0.1:5672//

It migrates the database named by the settings, starts a fast threaded HTTP/1.1 receiver on
127.0.0.1, creates a server whose ``outbound`` stream has a Delivery webhook pointing at it,
records N Delivery events through ``messages.events`` (each queued by the real
``webhooks.fanout.enqueue_event``), then starts ``celery -A postmark_site worker -Q webhooks``
(one process) and waits until every delivery is ``delivered``. The rate is measured at the
receiver, from its first to its last request, so worker start-up is not counted.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.common import CELERY, SETTINGS_MODULE, Service, django_env


class FastReceiver:
    """Answers every POST with 200 on kept-alive connections and notes when it did."""

    def __init__(self):
        self.times: list[float] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                with receiver.lock:
                    receiver.times.append(time.monotonic())

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _database_url() -> str:
    from django.db import connection

    cfg = connection.settings_dict
    if cfg["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{cfg['NAME']}"
    user = cfg.get("USER") or ""
    auth = f"{user}:{cfg.get('PASSWORD') or ''}@" if user else ""
    host = cfg.get("HOST") or "127.0.0.1"
    return f"postgres://{auth}{host}:{cfg.get('PORT') or 5432}/{cfg['NAME']}"


def bench(
    events: int = 2000,
    broker_url: str = "",
    pool: str = "threads",
    concurrency: int = 8,
    prefetch: int = 32,
    timeout: float = 600.0,
    log_path: str | None = None,
) -> dict:
    """Run the benchmark; returns ``{"events", "posts_per_second", "seconds", ...}``.
    ``broker_url`` empty = the embedded filesystem queue. Needs a migrated database."""
    from django.conf import settings
    from django.db import transaction
    from django.utils import timezone

    from messages.events import record_message_event
    from messages.models import OutboundMessage
    from streams.services import create_server, get_stream
    from webhooks.models import Webhook, WebhookDelivery

    receiver = FastReceiver()
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    if broker_url:
        from postmark_site.celery import app

        app.conf.broker_url = broker_url
    server = create_server(f"webhook-bench-{uuid.uuid4().hex[:8]}")
    stream = get_stream(server, "outbound")
    hook = Webhook(stream=stream, url=f"http://127.0.0.1:{receiver.port}/hook",
                   delivery_enabled=True)  # fmt: skip
    hook.save()
    message = OutboundMessage.objects.create(
        message_id=uuid.uuid4(), server=server, stream=stream, from_address="bench@example.com",
        to=["user@example.net"], recipients=["user@example.net"], subject="bench", tag="bench",
        metadata={"run": "bench"}, content=b"Subject: bench\r\n\r\nx", received_at=timezone.now(),
    )  # fmt: skip
    queued_at = time.monotonic()
    for start in range(0, events, 500):
        with transaction.atomic():  # each event is handed to enqueue_event after the commit
            for i in range(start, min(events, start + 500)):
                record_message_event(message, "Delivery", f"user{i}@example.net", details="250 OK")
    queue_seconds = time.monotonic() - queued_at
    # The worker's DATA_DIR is this process's (inherited): with the embedded broker, that is where
    # the queue is.
    env = django_env(_database_url(), log_level="WARNING", CELERY_BROKER_URL=broker_url,
                     WEBHOOK_ALLOW_PRIVATE_URLS="true")  # fmt: skip
    args = [*CELERY, "worker", "-l", "warning", "-Q", "webhooks", "--pool", pool,
            "-c", str(concurrency), "--prefetch-multiplier", str(prefetch),
            "--without-heartbeat", "--without-gossip", "--without-mingle"]  # fmt: skip
    worker = Service("worker", args, env, log_path=Path(log_path or os.devnull))
    started = time.monotonic()
    delivered = 0
    try:
        deadline = started + timeout
        done = WebhookDelivery.objects.filter(webhook=hook, status="delivered")
        while time.monotonic() < deadline:
            delivered = done.count()
            if delivered >= events or worker.proc.poll() is not None:
                break
            time.sleep(0.2)
    finally:
        worker.stop(timeout=30)
        receiver.stop()
    times = sorted(receiver.times)
    span = (times[-1] - times[0]) if len(times) > 1 else 0.0
    return {
        "events": events,
        "delivered": delivered,
        "posts_received": len(times),
        "seconds": round(span, 3),
        "posts_per_second": round((len(times) - 1) / span, 1) if span else 0.0,
        "enqueue_seconds": round(queue_seconds, 3),
        "broker": broker_url or "filesystem",
        "pool": f"{pool} x{concurrency}",
        "prefetch_multiplier": prefetch,
        "database": _database_url().split("://")[0],
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--broker", default="", help="default: the embedded filesystem queue")
    parser.add_argument("--pool", default="threads", choices=["threads", "solo", "prefork"])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--prefetch", type=int, default=32, help="worker --prefetch-multiplier")
    parser.add_argument("--log", default=None, help="write the worker's output here")
    options = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS_MODULE)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    result = bench(options.events, options.broker, options.pool, options.concurrency,
                   options.prefetch, log_path=options.log)  # fmt: skip
    print(" ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
