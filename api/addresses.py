"""Addresses as the HTTP send API reads them (compat §5): which ones it takes (``address_problem``,
in Postmark's words), how a field's value is split into (display name, addr-spec) pairs in time
linear in its length (``split_addresses``: regular expressions for the forms clients send, the
standard library's parser for the rest), and how many addresses a value names, counted without
reading them (``address_count``)."""

import email.utils
import re

from messages.headers import MAX_ADDRESS_LENGTH

# Quoted strings and comments, where an '@' names no address; an unterminated one runs to the end
# (so that every match succeeds and counting stays linear).
_QUOTED_OR_COMMENT = re.compile(
    r'"(?:[^"\\]|\\.?)*+(?:"|\Z)' r"|\((?:[^()\\]|\\.?)*+(?:\)|\Z)", re.S
)
# A field that is not a list of plain addresses is read by the standard library's parser, which
# takes microseconds per character: at most one header line of it per field.
MAX_UNUSUAL_ADDRESS_FIELD = 998
# Characters of a domain: letters and digits of any script, '-' and '.'.
DOMAIN_LABEL = re.compile(r"^[^\W_](?:(?:[^\W_]|-)*[^\W_])?$")
LOCAL_PART_SPECIALS = re.compile(r'[\s()<>\[\]:;@\\,"\x00-\x1f\x7f]')
_ADDR_SPEC = r"[\w+'-]+(?:\.[\w+'-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
ONE_PLAIN_ADDRESS = re.compile(
    rf"^(?:(?P<bare>{_ADDR_SPEC})"
    rf"|(?P<name>(?:[A-Za-z0-9]+ )*[A-Za-z0-9]+) <(?P<addr>{_ADDR_SPEC})>)$",
    re.ASCII,
)
# Entries of an address list in the forms clients send: a@example.com, Joe Smith <a@example.com>,
# "Doe, Jane" <a@example.com>. A list of them is read by regular expressions alone, with the
# answer ``email.utils.getaddresses`` gives (a property test holds them equal).
_NAME = r"(?:[A-Za-z0-9]+ )*[A-Za-z0-9]+"
_QUOTED_NAME = r'"[^"\\]*"'
_ENTRY = rf"(?>{_ADDR_SPEC}|{_NAME} <{_ADDR_SPEC}>|{_QUOTED_NAME} <{_ADDR_SPEC}>)"
PLAIN_LIST = re.compile(rf"^{_ENTRY}(?:[ \t]*,[ \t]*{_ENTRY})*+$", re.ASCII)
PLAIN_ENTRY = re.compile(
    rf"(?P<bare>{_ADDR_SPEC})|(?P<name>{_NAME}) <(?P<addr>{_ADDR_SPEC})>"
    rf'|"(?P<quoted>[^"\\]*)" <(?P<qaddr>{_ADDR_SPEC})>',
    re.ASCII,
)


def address_problem(field: str, addr: str) -> str | None:
    """Postmark's words for an address it cannot send to, or None."""
    if "@" not in addr:
        return (
            f"Error parsing '{field}': Illegal email address '{addr}'. "
            "It must contain the '@' symbol."
        )
    local, _, domain = addr.rpartition("@")
    labels = domain.split(".")
    if domain and not all(DOMAIN_LABEL.match(label) for label in labels if label):
        return f"Error parsing '{field}': Illegal email domain '{domain}' in address '{addr}'."
    if (
        not local
        or len(labels) < 2
        or not all(labels)
        or len(addr) > MAX_ADDRESS_LENGTH
        or LOCAL_PART_SPECIALS.search(local)
        or local.startswith(".")
        or local.endswith(".")
        or ".." in local
    ):
        return f"Invalid '{field}' address: '{addr}'."
    return None


def split_addresses(value: str) -> list[tuple[str, str]]:
    """``email.utils.getaddresses([value])``; one plain address (``a@example.com``, ``Joe Smith
    <a@example.com>``), the usual case, or a list of plain ones (``PLAIN_LIST``) is read by
    regular expressions that give the same answer (property tests hold them equal) at a fraction
    of the cost, in time linear in the value."""
    match = ONE_PLAIN_ADDRESS.match(value)
    if match:
        return [(match["name"] or "", match["bare"] or match["addr"])]
    if PLAIN_LIST.match(value):
        return [
            (m["name"] or m["quoted"] or "", m["bare"] or m["addr"] or m["qaddr"])
            for m in PLAIN_ENTRY.finditer(value)
        ]
    return email.utils.getaddresses([value])


def is_plain_list(value: str) -> bool:
    return bool(ONE_PLAIN_ADDRESS.match(value) or PLAIN_LIST.match(value))


def address_count(value) -> int:
    """How many addresses a field's value names, counted without reading them: the '@' outside
    quoted strings and comments (an addr-spec has exactly one there). Linear in any value."""
    if isinstance(value, list):
        return sum(address_count(v) for v in value)
    if not isinstance(value, str):
        return 0
    return _QUOTED_OR_COMMENT.sub("", value).count("@")


def address_header(pairs: list[tuple[str, str]]) -> str:
    """The addresses as a client reads them back (``To`` in the answer)."""
    return ", ".join(email.utils.formataddr(pair) for pair in pairs)
