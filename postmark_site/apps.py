from django.contrib.admin.apps import AdminConfig


class PostmarkAdminConfig(AdminConfig):
    """django.contrib.admin with the project's own site (``postmark_site.admin``)."""

    default_site = "postmark_site.admin.PostmarkAdminSite"
