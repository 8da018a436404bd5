"""Shared test helpers: an inbound submission as the gateway commits it, and running the tasks
that posting queues synchronously."""

from conftest import accepted_submission
from inbound import posting
from streams.services import get_stream

REPLY = (
    b"From: Jane Customer <jane@customer.example>\r\n"
    b"To: Support <{rcpt}>\r\n"
    b"Subject: Re: Your ticket #42\r\n"
    b"Date: Fri, 1 Aug 2014 16:45:32 -0400\r\n"
    b"Message-ID: <reply-1@customer.example>\r\n"
    b"In-Reply-To: <ticket-42@app.example>\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Thanks, that fixed it.\r\n"
    b"\r\n"
    b"On Thu, Jul 31, 2014 at 9:00 AM Support <support@app.example> wrote:\r\n"
    b"> Did the reset help?\r\n"
    b"> Regards, Support\r\n"
)


def inbound_address(server, box: str = "") -> str:
    from django.conf import settings

    local = f"{server.inbound_hash}+{box}" if box else server.inbound_hash
    return f"{local}@{settings.INBOUND_DOMAIN}"


def inbound_submission(server, raw: bytes | None = None, rcpt: str = "", mail_from=None):
    rcpt = rcpt or inbound_address(server, "ticket42")
    raw = raw if raw is not None else REPLY.replace(b"{rcpt}", rcpt.encode())
    return accepted_submission(
        server,
        raw,
        rcpts=[rcpt],
        endpoint="inbound",
        credential_kind="inbound",
        stream=get_stream(server, "inbound"),
        mail_from="bounces@customer.example" if mail_from is None else mail_from,
    )


class Queue:
    """Tasks posting queues, recorded as (pk, attempts, countdown) instead of a broker."""

    def __init__(self):
        self.calls: list[tuple] = []

    def __call__(self, pk, attempts, countdown=0):
        self.calls.append((pk, attempts, countdown))

    def drain(self) -> list[str]:
        """Run the tries queued so far, once each (a try that is not due yet does nothing and
        queues itself again for the rest of its wait)."""
        calls, self.calls = self.calls, []
        return [posting.post(pk, attempts) for pk, attempts, _ in calls]
