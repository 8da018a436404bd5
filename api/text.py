"""What text the API accepts from a request, whatever the field: rules shared by the JSON parser,
the query parameters and the views, so that no value reaches the database it cannot hold.

- NUL (U+0000) is valid JSON and valid in a query string, but PostgreSQL refuses it in text (even
  in a comparison), so it is refused wherever a value is stored or looked up.
- A lone UTF-16 surrogate (``"\\ud800"`` in JSON) is not a character: it cannot be encoded as
  UTF-8, so neither SQLite, PostgreSQL nor the JSON renderer can take it.
"""

import re

# Longest excerpt of a client's value quoted back in an error message.
MAX_QUOTED = 100

_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def has_surrogate(value: str) -> bool:
    return _SURROGATE_RE.search(value) is not None


def has_control(value: str) -> bool:
    """Whether ``value`` holds an ASCII control character (NUL, CR, LF, tab, DEL, ...)."""
    return _CONTROL_RE.search(value) is not None


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored or looked up (e.g. "must not contain NUL characters"), or
    None when it can."""
    if "\x00" in value:
        return "must not contain NUL characters (\\u0000)"
    if has_surrogate(value):
        return "must not contain lone UTF-16 surrogates (\\ud800 to \\udfff)"
    return None


def quoted(value) -> str:
    """``value`` as an error message quotes it: at most ``MAX_QUOTED`` characters, any lone
    surrogate shown as U+FFFD (the message itself must be encodable)."""
    text = value if isinstance(value, str) else str(value)
    text = _SURROGATE_RE.sub("\ufffd", text)
    return text if len(text) <= MAX_QUOTED else text[:MAX_QUOTED] + "…"
