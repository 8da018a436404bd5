"""Data removals in the admin: an operator asks for one (the form's address), the same task as
``POST /data-removals`` carries it out, and the list shows its status and what went. A removal
spans every server, so only users who see every server see this page (``ServerScopedAdmin``)."""

from django import forms
from django.contrib import admin

from privacy.models import DataRemoval
from privacy.services import RemovalError, check_address, request_removal
from servers.scoping import ScopedModelAdmin


class DataRemovalForm(forms.ModelForm):
    class Meta:
        model = DataRemoval
        fields = ("requested_for", "requested_by", "notify_when_completed")
        labels = {"requested_for": "Address to erase", "requested_by": "Requested by"}
        help_texts = {
            "requested_for": "Every stored trace of this address, in every server, is deleted.",
            "requested_by": "Told when it is done, if asked to.",
        }

    def clean(self):
        data = super().clean()
        try:
            data["requested_for"] = check_address(data.get("requested_for"), "The address")
            data["requested_by"] = check_address(
                data.get("requested_by"), "Requested by", data.get("notify_when_completed", False)
            )
        except RemovalError as exc:
            raise forms.ValidationError(exc.message) from None
        return data


@admin.register(DataRemoval)
class DataRemovalAdmin(ScopedModelAdmin):
    form = DataRemovalForm
    list_display = ("id", "status", "requested_by", "created_at", "completed_at", "removed")
    list_filter = ("status",)
    readonly_fields = ("status", "removed", "created_at", "completed_at")

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("requested_for", "requested_by", "notify_when_completed")
        return ("status", "requested_by", "notify_when_completed", *self.readonly_fields[1:])

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("status", "requested_by", "notify_when_completed", "removed", "created_at",
                "completed_at")  # fmt: skip

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        removal = request_removal(
            data["requested_for"], data["requested_by"], data["notify_when_completed"]
        )
        obj.pk = removal.pk
