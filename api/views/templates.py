"""The Templates API (compat §9): list, create, read, edit and delete a server's templates,
validate template content, and push templates between servers (account token). The rules live
in ``mailtemplates.services``; this module translates JSON and Postmark's field names."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from api.account import AccountView, body_fields
from api.errors import ApiError
from api.params import QueryParams
from mailtemplates import services
from mailtemplates.models import Template
from mailtemplates.services import TemplateProblem
from servers.models import Server

BAD_QUERY = 1100
NO_DATA = 1109
MAX_COUNT = 500


def short_json(template: Template) -> dict:
    return {
        "TemplateId": template.pk,
        "Name": template.name,
        "Alias": template.alias or None,
        "Active": template.active,
        "TemplateType": template.template_type,
        "LayoutTemplate": template.layout_template or None,
    }


def full_json(template: Template) -> dict:
    return {
        **short_json(template),
        "Subject": template.subject if not template.is_layout else None,
        "HtmlBody": template.html_body or None,
        "TextBody": template.text_body or None,
        "AssociatedServerId": template.server_id,
    }


def _problem(problem: TemplateProblem) -> ApiError:
    return ApiError(problem.error_code, problem.message)


def _fields(request) -> dict:
    if not request.data:
        raise ApiError(NO_DATA, "The request holds no template data.")
    return body_fields(request)


class TemplateListView(APIView):
    @extend_schema(operation_id="list_templates", responses=OpenApiTypes.OBJECT)
    def get(self, request):
        params = QueryParams(request, BAD_QUERY)
        count = params.integer("count", 1, MAX_COUNT) or 100
        offset = params.integer("offset", 0, 10_000) or 0
        kind = params.choice("templatetype", ["All", "Standard", "Layout"]) or "All"
        layout = params.get("layouttemplate")
        found = Template.objects.filter(server=request.auth, active=True).order_by("pk")
        if kind != "All":
            found = found.filter(template_type=kind)
        if layout:
            found = found.filter(layout_template__iexact=layout)
        return Response(
            {
                "TotalCount": found.count(),
                "Templates": [short_json(t) for t in found[offset : offset + count]],
            }
        )

    @extend_schema(
        operation_id="create_template", request=OpenApiTypes.OBJECT, responses=OpenApiTypes.OBJECT
    )
    def post(self, request):
        try:
            template = services.create(request.auth, _fields(request))
        except TemplateProblem as problem:
            raise _problem(problem) from None
        return Response(short_json(template))


class TemplateDetailView(APIView):
    @extend_schema(operation_id="get_template", responses=OpenApiTypes.OBJECT)
    def get(self, request, id_or_alias: str):
        try:
            return Response(full_json(services.get(request.auth, id_or_alias)))
        except TemplateProblem as problem:
            raise _problem(problem) from None

    @extend_schema(
        operation_id="edit_template", request=OpenApiTypes.OBJECT, responses=OpenApiTypes.OBJECT
    )
    def put(self, request, id_or_alias: str):
        try:
            template = services.get(request.auth, id_or_alias)
            return Response(short_json(services.edit(template, _fields(request))))
        except TemplateProblem as problem:
            raise _problem(problem) from None

    @extend_schema(operation_id="delete_template", responses=OpenApiTypes.OBJECT)
    def delete(self, request, id_or_alias: str):
        try:
            template = services.get(request.auth, id_or_alias)
            services.delete(template)
        except TemplateProblem as problem:
            raise _problem(problem) from None
        return Response({"ErrorCode": 0, "Message": f"Template {template.pk} removed."})


def _part_json(result) -> dict | None:
    if result is None:
        return None
    return {
        "ContentIsValid": result.valid,
        "ValidationErrors": [
            {"Message": p.message, "Line": p.line, "CharacterPosition": p.character}
            for p in result.problems
        ],
        "RenderedContent": result.rendered,
    }


def _flag(value, name: str, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ApiError(services.INVALID, f"The '{name}' field must be true or false.")


class TemplateValidateView(APIView):
    @extend_schema(
        operation_id="validate_template", request=OpenApiTypes.OBJECT, responses=OpenApiTypes.OBJECT
    )
    def post(self, request):
        data = _fields(request)
        parts = {}
        for field in ("Subject", "HtmlBody", "TextBody"):
            value = data.get(field.lower())
            if value is not None and not isinstance(value, str):
                raise ApiError(services.INVALID, f"The '{field}' field must be a string.")
            parts[field] = value
        if all(v is None for v in parts.values()):
            raise ApiError(
                services.REQUIRED, "Provide at least one of 'Subject', 'HtmlBody' or 'TextBody'."
            )
        model = data.get("testrendermodel")
        if model is not None and not isinstance(model, dict):
            raise ApiError(services.INVALID, "The 'TestRenderModel' field must be a JSON object.")
        kind = data.get("templatetype") or "Standard"
        if kind not in Template.Type.values:
            raise ApiError(
                services.INVALID, "The 'TemplateType' field must be 'Standard' or 'Layout'."
            )
        inline = _flag(data.get("inlinecssforhtmltestrender"), "InlineCssForHtmlTestRender", True)
        try:
            results, suggested = services.validate(
                request.auth, parts, model, kind == "Layout", data.get("layouttemplate"), inline
            )
        except TemplateProblem as problem:
            raise _problem(problem) from None
        return Response(
            {
                "AllContentIsValid": all(r.valid for r in results.values() if r is not None),
                **{field: _part_json(result) for field, result in results.items()},
                "SuggestedTemplateModel": suggested,
            }
        )


def _server(value) -> Server | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or not 0 < value < 2**63:
        return None
    return Server.objects.filter(pk=value).first()


class TemplatePushView(AccountView):
    @extend_schema(
        operation_id="push_templates", request=OpenApiTypes.OBJECT, responses=OpenApiTypes.OBJECT
    )
    def put(self, request):
        data = body_fields(request)
        for field in ("SourceServerID", "DestinationServerID", "PerformChanges"):
            if data.get(field.lower()) is None:
                raise ApiError(services.REQUIRED, f"The '{field}' field is required.")
        source = _server(data["sourceserverid"])
        destination = _server(data["destinationserverid"])
        if source is None or destination is None:
            which = (
                "The source and destination servers were not found."
                if source is None and destination is None
                else "The source server was not found."
                if source is None
                else "The destination server was not found."
            )
            raise ApiError(services.SERVER_NOT_FOUND, which)
        perform = _flag(data["performchanges"], "PerformChanges", False)
        try:
            changes = services.push(source, destination, perform)
        except TemplateProblem as problem:
            raise _problem(problem) from None
        return Response(
            {
                "TotalCount": len(changes),
                "Templates": [
                    {
                        "Action": c.action,
                        "TemplateId": c.template_id,
                        "Alias": c.alias,
                        "Name": c.name,
                        "TemplateType": c.template_type,
                    }
                    for c in changes
                ],
            }
        )
