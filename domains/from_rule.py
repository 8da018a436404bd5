"""Who a message says it is from: its one From mailbox, read strictly from the field's raw bytes.

Every channel reads the sender here and nowhere else: processing (SMTP and the HTTP send API,
through ``messages.headers``), the HTTP API's ``From`` field, and DKIM signing at delivery. A
message has exactly one From field holding exactly one mailbox. The field is unfolded and parsed
as written by the header registry's address parser (``email.headerregistry.AddressHeader``),
refusing whatever the strict policy (``email.policy.strict``) would raise on: any defect, a
group, a second mailbox, trailing text, an obsolete route. RFC 2047 encoded-words are decoded in
the display name only: the addr-spec must be written out literally — no encoded-word, comment,
folding, quoting or domain literal inside it — so no decoding can make the address a reader's
client shows differ from the one checked, signed and recorded. Its domain is normalised once
(``core.addresses.ascii_domain``: IDNA 2008) and must be a host name (letters, digits, hyphens).

The answer is a ``Sender`` or a ``FromProblem`` (ErrorCode 300 and Postmark's sentence, "Invalid
'From' address: '…'."); whether the sender may send is ``domains.identity.from_refusal``'s.
"""

import re
from dataclasses import dataclass
from email.headerregistry import AddressHeader
from functools import lru_cache

from core import mime
from core.addresses import InvalidDomain, ascii_domain

INVALID_FROM = 300
INVALID_FROM_MESSAGE = "Invalid 'From' address: '{value}'."
MAX_FIELD_LENGTH = 998  # RFC 5322's line limit, for the unfolded value
MAX_LOCAL_PART_LENGTH = 64  # RFC 5321
MAX_ADDRESS_LENGTH = 320  # RFC 5321: 64 + 1 + 255
MAX_QUOTED = 100  # characters of the value quoted back in the sentence
CONTROL_CHARACTER = "the From field holds a control character (NUL, CR, LF…)"

_FOLD = re.compile(r"\r\n(?=[ \t])|\r(?=[ \t])|\n(?=[ \t])")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_HOST_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# Tokens that may surround the addr-spec but not be inside it.
_SPACE_TOKENS = frozenset({"cfws", "comment", "fws"})
# Tokens that make an addr-spec something other than a literal dot-atom@host.
_REFUSED_TOKENS = frozenset(
    {"encoded-word", "quoted-string", "bare-quoted-string", "domain-literal", "obs-local-part"}
)


@dataclass(frozen=True)
class Sender:
    """The one mailbox of a message's From field."""

    display_name: str  # decoded (RFC 2047), '' when there is none
    local_part: str
    domain: str  # as written
    ascii_domain: str  # normalised once (IDNA 2008 A-labels, lower case)

    @property
    def addr_spec(self) -> str:
        """The address as written: what the API records and quotes back."""
        return f"{self.local_part}@{self.domain}"

    @property
    def address(self) -> str:
        """The address with its normalised domain: what the rule and signing look up."""
        return f"{self.local_part}@{self.ascii_domain}"


@dataclass(frozen=True)
class FromProblem:
    """Why a message's From cannot be used: ErrorCode 300, Postmark's sentence and a reason."""

    value: str  # the field's value as written (unfolded), '' when there is no field
    reason: str  # e.g. "the message has no From field"
    error_code: int = INVALID_FROM

    @property
    def message(self) -> str:
        """Postmark's sentence, quoting the value (shortened; control characters shown as
        U+FFFD, so the sentence is safe to store and to put in an SMTP reply)."""
        value = _CONTROL.sub("\ufffd", self.value).replace("\t", " ")
        if len(value) > MAX_QUOTED:
            value = value[:MAX_QUOTED] + "…"
        return INVALID_FROM_MESSAGE.format(value=value)

    @property
    def details(self) -> str:
        """The short text of an SMTP API error: the sentence's reason."""
        return f"Invalid 'From' address: {self.reason}."


def read_from(header_block: bytes, charset: str = "") -> Sender | FromProblem:
    """The sender of a message, from its header block (``core.mime.split_message``)."""
    raw_fields = [raw for name, raw in mime.fields(header_block) if name == "from"]
    return sender_of(raw_fields, charset)


def sender_of(raw_fields: list[bytes], charset: str = "") -> Sender | FromProblem:
    """The sender named by a message's From fields (each raw, with its name and continuation
    lines), in the charset its Content-Type declares (for unencoded 8-bit display names)."""
    if not raw_fields:
        return FromProblem("", "the message has no From field")
    values = [_value(raw, charset) for raw in raw_fields]
    if len(values) > 1:
        return FromProblem(", ".join(values), f"the message has {len(values)} From fields")
    if b"\x00" in raw_fields[0]:
        return FromProblem(values[0], CONTROL_CHARACTER)
    return parse_from_value(values[0])


def _value(raw_field: bytes, charset: str) -> str:
    """A raw field's value as text (UTF-8, else the declared charset): after the colon,
    unfolded, no RFC 2047 encoded-word decoded."""
    _, _, value = raw_field.partition(b":")
    return _FOLD.sub("", mime.decode_bytes(value, charset)).strip()


def parse_from_value(value: str) -> Sender | FromProblem:
    """The one mailbox of a From field's value (unfolded, as written), or the problem. The
    HTTP API's ``From`` field is read by this too."""
    if not value.strip():
        return FromProblem(value, "the From field is empty")
    if len(value) > MAX_FIELD_LENGTH:
        return FromProblem(value, f"the From field is longer than {MAX_FIELD_LENGTH} characters")
    if _CONTROL.search(value):
        return FromProblem(value, CONTROL_CHARACTER)
    return _parse(value)


@lru_cache(maxsize=4096)  # senders repeat themselves; values are at most MAX_FIELD_LENGTH long
def _parse(value: str) -> Sender | FromProblem:
    try:
        tree = AddressHeader.value_parser(value)
    except Exception:  # the parser's own failures on hostile input
        return FromProblem(value, "it cannot be parsed")
    if tree.all_defects:
        return FromProblem(value, f"it is not one valid mailbox ({tree.all_defects[0]})")
    if len(tree.addresses) != 1:
        return FromProblem(value, f"it names {len(tree.addresses)} addresses, not one")
    node = tree.addresses[0][0]
    if node.token_type == "group":
        return FromProblem(value, "it is a group, not one mailbox")
    if node.token_type != "mailbox" or node.route:
        return FromProblem(value, "it is not one valid mailbox")
    problem = _literal_problem(node)
    if problem:
        return FromProblem(value, problem)
    display_name = node.display_name or ""
    if _CONTROL.search(display_name):  # decoded from an encoded-word: "=0D=0AFrom:_…"
        return FromProblem(value, "the display name holds a control character (NUL, CR, LF…)")
    local_part, domain = node.local_part, node.domain
    try:
        normalised = ascii_domain(domain)
    except InvalidDomain:
        return FromProblem(value, f"'{domain}' is not a valid domain name")
    labels = normalised.split(".")
    if not all(_HOST_LABEL.match(label) for label in labels):
        return FromProblem(value, f"'{domain}' is not a host name")
    if len(local_part) > MAX_LOCAL_PART_LENGTH or len(local_part) + 1 + len(normalised) > (
        MAX_ADDRESS_LENGTH
    ):
        return FromProblem(value, "the address is too long")
    return Sender(display_name, local_part, domain, normalised)


def _literal_problem(mailbox) -> str:
    """Why the mailbox's addr-spec is not written out literally as dot-atom@host, or ''."""
    addr_spec = _find(mailbox, "addr-spec")
    if addr_spec is None:
        return "it has no address"
    leaves = list(_leaves(addr_spec, frozenset()))
    while leaves and leaves[0][1] & _SPACE_TOKENS:
        leaves.pop(0)
    while leaves and leaves[-1][1] & _SPACE_TOKENS:
        leaves.pop()
    for _, inside in leaves:
        if "encoded-word" in inside:
            return "an encoded-word is part of the address"
        if inside & _SPACE_TOKENS:
            return "the address holds a comment or white space"
        if inside & _REFUSED_TOKENS:
            return "the address is quoted or a domain literal"
    if "".join(text for text, _ in leaves) != f"{mailbox.local_part}@{mailbox.domain}":
        return "the address is not written out as it is read"
    return ""


def _find(token, token_type: str):
    """The first token of ``token_type`` in the tree under ``token`` (depth first)."""
    if getattr(token, "token_type", None) == token_type:
        return token
    if isinstance(token, list):
        for child in token:
            found = _find(child, token_type)
            if found is not None:
                return found
    return None


def _leaves(token, inside: frozenset):
    """(text, the token types it is inside of) for each terminal under ``token``."""
    inside = inside | {token.token_type}
    if isinstance(token, list):
        for child in token:
            yield from _leaves(child, inside)
    else:
        yield str(token), inside
