from django.db import models


class DataRemoval(models.Model):
    """A request to erase what is stored about one address (compat §15), in every server.

    ``requested_for`` is the address while the work is pending; it is emptied once the removal is
    done, so that the request itself keeps no trace of it (``requested_by`` too, when it is the
    same address). ``removed`` counts the rows that went, by kind."""

    class Status(models.TextChoices):
        PENDING = "Pending", "Pending"
        DONE = "Done", "Done"

    requested_by = models.CharField(max_length=320, blank=True)
    requested_for = models.CharField(max_length=320, blank=True)
    notify_when_completed = models.BooleanField(default=False)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    removed = models.JSONField(default=dict, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-id"]
        verbose_name = "data removal"

    def __str__(self):
        return f"data removal {self.pk} ({self.status})"
