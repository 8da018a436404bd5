"""POST /email/withTemplate and POST /email/batchWithTemplates (compat §9.8): each message's
template is rendered with its TemplateModel (``mailtemplates.rendering``), and the rendered
Subject, HtmlBody and TextBody go, with the message's other fields, through the very path of
POST /email (``api.views.email``): composing, the sending limits, judging, the accept record,
processing and delivery. A batch answers each item in order; one bad item fails alone."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from api.bounds import Bounds
from api.errors import INVALID_JSON, INVALID_JSON_MESSAGE, ApiError
from api.sending import Fields, Refused
from api.views.email import (
    EMAIL_BOUNDS,
    MAX_BATCH,
    SendTokenAuthentication,
    _echo_to,
    _send,
    too_many_messages,
)
from mailtemplates import services
from mailtemplates.mustachio import TemplateError
from mailtemplates.rendering import render_message

TEMPLATE_FIELDS = frozenset({"templateid", "templatealias", "templatemodel", "inlinecss"})
CONTENT_FIELDS = {"subject": "Subject", "htmlbody": "HtmlBody", "textbody": "TextBody"}
RENDER_FAILED = services.INVALID
# A batch's body is an object, {"Messages": [...]}: its items are counted once it is parsed.
BATCH_BOUNDS = Bounds(max_bytes_setting="API_MAX_BATCH_REQUEST_SIZE", max_values=500 * MAX_BATCH)


def _flag(value, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise Refused(services.INVALID, "The 'InlineCss' field must be true or false.")


def rendered_item(server, item) -> dict | Refused:
    """The /email message a templated one stands for, or the Refused to answer with."""
    try:
        fields = Fields(item)
        for key, name in CONTENT_FIELDS.items():
            if fields.values.get(key) is not None:
                raise Refused(
                    services.NOT_ALLOWED,
                    f"The '{name}' field cannot be given when sending with a template.",
                )
        model = fields.get("TemplateModel")
        if model is None:
            raise Refused(services.REQUIRED, "The 'TemplateModel' field is required.")
        if not isinstance(model, dict):
            raise Refused(services.INVALID, "The 'TemplateModel' field must be a JSON object.")
        inline = _flag(fields.get("InlineCss"), True)
        template = services.for_sending(
            server, fields.get("TemplateId"), fields.get("TemplateAlias")
        )
        rendered = render_message(template, services.layout_of(template), model, inline)
    except Refused as refused:
        return refused
    except services.TemplateProblem as problem:
        return Refused(problem.error_code, problem.message)
    except TemplateError as error:
        return Refused(RENDER_FAILED, f"The template could not be rendered: {error}")
    message = {
        key: value
        for key, value in item.items()
        if str(key).lower() not in TEMPLATE_FIELDS and str(key).lower() not in CONTENT_FIELDS
    }
    message["Subject"] = rendered.subject
    message["HtmlBody"] = rendered.html_body
    message["TextBody"] = rendered.text_body
    return message


class EmailWithTemplateView(APIView):
    authentication_classes = [SendTokenAuthentication]
    request_bounds = EMAIL_BOUNDS

    @extend_schema(
        operation_id="send_email_with_template",
        request=OpenApiTypes.OBJECT,
        responses=OpenApiTypes.OBJECT,
    )
    def post(self, request):
        [answer] = _send(request, [rendered_item(request.auth, request.data)])
        if isinstance(answer, Refused):
            raise ApiError(answer.error_code, answer.message, answer.http_status)
        return Response(answer)


class EmailBatchWithTemplatesView(APIView):
    authentication_classes = [SendTokenAuthentication]
    request_bounds = BATCH_BOUNDS

    @extend_schema(
        operation_id="send_email_batch_with_templates",
        request=OpenApiTypes.OBJECT,
        responses=OpenApiTypes.OBJECT,
    )
    def post(self, request):
        data = request.data
        items = None
        if isinstance(data, dict):
            items = {str(k).lower(): v for k, v in data.items()}.get("messages")
        if not isinstance(items, list):
            raise ApiError(
                INVALID_JSON,
                f"{INVALID_JSON_MESSAGE} The body must be an object with a 'Messages' array.",
            )
        if len(items) > MAX_BATCH:
            raise too_many_messages(len(items))
        answers = _send(request, [rendered_item(request.auth, item) for item in items])
        return Response(
            [
                {"To": _echo_to(item), "ErrorCode": a.error_code, "Message": a.message}
                if isinstance(a, Refused)
                else a
                for item, a in zip(items, answers, strict=True)
            ]
        )
