"""Text from the bytes of inbound mail, which often lies about (or never names) its charset.

``decode`` tries UTF-8, then the declared charset, then guesses among the 8-bit charsets mail
from Europe is most often written in. An undeclared 8-bit body (Thunderbird sending ISO-8859-2
without a charset, old Outlook sending windows-1250) decodes to the charset under which the text
has the fewest characters that are neither letters nor common punctuation; Latin-1 last, which
maps every byte, so nothing is ever lost or refused. ``html_to_text`` derives a TextBody from an
HTML part.
"""

import contextlib
import re
import unicodedata
import warnings

from bounces.mimeparts import strip_html
from core.mime import LONE_SURROGATE

# Tried in this order when a body is 8-bit and not UTF-8; a tie goes to the first.
GUESSES = ("cp1252", "iso-8859-2", "cp1250", "iso-8859-15")
GUESS_SAMPLE = 64 * 1024  # bytes of the text the guess looks at
# Non-ASCII characters that are not letters but that text in any of the charsets often holds.
COMMON = set("\u00a0«»–—‘’‚“”„…€£©®°·±×÷§¶•™¿¡")


def decode(data: bytes, declared: str = "") -> str:
    """``data`` as text: UTF-8 if valid, else the declared charset if Python knows it and it
    decodes cleanly, else the best guess (never loses a byte: the last resort maps all 256)."""
    text = data.decode("ascii") if data.isascii() else _decode(data, declared)
    if "\x00" in text:  # no text column of PostgreSQL (nor JSON in jsonb) holds NUL
        text = text.replace("\x00", "\ufffd")
    return LONE_SURROGATE.sub("\ufffd", text)


def _decode(data: bytes, declared: str) -> str:
    with contextlib.suppress(UnicodeDecodeError):
        return data.decode("utf-8")
    charset = (declared or "").strip().strip('"').lower()
    if charset and charset not in ("utf-8", "utf8", "us-ascii", "ascii", "unknown-8bit"):
        with contextlib.suppress(UnicodeError, LookupError), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return data.decode(charset)
    return data.decode(guess(data))


def guess(data: bytes) -> str:
    """The 8-bit charset under which ``data`` reads most like text (see the module's note)."""
    sample = data[:GUESS_SAMPLE]
    best, best_score = "latin-1", None
    for charset in GUESSES:
        try:
            text = sample.decode(charset)
        except UnicodeDecodeError:
            continue
        score = sum(1 for c in text if ord(c) > 127 and not _letter(c) and c not in COMMON)
        if best_score is None or score < best_score:
            best, best_score = charset, score
    return best


def _letter(char: str) -> bool:
    return unicodedata.category(char)[0] == "L"


_BLANK_LINES = re.compile(r"\n[ \t]*(?:\n[ \t]*){2,}")
_SPACES = re.compile(r"[ \t\r\f\v]+")


def html_to_text(markup: str) -> str:
    """Readable text of an HTML part: tags dropped (script and style content too), entities
    decoded, runs of spaces and of blank lines collapsed."""
    text = strip_html(markup)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()
