"""The headers processing reads (Postmark's ``X-PM-*`` and the few standard ones it needs),
parsed once into a ``ParsedMessage``, and the ``Problem`` each rule reports in Postmark's terms.

Parsing never raises: what is wrong becomes a Problem, which processing turns into an SMTPApiError
bounce (SMTP) or an error answer (HTTP).
"""

from dataclasses import dataclass, field

from core import mime
from domains.from_rule import FromProblem, Sender, sender_of

MAX_TAG_LENGTH = 1000
MAX_ADDRESS_LENGTH = 320  # RFC 5321: 64 + 1 + 255; the width of every address column
MAX_HEADER_VALUE_LENGTH = 998  # RFC 5322's line limit; the width of From and Message-ID
MAX_METADATA_FIELDS = 10
MAX_METADATA_KEY_LENGTH = 20
MAX_METADATA_VALUE_LENGTH = 80
TRACK_LINKS_VALUES = {"none": "None", "htmlandtext": "HtmlAndText", "htmlonly": "HtmlOnly",
                      "textonly": "TextOnly"}  # fmt: skip


@dataclass
class Problem:
    """An error found after acceptance, in Postmark's terms."""

    error_code: int
    message: str  # the long message, as the API would return it
    details: str  # the short description for the bounce's Details
    recipients: list[str] | None = None  # None: every recipient of the message


@dataclass
class ParsedMessage:
    """What processing needs from the headers of a submission."""

    charset: str = ""
    from_address: str = ""  # the first From field's value, decoded: what the API shows
    sender: Sender | FromProblem | None = None  # the From rule's reading (domains.from_rule)
    subject: str = ""
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    stream_id: str = ""  # X-PM-Message-Stream, first occurrence
    tag: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    track_opens: bool | None = None
    track_links: str | None = None
    keep_id: bool = False
    message_id_header: str = ""
    has_date: bool = False
    problems: list[Problem] = field(default_factory=list)


def _bool(value: str) -> bool | None:
    return {"true": True, "false": False}.get(value.strip().lower())


def parse_headers(raw: bytes) -> ParsedMessage:
    """Read the headers that matter. Never raises: what is wrong becomes a Problem."""
    header_block, _, _ = mime.split_message(raw)
    parsed = ParsedMessage(charset=mime.declared_charset(header_block))
    to_values, cc_values, from_fields = [], [], []
    metadata_keys: dict[str, int] = {}
    for name, raw_field in mime.fields(header_block):
        if not name:
            continue
        value = mime.field_value(raw_field, parsed.charset)
        if name == "from":
            from_fields.append(raw_field)
            parsed.from_address = parsed.from_address or value
        elif name == "subject" and not parsed.subject:
            parsed.subject = value
        elif name == "to":
            to_values.append(value)
        elif name == "cc":
            cc_values.append(value)
        elif name == "date":
            parsed.has_date = True
        elif name == "message-id" and not parsed.message_id_header:
            parsed.message_id_header = value
        elif name == "x-pm-message-stream" and not parsed.stream_id:
            parsed.stream_id = value.strip()
        elif name == "x-pm-tag" and not parsed.tag:
            parsed.tag = value
        elif name.startswith("x-pm-metadata-"):
            _add_metadata(parsed, mime.header_name(raw_field)[len("x-pm-metadata-") :], value,
                          metadata_keys)  # fmt: skip
        elif name in ("x-pm-trackopens", "x-pm-track-opens"):
            parsed.track_opens = _bool(value)
            if parsed.track_opens is None:
                parsed.problems.append(invalid(f"X-PM-TrackOpens must be true or false, not "
                                                f"'{value}'."))  # fmt: skip
        elif name in ("x-pm-tracklinks", "x-pm-track-links"):
            parsed.track_links = TRACK_LINKS_VALUES.get(value.strip().lower())
            if parsed.track_links is None:
                parsed.problems.append(
                    invalid(
                        f"X-PM-TrackLinks must be None, HtmlAndText, HtmlOnly or TextOnly, "
                        f"not '{value}'."
                    )  # fmt: skip
                )
        elif name == "x-pm-keepid":
            parsed.keep_id = _bool(value) is True
    parsed.sender = sender_of(from_fields, parsed.charset)
    parsed.to = mime.addresses(to_values)
    parsed.cc = mime.addresses(cc_values)
    if len(parsed.tag) > MAX_TAG_LENGTH:
        parsed.problems.append(invalid(f"The tag is longer than {MAX_TAG_LENGTH} characters."))
    return parsed


def invalid(message: str) -> Problem:
    return Problem(300, f"Invalid email request: {message}", message)


def _add_metadata(parsed: ParsedMessage, key: str, value: str, seen: dict[str, int]) -> None:
    """One metadata field; a repeated key (in any case) gets an incremental number appended."""
    if not key:
        parsed.problems.append(invalid("An X-PM-Metadata- header has no key."))
        return
    if len(key) > MAX_METADATA_KEY_LENGTH:
        parsed.problems.append(
            invalid(f"Metadata key '{key}' is longer than {MAX_METADATA_KEY_LENGTH} characters.")
        )
        return
    if len(value) > MAX_METADATA_VALUE_LENGTH:
        parsed.problems.append(
            invalid(
                f"The value of metadata key '{key}' is longer than "
                f"{MAX_METADATA_VALUE_LENGTH} characters."
            )  # fmt: skip
        )
        return
    count = seen.get(key.lower(), 0)
    seen[key.lower()] = count + 1
    final_key = key if count == 0 else f"{key}{count}"
    parsed.metadata[final_key] = value
    if len(parsed.metadata) > MAX_METADATA_FIELDS:
        parsed.problems.append(
            invalid(f"A message may have at most {MAX_METADATA_FIELDS} metadata fields.")
        )
        parsed.metadata.pop(final_key)
