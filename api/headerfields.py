"""Header fields of a message composed from JSON, written in time linear in their length.

The email package's header registry parses every value it is given and refolds it when it is
written, and both are quadratic in the length of a field: a To of 16,000 addresses took 7.5 s,
50 non-ASCII display names of 1,000 characters 9 s. The values composed here are known already
(addresses checked, everything on one line), so they are folded here and stored as ``Folded``
strings, which the composing policies (``ComposingPolicy``) write as they are:

- ``text_value``: printable ASCII folded at spaces; any other text as RFC 2047 encoded words
  (UTF-8, base64, at most 75 characters each), which decode back to the same text;
- ``address_value``: addresses one after another, a display name that is not printable ASCII as
  encoded words; an addr-spec that is not ASCII is refused (``UnicodeEncodeError``), as before.

Lines are folded to 78 characters where the words allow and never exceed 998 (RFC 5322).
"""

import base64
import email.policy
import email.utils
import re

MAX_LINE = 78
LONGEST_LINE = 998
ENCODED_WORD_BYTES = 45  # 60 base64 characters: "=?utf-8?b?" + 60 + "?=" is 72 characters
_EW_OVERHEAD = len("=?utf-8?b??=")
# A word with the spaces before it: where a line may be folded.
_WORDS = re.compile(r" *[^ ]+")


class Folded(str):
    """A header field's value already folded: lines joined by CRLF, each continuation line
    starting with a space, every line at most 998 characters."""


class ComposingPolicy(email.policy.EmailPolicy):
    """The policy of composed messages: a ``Folded`` value is written as it is; any other value
    as ``EmailPolicy`` writes it."""

    def fold(self, name, value):
        if isinstance(value, Folded):
            return f"{name}: {value}{self.linesep}"
        return super().fold(name, value)

    def fold_binary(self, name, value):
        if isinstance(value, Folded):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


def _fits(name: str, value: str) -> bool:
    return len(name) + len(value) + 2 <= MAX_LINE


def _fold(name: str, tokens: list[str]) -> str:
    """``tokens`` (each but the first starting with a space, where a line may be folded) joined,
    on as few lines of at most 78 characters as they allow."""
    lines, current, width = [], "", len(name) + 2
    for token in tokens:
        if current and token.startswith(" ") and width + len(token) > MAX_LINE:
            lines.append(current)
            current, width = token, len(token)
        else:
            current += token
            width += len(token)
    lines.append(current)
    return Folded("\r\n".join(lines))


def encoded_words(text: str, first_width: int = MAX_LINE) -> list[str]:
    """``text`` as RFC 2047 encoded words (UTF-8, base64), each but the first with a space before
    it; the first fits in ``first_width`` characters where it can. Whitespace between encoded
    words is not part of the text, so the text decodes back unchanged."""
    data = text.encode("utf-8", "replace")
    words, start = [], 0
    size = max(6, (first_width - _EW_OVERHEAD) // 4 * 3)  # room for a 4-byte character
    while start < len(data):
        end = min(start + size, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:
            end -= 1  # whole characters only
        chunk = base64.b64encode(data[start:end]).decode("ascii")
        words.append(("=?utf-8?b?" if not words else " =?utf-8?b?") + chunk + "?=")
        start, size = end, ENCODED_WORD_BYTES
    return words


def text_value(name: str, value: str) -> str:
    """An unstructured field's value (one line, e.g. Subject), ready to store."""
    if value.isascii() and value.isprintable():
        if _fits(name, value):
            return value
        tokens = _WORDS.findall(value)
        if all(len(token) < LONGEST_LINE - len(name) - 2 for token in tokens):
            return _fold(name, tokens)
    return _fold(name, encoded_words(value, MAX_LINE - len(name) - 2))


def address_value(name: str, pairs: list[tuple[str, str]]) -> str:
    """An address field's value from (display name, addr-spec) pairs, ready to store."""
    tokens: list[str] = []
    for index, (display_name, addr) in enumerate(pairs):
        addr.encode("ascii")  # the message is 7-bit: raises for an addr-spec that is not ASCII
        atoms = _address_atoms(display_name, addr)
        if index:
            atoms[0] = " " + atoms[0]
        if index < len(pairs) - 1:
            atoms[-1] += ","
        tokens.extend(atoms)
    value = "".join(tokens)
    return value if _fits(name, value) else _fold(name, tokens)


def _address_atoms(display_name: str, addr: str) -> list[str]:
    """One address as tokens that may go on lines of their own."""
    if not display_name:
        return [addr]
    if display_name.isascii() and display_name.isprintable() and len(display_name) < 900:
        formatted = email.utils.formataddr((display_name, addr))
        return _WORDS.findall(formatted)  # folding inside a quoted string keeps its spaces
    return [*encoded_words(display_name), f" <{addr}>"]
