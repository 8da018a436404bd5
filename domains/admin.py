"""Admin of sender identity: domains (the records to publish, their state, Verify now, Rotate
DKIM key) and sender signatures (Resend confirmation, Confirm).

Both are account-wide, as account tokens are: ``ScopedModelAdmin`` hides them from staff limited
to some servers; superusers and staff with access to every server manage them, given the model
permissions (the buttons need the change permission).
"""

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from domains import grace, services
from domains.details import domain_details, records_to_publish
from domains.models import DkimKey, Domain, SenderSignature
from domains.verification import verify_domain
from servers.scoping import ScopedModelAdmin, change_url


def _state(verified: bool, checked_at, in_use: str = "in use") -> str:
    """What is true of a record: verified by a look-up, not verified, or never looked up (a
    domain marked verified without DNS, as the demo's, is in use all the same)."""
    if checked_at is None:
        if verified:
            return format_html('<strong class="pm-ok">{}</strong>; DNS not checked', in_use)
        return format_html('<span class="pm-hint">{}</span>', "not checked")
    if verified:
        return format_html('<strong class="pm-ok">verified</strong>')
    return format_html('<strong class="pm-warn">not verified</strong>')


# What an operator is told before and after changing the service's own domain (account tokens
# may not: ``services.refuse_service_domain``).
SERVICE_DOMAIN_WARNING = (
    "{name} is the service's own domain: its key signs every message whose From domain is not "
    "verified. Deleted, the next message makes a new key whose record is not published; rotated, "
    "the new key signs once its record is seen. Until the record of the key that signs is "
    "published, those messages fail DKIM."
)


class DomainAddForm(forms.ModelForm):
    ed25519 = forms.BooleanField(
        label="Also sign with Ed25519",
        required=False,
        help_text="An Ed25519 key (RFC 8463) signs beside the RSA 2048 key.",
    )

    class Meta:
        model = Domain
        fields = ("name", "return_path_domain")
        help_texts = {
            "name": "The domain of the From addresses, e.g. shop.example.",
            "return_path_domain": "A subdomain of it for bounces (default pm-bounces.<domain>).",
        }

    def clean(self):
        data = super().clean()
        try:
            data["name"] = services.valid_domain_name(data.get("name", ""))
            data["return_path_domain"] = services.valid_return_path(
                data["name"], data.get("return_path_domain")
            )
        except services.IdentityError as exc:
            raise forms.ValidationError(exc.message) from None
        return data


class DkimKeyInline(admin.TabularInline):
    model = DkimKey
    fields = ("selector", "algorithm", "state", "created_at", "activated_at", "revoked_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Domain)
class DomainAdmin(ScopedModelAdmin):
    list_display = ("name", "dkim_state", "return_path_state", "spf_state", "problem",
                    "dkim_checked_at")  # fmt: skip
    list_filter = ("dkim_verified", "return_path_verified", "spf_verified")
    search_fields = ("name", "return_path_domain")
    readonly_fields = (
        "name", "return_path_domain", "dkim_verified", "return_path_verified", "spf_verified",
        "dkim_checked_at", "return_path_checked_at", "spf_checked_at", "dns_problem",
        "dns_problem_since", "dkim_failing_since", "dkim_failed_checks",
        "return_path_failing_since", "return_path_failed_checks", "created_at",
    )  # fmt: skip
    inlines = [DkimKeyInline]
    actions = ["verify_selected"]
    change_form_template = "admin/domains/domain/change_form.html"

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = DomainAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("name", "return_path_domain", "ed25519")
        return (*self.readonly_fields, "periodic_checks")

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else ()

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        name = form.cleaned_data["name"]
        try:
            created = services.create_domain(
                name,
                return_path=form.cleaned_data["return_path_domain"],
                ed25519=form.cleaned_data.get("ed25519", False),
            )
        except services.IdentityError as exc:
            if exc.error_code != services.DOMAIN_EXISTS:
                raise
            # Added meanwhile (another tab, an API request): the page shows that one.
            created = Domain.objects.get(name=name)
            messages.warning(request, f"{name} was added meanwhile: here it is, as it was made.")
        obj.pk, obj._state.adding, obj._state.db = created.pk, False, created._state.db
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change):
        if change:
            super().save_related(request, form, formsets, change)

    @admin.display(description="DKIM", ordering="dkim_verified")
    def dkim_state(self, obj):
        return _state(obj.dkim_verified, obj.dkim_checked_at, "signing")

    @admin.display(description="Return-Path", ordering="return_path_verified")
    def return_path_state(self, obj):
        return _state(obj.return_path_verified, obj.return_path_checked_at)

    @admin.display(description="SPF", ordering="spf_verified")
    def spf_state(self, obj):
        return _state(obj.spf_verified, obj.spf_checked_at)

    @admin.display(description="DNS problem")
    def problem(self, obj):
        return obj.dns_problem.splitlines()[0][:80] if obj.dns_problem else ""

    def change_view(self, request, object_id, form_url="", extra_context=None):
        domain = self.get_object(request, object_id)
        if domain is not None:
            extra_context = {
                **(extra_context or {}),
                "records": records_to_publish(domain),
                "details": domain_details(domain),
                "failing": grace.failing(domain),
                "grace_rule": grace.rule(),
                "can_act": self.has_change_permission(request, domain),
                "service_domain": services.is_service_domain(domain.name),
                "verify_url": change_url(domain) + "verify/",
                "rotate_url": change_url(domain) + "rotate/",
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def admin_urls(self):
        return [
            ("<int:object_id>/change/verify/", self.domain_verify, "domains_domain_verify"),
            ("<int:object_id>/change/rotate/", self.domain_rotate, "domains_domain_rotate"),
        ]

    @method_decorator(require_POST)
    def domain_verify(self, request, object_id):
        domain = self.scoped_object(request, object_id, change=True)
        checks = verify_domain(domain)
        for check in checks:
            level = messages.SUCCESS if check.verified else messages.WARNING
            messages.add_message(request, level, f"{check.record} ({check.host}): {check.detail}")
        for failing in grace.failing(domain):  # a failed check un-verifies only after the grace
            if failing.gated and failing.failed_checks:
                messages.warning(request, failing.sentence)
        return HttpResponseRedirect(change_url(domain))

    @method_decorator(require_POST)
    def domain_rotate(self, request, object_id):
        domain = self.scoped_object(request, object_id, change=True)
        new_keys = services.rotate_dkim(domain)
        self.log_change(request, domain, "Started a DKIM key rotation.")
        if services.is_service_domain(domain.name):
            messages.warning(request, SERVICE_DOMAIN_WARNING.format(name=domain.name))
        messages.success(
            request,
            f"Publish the new DKIM record at {new_keys[0].host} beside the current one; the "
            "current key signs until Verify now (or the periodic check) sees the new record.",
        )
        return HttpResponseRedirect(change_url(domain))

    def get_deleted_objects(self, objs, request):
        """Deleting the service's own domain (the delete page and the bulk action): a warning."""
        for domain in objs:
            if services.is_service_domain(domain.name):
                messages.warning(request, SERVICE_DOMAIN_WARNING.format(name=domain.name))
        return super().get_deleted_objects(objs, request)

    @admin.action(description="Verify the DNS records now", permissions=["change"])
    def verify_selected(self, request, queryset):
        checked = verified = in_grace = 0
        for domain in queryset:
            verify_domain(domain)
            checked += 1
            verified += domain.dkim_verified
            in_grace += any(f.in_grace for f in grace.failing(domain))
        note = f"{checked} domain(s) checked, {verified} DKIM-verified."
        if in_grace:
            note += (
                f" {in_grace} still verified although a record was not found: un-verified only "
                "if it keeps failing over the grace period (see each domain's page)."
            )
        self.message_user(request, note)


class SenderSignatureForm(forms.ModelForm):
    class Meta:
        model = SenderSignature
        fields = ("email", "name", "reply_to", "confirmation_note", "confirmed")
        help_texts = {
            "confirmed": "Tick to vouch for the address yourself; otherwise a confirmation "
            "message with a link is sent to it.",
        }

    def clean(self):
        data = super().clean()
        try:
            data["email"] = services.valid_address(data.get("email", ""))
            if data.get("reply_to"):
                data["reply_to"] = services.valid_address(data["reply_to"], "ReplyToEmail")
        except services.IdentityError as exc:
            raise forms.ValidationError(exc.message) from None
        return data


@admin.register(SenderSignature)
class SenderSignatureAdmin(ScopedModelAdmin):
    list_display = ("email", "name", "confirmed", "confirmation_sent_at", "created_at")
    list_filter = ("confirmed",)
    search_fields = ("email", "name")
    actions = ["resend_confirmation", "confirm"]
    change_form_template = "admin/domains/sendersignature/change_form.html"

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = SenderSignatureForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return SenderSignatureForm.Meta.fields
        return ("email", "name", "reply_to", "confirmation_note", "confirmed", "confirmed_at",
                "confirmation_sent_at", "created_at")  # fmt: skip

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("email", "confirmed", "confirmed_at", "confirmation_sent_at", "created_at")

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        data = form.cleaned_data
        try:
            created = services.create_sender(
                data["email"],
                name=data.get("name", ""),
                reply_to=data.get("reply_to", ""),
                note=data.get("confirmation_note", ""),
                confirmed=data.get("confirmed", False),
            )
        except services.IdentityError as exc:
            if exc.error_code != services.SIGNATURE_EXISTS:
                raise
            # Added meanwhile (another tab, an API request): the page shows that one.
            created = SenderSignature.objects.get(email=data["email"])
            messages.warning(
                request, f"{created.email} was added meanwhile: here it is, as it was made."
            )
        else:
            if not created.confirmed:
                try:
                    services.request_confirmation(created)
                    messages.info(request, f"A confirmation message was sent to {created.email}.")
                except services.ConfirmationLimited as exc:
                    messages.warning(request, f"No confirmation message was sent: {exc.message}")
        obj.pk, obj._state.adding, obj._state.db = created.pk, False, created._state.db
        obj.refresh_from_db()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        signature = self.get_object(request, object_id)
        if signature is not None:
            extra_context = {
                **(extra_context or {}),
                "can_act": self.has_change_permission(request, signature),
                "resend_url": change_url(signature) + "resend/",
                "confirm_url": change_url(signature) + "confirm/",
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def admin_urls(self):
        return [
            ("<int:object_id>/change/resend/", self.signature_resend,
             "domains_sendersignature_resend"),
            ("<int:object_id>/change/confirm/", self.signature_confirm,
             "domains_sendersignature_confirm"),
        ]  # fmt: skip

    @method_decorator(require_POST)
    def signature_resend(self, request, object_id):
        signature = self.scoped_object(request, object_id, change=True)
        try:
            services.request_confirmation(signature)
            messages.success(request, f"A confirmation message was sent to {signature.email}.")
        except services.IdentityError as exc:
            messages.warning(request, exc.message)
        return HttpResponseRedirect(change_url(signature))

    @method_decorator(require_POST)
    def signature_confirm(self, request, object_id):
        signature = self.scoped_object(request, object_id, change=True)
        services.confirm_sender(signature)
        self.log_change(request, signature, "Confirmed by an operator.")
        messages.success(request, f"{signature.email} is confirmed: it may be used as From.")
        return HttpResponseRedirect(change_url(signature))

    @admin.action(description="Resend the confirmation message", permissions=["change"])
    def resend_confirmation(self, request, queryset):
        count = 0
        for signature in queryset.filter(confirmed=False):
            try:
                services.request_confirmation(signature)
                count += 1
            except services.ConfirmationLimited as exc:
                self.message_user(request, exc.message, messages.WARNING)
        self.message_user(request, f"{count} confirmation message(s) sent.")

    @admin.action(description="Confirm the selected sender signatures", permissions=["change"])
    def confirm(self, request, queryset):
        count = 0
        for signature in queryset.filter(confirmed=False):
            services.confirm_sender(signature)
            count += 1
        self.message_user(request, f"{count} sender signature(s) confirmed.", messages.SUCCESS)
