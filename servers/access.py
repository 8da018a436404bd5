"""Which servers a staff user may see (StaffServerAccess), and querysets limited to them: the one
rule every admin page, list, filter and form choice goes through."""

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
