from django.contrib.admin.apps import AdminConfig
from django.core.exceptions import ImproperlyConfigured


class PostmarkAdminConfig(AdminConfig):
    """django.contrib.admin with the project's own site (``postmark_site.admin``)."""

    default_site = "postmark_site.admin.PostmarkAdminSite"

    def ready(self):
        super().ready()  # every app's admin module is imported and registered by now
        from django.contrib.admin import site

        unscoped = site.unscoped_admins()
        if unscoped:
            raise ImproperlyConfigured(
                "model admins not scoped by staff server access (servers.scoping."
                "ServerScopedAdmin): " + "; ".join(unscoped)
            )
