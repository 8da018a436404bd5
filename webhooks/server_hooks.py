"""The Server API's hook URLs (compat §12.1) are the outbound stream's webhooks: one truth behind
the Server API, the Webhooks API and the admin.

``BounceHookUrl`` reads as the URL of the first webhook of the server's ``outbound`` stream with
the Bounce trigger (``""`` when none has it); setting it moves the trigger: a webhook that posts
only bounces gets the new URL, one that also posts other events loses the trigger and the URL's
webhook gets it (found by URL on the stream, or created with that trigger alone); ``""`` takes the
trigger off every webhook of the stream (a webhook left with no trigger is deleted). The same for
OpenHookUrl, DeliveryHookUrl and ClickHookUrl. Four hooks set to one URL are one webhook with four
triggers. Every URL passes the webhooks' SSRF guard (``webhooks.guard``); credentials in it
(``https://user:pass@host/``) become the webhook's basic auth, and the URL reads back without them.
``PostFirstOpenOnly`` and ``IncludeBounceContentInHook`` are the open and bounce webhooks' flags
(kept on the server too, for a webhook made later). ``InboundHookUrl`` passes the same guard and
is stored on the server for inbound processing.

Also here, since it needs both apps: creating and editing a server from a Server API body."""

from django.db import IntegrityError, transaction

from servers.models import DeliveryType, Server
from servers.services import (
    BAD_HOOK_URL,
    SERVER_NAME_TAKEN,
    ServerError,
    apply_server_changes,
    server_changes,
)
from streams.models import MessageStream
from streams.services import create_server
from webhooks.guard import MAX_URL_LENGTH, UnsafeUrl, check_url, split_credentials
from webhooks.models import Webhook

OUTBOUND_STREAM = "outbound"
# Postmark field → the webhook trigger it stands for.
HOOKS = {
    "BounceHookUrl": "bounce_enabled",
    "OpenHookUrl": "open_enabled",
    "DeliveryHookUrl": "delivery_enabled",
    "ClickHookUrl": "click_enabled",
}
TRIGGERS = (
    "open_enabled",
    "click_enabled",
    "delivery_enabled",
    "bounce_enabled",
    "spam_complaint_enabled",
    "subscription_change_enabled",
)
# Server flag → (the trigger it belongs to, the webhook's field).
FLAGS = {
    "post_first_open_only": ("open_enabled", "open_post_first_open_only"),
    "include_bounce_content_in_hook": ("bounce_enabled", "bounce_include_content"),
}


def _webhooks(server: Server) -> list[Webhook]:
    return list(
        Webhook.objects.filter(stream__server=server, stream__stream_id=OUTBOUND_STREAM).order_by(
            "id"
        )
    )


def hook_fields(server: Server) -> dict:
    """The server's hook URLs and hook flags in Postmark's names."""
    webhooks = _webhooks(server)

    def first(trigger):
        return next((w for w in webhooks if getattr(w, trigger)), None)

    fields = {}
    for name, trigger in HOOKS.items():
        found = first(trigger)
        fields[name] = found.url if found is not None else ""
    opens, bounces = first("open_enabled"), first("bounce_enabled")
    fields["PostFirstOpenOnly"] = (
        opens.open_post_first_open_only if opens is not None else server.post_first_open_only
    )
    fields["IncludeBounceContentInHook"] = (
        bounces.bounce_include_content
        if bounces is not None
        else server.include_bounce_content_in_hook
    )
    fields["InboundHookUrl"] = server.inbound_hook_url
    return fields


def check_hook_url(value, name: str) -> tuple[str, str, str]:
    """(URL without credentials, user, password) for a hook URL; ``("", "", "")`` for none.
    ErrorCode 606 when it is not an http(s) URL to a public host."""
    if not isinstance(value, str):
        raise ServerError(BAD_HOOK_URL, f'{name} must be a string: a URL, or "" for none.')
    value = value.strip()
    if not value:
        return "", "", ""
    if len(value) > MAX_URL_LENGTH:
        raise ServerError(
            BAD_HOOK_URL, f"{name} must not be longer than {MAX_URL_LENGTH} characters."
        )
    clean, user, password = split_credentials(value)
    try:
        check_url(clean)
    except UnsafeUrl as exc:
        raise ServerError(BAD_HOOK_URL, f"Invalid {name}: {exc.message}") from None
    return clean, user, password


def hook_changes(data: dict) -> dict:
    """The hook URLs a body (keys lower-cased) sets, each checked: {Postmark name: (url, user,
    password)}; absent and null ones change nothing."""
    return {
        name: check_hook_url(data[name.lower()], name)
        for name in HOOKS
        if data.get(name.lower()) is not None
    }


def _set_credentials(webhook: Webhook, user: str, password: str) -> None:
    webhook.http_auth_username, webhook.http_auth_password = user, password


def _set_hook(server, stream, trigger: str, url: str, user: str, password: str) -> None:
    webhooks = [w for w in _webhooks(server) if w.stream_id == stream.pk]
    holders = [w for w in webhooks if getattr(w, trigger)]
    current = holders[0] if holders else None
    if current is not None and url and current.url == url:
        if user or password:
            _set_credentials(current, user, password)
            current.save()
        return
    if not url:
        for webhook in holders:
            _drop_trigger(webhook, trigger)
        return
    if current is not None:
        if not any(getattr(current, t) for t in TRIGGERS if t != trigger):
            # The webhook posts this hook's events only: it is the hook.
            current.url = url
            _set_credentials(current, user, password)
            current.save()
            return
        _drop_trigger(current, trigger)
    target = next(
        (w for w in webhooks if w.url == url and w.pk != getattr(current, "pk", None)), None
    )
    if target is None:
        target = Webhook(stream=stream, url=url)
        _set_credentials(target, user, password)
    elif user or password:
        _set_credentials(target, user, password)
    setattr(target, trigger, True)
    for flag, (flag_trigger, field) in FLAGS.items():
        if flag_trigger == trigger:
            setattr(target, field, getattr(server, flag))
    target.save()


def _drop_trigger(webhook: Webhook, trigger: str) -> None:
    setattr(webhook, trigger, False)
    if any(getattr(webhook, t) for t in TRIGGERS):
        webhook.save()
    else:
        webhook.delete()


def apply_hooks(server: Server, hooks: dict, flags: set[str]) -> None:
    """Set the hook URLs ``hooks`` (from ``hook_changes``), then copy the server's ``flags``
    (model field names of ``FLAGS``) onto the webhooks of their trigger."""
    stream = MessageStream.objects.filter(server=server, stream_id=OUTBOUND_STREAM).first()
    if stream is None:
        if any(url for url, _, _ in hooks.values()):
            raise ServerError(
                BAD_HOOK_URL, "This server has no 'outbound' stream to post its hooks from."
            )
        return
    for name, (url, user, password) in hooks.items():
        _set_hook(server, stream, HOOKS[name], url, user, password)
    for flag in flags:
        trigger, field = FLAGS[flag]
        Webhook.objects.filter(stream=stream, **{trigger: True}).update(
            **{field: getattr(server, flag)}
        )


def _inbound_hook(data: dict) -> dict:
    if data.get("inboundhookurl") is None:
        return {}
    value = data["inboundhookurl"]
    check_hook_url(value, "InboundHookUrl")
    return {"inbound_hook_url": value.strip()}


def _checked(data: dict, server: Server | None) -> tuple[dict, dict]:
    changes = server_changes(data, server)
    changes.update(_inbound_hook(data))
    return changes, hook_changes(data)


def edit_server(server: Server, data: dict) -> Server:
    """Apply a Server API body (keys lower-cased; absent or null keys change nothing), checked
    whole before anything changes."""
    changes, hooks = _checked(data, server)
    try:
        with transaction.atomic():
            apply_server_changes(server, changes)
            apply_hooks(server, hooks, {flag for flag in FLAGS if flag in changes})
    except IntegrityError:  # two requests chose the same name or inbound domain at once
        raise ServerError(SERVER_NAME_TAKEN, "A server with this name already exists.") from None
    return server


def create_server_from(data: dict) -> Server:
    """A new server (one API token, the default streams) from a ``POST /servers`` body; Live
    unless DeliveryType says Sandbox, as in Postmark."""
    changes, hooks = _checked(data, None)
    name = changes.pop("name")
    delivery_type = changes.pop("delivery_type", DeliveryType.LIVE)
    try:
        with transaction.atomic():
            server = create_server(name, delivery_type=delivery_type, **changes)
            apply_hooks(server, hooks, set())
    except IntegrityError:
        raise ServerError(
            SERVER_NAME_TAKEN, f"A server with the name '{name}' already exists."
        ) from None
    return server
