"""Signals of the messages app, for the apps above it (lower apps never import higher ones)."""

from django.dispatch import Signal

# New outbound messages are stored and due for delivery, once the transaction that stored them has
# committed (sent from outside any transaction, or from ``transaction.on_commit``); arguments:
# ``outbound_ids``. The delivery app connects its queueing to it.
messages_queued = Signal()
