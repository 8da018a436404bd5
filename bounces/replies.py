"""SMTP reply classification: which Postmark bounce Type a reply stands for, and what it does.

``classify_smtp_reply`` names the Type of a reply (code, enhanced status code, text), falling
back to text heuristics when the codes are generic; ``address_rejected`` says whether a permanent
reply is about the recipient's address itself; ``classify_smtp_failure`` combines both with the
SMTP stage that was refused into an ``SmtpFailure`` (bounce or defer, deactivate or not). Used by
delivery for live replies and by ``bounces.reports`` for the replies quoted in bounce reports.
"""

import re
from dataclasses import dataclass

from bounces.types import (
    BAD_EMAIL_ADDRESS,
    BLOCKED,
    DNS_ERROR,
    HARD_BOUNCE,
    SOFT_BOUNCE,
    TRANSIENT,
    UNKNOWN,
    VIRUS_NOTIFICATION,
    bounce_type,
)

MAX_TEXT = 100_000  # characters of notification text searched by the heuristics

_ENHANCED_RE = re.compile(r"(?<!\d)(?<!\d\.)([245]\.\d{1,3}\.\d{1,3})(?!\.?\d)")
_LEADING_CODE_RE = re.compile(r"^\s*(?:[\w.-]{1,30};\s*)?([2-5]\d\d)(?=[\s-]|$)")
_ANY_CODE_RE = re.compile(r"(?<![\w.])([245]\d\d)(?=[ -])")


# Text heuristics, tried in order, for replies without a specific enhanced status code.
_TEXT_RULES = [
    (VIRUS_NOTIFICATION, r"\bvirus|\bmalware\b|\binfected\b"),
    (
        DNS_ERROR,
        r"host or domain name not found|name service error|\bhost not found|domain not found"
        r"|domain (?:name )?(?:does not|doesn't) exist|no mx (?:record|host)|\bnxdomain\b"
        r"|unrouteable|unable to route|dns (?:lookup|error|failure)|mx lookup",
    ),
    (
        BAD_EMAIL_ADDRESS,
        r"bad (?:destination )?(?:mailbox )?address syntax|syntax error in (?:mailbox|address)"
        r"|invalid address syntax|malformed (?:e-?mail )?address",
    ),
    (
        SOFT_BOUNCE,
        r"mailbox (?:is )?full|\bquota\b|storage allocation|out of storage"
        r"|insufficient (?:disk )?space|out of (?:disk )?space|(?:mailbox|account) (?:is )?"
        r"(?:temporarily )?(?:disabled|inactive|suspended)",
    ),
    (
        HARD_BOUNCE,
        r"user unknown|unknown user|no such (?:user|mailbox|recipient|address|account)"
        r"|mailbox (?:unavailable|not found|does not exist|doesn't exist)"
        r"|recipient (?:not found|unknown)|unknown (?:recipient|mailbox|address)"
        r"|does not exist|doesn't exist|doesn't have an? [\w.-]{1,60} account"
        r"|(?:invalid|not a valid) (?:recipient|mailbox)|user not found|addressee unknown"
        r"|account (?:has been )?(?:closed|deleted|terminated)",
    ),
    (
        BLOCKED,
        r"spam|\bblocked\b|black ?list|block ?list|\blisted (?:at|in|on|by)\b|\brbl\b"
        r"|reputation|policy|unsolicited|\bdenied\b",
    ),
]
_TEXT_RULES_RE = [(name, re.compile(pattern, re.I)) for name, pattern in _TEXT_RULES]


def _text_rule(text: str) -> str:
    for name, pattern in _TEXT_RULES_RE:
        if pattern.search(text):
            return name
    return ""


def first_enhanced(text: str) -> str:
    match = _ENHANCED_RE.search(text or "")
    return match.group(1) if match else ""


def reply_code(text: str) -> int:
    match = _LEADING_CODE_RE.match(text or "") or _ANY_CODE_RE.search(text or "")
    return int(match.group(1)) if match else 0


# The enhanced status details (RFC 3463) that say the recipient's address itself does not work:
# bad mailbox (x.1.1), bad destination system (x.1.2), bad syntax (x.1.3), mailbox moved
# (x.1.6), null MX (x.1.10, RFC 7505).
ADDRESS_STATUSES = frozenset({"1.1", "1.2", "1.3", "1.6", "1.10"})
# The sender's address was refused (bad sender mailbox x.1.7, bad sender system x.1.8).
SENDER_STATUSES = frozenset({"1.7", "1.8"})
_UNKNOWN_ADDRESS_RE = re.compile(
    r"\buser unknown|\bunknown user|no such (?:user|mailbox|recipient|account|address)"
    r"|(?:user|recipient|mailbox|addressee) (?:not found|unknown|does not exist|doesn't exist)"
    r"|\bunknown (?:recipient|mailbox|local[- ]part)|invalid (?:recipient|mailbox)\b"
    r"|recipientnotfound|account (?:that you tried to reach )?(?:does not|doesn't) exist",
    re.I,
)


def classify_smtp_reply(code: int, enhanced: str, text: str) -> str:
    """A Postmark bounce Type for an SMTP reply (code, enhanced status code, reply text).

    5xx → HardBounce unless refined: x.1.3 BadEmailAddress, 5.1.x HardBounce, except the
    sender's address (5.1.7, 5.1.8: Blocked, the receiving system refuses our sender), 5.2.x and
    5.3.4 SoftBounce (mailbox full or disabled, message too big), x.4.3/x.4.4 DnsError, 5.7.x
    Blocked; 4xx → Transient (DnsError for DNS trouble). Generic codes (x.0.0 or none) fall back
    to text heuristics.
    """
    text = str(text or "")[:MAX_TEXT]
    enhanced = first_enhanced(str(enhanced or "")) or first_enhanced(text)
    code = _int_code(code, text)
    klass = code // 100 if code else (int(enhanced[0]) if enhanced else 0)
    detail = enhanced.split(".", 1)[1] if enhanced else ""  # "1.1" for 5.1.1
    rule = _text_rule(text)

    if rule == VIRUS_NOTIFICATION:
        return rule
    if detail in ("4.3", "4.4"):
        return DNS_ERROR
    if rule == DNS_ERROR and detail in ("", "0.0", "1.2", "4.0"):
        return DNS_ERROR
    if klass == 4:
        return TRANSIENT
    if klass == 5:
        if detail == "1.3":
            return BAD_EMAIL_ADDRESS
        if detail in SENDER_STATUSES:
            return BLOCKED
        if detail.startswith("1.") and detail != "1.0":
            return HARD_BOUNCE
        if (detail.startswith("2.") and detail != "2.0") or detail == "3.4":
            return SOFT_BOUNCE
        if detail == "4.7":  # delivery time expired: the address itself may be fine
            return SOFT_BOUNCE
        if detail.startswith("7."):
            return BLOCKED
        if rule in (BAD_EMAIL_ADDRESS, SOFT_BOUNCE, HARD_BOUNCE, BLOCKED):
            return rule
        return HARD_BOUNCE
    if klass == 0 and rule:
        return rule
    return UNKNOWN


def _int_code(code, text: str) -> int:
    try:
        code = int(code or 0)
    except (TypeError, ValueError):
        code = 0
    return code if 200 <= code < 600 else reply_code(text)


def address_rejected(code: int, enhanced: str, text: str) -> bool:
    """Whether a permanent reply says the recipient's address itself does not work: an address
    status (x.1.1, x.1.2, x.1.3, x.1.6, x.1.10), or without a specific status code a text that
    says so unambiguously ("user unknown", and nothing about spam, policy or a full mailbox)."""
    text = str(text or "")[:MAX_TEXT]
    enhanced = first_enhanced(str(enhanced or "")) or first_enhanced(text)
    code = _int_code(code, text)
    if not (500 <= code < 600 or (not code and enhanced.startswith("5"))):
        return False
    detail = enhanced.split(".", 1)[1] if enhanced else ""
    if detail in ADDRESS_STATUSES:
        return True
    if detail not in ("", "0.0", "1.0"):
        return False  # a specific code about something else (policy, mailbox full, sender…)
    if not _UNKNOWN_ADDRESS_RE.search(text):
        return False
    # Unambiguous: no other rule (spam, policy, a full mailbox, DNS trouble) matches as well.
    return all(name == HARD_BOUNCE or not p.search(text) for name, p in _TEXT_RULES_RE)


class Stage:
    """The SMTP command a reply answered."""

    MAIL = "MAIL"  # MAIL FROM: about the sender or the session, never one recipient
    RCPT = "RCPT"  # RCPT TO: about this recipient
    DATA = "DATA"  # the DATA command or the message body: about the message


@dataclass(frozen=True)
class SmtpFailure:
    """What a non-2xx reply means for the recipients it concerns."""

    type: str  # the Postmark bounce Type to record
    permanent: bool  # bounce now, never retry (5xx); else a deferral, retried later
    deactivates: bool  # the address itself does not work: deactivate it (HardBounce + suppression)


def classify_smtp_failure(stage: str, code: int, enhanced: str, text: str) -> SmtpFailure:
    """What a 4xx or 5xx reply at ``stage`` does to its recipients.

    4xx is a deferral at every stage. A 5xx to RCPT bounces that recipient, and deactivates it
    only when the reply is about the address (``address_rejected``). A 5xx to MAIL FROM or to the
    message (DATA) bounces the message for its recipients by the type its code gives (Blocked for
    policy and sender refusals, SoftBounce for size, HardBounce otherwise) but deactivates no
    one: the addresses were never the problem. A 530 to MAIL FROM (authentication required) is
    the relay's configuration, so it is retried."""
    text = str(text or "")[:MAX_TEXT]
    code = _int_code(code, text)
    kind = classify_smtp_reply(code, enhanced, text)
    if code // 100 != 5 or (stage == Stage.MAIL and code == 530):
        # A deferral is a delay: Transient, unless the reply names a more specific one.
        return SmtpFailure(kind if bounce_type(kind).delay else TRANSIENT, False, False)
    if bounce_type(kind).delay or kind == UNKNOWN:
        kind = HARD_BOUNCE  # a permanent reply is never "delayed"
    deactivates = stage == Stage.RCPT and address_rejected(code, enhanced, text)
    if deactivates and not bounce_type(kind).deactivated_at_rcpt:
        kind = HARD_BOUNCE
    return SmtpFailure(kind, True, deactivates)
