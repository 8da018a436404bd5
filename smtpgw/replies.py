"""The gateway's own SMTP replies: the fixed texts it answers with (refusals, temporary failures,
shutdown, idle timeout), and the enhanced status code (RFC 2034) it adds to aiosmtpd's replies that
lack one."""

import re

AUTH_REQUIRED = "530 5.7.0 Authentication required"
TEMPORARY_AUTH_FAILURE = "454 4.7.0 Temporary authentication failure, try again later"
TOO_MANY_FAILURES = "421 4.7.0 Too many failed authentication attempts, try again later"
NOT_STORED = "451 4.3.0 The message could not be stored; please try again later"
LOCAL_ERROR = "451 4.3.0 Temporary local problem, please try again later"
CANNOT_STORE = "554 5.3.0 Message refused: it holds a value the service cannot store"
SHUTTING_DOWN = "421 4.3.2 Service shutting down, try again later"
IDLE_TIMEOUT = "421 4.4.2 Idle timeout, closing connection"
TLS_ALREADY_ACTIVE = "503 5.5.1 TLS is already active on this connection"
NO_AUTH_AT_BOUNCE_MX = "502 5.5.1 AUTH is not available here: this host only receives bounces"
NO_AUTH_AT_INBOUND_MX = (
    "502 5.5.1 AUTH is not available here: this host only receives mail for inbound addresses"
)
AUTH_LINE_TOO_LONG = "500 5.5.6 Authentication Exchange line is too long"
SMUGGLING = (
    "550 5.5.2 Message refused: bare CR or LF next to a line holding only a dot "
    "(only CRLF line endings are allowed around it)"
)

# Enhanced status codes (RFC 2034) for aiosmtpd's own replies, by reply code.
DEFAULT_ENHANCED = {
    "2": "2.0.0",
    "4": "4.0.0",
    "5": "5.0.0",
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "530": "5.7.0",
    "535": "5.7.8",
    "552": "5.3.4",
    "553": "5.1.3",
    "554": "5.7.0",
    "555": "5.5.4",
}
HAS_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}( |$)")


def with_enhanced_code(status: str) -> str:
    """Add an enhanced status code to a single-line reply that lacks one."""
    code, sep, text = status.partition(" ")
    if not (len(code) == 3 and code.isdigit()) or code in ("220", "334", "354"):
        return status
    if HAS_ENHANCED.match(text):
        return status
    enhanced = DEFAULT_ENHANCED.get(code) or DEFAULT_ENHANCED[code[0]]
    return f"{code} {enhanced} {text}" if text else f"{code} {enhanced}"
