"""Creating and changing domains and sender signatures: the rules every interface shares (API,
admin, management commands)."""

import re

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core import dkim_keys as keys
from core.addresses import InvalidDomain, ascii_domain, normalise_address
from domains import confirmation, signals
from domains.models import DkimKey, Domain, SenderSignature, return_path_default
from domains.signing import service_domain

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
MAX_ADDRESS_LENGTH = 320
MAX_NOTE_LENGTH = SenderSignature._meta.get_field("confirmation_note").max_length
# Postmark's codes and sentences for a duplicate (every interface shows the same).
DOMAIN_EXISTS, DOMAIN_EXISTS_MESSAGE = 512, "This domain already exists."
SIGNATURE_EXISTS, SIGNATURE_EXISTS_MESSAGE = 504, "This signature already exists."
RATE_LIMITED = 429  # Postmark's "Rate limit exceeded" (with HTTP 429)


class IdentityError(ValueError):
    """Input an interface reports to its user (the API as ErrorCode 300 or 512…, the admin and
    commands as a message)."""

    def __init__(self, message: str, error_code: int = 300):
        super().__init__(message)
        self.message = message
        self.error_code = error_code


# --- The service's own domains ------------------------------------------------------------------

# Postmark's "You do not own this Domain": the account token may not change the service's own.
NOT_YOURS = 513


def service_domain_names() -> frozenset[str]:
    """The service's own domains: the DKIM signing domain (``d=`` of every message whose From
    domain is not verified), the bounce domain, the SMTP host name and the domain of the
    service's own From address."""
    names = set()
    for name in (
        settings.DKIM_SERVICE_DOMAIN,
        settings.BOUNCE_DOMAIN,
        settings.SMTP_HOSTNAME,
        settings.SYSTEM_FROM.rpartition("@")[2],
    ):
        try:
            names.add(ascii_domain(name or ""))
        except InvalidDomain:
            continue
    names.add(service_domain())
    names.discard("")
    return frozenset(names)


def is_service_domain(name: str) -> bool:
    try:
        return ascii_domain(name or "") in service_domain_names()
    except InvalidDomain:
        return False


def refuse_service_domain(name: str) -> None:
    """IdentityError (513) when ``name`` is one of the service's own domains: an account token
    may not create, edit, rotate or delete it. Deleting the signing domain's key, or replacing it
    with one whose record is not published, breaks DKIM for every sender without a verified
    domain of its own; only the operators change it (in the admin, which warns them)."""
    if is_service_domain(name):
        raise IdentityError(
            f"{name} is this service's own domain (it signs the mail of every sender without a "
            "verified domain of its own): only the service's operators may change, rotate or "
            "delete it.",
            error_code=NOT_YOURS,
        )


def valid_domain_name(name: str) -> str:
    """``name`` as stored (``core.addresses.ascii_domain``: lower case, IDNA 2008), or
    IdentityError."""
    try:
        domain = ascii_domain(name or "")
    except InvalidDomain:
        raise IdentityError(f"'{name}' is not a valid domain name.") from None
    labels = domain.split(".")
    if (
        len(domain) > 253
        or len(labels) < 2
        or not all(_LABEL.match(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise IdentityError(f"'{name}' is not a valid domain name.")
    return domain


def valid_return_path(domain: str, return_path: str | None) -> str:
    """The custom Return-Path domain for ``domain``: a subdomain of it (so SPF and DMARC align)."""
    if not return_path:
        return return_path_default(domain)
    host = valid_domain_name(return_path)
    if not host.endswith("." + domain):
        raise IdentityError(
            f"The Return-Path domain must be a subdomain of {domain}, such as "
            f"{return_path_default(domain)}."
        )
    return host


def _domain_exists(name: str) -> bool:
    return Domain.objects.filter(name=name).exists()


def create_domain(name: str, return_path: str | None = None, ed25519: bool = False) -> Domain:
    """A new domain with a pending RSA key (and a pending Ed25519 key when asked): nothing
    signs or may send until verification sees the records. A domain that exists is
    IdentityError 512, also when a concurrent request made it between the check and the insert
    (the unique index decides)."""
    domain_name = valid_domain_name(name)
    try:
        with transaction.atomic():
            if _domain_exists(domain_name):
                raise IdentityError(DOMAIN_EXISTS_MESSAGE, error_code=DOMAIN_EXISTS)
            domain = Domain.objects.create(
                name=domain_name, return_path_domain=valid_return_path(domain_name, return_path)
            )
            DkimKey.generate(domain, keys.RSA)
            if ed25519:
                DkimKey.generate(domain, keys.ED25519)
    except IntegrityError:  # made meanwhile by another request: it won
        raise IdentityError(DOMAIN_EXISTS_MESSAGE, error_code=DOMAIN_EXISTS) from None
    return domain


def valid_address(address: str, field: str = "FromEmail") -> str:
    address = (address or "").strip()
    local, at, domain = address.rpartition("@")
    if (
        not at
        or not local
        or len(address) > MAX_ADDRESS_LENGTH
        or any(c.isspace() or c in '<>,;"\x00' for c in address)
    ):
        raise IdentityError(f"Invalid '{field}' address: '{address}'.")
    valid_domain_name(domain)
    return normalise_address(address).lower()


def _sender_exists(address: str) -> bool:
    return SenderSignature.objects.filter(email=address).exists()


def create_sender(
    email: str,
    name: str = "",
    reply_to: str = "",
    return_path: str | None = None,
    note: str = "",
    confirmed: bool = False,
) -> SenderSignature:
    """A new sender signature; unconfirmed unless an operator says otherwise. Sending its
    confirmation message is the caller's (``request_confirmation``). An address that has one
    already is IdentityError 504, also when a concurrent request made it between the check and
    the insert (the unique index decides)."""
    address = valid_address(email)
    domain = address.rpartition("@")[2]
    try:
        with transaction.atomic():
            if _sender_exists(address):
                raise IdentityError(SIGNATURE_EXISTS_MESSAGE, error_code=SIGNATURE_EXISTS)
            return SenderSignature.objects.create(
                email=address,
                name=(name or "")[:255],
                reply_to=valid_address(reply_to, "ReplyToEmail") if reply_to else "",
                return_path_domain=valid_return_path(domain, return_path) if return_path else "",
                confirmation_note=(note or "")[:MAX_NOTE_LENGTH],
                confirmed=confirmed,
                confirmed_at=timezone.now() if confirmed else None,
            )
    except IntegrityError:  # made meanwhile by another request: it won
        raise IdentityError(SIGNATURE_EXISTS_MESSAGE, error_code=SIGNATURE_EXISTS) from None


def confirm_sender(signature: SenderSignature) -> None:
    if not signature.confirmed:
        signature.confirmed = True
        signature.confirmed_at = timezone.now()
        signature.save(update_fields=["confirmed", "confirmed_at", "updated_at"])


@transaction.atomic
def edit_domain_return_path(domain: Domain, return_path: str | None) -> Domain:
    """A new custom Return-Path (empty: the default ``pm-bounces.<domain>``). A changed host
    must be verified again before the return path uses it."""
    host = valid_return_path(domain.name, return_path)
    if host != domain.return_path_domain:
        domain.return_path_domain = host
        domain.return_path_verified = False
        domain.return_path_checked_at = None
        domain.return_path_failing_since, domain.return_path_failed_checks = None, 0
        domain.save(
            update_fields=[
                "return_path_domain", "return_path_verified", "return_path_checked_at",
                "return_path_failing_since", "return_path_failed_checks", "updated_at",
            ]
        )  # fmt: skip
    return domain


UNCHANGED = object()


def edit_sender(
    signature: SenderSignature,
    name=UNCHANGED,
    reply_to=UNCHANGED,
    return_path=UNCHANGED,
    note=UNCHANGED,
) -> SenderSignature:
    """Change the fields given (``UNCHANGED`` leaves one as it is; an empty reply-to or
    Return-Path removes it). The address itself never changes: it is what was confirmed."""
    if name is not UNCHANGED:
        signature.name = (name or "")[:255]
    if reply_to is not UNCHANGED:
        signature.reply_to = valid_address(reply_to, "ReplyToEmail") if reply_to else ""
    if return_path is not UNCHANGED:
        signature.return_path_domain = (
            valid_return_path(signature.domain, return_path) if return_path else ""
        )
    if note is not UNCHANGED:
        signature.confirmation_note = (note or "")[:MAX_NOTE_LENGTH]
    signature.save()
    return signature


@transaction.atomic
def rotate_dkim(domain: Domain) -> list[DkimKey]:
    """Start a key rotation (Postmark's rotateDKIM): a new pending key for each algorithm the
    domain signs with, to be published beside the current one. The current key keeps signing
    until verification sees the new record (``domains.verification``), which then revokes it.
    A rotation already pending is returned as it is, so asking twice publishes nothing new."""
    Domain.objects.select_for_update().filter(pk=domain.pk).first()
    algorithms = [keys.RSA]
    if domain.keys.filter(algorithm=keys.ED25519).exclude(state=DkimKey.State.REVOKED).exists():
        algorithms.append(keys.ED25519)
    pending = []
    for algorithm in algorithms:
        key = domain.key(DkimKey.State.PENDING, algorithm)
        pending.append(key or DkimKey.generate(domain, algorithm))
    return pending


def revoked_key_grace() -> timezone.timedelta:
    """How long a revoked key's record must stay in DNS: every message it signed was signed
    before it was revoked, and is delivered (or given up) within DELIVERY_GIVE_UP_AFTER of its
    arrival; one more day covers receivers that verify late (a relay's queue, a spam filter)."""
    return timezone.timedelta(seconds=settings.DELIVERY_GIVE_UP_AFTER + 24 * 3600)


def safe_to_remove(key: DkimKey | None, now=None) -> bool:
    """Postmark's SafeToRemoveRevokedKeyFromDNS: the key is revoked and no message signed with
    it can still be on its way (``revoked_key_grace``)."""
    if key is None or key.state != DkimKey.State.REVOKED or key.revoked_at is None:
        return False
    return (now or timezone.now()) - key.revoked_at >= revoked_key_grace()


class ConfirmationLimited(IdentityError):
    """No confirmation message may go now (``domains.confirmation.confirmation_wait``): the API
    answers HTTP 429 with Retry-After ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message, error_code=RATE_LIMITED)
        self.retry_after = retry_after


@transaction.atomic
def request_confirmation(signature: SenderSignature) -> None:
    """Send (again) the confirmation message of an unconfirmed signature: on creation and on
    "resend", within the limits of ``domains.confirmation`` (else ConfirmationLimited). The
    message pipeline, above this app, sends it (``confirmation_requested``)."""
    if signature.confirmed:
        raise IdentityError("This sender signature is already confirmed.")
    # One request at a time per signature (a row lock; SQLite serialises every writer anyway).
    SenderSignature.objects.select_for_update().filter(pk=signature.pk).first()
    now = timezone.now()
    wait = confirmation.confirmation_wait(signature.email, now)
    if wait is not None:
        raise ConfirmationLimited(wait.message, wait.seconds)
    confirmation.record_confirmation(signature.email, now)
    signature.confirmation_sent_at = now
    signature.save(update_fields=["confirmation_sent_at", "updated_at"])
    signals.confirmation_requested.send(sender=SenderSignature, signature=signature)
