"""The Sender Signatures API (compat §8, account token): list, create, read, edit, delete,
resend the confirmation, and the SPF and DKIM requests that act on the signature's domain."""

from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from api.account import AccountView, body_fields, object_id, page, text_field
from api.errors import ApiError
from api.text import quoted
from api.views.domains import rotate
from domains import verification
from domains.models import Domain, SenderSignature
from domains.serializers import sender_json, sender_summary_json
from domains.services import (
    DOMAIN_EXISTS,
    UNCHANGED,
    ConfirmationLimited,
    IdentityError,
    create_domain,
    create_sender,
    edit_sender,
    refuse_service_domain,
    request_confirmation,
)

# Postmark's error codes of the Sender Signatures API.
SENDER_QUERY = 500
SENDER_NOT_FOUND = 501
NO_SENDER_DATA = 502
SENDER_EXISTS = 504
ALREADY_CONFIRMED = 506
SENDER_FIELD_REQUIRED = 520
SENDER_FIELD_TOO_LONG = 521
SENDER_FIELD_INVALID = 522
MAX_NAME_LENGTH = SenderSignature._meta.get_field("name").max_length
MAX_NOTE_LENGTH = 400
MAX_ADDRESS_LENGTH = 320
MAX_DOMAIN_LENGTH = 253

_P = OpenApiParameter
_PAGE = [
    _P("count", int, required=True, description="Signatures to return, 1..500."),
    _P("offset", int, required=True, description="Signatures to skip; count+offset ≤ 10000."),
]


def _get_sender(sender_id: str) -> SenderSignature:
    pk = object_id(sender_id)
    signature = SenderSignature.objects.filter(pk=pk).first() if pk else None
    if signature is None:
        raise ApiError(
            SENDER_NOT_FOUND,
            f"Sender Signature not found: there is no signature with ID {quoted(sender_id)}.",
            http_status=404,
        )
    return signature


def _fields(data: dict) -> dict:
    """The signature fields the body gives (absent or null ones left out), each checked."""
    limits = {
        "FromEmail": MAX_ADDRESS_LENGTH,
        "Name": MAX_NAME_LENGTH,
        "ReplyToEmail": MAX_ADDRESS_LENGTH,
        "ReturnPathDomain": MAX_DOMAIN_LENGTH,
        "ConfirmationPersonalNote": MAX_NOTE_LENGTH,
    }
    found = {}
    for name, limit in limits.items():
        value = text_field(
            data, name, SENDER_FIELD_INVALID, max_length=limit,
            too_long_code=SENDER_FIELD_TOO_LONG, single_line=name != "ConfirmationPersonalNote",
        )  # fmt: skip
        if value is not None:
            found[name] = value
    return found


def _too_many(exc: ConfirmationLimited) -> Response:
    """Postmark's rate-limit answer (HTTP 429, ErrorCode 429), with when to try again."""
    response = Response({"ErrorCode": exc.error_code, "Message": exc.message}, status=429)
    response["Retry-After"] = str(exc.retry_after)
    return response


def _invalid(exc: IdentityError) -> ApiError:
    code = exc.error_code if exc.error_code == SENDER_EXISTS else SENDER_FIELD_INVALID
    return ApiError(code, exc.message)


class SenderListView(AccountView):
    @extend_schema(operation_id="list_senders", parameters=_PAGE, responses=OpenApiTypes.OBJECT)
    def get(self, request):
        total, signatures = page(request, SENDER_QUERY, SenderSignature.objects.all())
        return Response(
            {"TotalCount": total, "SenderSignatures": [sender_summary_json(s) for s in signatures]}
        )

    @extend_schema(operation_id="create_sender", request=OpenApiTypes.OBJECT,
                   responses=OpenApiTypes.OBJECT)  # fmt: skip
    def post(self, request):
        fields = _fields(body_fields(request))
        missing = [name for name in ("FromEmail", "Name") if not fields.get(name)]
        if missing:
            raise ApiError(
                SENDER_FIELD_REQUIRED,
                "You are missing a required field to create a Sender Signature: "
                f"{' and '.join(missing)}.",
            )
        try:
            with transaction.atomic():  # the signature and its confirmation message, or neither
                signature = create_sender(
                    fields["FromEmail"],
                    name=fields["Name"],
                    reply_to=fields.get("ReplyToEmail", ""),
                    return_path=fields.get("ReturnPathDomain") or None,
                    note=fields.get("ConfirmationPersonalNote", ""),
                )
                request_confirmation(signature)
        except ConfirmationLimited as exc:
            return _too_many(exc)
        except IdentityError as exc:  # 504 also for the loser of two concurrent requests
            raise _invalid(exc) from None
        _first_dkim_key(signature)
        return Response(sender_json(signature))


def _first_dkim_key(signature: SenderSignature) -> None:
    """As Postmark does, a new signature's domain gets its first DKIM key, pending until its
    record is published (``DKIMPendingHost``, ``DKIMUpdateStatus: Pending``); a domain that
    exists, or the service's own, is left as it is."""
    if _domain_of(signature) is not None:
        return
    try:
        refuse_service_domain(signature.domain)
        create_domain(signature.domain)
    except IdentityError:  # the service's domain, or one a concurrent request just made
        pass


class SenderDetailView(AccountView):
    @extend_schema(operation_id="get_sender", responses=OpenApiTypes.OBJECT)
    def get(self, request, sender_id: str):
        return Response(sender_json(_get_sender(sender_id)))

    @extend_schema(operation_id="edit_sender", request=OpenApiTypes.OBJECT,
                   responses=OpenApiTypes.OBJECT)  # fmt: skip
    def put(self, request, sender_id: str):
        signature = _get_sender(sender_id)
        fields = _fields(body_fields(request))
        fields.pop("FromEmail", None)  # the confirmed address never changes
        if not fields:
            raise ApiError(
                NO_SENDER_DATA,
                "No updated Sender Signature data received: give Name, ReplyToEmail, "
                "ReturnPathDomain or ConfirmationPersonalNote.",
            )
        if "Name" in fields and not fields["Name"]:
            raise ApiError(SENDER_FIELD_REQUIRED, "Name must not be empty.")
        try:
            edit_sender(
                signature,
                name=fields.get("Name", UNCHANGED),
                reply_to=fields.get("ReplyToEmail", UNCHANGED),
                return_path=fields.get("ReturnPathDomain", UNCHANGED),
                note=fields.get("ConfirmationPersonalNote", UNCHANGED),
            )
        except IdentityError as exc:
            raise _invalid(exc) from None
        return Response(sender_json(signature))

    @extend_schema(operation_id="delete_sender", responses=OpenApiTypes.OBJECT)
    def delete(self, request, sender_id: str):
        signature = _get_sender(sender_id)
        signature.delete()
        return Response({"ErrorCode": 0, "Message": f"Signature {signature.email} removed."})


class SenderResendView(AccountView):
    @extend_schema(operation_id="resend_sender_confirmation", request=None,
                   responses=OpenApiTypes.OBJECT)  # fmt: skip
    def post(self, request, sender_id: str):
        signature = _get_sender(sender_id)
        if signature.confirmed:
            raise ApiError(ALREADY_CONFIRMED, "This Sender Signature has already been confirmed.")
        try:
            request_confirmation(signature)
        except ConfirmationLimited as exc:
            return _too_many(exc)
        message = f"Confirmation email for Sender Signature {signature.email} was re-sent."
        return Response({"ErrorCode": 0, "Message": message})


def _domain_of(signature: SenderSignature) -> Domain | None:
    return Domain.objects.prefetch_related("keys").filter(name=signature.domain).first()


class SenderVerifySpfView(AccountView):
    """Postmark's older per-signature SPF check: the check of the address's domain, if any."""

    @extend_schema(operation_id="verify_sender_spf", request=None, responses=OpenApiTypes.OBJECT)
    def post(self, request, sender_id: str):
        signature = _get_sender(sender_id)
        domain = _domain_of(signature)
        if domain is not None:
            verification.verify_spf(domain)
        return Response(sender_json(signature))


class SenderRequestNewDkimView(AccountView):
    """Postmark's older per-signature DKIM renewal: a rotation of the address's domain's key,
    or the domain itself (with its first key) when there is none yet."""

    @extend_schema(operation_id="request_new_sender_dkim", request=None,
                   responses=OpenApiTypes.OBJECT)  # fmt: skip
    def post(self, request, sender_id: str):
        signature = _get_sender(sender_id)
        domain = _domain_of(signature)
        try:
            refuse_service_domain(signature.domain)
            if domain is None:
                create_domain(signature.domain)
            else:
                rotate(domain)
        except IdentityError as exc:
            # A concurrent request made the domain (and its first key): what this one asked for.
            if exc.error_code != DOMAIN_EXISTS:
                raise ApiError(exc.error_code, exc.message) from None
        return Response(sender_json(signature))
