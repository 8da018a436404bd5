"""Admin of each server's templates and layouts: the editor (a form refusing what the Templates
API refuses, each syntax error at its line), its live preview (the draft rendered with a test
model: the HTML in a sandboxed frame served under a strict Content-Security-Policy, the subject
and text beside it), deleting as the API does (a layout still in use is kept), and pushing
templates from one server to another after looking at the dry run's diff.

The rules are mailtemplates.services' (with .preview and .diffs); this module translates forms
and requests. A user who may only view sees the templates and their saved preview, and changes,
previews drafts and pushes nothing."""

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.functional import SimpleLazyObject
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_http_methods, require_POST

from mailtemplates import diffs, preview, services
from mailtemplates.models import Template
from mailtemplates.services import TemplateProblem
from servers.access import visible_servers
from servers.scoping import ScopedModelAdmin, change_url

# The preview frame's document may show the rendered HTML and its inline styles and data: images,
# and nothing else: no script, no remote load (images, fonts, stylesheets), no form, no <base>;
# ``sandbox`` makes it an opaque origin even when opened outside the frame.
PREVIEW_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)
PREVIEW_FRAME = "pm-template-preview"
PART_FIELDS = ("subject", "html_body", "text_body")
NOTE = '<!DOCTYPE html><p style="font: 14px sans-serif; color: #777">{}</p>'
SOURCE = {"class": "vLargeTextField pm-source", "spellcheck": "false"}


class TemplateForm(forms.ModelForm):
    class Meta:
        model = Template
        fields = ("server", "template_type", "name", "alias", "layout_template", "subject",
                  "html_body", "text_body")  # fmt: skip
        widgets = {
            "subject": forms.TextInput(attrs={"class": "vLargeTextField pm-source"}),
            "html_body": forms.Textarea(attrs={**SOURCE, "rows": 20}),
            "text_body": forms.Textarea(attrs={**SOURCE, "rows": 12}),
        }
        labels = {"html_body": "HTML body", "layout_template": "Layout"}
        help_texts = {
            "alias": "Letters, digits, '.', '-' and '_', starting with a letter; sends and pushes "
            "name a template by it. Once set it can be changed, not removed.",
            "layout_template": "The alias of the Layout wrapping this template at "
            "{{{ @content }}} (empty: none).",
            "html_body": "A layout holds {{{ @content }}} exactly once in each body.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in PART_FIELDS:
            if name in self.fields:
                self.fields[name].strip = False  # a template's whitespace is its own
        template = self.instance
        if template.pk and "layout_template" in self.fields:
            layouts = Template.objects.filter(
                server=template.server_id, active=True, template_type=Template.Type.LAYOUT
            ).order_by("name")
            choices = [("", "(none)"), *((t.alias, f"{t.name} ({t.alias})") for t in layouts)]
            current = template.layout_template
            if current and current.lower() not in {alias.lower() for alias, _ in choices}:
                choices.append((current, f"{current} (not found)"))
            field = self.fields["layout_template"]
            self.fields["layout_template"] = forms.ChoiceField(
                choices=choices, required=False, label=field.label, help_text=field.help_text
            )

    def clean(self):
        data = super().clean()
        template = self.instance if self.instance.pk else None
        server = template.server if template else data.get("server")
        kind = template.template_type if template else data.get("template_type")
        if server is None or kind is None:
            return data
        fields = {"name": data.get("name") or "", "alias": data.get("alias") or ""}
        fields["templatetype"] = kind
        for name, api, _ in preview.PARTS:
            if name not in self.fields:
                continue
            data[name] = preview.normalise(data.get(name))
            fields[api.lower()] = data[name]
            is_layout = kind == Template.Type.LAYOUT and name != "subject"
            for problem in preview.syntax_problems(name, data[name], is_layout):
                where = f"Line {problem.line}, character {problem.character}"
                self.add_error(name, f"{where}: {problem.message}")
        if "layout_template" in self.fields and (
            template is None or "layout_template" in self.changed_data
        ):
            fields["layouttemplate"] = data.get("layout_template") or ""
        if self.errors:
            return data
        try:
            services.check(server, fields, template)
        except TemplateProblem as problem:
            raise forms.ValidationError(problem.message) from None
        self.template_data = fields
        return data


class StateFilter(admin.SimpleListFilter):
    """Active templates unless asked otherwise (a deleted template is kept, inactive)."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("deleted", "Deleted"), ("all", "All")]

    def choices(self, changelist):
        for value, label in ((None, "Active"), ("deleted", "Deleted"), ("all", "All")):
            yield {
                "selected": self.value() == value,
                "query_string": changelist.get_query_string(
                    {self.parameter_name: value} if value else {}, [self.parameter_name]
                ),
                "display": label,
            }

    def queryset(self, request, queryset):
        if self.value() == "all":
            return queryset
        return queryset.filter(active=self.value() != "deleted")


class PushForm(forms.Form):
    source = forms.ModelChoiceField(queryset=None, label="From server")
    destination = forms.ModelChoiceField(queryset=None, label="To server")

    def __init__(self, user, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("source", "destination"):
            self.fields[name].queryset = visible_servers(user)

    def clean(self):
        data = super().clean()
        if data.get("source") is not None and data.get("source") == data.get("destination"):
            raise forms.ValidationError("Choose two different servers.")
        return data


def preview_document(result: preview.Preview) -> HttpResponse:
    """The preview frame's document: the rendered HTML, under PREVIEW_CSP."""
    if result.html:
        body = result.html
    elif result.problems:
        body = format_html(NOTE, "Not rendered: see the problems beside the preview.")
    else:
        body = format_html(NOTE, "This template has no HTML body.")
    response = HttpResponse(body, content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = PREVIEW_CSP
    response["X-Frame-Options"] = "SAMEORIGIN"
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "no-store"
    return response


@admin.register(Template)
class TemplateAdmin(ScopedModelAdmin):
    form = TemplateForm
    list_display = ("name", "alias", "template_type", "layout_template", "server", "active",
                    "updated_at")  # fmt: skip
    list_filter = (StateFilter, "template_type", "server")
    list_select_related = ("server",)
    search_fields = ("name", "alias")
    ordering = ("server_id", "template_type", "name", "id")
    change_form_template = "admin/mailtemplates/template/change_form.html"
    change_list_template = "admin/mailtemplates/template/change_list.html"

    def get_fields(self, request, obj=None):
        if obj is None:
            return TemplateForm.Meta.fields
        parts = ("html_body", "text_body", "used_by") if obj.is_layout else (
            "layout_template", "subject", "html_body", "text_body")  # fmt: skip
        return ("server", "template_type", "name", "alias", *parts, "active", "created_at",
                "updated_at")  # fmt: skip

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("server", "template_type", "used_by", "active", "created_at", "updated_at")

    @admin.display(description="used by")
    def used_by(self, obj):
        users = list(services.users_of(obj).order_by("name")) if obj.is_layout else []
        if not users:
            return "No template uses this layout."
        return format_html_join(", ", '<a href="{}">{}</a>', ((change_url(t), t) for t in users))

    # --- Saving and deleting: through the services, as the API does --------------------------

    def has_change_permission(self, request, obj=None):
        return (obj is None or obj.active) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return (obj is None or obj.active) and super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        data = form.template_data
        if change:
            saved = services.edit(Template.objects.get(pk=obj.pk), data)
        else:
            saved = services.create(form.cleaned_data["server"], data)
        obj.pk, obj._state.adding, obj._state.db = saved.pk, False, saved._state.db
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change):
        pass  # nothing relates to a template but its server

    def get_deleted_objects(self, objs, request):
        """A layout that active templates use is protected by them (services.delete)."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        for layout in objs:
            if layout.is_layout and layout.active:
                protected += [
                    format_html("“{}” ({}), which uses this layout", t.name, t.alias or t.pk)
                    for t in services.users_of(layout)
                ]
        return deleted, counts, perms_needed, protected

    def delete_model(self, request, obj):
        services.delete(obj)

    def delete_queryset(self, request, queryset):
        for template in queryset.filter(active=True):
            try:
                services.delete(template)
            except TemplateProblem as problem:  # a template took up the layout meanwhile
                messages.warning(request, problem.message)

    # --- The editor's page and its preview ------------------------------------------------

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        template = self.get_object(request, object_id) if object_id else None
        if object_id is None or template is not None:
            extra_context = {**self._editor_context(request, template), **(extra_context or {})}
        return super().changeform_view(request, object_id, form_url, extra_context)

    def _editor_context(self, request, template) -> dict:
        """The preview panel of the add (``template`` None) or change page: the saved template
        rendered, or the posted draft when a save was refused (computed only if shown)."""
        posted = request.method == "POST"
        if template is None:
            can_preview = self.has_add_permission(request)
            names, args = ("preview", "preview_html"), []
        else:
            can_preview = self.has_change_permission(request, template)
            names, args = ("object_preview", "object_preview_html"), [template.pk]
        json_url, html_url = (
            reverse(f"admin:mailtemplates_template_{name}", args=args) for name in names
        )
        drafted = posted and can_preview
        shown = SimpleLazyObject(
            lambda: self._draft(request, template) if drafted else self._saved(template)
        )
        suggested = SimpleLazyObject(
            lambda: json.dumps(shown.suggested_model or {}, indent=2, ensure_ascii=False)
        )
        return {
            "preview_frame": PREVIEW_FRAME,
            "can_preview": can_preview,
            "stale": posted,  # the frame shows nothing yet: the editor's script fills it
            "preview_url": json_url,
            "preview_html_url": html_url,
            "saved_preview_url": html_url if template is not None and not posted else "",
            "shown": shown,
            "suggested_json": suggested,
            "model_text": (request.POST.get("preview_model", "") if drafted else "") or suggested,
            "inline_css": not posted or "preview_inline_css" in request.POST,
        }

    @staticmethod
    def _saved(template) -> preview.Preview:
        if template is None:
            return preview.Preview()
        parts = {name: getattr(template, name) for name in PART_FIELDS}
        return preview.render_draft(
            template.server, template.is_layout, parts, template.layout_template, ""
        )

    def _draft(self, request, template) -> preview.Preview:
        """The draft the editor posts, rendered (``template`` is the one it edits, or None)."""
        if template is None:
            server = None
            if request.POST.get("server", "").strip().isdigit():
                server = visible_servers(request.user).filter(pk=request.POST["server"]).first()
            is_layout = request.POST.get("template_type") == Template.Type.LAYOUT
        else:
            server, is_layout = template.server, template.is_layout
        layout = request.POST.get("layout_template", "") if not is_layout else ""
        return preview.render_draft(
            server,
            is_layout,
            {name: request.POST.get(name) for name in PART_FIELDS},
            layout,
            request.POST.get("preview_model", ""),
            inline="preview_inline_css" in request.POST,
        )

    def _previewed(self, request, object_id) -> preview.Preview:
        if object_id is None:
            if not self.has_add_permission(request):
                raise PermissionDenied
            return self._draft(request, None)
        if request.method == "POST":
            return self._draft(request, self.scoped_object(request, object_id, change=True))
        return self._saved(self.scoped_object(request, object_id))

    def admin_urls(self):
        return [
            ("preview/", self.template_preview, "mailtemplates_template_preview"),
            ("preview/html/", self.template_preview_html, "mailtemplates_template_preview_html"),
            ("<int:object_id>/change/preview/", self.template_preview,
             "mailtemplates_template_object_preview"),
            ("<int:object_id>/change/preview/html/", self.template_preview_html,
             "mailtemplates_template_object_preview_html"),
            ("push/", self.template_push, "mailtemplates_template_push"),
        ]  # fmt: skip

    @method_decorator(require_POST)
    def template_preview(self, request, object_id=None):
        """The draft's subject, text, problems (each at its line) and suggested model."""
        return JsonResponse(self._previewed(request, object_id).as_json())

    @method_decorator(require_http_methods(["GET", "HEAD", "POST"]))
    def template_preview_html(self, request, object_id=None):
        """The document of the preview frame: the draft's (POST) or the saved (GET) HTML."""
        if object_id is None and request.method != "POST":
            raise Http404("Post a draft to preview it.")
        return preview_document(self._previewed(request, object_id))

    # --- Pushing between servers ----------------------------------------------------------

    @method_decorator(require_http_methods(["GET", "HEAD", "POST"]))
    def template_push(self, request):
        """GET: the dry run's diff (nothing changes); POST: the push, if the templates are
        still what the diff showed (the digest of the plan)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        can_push = self.has_add_permission(request) and self.has_change_permission(request)
        if request.method == "POST" and not can_push:
            raise PermissionDenied
        data = request.POST if request.method == "POST" else request.GET
        form = PushForm(request.user, data if "source" in data else None)
        planned, error = None, ""
        if form.is_bound and form.is_valid():
            source, destination = form.cleaned_data["source"], form.cleaned_data["destination"]
            try:
                planned = diffs.plan(source, destination)
            except TemplateProblem as problem:
                error = problem.message
            if planned and request.method == "POST":
                if request.POST.get("plan") != diffs.digest(planned):
                    messages.warning(request, "The templates changed since the diff was shown: "
                                              "look at the changes below again.")  # fmt: skip
                else:
                    return self._push(request, source, destination)
        context = {
            **self.admin_site.each_context(request),
            "title": "Push templates between servers",
            "opts": self.opts,
            "form": form,
            "planned": planned,
            "digest": diffs.digest(planned) if planned else "",
            "error": error,
            "can_push": can_push,
        }
        return TemplateResponse(request, "admin/mailtemplates/template/push.html", context)

    def _push(self, request, source, destination):
        try:
            pushed = services.push(source, destination, perform=True)
        except TemplateProblem as problem:
            messages.error(request, problem.message)
            return HttpResponseRedirect(request.get_full_path())
        note = f"Pushed from the server “{source.name}”."
        for change in pushed:
            template = services.find(destination, change.alias)
            if template is None:
                continue  # deleted since, through the API
            if change.action == "Create":
                self.log_addition(request, template, note)
            else:
                self.log_change(request, template, note)
        messages.success(
            request,
            f"{len(pushed)} template(s) pushed from “{source.name}” to “{destination.name}”.",
        )
        listing = reverse("admin:mailtemplates_template_changelist")
        return HttpResponseRedirect(f"{listing}?server__id__exact={destination.pk}")
