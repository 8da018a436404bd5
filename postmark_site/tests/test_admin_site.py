"""Every model admin of the project's site is scoped by staff server access, by its own source: the
site mixes nothing in, and refuses a model admin that is not a ServerScopedAdmin."""

import pytest
from django.contrib import admin
from django.contrib.auth import admin as auth_admin
from django.contrib.auth.models import Group, User
from django.core.exceptions import ImproperlyConfigured

from postmark_site.admin import PostmarkAdminSite
from servers.models import AccountToken
from servers.scoping import ScopedModelAdmin, ServerScopedAdmin

pytestmark = pytest.mark.no_db


def test_every_model_admin_in_the_registry_is_server_scoped():
    registry = admin.site._registry
    assert isinstance(admin.site, PostmarkAdminSite)
    assert {User, Group, AccountToken} <= set(registry)
    unscoped = [
        f"{model._meta.label}: {type(model_admin).__qualname__}"
        for model, model_admin in registry.items()
        if not isinstance(model_admin, ServerScopedAdmin)
    ]
    assert unscoped == []
    assert admin.site.unscoped_admins() == []


def test_the_site_refuses_a_model_admin_that_is_not_scoped():
    site = PostmarkAdminSite(name="throwaway")
    with pytest.raises(ImproperlyConfigured, match="ServerScopedAdmin"):
        site.register(AccountToken)
    with pytest.raises(ImproperlyConfigured, match="ServerScopedAdmin"):
        site.register(AccountToken, admin.ModelAdmin)
    assert AccountToken not in site._registry

    class Scoped(ScopedModelAdmin):
        pass

    site.register(AccountToken, Scoped)
    assert type(site._registry[AccountToken]) is Scoped  # as given: nothing mixed in


def test_django_auths_own_admins_are_taken_only_to_be_replaced():
    """django.contrib.auth registers its admins when its module is imported (before servers.admin
    replaces them): taken, but listed as unscoped, which stops the admin app's start-up."""
    site = PostmarkAdminSite(name="throwaway")
    site.register(Group, auth_admin.GroupAdmin)
    assert site.unscoped_admins() == ["auth.Group: GroupAdmin"]
    assert type(admin.site._registry[Group]).__module__ == "servers.admin"


def test_the_admin_app_does_not_start_with_an_unscoped_admin(monkeypatch):
    from django.apps import apps

    monkeypatch.setattr(
        PostmarkAdminSite, "unscoped_admins", lambda self: ["auth.Group: GroupAdmin"]
    )
    with pytest.raises(ImproperlyConfigured, match="auth.Group: GroupAdmin"):
        apps.get_app_config("admin").ready()
