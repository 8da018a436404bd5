"""The activity list's delivery actions: try a message's deferred recipients now, or cancel the
ones still waiting (``delivery.operator``). The message admin lives in ``messages.admin``, below
this app; the actions join it here."""

from django.contrib import admin, messages

from delivery import operator
from messages.admin import OutboundMessageAdmin


@admin.action(description="Retry deferred recipients now", permissions=["deliver"])
def retry_deferred_now(model_admin, request, queryset):
    count = operator.retry_now(list(queryset.values_list("pk", flat=True)))
    model_admin.message_user(
        request,
        f"{count} message(s) queued for delivery now."
        if count
        else "None of the selected messages has a deferred recipient waiting.",
        messages.SUCCESS if count else messages.WARNING,
    )


@admin.action(description="Cancel delivery to waiting recipients", permissions=["deliver"])
def cancel_delivery(model_admin, request, queryset):
    count = operator.cancel(list(queryset.values_list("pk", flat=True)))
    model_admin.message_user(
        request,
        f"Delivery cancelled for {count} recipient(s); each has a SoftBounce saying so."
        if count
        else "None of the selected messages has a recipient waiting.",
        messages.SUCCESS if count else messages.WARNING,
    )


OutboundMessageAdmin.actions = [*OutboundMessageAdmin.actions, retry_deferred_now, cancel_delivery]
