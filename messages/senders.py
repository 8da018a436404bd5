"""The state of the From addresses a server uses, for its SMTP configuration panel and the
dashboard: which may send (a DKIM-verified domain, a confirmed signature) and which are refused.

It looks at what the server actually sent or tried to send lately: the From of its recent
messages, and of its SMTP API errors 400 and 401 (refused senders). Each is judged by the rule
processing applies now (``domains.identity.sender_refusal``), so a domain whose record vanished
shows as refused even though its last messages went out.
"""

from dataclasses import dataclass

from django.db.models import Q
from django.utils import timezone

from bounces.models import Bounce
from bounces.types import SMTP_API_ERROR
from core import mime
from core.addresses import domain_of
from domains.identity import NOT_A_SENDER_SIGNATURE, SIGNATURE_NOT_CONFIRMED_MESSAGE, sender_refusal
from domains.models import Domain
from messages.models import OutboundMessage
from streams.models import MessageStream

RECENT_DAYS = 7
MAX_ERRORS = 2000  # the newest SMTP API errors 400/401 looked at
MESSAGES_PER_STREAM = 500  # the newest messages of each stream looked at


@dataclass
class SenderState:
    sender: str  # a domain (``shop.example``) or, for single signatures, an address
    allowed: bool
    text: str
    refused: int = 0  # SMTP API errors 400/401 in the window
    sent: bool = False  # recent messages went out from it


def sender_states(
    server_ids, days: int = RECENT_DAYS, recent_messages: bool = True
) -> list[SenderState]:
    """The senders of the servers ``server_ids`` (None: every server) over the last ``days``,
    the refused ones first. With ``recent_messages`` (a server's page), the From of each
    stream's newest messages too; the dashboard reads the errors only."""
    since = timezone.now() - timezone.timedelta(days=days)
    errors = Bounce.objects.filter(type=SMTP_API_ERROR, bounced_at__gte=since).filter(
        Q(details__endswith="is not a confirmed Sender Signature.")
        | Q(details=SIGNATURE_NOT_CONFIRMED_MESSAGE)
    )
    if server_ids is not None:
        errors = errors.filter(server_id__in=server_ids)
    refused: dict[str, int] = {}
    newest = errors.order_by("-bounced_at").values_list("from_address", flat=True)
    for address in newest[:MAX_ERRORS]:
        address = address.strip().lower()
        refused[address] = refused.get(address, 0) + 1
    sent = set()
    if recent_messages and server_ids is not None:
        sent = {
            mime.first_address(value).strip().lower()
            for value in _recent_from_values(server_ids, since)
        }
    states: dict[str, SenderState] = {}
    for address in sorted(set(refused) | sent):
        if not address:
            continue
        state = _judge(address)
        state = states.setdefault(state.sender, state)
        state.refused += refused.get(address, 0)
        state.sent = state.sent or address in sent
    return sorted(states.values(), key=lambda s: (s.allowed, s.sender))


def _recent_from_values(server_ids, since) -> set[str]:
    """The From header values of each stream's newest messages (the server, stream, received
    index serves each query, however large the table)."""
    values: set[str] = set()
    for stream_id in MessageStream.objects.filter(server_id__in=server_ids).values_list(
        "pk", flat=True
    ):
        values.update(
            OutboundMessage.objects.filter(stream_id=stream_id, received_at__gte=since)
            .order_by("-received_at")
            .values_list("from_address", flat=True)[:MESSAGES_PER_STREAM]
        )
    return values


def _judge(address: str) -> SenderState:
    domain = domain_of(address)
    refusal = sender_refusal(address)
    if refusal is None:
        if Domain.objects.filter(name=domain, dkim_verified=True).exists():
            return SenderState(domain, True, f"mail from {domain} is sent: DKIM verified")
        return SenderState(address, True, f"mail from {address} is sent: confirmed signature")
    code, _ = refusal
    if code == NOT_A_SENDER_SIGNATURE:
        return SenderState(
            domain,
            False,
            f"mail from {domain} is not verified: messages will be refused (ErrorCode 400). "
            f"Add the domain and publish its DNS records, or add {address} as a sender "
            "signature.",
        )
    return SenderState(
        address,
        False,
        f"mail from {address} is not confirmed: messages will be refused (ErrorCode 401) "
        "until its owner follows the confirmation link, or an operator confirms it.",
    )
