"""Which servers a staff user may see (StaffServerAccess), and querysets limited to them: the one
rule every admin page, list, filter and form choice goes through. Also what of a secret (an API
token, a webhook's signing secret) a page may show: the whole of it only to a user who may change
what it belongs to (``shown_secret``); anyone else sees its ends (``masked``)."""

from collections import deque

from servers.models import Server, StaffServerAccess


def visible_server_ids(user) -> frozenset[int] | None:
    """The ids of the servers ``user`` may see, or None for all (see StaffServerAccess)."""
    return StaffServerAccess.server_ids_for(user)


def visible_servers(user):
    ids = visible_server_ids(user)
    servers = Server.objects.order_by("id")
    return servers if ids is None else servers.filter(id__in=ids)


def server_lookup(model) -> str | None:
    """The ORM path from ``model`` to its Server (e.g. ``stream__server``), or None when a model
    belongs to no server. Follows forward foreign keys, shortest path first."""
    if model is Server:
        return "id"
    queue = deque([(model, "", 0)])
    while queue:
        current, path, depth = queue.popleft()
        for f in current._meta.get_fields():
            if not (f.concrete and f.is_relation and (f.many_to_one or f.one_to_one)):
                continue
            if f.related_model is None:
                continue
            lookup = f"{path}{f.name}"
            if f.related_model is Server:
                return lookup
            if depth < 2:
                queue.append((f.related_model, f"{lookup}__", depth + 1))
    return None


def scope_queryset(queryset, user):
    """``queryset`` limited to what ``user`` may see (StaffServerAccess)."""
    ids = visible_server_ids(user)
    if ids is None:
        return queryset
    lookup = server_lookup(queryset.model)
    if lookup is None:
        return queryset.none()
    return queryset.filter(**{f"{lookup}__in": ids})


# --- Secrets on admin pages ---------------------------------------------------------------------

MASK_KEEP = 4  # characters kept at each end of a masked secret


def masked(secret: str) -> str:
    """What a user who may not use ``secret`` sees of it: its first and last ``MASK_KEEP``
    characters (enough to tell two tokens apart), or nothing of a short one."""
    secret = secret or ""
    if len(secret) < 4 * MASK_KEEP:
        return "…"
    return f"{secret[:MASK_KEEP]}…{secret[-MASK_KEEP:]}"


def shown_secret(secret: str, in_full: bool) -> str:
    """``secret`` as a page shows it: whole when ``in_full`` (the user may change what it belongs
    to, and so could make a new one anyway), else ``masked``."""
    return secret if in_full else masked(secret)


def may_change_server(user, server) -> bool:
    """Whether ``user`` may change ``server`` (and so see its API tokens in full): the model
    permission, on a server the user may see."""
    ids = visible_server_ids(user)
    return user.has_perm("servers.change_server") and (ids is None or server.pk in ids)
