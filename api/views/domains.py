"""The Domains API (compat §8, account token): list, create, read, edit, delete, the three
verifications and the DKIM key rotation. Domains are account-wide: every server may send as a
verified one."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from api.account import AccountView, body_fields, object_id, page, text_field
from api.errors import ApiError
from api.text import quoted
from domains import verification
from domains.models import DkimKey, Domain
from domains.serializers import domain_json, domain_summary_json
from domains.services import (
    IdentityError,
    create_domain,
    edit_domain_return_path,
    refuse_service_domain,
    valid_domain_name,
)

# Postmark's error codes of the Domains API.
DOMAIN_QUERY = 500  # Postmark has no code of its own for the domains list: its sender one
DKIM_RENEWAL_PENDING = 505
DOMAIN_NOT_FOUND = 510
INVALID_DOMAIN_FIELDS = 511
DOMAIN_EXISTS = 512
DOMAIN_NAME_REQUIRED = 514
DOMAIN_NAME_TOO_LONG = 515
DOMAIN_NAME_INVALID = 516
MAX_NAME_LENGTH = 255

_P = OpenApiParameter
_PAGE = [
    _P("count", int, required=True, description="Domains to return, 1..500."),
    _P("offset", int, required=True, description="Domains to skip; count+offset ≤ 10000."),
]


def _get_domain(domain_id: str) -> Domain:
    pk = object_id(domain_id)
    domain = Domain.objects.prefetch_related("keys").filter(pk=pk).first() if pk else None
    if domain is None:
        raise ApiError(
            DOMAIN_NOT_FOUND,
            f"This domain was not found: there is no domain with ID {quoted(domain_id)}.",
            http_status=404,
        )
    return domain


def _details(domain: Domain) -> Response:
    """The domain as it is now in the database (keys and flags re-read)."""
    return Response(domain_json(Domain.objects.prefetch_related("keys").get(pk=domain.pk)))


def _not_the_services(name: str) -> None:
    """ErrorCode 513 for the service's own domains (``domains.services.refuse_service_domain``)."""
    try:
        refuse_service_domain(name)
    except IdentityError as exc:
        raise ApiError(exc.error_code, exc.message) from None


def _return_path(data: dict) -> str | None:
    return text_field(data, "ReturnPathDomain", INVALID_DOMAIN_FIELDS, max_length=253)


class DomainListView(AccountView):
    @extend_schema(operation_id="list_domains", parameters=_PAGE, responses=OpenApiTypes.OBJECT)
    def get(self, request):
        total, domains = page(request, DOMAIN_QUERY, Domain.objects.prefetch_related("keys"))
        return Response({"TotalCount": total, "Domains": [domain_summary_json(d) for d in domains]})

    @extend_schema(operation_id="create_domain", request=OpenApiTypes.OBJECT,
                   responses=OpenApiTypes.OBJECT)  # fmt: skip
    def post(self, request):
        data = body_fields(request)
        name = text_field(data, "Name", DOMAIN_NAME_INVALID)
        if not name:
            raise ApiError(DOMAIN_NAME_REQUIRED, "Name is a required field to create a Domain.")
        if len(name) > MAX_NAME_LENGTH:
            raise ApiError(
                DOMAIN_NAME_TOO_LONG,
                f"Name field must be less than or equal to {MAX_NAME_LENGTH} characters.",
            )
        return_path = _return_path(data)
        try:
            valid_domain_name(name)
        except IdentityError as exc:
            raise ApiError(DOMAIN_NAME_INVALID, f"Name format is invalid. {exc.message}") from None
        _not_the_services(name)
        try:
            domain = create_domain(name, return_path or None)
        except IdentityError as exc:  # 512 also for the loser of two concurrent requests
            code = exc.error_code if exc.error_code == DOMAIN_EXISTS else INVALID_DOMAIN_FIELDS
            raise ApiError(code, exc.message) from None
        return _details(domain)


class DomainDetailView(AccountView):
    @extend_schema(operation_id="get_domain", responses=OpenApiTypes.OBJECT)
    def get(self, request, domain_id: str):
        return Response(domain_json(_get_domain(domain_id)))

    @extend_schema(operation_id="edit_domain", request=OpenApiTypes.OBJECT,
                   responses=OpenApiTypes.OBJECT)  # fmt: skip
    def put(self, request, domain_id: str):
        domain = _get_domain(domain_id)
        data = body_fields(request)
        return_path = _return_path(data)
        _not_the_services(domain.name)
        if return_path is None:
            raise ApiError(
                INVALID_DOMAIN_FIELDS,
                "Invalid fields supplied: give ReturnPathDomain, the only field of a domain "
                "that can be changed (empty for the default).",
            )
        try:
            edit_domain_return_path(domain, return_path)
        except IdentityError as exc:
            raise ApiError(INVALID_DOMAIN_FIELDS, exc.message) from None
        return _details(domain)

    @extend_schema(operation_id="delete_domain", responses=OpenApiTypes.OBJECT)
    def delete(self, request, domain_id: str):
        domain = _get_domain(domain_id)
        _not_the_services(domain.name)
        domain.delete()
        return Response({"ErrorCode": 0, "Message": f"Domain {domain.name} removed."})


class _DomainActionView(AccountView):
    """An action on one domain that answers with the domain's details; the body is never
    read (none, ``{}`` or junk are all fine)."""

    def act(self, domain: Domain) -> None:
        raise NotImplementedError

    def run(self, domain_id: str) -> Response:
        domain = _get_domain(domain_id)
        try:
            self.act(domain)
        except IdentityError as exc:
            raise ApiError(exc.error_code, exc.message) from None
        return _details(domain)


class VerifyDkimView(_DomainActionView):
    def act(self, domain):
        verification.verify_dkim(domain)

    @extend_schema(operation_id="verify_domain_dkim", request=None, responses=OpenApiTypes.OBJECT)
    def put(self, request, domain_id: str):
        return self.run(domain_id)


class VerifyReturnPathView(_DomainActionView):
    def act(self, domain):
        verification.verify_return_path(domain)

    @extend_schema(operation_id="verify_domain_return_path", request=None,
                   responses=OpenApiTypes.OBJECT)  # fmt: skip
    def put(self, request, domain_id: str):
        return self.run(domain_id)


class VerifySpfView(_DomainActionView):
    def act(self, domain):
        verification.verify_spf(domain)

    @extend_schema(operation_id="verify_domain_spf", request=None, responses=OpenApiTypes.OBJECT)
    def post(self, request, domain_id: str):
        return self.run(domain_id)


def rotate(domain: Domain) -> None:
    """A new DKIM key, unless one is already waiting for its record (Postmark's 505); never for
    the service's own domain (513)."""
    _not_the_services(domain.name)
    if domain.key(DkimKey.State.PENDING) is not None:
        raise ApiError(
            DKIM_RENEWAL_PENDING,
            "DKIM already scheduled for renewal: publish the record in DKIMPendingHost and "
            "DKIMPendingTextValue, then verify it (verifyDKIM) before rotating again.",
        )
    verification.rotate_dkim(domain)


class RotateDkimView(_DomainActionView):
    def act(self, domain):
        rotate(domain)

    @extend_schema(operation_id="rotate_domain_dkim", request=None, responses=OpenApiTypes.OBJECT)
    def post(self, request, domain_id: str):
        return self.run(domain_id)
