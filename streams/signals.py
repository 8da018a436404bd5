"""Signals of the streams app, for the apps above it (which this app never imports)."""

from django.dispatch import Signal

# Sent inside the transaction that adds or removes a suppression, with ``stream``, ``email``,
# ``suppress_sending``, ``reason`` and ``origin``: ``messages.events`` records it as a
# SubscriptionChange event in the same transaction.
subscription_changed = Signal()
