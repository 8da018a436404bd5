"""bounces.types: the one table of bounce types, against Postmark's documented values (compat §3,
§4) and against what each type did before the table existed."""

import pytest

from bounces import types
from bounces.types import (
    BOUNCE_TYPES,
    TABLE,
    TYPE_CHOICES,
    BounceType,
    Deactivation,
    bounce_type,
    names_where,
)
from messages.models import MessageEvent
from streams.models import Suppression

pytestmark = pytest.mark.no_db

# Type, TypeCode, Name, Description: Postmark's table of bounce types, word for word (the
# misspelling "Typcial" is Postmark's own).
DOCUMENTED = [
    ("HardBounce", 1, "Hard bounce",
     "The server was unable to deliver your message (ex: unknown user, mailbox not found)."),
    ("Transient", 2, "Message delayed",
     "The server could not temporarily deliver your message (ex: Message is delayed due to "
     "network troubles)."),
    ("Unsubscribe", 16, "Unsubscribe request", "Unsubscribe or Remove request."),
    ("Subscribe", 32, "Subscribe request",
     "Subscribe request from someone wanting to get added to the mailing list."),
    ("AutoResponder", 64, "Auto responder",
     'Automatic email responder (ex: "Out of Office" or "On Vacation").'),
    ("AddressChange", 128, "Address change", "The recipient has requested an address change."),
    ("DnsError", 256, "DNS error", "A temporary DNS error."),
    ("SpamNotification", 512, "Spam notification",
     "The message was delivered, but was either blocked by the user, or classified as spam, "
     "bulk mail, or had rejected content."),
    ("OpenRelayTest", 1024, "Open relay test",
     "The NDR is actually a test email message to see if the mail server is an open relay."),
    ("Unknown", 2048, "Unknown", "Unable to classify the NDR."),
    ("SoftBounce", 4096, "Soft bounce",
     "Unable to temporarily deliver message (i.e. mailbox full, account disabled, exceeds "
     "quota, out of disk space)."),
    ("VirusNotification", 8192, "Virus notification",
     "The bounce is actually a virus notification warning about a virus/code infected message."),
    ("ChallengeVerification", 16384, "Spam challenge verification",
     "The bounce is a challenge asking for verification you actually sent the email. Typcial "
     "challenges are made by Spam Arrest, or MailFrontier Matador."),
    ("BadEmailAddress", 100000, "Invalid email address",
     "The address is not a valid email address."),
    ("SpamComplaint", 100001, "Spam complaint",
     "The subscriber explicitly marked this message as spam."),
    ("ManuallyDeactivated", 100002, "Manually deactivated", "The email was manually deactivated."),
    ("Unconfirmed", 100003, "Registration not confirmed",
     "The subscriber has not clicked on the confirmation link upon registration or import."),
    ("Blocked", 100006, "ISP block", "Blocked from this ISP due to content or blacklisting."),
    ("SMTPApiError", 100007, "SMTP API error",
     "An error occurred while accepting an email through the SMTP API."),
    ("InboundError", 100008, "Processing failed",
     "Unable to deliver inbound message to destination inbound hook."),
    ("DMARCPolicy", 100009, "DMARC Policy", "Email rejected due DMARC Policy."),
    ("TemplateRenderingFailed", 100010, "Template rendering failed",
     "An error occurred while attempting to render your template."),
]  # fmt: skip


def test_every_documented_type_is_a_row_with_postmarks_code_name_and_description():
    assert [(t.type, t.code, t.name, t.description) for t in TABLE] == DOCUMENTED


def test_codes_and_names_are_unique():
    assert len({t.code for t in TABLE}) == len(TABLE)
    assert len({t.type for t in TABLE}) == len(TABLE) == len(BOUNCE_TYPES)


def test_can_activate_is_postmarks():
    """Hard bounces deactivate and can be reactivated; spam complaints deactivate and cannot."""
    assert bounce_type("HardBounce").can_activate
    assert bounce_type("HardBounce").deactivates
    assert not bounce_type("SpamComplaint").can_activate
    assert bounce_type("SpamComplaint").deactivates


def test_the_deactivating_types_are_the_ones_that_deactivated_before():
    # A report: a hard bounce about the address, and every spam complaint. A reply refusing the
    # address at RCPT: a hard bounce, or a bad address when the reply says so.
    assert names_where(lambda t: t.deactivates) == (
        "HardBounce",
        "BadEmailAddress",
        "SpamComplaint",
    )
    assert {t.type: t.deactivation for t in TABLE if t.deactivates} == {
        "HardBounce": Deactivation.ADDRESS,
        "BadEmailAddress": Deactivation.ADDRESS_AT_RCPT,
        "SpamComplaint": Deactivation.ALWAYS,
    }
    assert names_where(lambda t: t.deactivated_at_rcpt) == ("HardBounce", "BadEmailAddress")
    assert names_where(lambda t: t.can_activate) == ("HardBounce", "BadEmailAddress")


@pytest.mark.parametrize("row", TABLE, ids=lambda t: t.type)
def test_a_row_is_consistent(row: BounceType):
    # Only a deactivation can be undone, and a deactivation records a suppression reason.
    assert not row.can_activate or row.deactivates
    assert bool(row.suppression) == row.deactivates
    assert not row.suppression or row.suppression in Suppression.Reason.values
    assert row.event in MessageEvent.Type.values


def test_suppression_reasons_and_events_are_the_ones_recorded_before():
    assert {t.type: t.suppression for t in TABLE if t.suppression} == {
        "HardBounce": Suppression.Reason.HARD_BOUNCE,
        "BadEmailAddress": Suppression.Reason.HARD_BOUNCE,
        "SpamComplaint": Suppression.Reason.SPAM_COMPLAINT,
    }
    assert names_where(lambda t: t.event == MessageEvent.Type.SPAM_COMPLAINT) == ("SpamComplaint",)
    assert names_where(lambda t: t.event != MessageEvent.Type.BOUNCE) == ("SpamComplaint",)


def test_terminal_delay_and_bounce_rate_are_the_ones_before():
    assert names_where(lambda t: t.terminal) == (
        "HardBounce", "DnsError", "SoftBounce", "BadEmailAddress", "Blocked",
    )  # fmt: skip
    assert names_where(lambda t: t.delay) == ("Transient", "DnsError")
    assert names_where(lambda t: not t.counts_in_bounce_rate) == ("Transient", "SMTPApiError")


def test_lookups():
    assert bounce_type("SoftBounce") is BOUNCE_TYPES["SoftBounce"]
    for name in ("", "hardbounce", "Bounce", None):
        with pytest.raises(ValueError, match="unknown bounce type"):
            bounce_type(name)
    assert [(t.type, t.name) for t in TABLE] == TYPE_CHOICES


def test_every_name_constant_is_a_row():
    constants = {k: v for k, v in vars(types).items() if k.isupper() and isinstance(v, str)}
    assert constants
    for constant, name in constants.items():
        assert name in BOUNCE_TYPES, constant


def test_rows_are_frozen():
    with pytest.raises(AttributeError):
        TABLE[0].code = 3  # type: ignore[misc]
