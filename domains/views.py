"""The page a sender signature's confirmation link opens (``/senders/confirm/<token>``).

A GET only shows the page with a Confirm button; the POST confirms. Mail scanners and link
previews fetch links in messages, and must not confirm an address on their own."""

from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from domains import services
from domains.confirmation import TokenError, signature_for_token

TEMPLATE = "domains/confirm_sender.html"


@require_http_methods(["GET", "HEAD", "POST"])
def confirm_sender(request, token: str):
    try:
        signature = signature_for_token(token)
    except TokenError as exc:
        return render(request, TEMPLATE, {"error": exc.message}, status=400)
    if request.method == "POST" and not signature.confirmed:
        services.confirm_sender(signature)
        return render(request, TEMPLATE, {"signature": signature, "just_confirmed": True})
    return render(request, TEMPLATE, {"signature": signature})
