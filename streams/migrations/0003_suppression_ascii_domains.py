"""Suppressions stored before addresses were compared with their domain normalised
(``core.addresses``): an international domain becomes its A-label and a trailing dot goes, so
that each keeps suppressing mail to its address however that is written. Where both forms were
stored for a stream, one row stays (a spam complaint outranks any other reason)."""

from django.db import migrations
from django.db.models import Q

SPAM_COMPLAINT = "SpamComplaint"


def normalise_domains(apps, schema_editor):
    from core.addresses import address_key

    Suppression = apps.get_model("streams", "Suppression")
    candidates = list(
        Suppression.objects.filter(Q(email__regex=r"[^ -~]") | Q(email__endswith="."))
        .order_by("pk")
        .values_list("pk", "stream_id", "email", "reason", "origin", "bounce_id")
    )
    for pk, stream_id, email, reason, origin, bounce_id in candidates:
        normalised = address_key(email)
        if normalised == email:
            continue
        existing = Suppression.objects.filter(stream_id=stream_id, email=normalised).first()
        if existing is None:
            Suppression.objects.filter(pk=pk).update(email=normalised)
            continue
        if reason == SPAM_COMPLAINT and existing.reason != SPAM_COMPLAINT:
            Suppression.objects.filter(pk=existing.pk).update(
                reason=reason, origin=origin, bounce_id=bounce_id
            )
        Suppression.objects.filter(pk=pk).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("streams", "0002_unsubscribe_handling_type"),
    ]

    operations = [
        migrations.RunPython(normalise_domains, migrations.RunPython.noop),
    ]
