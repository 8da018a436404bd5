"""Fixtures of the pipeline's tests: a Live server and a real local SMTP sink to relay to."""

import pytest

from outbound.tests.sinks import SmtpSink
from servers.models import DeliveryType


@pytest.fixture
def live(server):
    server.delivery_type = DeliveryType.LIVE
    server.save()
    return server


@pytest.fixture
def sink(settings):
    with SmtpSink() as running:
        settings.OUTBOUND_SMTP_RELAY = f"smtp://127.0.0.1:{running.port}?starttls=never"
        yield running
