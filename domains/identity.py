"""Who may send as whom: the rule processing applies to every message's ``From``.

A message may be sent when its From domain is a DKIM-verified domain, or its address is a
confirmed sender signature; otherwise Postmark's errors, word for word (compat §8).
"""

from domains.models import Domain, SenderSignature

NOT_A_SENDER_SIGNATURE = 400
SIGNATURE_NOT_CONFIRMED = 401
NOT_A_SENDER_SIGNATURE_MESSAGE = (
    "The 'From' address you supplied ({address}) is not a Sender Signature on your account. "
    "Please add and confirm this address in order to be able to use it in the 'From' field of "
    "your messages."
)
SIGNATURE_NOT_CONFIRMED_MESSAGE = "Sender signature not confirmed."


def domain_of(address: str) -> str:
    """The lower-case ASCII (IDNA) domain of an address; '' when there is none."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        return ""
    return ascii_domain(domain)


def ascii_domain(domain: str) -> str:
    domain = domain.strip().rstrip(".").lower()
    try:
        return domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        return domain


def sender_refusal(address: str) -> tuple[int, str] | None:
    """None when ``address`` may be used as From; else (ErrorCode, Postmark's message)."""
    domain = domain_of(address)
    if domain and Domain.objects.filter(name=domain, dkim_verified=True).exists():
        return None
    signature = (
        SenderSignature.objects.filter(email=address.strip().lower()).only("confirmed").first()
    )
    if signature is None:
        return NOT_A_SENDER_SIGNATURE, NOT_A_SENDER_SIGNATURE_MESSAGE.format(address=address)
    if not signature.confirmed:
        return SIGNATURE_NOT_CONFIRMED, SIGNATURE_NOT_CONFIRMED_MESSAGE
    return None
