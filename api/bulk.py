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
"""

import logging
import uuid

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from api.errors import ApiError
from api.sending import Refused, api_submission
from api.views.email import send_items
from mailtemplates import services
from mailtemplates.mustachio import TemplateError, check_model
from mailtemplates.rendering import inline_css, render_message, render_part
from messages.models import BulkRequest, Submission
from streams.models import MessageStream, StreamType

log = logging.getLogger(__name__)

VALIDATION = 11
NOT_FOUND = 12
CHUNK = 100
KEPT_ERRORS = 100
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


def send_bulk(bulk_id) -> str:
    """Sends what is left of a bulk request, chunk by chunk; its counts move after each."""
    bulk = BulkRequest.objects.select_related("server").filter(id=bulk_id).first()
    if bulk is None or bulk.status in (BulkRequest.Status.COMPLETED, BulkRequest.Status.FAILED):
        return "nothing to do"
    BulkRequest.objects.filter(id=bulk.id).update(status=BulkRequest.Status.PROCESSING)
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
        with transaction.atomic():
            BulkRequest.objects.filter(id=bulk.id).update(
                processed=bulk.processed,
                released=bulk.released,
                failed=bulk.failed,
                errors=bulk.errors,
            )
    BulkRequest.objects.filter(id=bulk.id).update(
        status=BulkRequest.Status.COMPLETED, completed_at=timezone.now(), items=[]
    )
    return f"{bulk.released} released, {bulk.failed} failed"


def status_of(bulk: BulkRequest) -> dict:
    """GET /email/bulk/{id} (compat §14: ``Id``, not ``ID``)."""
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
    if bulk.errors:
        answer["Errors"] = bulk.errors
    return answer
