"""Who may send as whom: the rule processing applies to every message's ``From``.

A message may be sent when its From domain is a DKIM-verified domain, or its address is a
confirmed sender signature; otherwise Postmark's errors, word for word (compat §8). The From
itself is read by ``domains.from_rule`` (one mailbox, parsed strictly from the raw field, its
domain normalised once); ``from_refusal`` judges what it read, ``sender_refusal`` an address
given as text (the sender panels, which judge the addresses servers used).
"""

from core.addresses import address_key, domain_of
from domains.from_rule import Sender
from domains.models import Domain, SenderSignature

NOT_A_SENDER_SIGNATURE = 400
SIGNATURE_NOT_CONFIRMED = 401
NOT_A_SENDER_SIGNATURE_MESSAGE = (
    "The 'From' address you supplied ({address}) is not a Sender Signature on your account. "
    "Please add and confirm this address in order to be able to use it in the 'From' field of "
    "your messages."
)
SIGNATURE_NOT_CONFIRMED_MESSAGE = "Sender signature not confirmed."


def from_refusal(sender: Sender) -> tuple[int, str] | None:
    """None when the From ``sender`` may be used; else (ErrorCode, Postmark's message), which
    names the address as the message wrote it."""
    return _refusal(sender.addr_spec, sender.ascii_domain, sender.address.lower())


def sender_refusal(address: str) -> tuple[int, str] | None:
    """None when ``address`` may be used as From; else (ErrorCode, Postmark's message)."""
    return _refusal(address, domain_of(address), address_key(address))


def _refusal(address: str, domain: str, key: str) -> tuple[int, str] | None:
    if domain and Domain.objects.filter(name=domain, dkim_verified=True).exists():
        return None
    signature = SenderSignature.objects.filter(email=key).only("confirmed").first()
    if signature is None:
        return NOT_A_SENDER_SIGNATURE, NOT_A_SENDER_SIGNATURE_MESSAGE.format(address=address)
    if not signature.confirmed:
        return SIGNATURE_NOT_CONFIRMED, SIGNATURE_NOT_CONFIRMED_MESSAGE
    return None
