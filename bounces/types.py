"""Postmark's bounce types as one table: what each type is called and what a bounce of it does.

Each row gives a Type its TypeCode, Name and Description (compat §3, in Postmark's own words) and
its behaviour here: whether and when it makes its recipient inactive, whether that can be undone
(CanActivate), which suppression reason it records, whether a report of it ends the recipient's
delivery, which message event (and so which webhook trigger) it produces, whether it is a delay
rather than a failure, and whether it counts in the dashboard's bounce rate. Code decides by
looking a type up here (``bounce_type``, ``names_where``) rather than by naming types, so a new
type is one new row. Pure Python: no Django import.
"""

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Deactivation(StrEnum):
    """When a bounce of a type makes its recipient inactive (Inactive true, plus a suppression)."""

    NEVER = "never"  # recorded only: the recipient stays active
    ALWAYS = "always"  # every bounce of the type
    # When the failure is about the address itself (``bounces.replies.address_rejected``): a
    # reply refusing it at RCPT during delivery, or the status of a report at the bounce MX.
    ADDRESS = "address"
    # Like ADDRESS for a reply refusing the address at RCPT; a report of it deactivates nothing.
    ADDRESS_AT_RCPT = "address-at-rcpt"


@dataclass(frozen=True)
class BounceType:
    """One Postmark bounce type and what a bounce of it does."""

    type: str  # the Type name, e.g. "HardBounce"
    code: int  # TypeCode
    name: str  # Name
    description: str  # Description
    deactivation: Deactivation = Deactivation.NEVER
    # CanActivate of a bounce of this type that made its recipient inactive: whether
    # ``PUT /bounces/{id}/activate`` may undo it. A bounce that deactivated nothing has false.
    can_activate: bool = False
    suppression: str = ""  # the Suppression.Reason recorded when it deactivates
    event: str = "Bounce"  # the MessageEvent type, and so the webhook trigger and RecordType
    # A report of this type at the bounce MX ends the recipient's delivery (it becomes bounced).
    # (Replies during delivery end it by their code, whatever the type.)
    terminal: bool = False
    # A delay, not a failure: the message is still being retried. Unless it deactivated, the
    # Messages API shows its event as "Transient" rather than "Bounced".
    delay: bool = False
    counts_in_bounce_rate: bool = True  # the dashboard's bounce rate counts it

    @property
    def deactivates(self) -> bool:
        """Whether a bounce of this type can make its recipient inactive."""
        return self.deactivation != Deactivation.NEVER

    @property
    def deactivated_at_rcpt(self) -> bool:
        """Whether a reply refusing the address at RCPT keeps this type and deactivates (any
        other type is then recorded as a HardBounce)."""
        return self.deactivation in (Deactivation.ADDRESS, Deactivation.ADDRESS_AT_RCPT)


TABLE: tuple[BounceType, ...] = (
    BounceType("HardBounce", 1, "Hard bounce",
               "The server was unable to deliver your message (ex: unknown user, mailbox not "
               "found).",
               deactivation=Deactivation.ADDRESS, can_activate=True, suppression="HardBounce",
               terminal=True),
    BounceType("Transient", 2, "Message delayed",
               "The server could not temporarily deliver your message (ex: Message is delayed "
               "due to network troubles).",
               delay=True, counts_in_bounce_rate=False),
    BounceType("Unsubscribe", 16, "Unsubscribe request", "Unsubscribe or Remove request."),
    BounceType("Subscribe", 32, "Subscribe request",
               "Subscribe request from someone wanting to get added to the mailing list."),
    BounceType("AutoResponder", 64, "Auto responder",
               'Automatic email responder (ex: "Out of Office" or "On Vacation").'),
    BounceType("AddressChange", 128, "Address change",
               "The recipient has requested an address change."),
    BounceType("DnsError", 256, "DNS error", "A temporary DNS error.",
               terminal=True, delay=True),
    BounceType("SpamNotification", 512, "Spam notification",
               "The message was delivered, but was either blocked by the user, or classified as "
               "spam, bulk mail, or had rejected content."),
    BounceType("OpenRelayTest", 1024, "Open relay test",
               "The NDR is actually a test email message to see if the mail server is an open "
               "relay."),
    BounceType("Unknown", 2048, "Unknown", "Unable to classify the NDR."),
    BounceType("SoftBounce", 4096, "Soft bounce",
               "Unable to temporarily deliver message (i.e. mailbox full, account disabled, "
               "exceeds quota, out of disk space).",
               terminal=True),
    BounceType("VirusNotification", 8192, "Virus notification",
               "The bounce is actually a virus notification warning about a virus/code infected "
               "message."),
    BounceType("ChallengeVerification", 16384, "Spam challenge verification",
               "The bounce is a challenge asking for verification you actually sent the email. "
               "Typcial challenges are made by Spam Arrest, or MailFrontier Matador."),
    BounceType("BadEmailAddress", 100000, "Invalid email address",
               "The address is not a valid email address.",
               deactivation=Deactivation.ADDRESS_AT_RCPT, can_activate=True,
               suppression="HardBounce", terminal=True),
    BounceType("SpamComplaint", 100001, "Spam complaint",
               "The subscriber explicitly marked this message as spam.",
               deactivation=Deactivation.ALWAYS, can_activate=False, suppression="SpamComplaint",
               event="SpamComplaint"),
    BounceType("ManuallyDeactivated", 100002, "Manually deactivated",
               "The email was manually deactivated."),
    BounceType("Unconfirmed", 100003, "Registration not confirmed",
               "The subscriber has not clicked on the confirmation link upon registration or "
               "import."),
    BounceType("Blocked", 100006, "ISP block",
               "Blocked from this ISP due to content or blacklisting.",
               terminal=True),
    BounceType("SMTPApiError", 100007, "SMTP API error",
               "An error occurred while accepting an email through the SMTP API.",
               counts_in_bounce_rate=False),
    BounceType("InboundError", 100008, "Processing failed",
               "Unable to deliver inbound message to destination inbound hook."),
    BounceType("DMARCPolicy", 100009, "DMARC Policy", "Email rejected due DMARC Policy."),
    BounceType("TemplateRenderingFailed", 100010, "Template rendering failed",
               "An error occurred while attempting to render your template."),
)  # fmt: skip

BOUNCE_TYPES: dict[str, BounceType] = {row.type: row for row in TABLE}
TYPE_CHOICES = [(t.type, t.name) for t in TABLE]
# The message events (webhook triggers) a bounce produces: Bounce, SpamComplaint.
BOUNCE_EVENTS = frozenset(t.event for t in TABLE)


def bounce_type(name: str) -> BounceType:
    """The row of the type ``name``; ValueError for a name that is not a bounce type."""
    try:
        return BOUNCE_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown bounce type {name!r}") from None


def names_where(predicate: Callable[[BounceType], bool]) -> tuple[str, ...]:
    """The names of the types whose row satisfies ``predicate``, in table order."""
    return tuple(row.type for row in TABLE if predicate(row))


# The names code refers to (each is a row above; bounces/tests/test_types.py checks it).
HARD_BOUNCE = "HardBounce"
TRANSIENT = "Transient"
UNSUBSCRIBE = "Unsubscribe"
AUTO_RESPONDER = "AutoResponder"
ADDRESS_CHANGE = "AddressChange"
DNS_ERROR = "DnsError"
UNKNOWN = "Unknown"
SOFT_BOUNCE = "SoftBounce"
VIRUS_NOTIFICATION = "VirusNotification"
CHALLENGE_VERIFICATION = "ChallengeVerification"
BAD_EMAIL_ADDRESS = "BadEmailAddress"
SPAM_COMPLAINT = "SpamComplaint"
MANUALLY_DEACTIVATED = "ManuallyDeactivated"
BLOCKED = "Blocked"
SMTP_API_ERROR = "SMTPApiError"
