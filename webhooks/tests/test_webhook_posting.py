"""Posting webhooks safely: one overall deadline per POST, SSRF refusals that fail at once, and
errors that never tell a tenant which internal address a host name resolved to."""

import socket
import threading
import time

import pytest
from django.utils import timezone

from conftest import free_port
from webhooks import client, deliveries
from webhooks.models import WebhookDelivery
from webhooks.tests.test_webhooks import (
    _delivery,  # noqa: F401 - helper
    private_ok,  # noqa: F401 - fixture
)


class Dribbler:
    """An HTTP receiver that answers one byte at a time, each just inside a socket timeout."""

    def __init__(self, gap: float):
        self.gap = gap
        self.port = free_port()
        self.server = socket.create_server(("127.0.0.1", self.port))
        self.stopped = threading.Event()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        self.server.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by stop()
                return
            threading.Thread(target=self.dribble, args=(conn,), daemon=True).start()

    def dribble(self, conn):
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
                if self.stopped.is_set():
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(self.gap)

    def stop(self):
        self.stopped.set()
        self.server.close()


def test_a_dribbling_receiver_cannot_hold_a_worker_past_the_deadline(private_ok):  # noqa: F811
    receiver = Dribbler(gap=0.3)
    try:
        started = time.monotonic()
        result = client.http_post(
            f"http://127.0.0.1:{receiver.port}/hook", b"{}", {"Content-Type": "application/json"},
            timeout=1.0,
        )  # fmt: skip
        elapsed = time.monotonic() - started
    finally:
        receiver.stop()
    assert result.status_code is None
    assert result.error == "Timed out waiting for the receiver."
    assert elapsed < 2.5  # the whole answer would have taken about 12 s


@pytest.mark.django_db
def test_a_destination_the_guard_refuses_fails_at_once_without_naming_the_address(server):
    # "localhost" resolves to a loopback address; private addresses are not allowed.
    delivery = _delivery(server, f"http://localhost:{free_port()}/hook")
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert deliveries.deliver(delivery.pk) == "failed"
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.next_attempt_at is None  # no retry schedule
    assert "loopback" in delivery.last_error
    assert "127.0.0.1" not in delivery.last_error and "::1" not in delivery.last_error
