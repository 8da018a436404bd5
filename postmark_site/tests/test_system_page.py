"""The admin's System page: the queue gauges with their trend, the broker's queues, deferred
deliveries by destination and the webhook backlog by URL; for staff who see every server."""

import pytest
from django.urls import reverse

from messages.models import QueueSample
from messages.tasks import sample_queues
from postmark_site.tests.system_seed import seed_waiting_work
from servers.models import StaffServerAccess

pytestmark = pytest.mark.django_db


def test_the_page_shows_where_mail_waits(admin_client, server):
    seed_waiting_work(server)
    response = admin_client.get(reverse("admin:system"))
    assert response.status_code == 200
    page = response.content.decode()
    gauges = {g.name: g for g in response.context["gauges"]}
    assert gauges["submissions_waiting"].count == 3
    assert gauges["recipients_deferred"].count == 6
    assert gauges["webhook_deliveries_pending"].count == 4
    assert gauges["recipients_deferred"].hour_ago == 5  # the sample taken an hour ago
    assert gauges["recipients_deferred"].change == 1
    assert 49 * 60 < gauges["submissions_waiting"].oldest_age_seconds < 51 * 60
    assert "/admin/outbound/submission/" in gauges["submissions_waiting"].oldest_url
    assert page.count('class="pm-spark"') == len(gauges)  # one trend line per gauge
    destinations = [(d.domain, d.recipients) for d in response.context["destinations"]]
    assert destinations == [("slow.example", 4), ("busy.example", 2)]
    assert "greylisted" in page
    backlog = [(w["url"], w["pending"]) for w in response.context["webhook_backlog"]]
    assert backlog == [("https://hooks.example.com/postmark", 3), ("https://crm.example.org/in", 1)]
    assert "s3cret" not in page
    queues = {q["name"]: q["messages"] for q in response.context["broker_queues"]}
    assert set(queues) == {"celery", "processing", "delivery", "webhooks"}
    assert 'id="nav-system"' in page


def test_staff_limited_to_some_servers_may_not_see_it(client, django_user_model, server):
    user = django_user_model.objects.create_user("limited", password="pw-limited-1", is_staff=True)
    access = StaffServerAccess.objects.create(user=user)
    access.servers.add(server)
    client.force_login(user)
    assert client.get(reverse("admin:system")).status_code == 403


def test_the_beat_samples_the_gauges(server):
    seed_waiting_work(server)
    QueueSample.objects.all().delete()
    sample = QueueSample.objects.get(pk=sample_queues())
    assert sample.values["submissions_waiting"]["count"] == 3
    assert sample.values["recipients_deferred"]["count"] == 6
    assert sample.values["webhook_deliveries_pending"]["count"] == 4
    assert sample.values["submissions_waiting"]["oldest_age_seconds"] > 0


def test_old_samples_are_forgotten(server, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.SYSTEM_SAMPLE_RETENTION_DAYS = 1
    QueueSample.objects.create(taken_at=timezone.now() - timedelta(days=2), values={})
    sample_queues()
    assert QueueSample.objects.count() == 1


def test_domains_whose_dns_broke_are_listed_longest_broken_first(admin_client):
    from django.utils import timezone

    from domains.models import Domain

    now = timezone.now()
    Domain.objects.create(name="fine.example", dkim_verified=True)
    Domain.objects.create(
        name="late.example", dkim_verified=False, dns_problem="DKIM: no TXT record",
        dns_problem_since=now - timezone.timedelta(hours=1),
    )  # fmt: skip
    Domain.objects.create(
        name="early.example", dkim_verified=True, dns_problem="Return-Path: timeout",
        dns_problem_since=now - timezone.timedelta(days=2),
    )  # fmt: skip
    response = admin_client.get(reverse("admin:system"))
    assert [d.name for d in response.context["broken_domains"]] == [
        "early.example", "late.example",
    ]  # fmt: skip
    page = response.content.decode()
    assert "DKIM: no TXT record" in page and "refused (DKIM not verified)" in page
    assert "fine.example" not in page


def test_no_broken_domain_says_so(admin_client):
    response = admin_client.get(reverse("admin:system"))
    assert "Every domain's records were as expected" in response.content.decode()
