"""The Bulk API's work (compat §14): a request checked whole and stored (``accept_bulk``), then
sent item by item in the background (``send_bulk``, the task ``api.bulk.send``).

Each item is the request's shared fields with the item's To, Cc, Bcc, and its Metadata and
Headers winning over the shared ones; its Subject, HtmlBody and TextBody are the request's,
rendered as Mustachio templates with the item's TemplateModel (``mailtemplates.rendering``), or
the named template's. The message then takes the very path of POST /email
(``api.views.email.send_items``): composing, the sending limits, judging, storing, delivery.

Items go in chunks; each chunk's messages have MessageIDs fixed by their place in the request,
so a chunk sent again after a lost worker finds its messages stored and counts them once. An
item that fails (a bad address, a model that cannot be rendered, a limit) fails alone; every item
ends released or failed, counted in the request's status.

Never lost: a request is always under a lease (``core.leases``), its queued task's or the
worker's that sends it (``claim``, renewed after every chunk). Should the task be lost before a
worker takes it (a broker restart) or its worker die or hang, the lease runs out after
``BULK_LEASE_SECONDS`` and the sweep (``requeue_stalled``, the beat's ``api.bulk.sweep``) queues
it again; the next try goes on from the last chunk counted. A try that stopped with the old
worker's claim superseded stops at its next chunk. After ``BULK_ATTEMPTS`` tries that did not
finish, the request ends Failed, its unsent items counted failed and the reason in its status.
"""

import base64
import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from api.errors import ApiError
from api.sending import Refused, api_submission
from api.views.email import send_items
from core import leases
from core.db import is_database_unavailable
from mailtemplates import services
from mailtemplates.mustachio import TemplateError, check_model
from mailtemplates.rendering import inline_css, render_message, render_part
from messages.models import BulkRequest, Submission
from streams.models import MessageStream, StreamType

log = logging.getLogger(__name__)

VALIDATION = 11
NOT_FOUND = 12
BAD_PAGINATION_KEY = 13
CHUNK = 100
KEPT_ERRORS = 100
MAX_REASON = 500
WAITING = (BulkRequest.Status.ACCEPTED, BulkRequest.Status.PROCESSING)
CONTENT = ("subject", "htmlbody", "textbody")
TEMPLATE = ("templateid", "templatealias")
ITEM_FIELDS = ("to", "cc", "bcc", "templatemodel", "metadata", "headers")


def _invalid(errors: dict) -> ApiError:
    error = ApiError(VALIDATION, "The request is invalid: see Errors.")
    error.errors = {
        field: [{"ErrorCode": VALIDATION, "Message": message}] for field, message in errors.items()
    }
    return error


def _lower(data: dict) -> dict:
    return {str(k).lower(): v for k, v in data.items()}


def _stream(server, name) -> MessageStream | None:
    streams = MessageStream.objects.filter(server=server, archived_at=None)
    if name:
        return streams.filter(stream_id=name).first()
    return streams.filter(message_stream_type=StreamType.BROADCASTS).order_by("created_at").first()


def accept_bulk(server, data, *, credential: str, client_address: str, tls: str) -> BulkRequest:
    """The stored request, or ApiError (422, ErrorCode 11 with Errors by field): nothing is
    stored for an invalid request."""
    if not isinstance(data, dict):
        raise _invalid({"Messages": "The body must be a JSON object with a 'Messages' array."})
    fields = _lower(data)
    errors = {}
    if not isinstance(fields.get("from"), str) or not fields["from"].strip():
        errors["From"] = "The 'From' field is required."
    items = fields.get("messages")
    limit = settings.API_MAX_BULK_MESSAGES
    if not isinstance(items, list) or not items:
        errors["Messages"] = "The 'Messages' field must be a non-empty array."
    elif len(items) > limit:
        errors["Messages"] = f"A bulk request may hold at most {limit} messages."
    elif not all(isinstance(item, dict) for item in items):
        errors["Messages"] = "Each item of 'Messages' must be a JSON object."
    elif not all(isinstance(_lower(i).get("to"), str) and _lower(i)["to"] for i in items):
        errors["Messages"] = "Each item of 'Messages' needs a 'To' address."
    stream = _stream(server, fields.get("messagestream"))
    if stream is None or stream.message_stream_type != StreamType.BROADCASTS:
        errors["MessageStream"] = "The 'MessageStream' must be a Broadcasts stream of this server."
    templated = any(fields.get(key) not in (None, "") for key in TEMPLATE)
    subject = fields.get("subject") or ""
    if templated:
        if any(fields.get(key) is not None for key in CONTENT):
            errors["Subject"] = "Subject, HtmlBody and TextBody cannot be given with a template."
        else:
            try:
                template = services.for_sending(
                    server, fields.get("templateid"), fields.get("templatealias")
                )
                subject = template.subject or ""
            except services.TemplateProblem as problem:
                errors["TemplateId"] = problem.message
    elif not (fields.get("htmlbody") or fields.get("textbody")):
        errors["HtmlBody"] = "Provide either an 'HtmlBody' or a 'TextBody', or a template."
    if errors:
        raise _invalid(errors)
    content = {k: v for k, v in data.items() if str(k).lower() not in ("messages", "messagestream")}
    return BulkRequest.objects.create(
        id=uuid.uuid4(),
        server=server,
        stream_id=stream.stream_id,
        subject=subject if isinstance(subject, str) else "",
        content=content,
        items=items,
        credential=credential,
        client_address=client_address,
        tls_version=tls,
        total=len(items),
        # Queued: its task is due within a lease, after which the sweep queues it again.
        leased_until=_lease_until(),
    )


def _merged_headers(shared, own) -> list:
    own = own if isinstance(own, list) else []
    names = {str(h.get("Name", "")).lower() for h in own if isinstance(h, dict)}
    shared = shared if isinstance(shared, list) else []
    kept = [
        h for h in shared if not isinstance(h, dict) or str(h.get("Name", "")).lower() not in names
    ]
    return kept + own


def bulk_message(bulk: BulkRequest, item: dict) -> dict | Refused:
    """The /email message one item stands for, or the Refused it fails with."""
    content = {k: v for k, v in bulk.content.items()}
    shared = _lower(content)
    own = _lower(item)
    model = own.get("templatemodel")
    model = {} if model is None else model
    message = {
        k: v
        for k, v in content.items()
        if str(k).lower() not in (*CONTENT, *TEMPLATE, "inlinecss", "metadata", "headers")
    }
    for key, name in (("to", "To"), ("cc", "Cc"), ("bcc", "Bcc")):
        if own.get(key) is not None:
            message[name] = own[key]
    metadata = (
        dict(shared.get("metadata") or {}) if isinstance(shared.get("metadata"), dict) else {}
    )
    if isinstance(own.get("metadata"), dict):
        metadata.update(own["metadata"])
    if metadata:
        message["Metadata"] = metadata
    headers = _merged_headers(shared.get("headers"), own.get("headers"))
    if headers:
        message["Headers"] = headers
    message["MessageStream"] = bulk.stream_id
    inline = shared.get("inlinecss") is not False
    try:
        if not isinstance(model, dict):
            raise TemplateError("The 'TemplateModel' field must be a JSON object.")
        if any(shared.get(key) not in (None, "") for key in TEMPLATE):
            template = services.for_sending(
                bulk.server, shared.get("templateid"), shared.get("templatealias")
            )
            rendered = render_message(template, services.layout_of(template), model, inline)
            subject, html, text = rendered.subject, rendered.html_body, rendered.text_body
        else:
            check_model(model)
            subject = render_part(shared.get("subject"), model, False)
            html = render_part(shared.get("htmlbody"), model, True)
            text = render_part(shared.get("textbody"), model, False)
            if html and inline:
                html = inline_css(html)
    except services.TemplateProblem as problem:
        return Refused(problem.error_code, problem.message)
    except TemplateError as error:
        return Refused(services.INVALID, f"The template could not be rendered: {error}")
    message.update(Subject=subject, HtmlBody=html or None, TextBody=text or None)
    return {k: v for k, v in message.items() if v is not None}


def item_message_id(bulk: BulkRequest, index: int) -> uuid.UUID:
    return uuid.uuid5(bulk.id, str(index))


def _send_chunk(bulk: BulkRequest, start: int, items: list) -> list[dict | Refused | None]:
    """Each item's answer; None for one stored by an earlier try of this chunk."""
    ids = [item_message_id(bulk, start + n) for n in range(len(items))]
    stored = set(Submission.objects.filter(message_id__in=ids).values_list("message_id", flat=True))
    todo = [n for n, message_id in enumerate(ids) if message_id not in stored]
    messages = []
    for n in todo:
        try:
            messages.append(bulk_message(bulk, items[n]))
        except Exception as exc:  # one bad item never fails the others
            log.exception("bulk %s item %d could not be built", bulk.id, start + n)
            messages.append(Refused(VALIDATION, f"The message could not be built: {exc}"))
    slots = iter(ids[n] for n in todo)
    answers = send_items(
        bulk.server,
        messages,
        lambda composed: api_submission(
            bulk.server,
            composed,
            credential=bulk.credential,
            client_address=bulk.client_address,
            tls_version=bulk.tls_version,
            message_id=next(slots),
        ),
    )
    result: list = [None] * len(items)
    for n, answer in zip(todo, answers, strict=True):
        result[n] = answer
    return result


def _lease_until(now=None):
    return (now or timezone.now()) + timedelta(seconds=settings.BULK_LEASE_SECONDS)


def claim(bulk_id, now=None) -> BulkRequest | None:
    """Take an unfinished request for this worker, counting a try, unless another worker holds
    it (claimed, its lease running); None then, or when it is finished or unknown."""
    now = now or timezone.now()
    taken = (
        BulkRequest.objects.filter(id=bulk_id, status__in=WAITING)
        .filter(Q(claimed_at=None) | Q(leased_until=None) | Q(leased_until__lte=now))
        .update(
            claimed_at=now,
            leased_until=_lease_until(now),
            attempts=F("attempts") + 1,
            status=BulkRequest.Status.PROCESSING,
        )
    )
    if not taken:
        return None
    return BulkRequest.objects.select_related("server").get(id=bulk_id)


def send_bulk(bulk_id) -> str:
    """Sends what is left of a bulk request, chunk by chunk; its counts move (and its lease is
    renewed) after each. A try beyond ``BULK_ATTEMPTS`` fails the request instead."""
    bulk = claim(bulk_id)
    if bulk is None:
        return "nothing to do: finished, or held by another worker"
    if bulk.attempts > settings.BULK_ATTEMPTS:
        fail(bulk.id)
        return "failed: out of tries"
    try:
        return _send(bulk)
    except Exception as exc:
        _stopped(bulk, exc)
        raise


def _send(bulk: BulkRequest) -> str:
    mine = BulkRequest.objects.filter(id=bulk.id, claimed_at=bulk.claimed_at)
    items = bulk.items
    while bulk.processed < bulk.total:
        start = bulk.processed
        chunk = items[start : start + CHUNK]
        answers = _send_chunk(bulk, start, chunk)
        for n, answer in enumerate(answers):
            if isinstance(answer, Refused):
                bulk.failed += 1
                if len(bulk.errors) < KEPT_ERRORS:
                    to = _lower(chunk[n]).get("to") if isinstance(chunk[n], dict) else ""
                    bulk.errors.append(
                        {
                            "Index": start + n,
                            "To": to,
                            "ErrorCode": answer.error_code,
                            "Message": answer.message,
                        }
                    )
            else:
                bulk.released += 1
        bulk.processed = start + len(chunk)
        renewed = mine.update(
            processed=bulk.processed,
            released=bulk.released,
            failed=bulk.failed,
            errors=bulk.errors,
            leased_until=_lease_until(),
        )
        if not renewed:
            # The lease ran out and the sweep gave the request to another try, which goes on
            # from the last chunk counted (the messages stored meanwhile are found, not sent).
            return "stopped: taken over by another try"
    mine.update(
        status=BulkRequest.Status.COMPLETED,
        completed_at=timezone.now(),
        items=[],
        leased_until=None,
    )
    return f"{bulk.released} released, {bulk.failed} failed"


def _stopped(bulk: BulkRequest, exc: BaseException) -> None:
    """A try that raised: an unavailable database is no fault of the request (its try is given
    back, and the task's retry may claim it at once); any other error is noted for the reason
    the request may end with, and the sweep tries it again. Best effort: the database may be
    gone, and then the lease simply runs out."""
    mine = BulkRequest.objects.filter(id=bulk.id, claimed_at=bulk.claimed_at)
    try:
        if is_database_unavailable(exc):
            mine.update(claimed_at=None, attempts=F("attempts") - 1)
        else:
            log.exception("bulk %s: the try stopped", bulk.id)
            reason = f"{type(exc).__name__}: {exc}"[:MAX_REASON]
            mine.update(claimed_at=None, leased_until=timezone.now(), failure_reason=reason)
    except Exception:
        log.exception("bulk %s: the stopped try could not be noted", bulk.id)


def fail(bulk_id, now=None, *, only_free: bool = False) -> int:
    """End an unfinished request Failed, out of tries: the items not sent yet count as failed,
    and the reason says why (with the last try's error, when one was noted)."""
    now = now or timezone.now()
    rows = BulkRequest.objects.filter(id=bulk_id, status__in=WAITING)
    if only_free:
        rows = leases.free(rows, now)
    found = rows.values_list("attempts", "failure_reason").first()
    if found is None:
        return 0
    attempts, last = found
    tries = min(attempts, settings.BULK_ATTEMPTS)
    reason = f"Stopped after {tries} tries that did not finish."
    if last:
        reason += f" The last error: {last}"
    return rows.update(
        status=BulkRequest.Status.FAILED,
        completed_at=now,
        failed=F("failed") + F("total") - F("processed"),
        failure_reason=reason,
        items=[],
        leased_until=None,
        claimed_at=None,
    )


def requeue_stalled(limit: int, now=None) -> list:
    """The sweep: the unfinished requests whose lease ran out (their task lost before a worker
    took it, or their worker gone or stuck for ``BULK_LEASE_SECONDS``). Those out of tries end
    Failed; up to ``limit`` of the others are taken (queued, due within a lease) and their ids
    returned, to be queued again; they resume where they stopped."""
    now = now or timezone.now()
    stalled = leases.free(
        BulkRequest.objects.filter(
            status__in=WAITING,
            submitted_at__lt=now - timedelta(seconds=settings.BULK_LEASE_SECONDS),
        ),
        now,
    )
    for bulk_id in stalled.filter(attempts__gte=settings.BULK_ATTEMPTS).values_list(
        "id", flat=True
    ):
        fail(bulk_id, now, only_free=True)
    if limit <= 0:
        return []
    candidates = list(
        stalled.order_by("attempts", "submitted_at").values_list("id", flat=True)[:limit]
    )
    until = _lease_until(now)
    # One UPDATE of the rows still free: a worker that renewed its lease meanwhile keeps them.
    leases.free(BulkRequest.objects.filter(id__in=candidates), now).update(
        leased_until=until, claimed_at=None
    )
    taken = set(
        BulkRequest.objects.filter(id__in=candidates, leased_until=until).values_list(
            "id", flat=True
        )
    )
    return [bulk_id for bulk_id in candidates if bulk_id in taken]


def _key_of(bulk: BulkRequest) -> str:
    mark = f"{bulk.submitted_at.isoformat()}|{bulk.id}"
    return base64.urlsafe_b64encode(mark.encode()).decode().rstrip("=")


def _after_key(key: str) -> tuple[datetime, uuid.UUID]:
    try:
        mark = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4)).decode()
        when, bulk_id = mark.split("|")
        moment = datetime.fromisoformat(when)
        if moment.tzinfo is None:
            raise ValueError(when)
        return moment, uuid.UUID(bulk_id)
    except (ValueError, UnicodeError):
        raise ApiError(BAD_PAGINATION_KEY, "The 'paginationKey' is not valid.") from None


def list_bulk(server, count: int, key: str | None = None) -> dict:
    """GET /email/bulk: the server's requests, newest first, ``count`` a page; ``PaginationKey``
    (opaque: where the page ended) asks for the next page, and is absent on the last one."""
    rows = (
        BulkRequest.objects.filter(server=server)
        .defer("items", "content", "errors")
        .order_by("-submitted_at", "-id")
    )
    if key is not None:
        moment, bulk_id = _after_key(key)
        rows = rows.filter(Q(submitted_at__lt=moment) | Q(submitted_at=moment, id__lt=bulk_id))
    page = list(rows[: count + 1])
    answer = {"Requests": [status_of(bulk, errors=False) for bulk in page[:count]]}
    if len(page) > count:
        answer["PaginationKey"] = _key_of(page[count - 1])
    return answer


def status_of(bulk: BulkRequest, *, errors: bool = True) -> dict:
    """GET /email/bulk/{id} (compat §14: ``Id``, not ``ID``), and each of GET /email/bulk's
    ``Requests`` (without the failures of its items)."""
    from bounces.serializers import timestamp

    done = 100.0 if not bulk.total else round(100.0 * bulk.processed / bulk.total, 2)
    answer = {
        "Id": str(bulk.id),
        "SubmittedAt": timestamp(bulk.submitted_at),
        "TotalMessages": bulk.total,
        "PercentageCompleted": done,
        "Status": bulk.status,
        "ReleasedCount": bulk.released,
        "FailedCount": bulk.failed,
        "Subject": bulk.subject,
    }
    if errors and bulk.errors:
        answer["Errors"] = bulk.errors
    if bulk.status == BulkRequest.Status.FAILED and bulk.failure_reason:
        answer["FailureReason"] = bulk.failure_reason
    return answer
