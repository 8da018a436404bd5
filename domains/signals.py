"""Signals through which this app reaches the pipeline above it."""

from django.dispatch import Signal

# Sent with ``signature=`` when a sender signature's confirmation message should go out (on
# creation and on "resend"); the message pipeline, above this app, sends it.
confirmation_requested = Signal()
