"""Server-level operations shared by the admin, the management commands and the APIs: the SMTP
switch, the server in Postmark's field names, and the rules of the Server API's own fields
(compat §12.1: name, colour, tracking, inbound settings) with Postmark's error codes. The hook
URLs are the outbound stream's webhooks: ``webhooks.server_hooks``."""

from django.conf import settings

from servers.models import Color, DeliveryType, Server, TrackLinks

# Postmark's error codes of the Server and Servers APIs (compat §12.3), all HTTP 422.
SERVER_QUERY = 600
SERVER_NOT_FOUND = 601
INBOUND_DOMAIN_TAKEN = 602
SERVER_NAME_TAKEN = 603
NO_DELETE_PERMISSION = 604
CANNOT_DELETE = 605
BAD_HOOK_URL = 606
BAD_COLOR = 607
BAD_NAME = 608
NO_DATA = 609
BAD_SPAM_THRESHOLD = 611
BAD_TRACK_LINKS = 612
BAD_DELIVERY_TYPE = 613

MAX_NAME_LENGTH = Server._meta.get_field("name").max_length
MAX_SPAM_THRESHOLD = 30
# Spellings clients send for a colour: any case, and the old swagger's "turqoise" (dotnet).
COLOR_SPELLINGS = {"turqoise": Color.TURQUOISE}


class ServerError(Exception):
    """A Server API request that cannot be applied: Postmark's ErrorCode and a sentence."""

    def __init__(self, error_code: int, message: str):
        super().__init__(message)
        self.error_code = error_code
        self.message = message


def set_smtp_access(server: Server, enabled: bool) -> Server:
    server.smtp_api_activated = enabled
    server.save(update_fields=["smtp_api_activated"])
    return server


def server_json(server: Server) -> dict:
    """The server in Postmark's field names."""
    return {
        "ID": server.id,
        "Name": server.name,
        "ApiTokens": server.api_tokens,
        "SmtpApiActivated": server.smtp_api_activated,
        "DeliveryType": server.delivery_type,
        "TrackOpens": server.track_opens,
        "TrackLinks": server.track_links,
        "EnableSmtpApiErrorHooks": server.enable_smtp_api_error_hooks,
        "MessageStreams": list(server.streams.values_list("stream_id", flat=True)),
    }


def inbound_address(server: Server, domain: str) -> str:
    return f"{server.inbound_hash}@{domain}"


# --- The Server API's own fields ------------------------------------------------------------------


def _flag(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ServerError(403, f"{name} must be true or false.")


def _text(value, name: str, error_code: int) -> str:
    if not isinstance(value, str):
        raise ServerError(error_code, f"{name} must be a string.")
    if any(ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise ServerError(error_code, f"{name} must not contain control characters.")
    return value.strip()


def check_name(value, server: Server | None = None) -> str:
    """A server name that is free (608 when missing or unusable, 603 when taken)."""
    if value is None:
        raise ServerError(BAD_NAME, "Name is required: give the server a name.")
    name = _text(value, "Name", BAD_NAME)
    if not name:
        raise ServerError(BAD_NAME, "Name is required: give the server a name.")
    if len(name) > MAX_NAME_LENGTH:
        raise ServerError(BAD_NAME, f"Name must not be longer than {MAX_NAME_LENGTH} characters.")
    system = settings.SYSTEM_SERVER_NAME
    if server is not None and server.name == system and name != system:
        raise ServerError(
            BAD_NAME, f"The server '{system}' sends the service's own mail: it keeps its name."
        )
    if name.lower() == system.lower() and (server is None or server.name != system):
        raise ServerError(
            SERVER_NAME_TAKEN,
            f"The name '{name}' is reserved: the server of that name sends the service's own mail.",
        )
    taken = Server.objects.filter(name__iexact=name)
    if server is not None:
        taken = taken.exclude(pk=server.pk)
    if taken.exists():
        raise ServerError(SERVER_NAME_TAKEN, f"A server with the name '{name}' already exists.")
    return name


def check_color(value) -> str:
    spelled = value.strip().lower() if isinstance(value, str) else None
    color = COLOR_SPELLINGS.get(spelled, spelled)
    if color not in Color.values:
        raise ServerError(
            BAD_COLOR,
            f"Invalid color '{value}': use one of {', '.join(Color.values)}.",
        )
    return color


def check_track_links(value) -> str:
    if not isinstance(value, str) or value not in TrackLinks.values:
        found = {v.lower(): v for v in TrackLinks.values}.get(str(value).lower())
        if found is None:
            raise ServerError(
                BAD_TRACK_LINKS,
                f"Invalid TrackLinks '{value}': use one of {', '.join(TrackLinks.values)}.",
            )
        return found
    return value


def check_delivery_type(value) -> str:
    found = {v.lower(): v for v in DeliveryType.values}.get(str(value).strip().lower())
    if not isinstance(value, str) or found is None:
        raise ServerError(
            BAD_DELIVERY_TYPE, f"Invalid DeliveryType '{value}': use Live or Sandbox."
        )
    return found


def check_spam_threshold(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ServerError(BAD_SPAM_THRESHOLD, "InboundSpamThreshold must be a whole number.")
    try:
        number = int(value)
    except ValueError:
        raise ServerError(
            BAD_SPAM_THRESHOLD, "InboundSpamThreshold must be a whole number."
        ) from None
    if not 0 <= number <= MAX_SPAM_THRESHOLD:
        raise ServerError(
            BAD_SPAM_THRESHOLD,
            f"InboundSpamThreshold must be between 0 (off) and {MAX_SPAM_THRESHOLD}.",
        )
    return number


def check_inbound_domain(value, server: Server | None = None) -> str:
    """ "" (none) or a domain no other server has (602). Its MX record (which must point at the
    inbound MX for mail to arrive) is not checked."""
    domain = _text(value, "InboundDomain", 403).lower().rstrip(".")
    if not domain:
        return ""
    max_length = Server._meta.get_field("inbound_domain").max_length
    if len(domain) > max_length or " " in domain or "." not in domain:
        raise ServerError(403, f"InboundDomain '{domain}' is not a domain name.")
    taken = Server.objects.filter(inbound_domain=domain)
    if server is not None:
        taken = taken.exclude(pk=server.pk)
    if taken.exists():
        raise ServerError(
            INBOUND_DOMAIN_TAKEN, f"The inbound domain '{domain}' is already used by a server."
        )
    return domain


# Postmark field (lower case) → (model field, check). InboundHookUrl is checked by the caller
# (the webhooks' SSRF guard, above this app) and then given here as a plain string.
_FIELDS = {
    "color": ("color", check_color),
    "smtpapiactivated": ("smtp_api_activated", lambda v: _flag(v, "SmtpApiActivated")),
    "rawemailenabled": ("raw_email_enabled", lambda v: _flag(v, "RawEmailEnabled")),
    "trackopens": ("track_opens", lambda v: _flag(v, "TrackOpens")),
    "tracklinks": ("track_links", check_track_links),
    "postfirstopenonly": ("post_first_open_only", lambda v: _flag(v, "PostFirstOpenOnly")),
    "includebouncecontentinhook": (
        "include_bounce_content_in_hook",
        lambda v: _flag(v, "IncludeBounceContentInHook"),
    ),
    "enablesmtpapierrorhooks": (
        "enable_smtp_api_error_hooks",
        lambda v: _flag(v, "EnableSmtpApiErrorHooks"),
    ),
    "inboundspamthreshold": ("inbound_spam_threshold", check_spam_threshold),
}


def server_changes(data: dict, server: Server | None = None) -> dict:
    """The model fields a Server API body sets (keys lower-cased; absent or null keys change
    nothing), each checked: ``server`` is None when creating one. DeliveryType is taken only
    when creating (it is fixed afterwards, as in Postmark: ignored on edits)."""
    changes = {}
    if server is None or data.get("name") is not None:
        changes["name"] = check_name(data.get("name"), server)
    for key, (field, check) in _FIELDS.items():
        if data.get(key) is not None:
            changes[field] = check(data[key])
    if data.get("inbounddomain") is not None:
        changes["inbound_domain"] = check_inbound_domain(data["inbounddomain"], server)
    if server is None and data.get("deliverytype") is not None:
        changes["delivery_type"] = check_delivery_type(data["deliverytype"])
    return changes


def apply_server_changes(server: Server, changes: dict) -> Server:
    for field, value in changes.items():
        setattr(server, field, value)
    server.save()
    return server
