"""POST /email and POST /email/batch: Postmark's send API (compat §5).

Each request is bounded before it is parsed (``api.bounds``: its size, and a batch's items), and
each message's recipients are counted before it is built. Each message is built into MIME
(``api.sending``), held to the server's sending limits (``messages.limits``, as over SMTP: an
item over them fails alone with ErrorCode 429), then judged and, when accepted, stored processed
by ``messages.immediate`` with the rules SMTP's processing applies, in one transaction that
begins once they are parsed: a 200 means the message is committed. A batch is one transaction;
its items are answered one by one, in order, with HTTP 200 whatever their ErrorCodes.

Postmark's test token ``POSTMARK_API_TEST`` names no server: its messages are checked by every
rule that needs none (``messages.immediate.judge_without_server``), nothing is stored, and its
requests are limited per client address (``api.throttling``).
"""

import logging
import uuid

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from api.auth import SERVER_TOKEN_HEADER, ServerPrincipal, ServerTokenAuthentication
from api.bounds import Bounds
from api.errors import INVALID_JSON, INVALID_JSON_MESSAGE, RATE_LIMITED, ApiError
from api.sending import Composed, Refused, compose, submission_for
from bounces.serializers import timestamp
from core.logcontext import about_message
from messages import immediate, limits

send_log = logging.getLogger("api.send")

# Postmark's token that validates a request without storing or sending anything.
TEST_TOKEN = "POSTMARK_API_TEST"
TEST_ACCEPTED = "Test job accepted"
MAX_BATCH = 500
TOO_MANY_MESSAGES = 410


def too_many_messages(count: int, exact: bool = True) -> ApiError:
    has = count if exact else f"at least {count}"
    return ApiError(
        TOO_MANY_MESSAGES, f"A batch may hold at most {MAX_BATCH} messages; this one has {has}."
    )


# A message's JSON holds far fewer values than this (50 recipients, 10 metadata fields, a few
# hundred headers and attachments); a batch as many per message on average.
EMAIL_BOUNDS = Bounds(max_bytes_setting="API_MAX_EMAIL_REQUEST_SIZE", max_values=10_000)
BATCH_BOUNDS = Bounds(
    max_bytes_setting="API_MAX_BATCH_REQUEST_SIZE",
    max_values=500 * MAX_BATCH,
    max_items=MAX_BATCH,
    too_many_items=too_many_messages,
)


class SendTokenAuthentication(ServerTokenAuthentication):
    """A server token, or Postmark's test token (``request.auth`` is then None)."""

    def authenticate(self, request):
        if (request.headers.get(SERVER_TOKEN_HEADER) or "").strip() == TEST_TOKEN:
            return ServerPrincipal(None), None
        return super().authenticate(request)


def _token(request) -> str:
    return (request.headers.get(SERVER_TOKEN_HEADER) or "").strip()


def _echo_to(item) -> str:
    value = item.get("To") if isinstance(item, dict) else None
    return value if isinstance(value, str) else ""


def _success(composed: Composed, message_id, submitted_at, message: str) -> dict:
    return {
        "To": composed.to,
        "SubmittedAt": timestamp(submitted_at),
        "MessageID": str(message_id),
        "ErrorCode": 0,
        "Message": message,
    }


def _send(request, items: list) -> list[dict | Refused]:
    """The answer for each item: a success object, or the Refused to report (an item may be a
    Refused already)."""
    server = request.auth
    token = _token(request)
    return send_items(
        server, items, lambda composed: submission_for(server, composed, request, token)
    )


def send_items(server, items: list, submission_of) -> list[dict | Refused]:
    """``_send``'s work for ``server`` (None: the test token), each composed message's accept
    record made by ``submission_of(composed)``; a bulk request's items come this way too."""
    answers: list = [None] * len(items)
    pending = []  # (index, composed, submission)
    for index, item in enumerate(items):
        if isinstance(item, Refused):  # refused before it could be composed (a template's)
            answers[index] = item
            continue
        try:
            composed = compose(item)
        except Refused as refused:
            answers[index] = refused
            continue
        if server is None:
            answers[index] = _tested(composed)
            continue
        reached = limits.sending_limit_reached(server.pk) if limits.is_limited(server) else ""
        if reached:
            answers[index] = Refused(RATE_LIMITED, limits.api_refusal(reached), http_status=429)
            continue
        pending.append((index, composed, submission_of(composed)))
    if pending:
        # No transaction around it: the messages are parsed first, then stored in one.
        outcomes = immediate.accept([submission for _, _, submission in pending])
        for (index, composed, submission), outcome in zip(pending, outcomes, strict=True):
            log_send(server, submission, outcome)
            if outcome.accepted:
                answers[index] = _success(
                    composed, submission.message_id, submission.received_at, outcome.message
                )
            else:
                answers[index] = Refused(outcome.error_code, outcome.message)
    return answers


def log_send(server, submission, outcome: immediate.Outcome) -> None:
    """One line per message sent over HTTP, as the gateway writes one per SMTP transaction (logger
    ``api.send``): client, server, stream, sender, recipients, size, TLS and the answer, with the
    MessageID of an accepted message on the line and in its log context."""
    stream = outcome.stream or "-"
    result = (
        f"0 OK: queued as {submission.message_id}"
        if outcome.accepted
        else f"{outcome.error_code} {outcome.message}"
    )
    message_id = submission.message_id if outcome.accepted else None
    with about_message(message_id, server.pk, outcome.stream or None):
        send_log.info(
            "client=%s endpoint=api server=%s stream=%s from=<%s> rcpts=%d size=%d tls=%s "
            "result=%r",
            submission.client_address,
            server.pk,
            stream,
            submission.mail_from,
            len(submission.rcpt_to),
            submission.size,
            submission.tls_version or "no",
            result,
        )


def _tested(composed: Composed) -> dict | Refused:
    """The test token's answer: every check that needs no server, nothing stored."""
    outcome = immediate.judge_without_server(composed.raw, composed.recipients)
    if not outcome.accepted:
        return Refused(outcome.error_code, outcome.message)
    return _success(composed, uuid.uuid4(), timezone.now(), TEST_ACCEPTED)


class EmailView(APIView):
    authentication_classes = [SendTokenAuthentication]
    request_bounds = EMAIL_BOUNDS

    @extend_schema(
        operation_id="send_email", request=OpenApiTypes.OBJECT, responses=OpenApiTypes.OBJECT
    )
    def post(self, request):
        [answer] = _send(request, [request.data])
        if isinstance(answer, Refused):
            raise ApiError(answer.error_code, answer.message, answer.http_status)
        return Response(answer)


class EmailBatchView(APIView):
    authentication_classes = [SendTokenAuthentication]
    request_bounds = BATCH_BOUNDS

    @extend_schema(
        operation_id="send_email_batch", request=OpenApiTypes.OBJECT, responses=OpenApiTypes.OBJECT
    )
    def post(self, request):
        items = request.data
        if not isinstance(items, list):
            raise ApiError(
                INVALID_JSON, f"{INVALID_JSON_MESSAGE} A batch is a JSON array of messages."
            )
        if len(items) > MAX_BATCH:  # counted while the body was read (BATCH_BOUNDS)
            raise too_many_messages(len(items))
        answers = _send(request, items)
        return Response(
            [
                {"To": _echo_to(item), "ErrorCode": a.error_code, "Message": a.message}
                if isinstance(a, Refused)
                else a
                for item, a in zip(items, answers, strict=True)
            ]
        )
