"""The workers' metrics on the web app's /metrics after real mail went through a real gateway, a
real Celery worker and a real SMTP sink: every counter moved by what happened, once."""

import pytest

from conftest import MESSAGE, send, subprocess_env, wait_for
from delivery.tests.sinks import SmtpSink
from messages.models import Recipient, Submission
from servers.models import DeliveryType
from smtpgw.tests.metrics_scrape import scrape

pytestmark = pytest.mark.django_db(transaction=True)


def test_worker_metrics_add_up(live_server, gateway, creds, start_process):
    creds.server.delivery_type = DeliveryType.LIVE
    creds.server.save()
    with SmtpSink() as sink:
        worker = start_process(
            ["-m", "celery", "-A", "postmark_site", "worker", "-l", "info", "--pool", "threads"],
            env=subprocess_env(
                CELERY_BROKER_URL="",
                OUTBOUND_SMTP_RELAY=f"smtp://127.0.0.1:{sink.port}?starttls=never",
            ),
            name="worker",
        )
        worker.wait_for("ready", timeout=60)
        before = scrape(live_server.url + "/metrics")
        client = gateway.smtp()
        client.login(creds.server_token, creds.server_token)  # the stream comes from headers
        for i in range(4):
            send(client, rcpts=[f"ok{i}@example.net"])
        send(client, b"X-PM-Message-Stream: does-not-exist\r\n" + MESSAGE)  # an SMTPApiError
        client.quit()
        wait_for(
            lambda: (
                Recipient.objects.filter(status=Recipient.Status.DELIVERED).count() == 4
                and not Submission.objects.filter(status="accepted").exists()
            ),
            what="processing and delivery",
        )

        def settled():
            now = scrape(live_server.url + "/metrics")
            return now.value("postmark_delivery_outcomes_total", outcome="Delivered") - (
                before.value("postmark_delivery_outcomes_total", outcome="Delivered")
            ) == 4 and now.value("postmark_worker_tasks_total", result="success") > before.value(
                "postmark_worker_tasks_total", result="success"
            )

        wait_for(settled, timeout=10, what="the counters")  # on_commit runs after the commit
        after = scrape(live_server.url + "/metrics")

    def moved(name, **labels):
        return after.value(name, **labels) - before.value(name, **labels)

    assert moved("postmark_processing_submissions_total", result="processed") == 4
    assert moved("postmark_processing_submissions_total", result="failed") == 1
    assert moved("postmark_processing_latency_seconds_count") == 5
    assert moved("postmark_delivery_outcomes_total", outcome="Delivered") == 4
    assert moved("postmark_delivery_outcomes_total", outcome="SMTPApiError") == 0  # not delivery
    assert moved("postmark_delivery_latency_seconds_count") == 4
    assert (
        moved(
            "postmark_worker_tasks_total",
            task="outbound.tasks.process_submissions",
            result="success",
        )
        >= 1
    )
    assert (
        moved("postmark_worker_tasks_total", task="outbound.tasks.deliver", result="success") >= 1
    )
    assert moved("postmark_worker_task_seconds_count", task="outbound.tasks.deliver") >= 1
    assert after.value("postmark_queue_submissions_waiting") == 0
    assert after.value("postmark_queue_recipients_deferred") == 0
    assert len(sink.messages) == 4
