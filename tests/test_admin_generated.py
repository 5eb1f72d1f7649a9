"""Generated admin tests: every model registered in the admin is rendered (changelist, add, change) for
a staff member and the superuser, and every tenant-owned one is walked across two organisations.

A newly registered model is covered automatically; the tests fail until it has a factory (below or in
tests.factories.TENANT_FACTORIES) and is either tenant-owned or allow-listed with a reason."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.test import RequestFactory
from django.urls import reverse

from apps.accounts.models import Organisation
from apps.tariffs.models import VatRate
from cpo.admin import BaseModelAdmin
from tests.factories import TENANT_FACTORIES, StaffUserFactory, VatRateFactory

pytestmark = pytest.mark.django_db

_group_numbers = itertools.count(1)

# Factories for registered models that are not tenant-owned (TENANT_FACTORIES covers the others).
# Each takes the organisation the test runs in, which these models ignore.
OTHER_FACTORIES: dict[type[models.Model], Callable[[Organisation], models.Model]] = {
    Group: lambda organisation: Group.objects.create(name=f"Test role {next(_group_numbers)}"),
    VatRate: lambda organisation: VatRateFactory(),
}

# Registered models without a tenant_field, and why every staff member may see all their rows.
NOT_TENANT_OWNED: dict[type[models.Model], str] = {
    Group: "Role groups are deployment-wide permission sets, the same for every operator.",
    VatRate: "VAT rates are the law of each country, the same for every operator.",
}

REGISTERED = sorted(admin.site._registry, key=lambda model: model._meta.label)
TENANT_OWNED = [model for model in REGISTERED if hasattr(model, "tenant_field")]


def label(model: type[models.Model]) -> str:
    return model._meta.label


def make(model: type[models.Model], organisation: Organisation) -> models.Model:
    factory = TENANT_FACTORIES.get(model) or OTHER_FACTORIES[model]
    return factory(organisation)


def url(model: type[models.Model], view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def grant_model_permissions(user: Any, model: type[models.Model]) -> Any:
    """Every permission on `model` (view/add/change/delete), then a fresh copy of the user
    (permissions are cached on the instance)."""
    content_type = ContentType.objects.get_for_model(model)
    user.user_permissions.add(*Permission.objects.filter(content_type=content_type))
    return type(user).objects.get(pk=user.pk)


def may_add(model: type[models.Model], user: Any) -> bool:
    request = RequestFactory().get("/")
    request.user = user
    return admin.site._registry[model].has_add_permission(request)


def test_every_registered_model_has_a_factory():
    missing = [label(m) for m in REGISTERED if m not in TENANT_FACTORIES and m not in OTHER_FACTORIES]
    assert missing == [], f"add a factory for {missing} (tests.factories.TENANT_FACTORIES or OTHER_FACTORIES)"


def test_every_registered_model_is_tenant_owned_or_allow_listed():
    unlisted = [label(m) for m in REGISTERED if not hasattr(m, "tenant_field") and m not in NOT_TENANT_OWNED]
    assert unlisted == [], f"{unlisted} have no tenant_field: give them one or allow-list them with a reason"
    stale = [
        label(m) for m in NOT_TENANT_OWNED if hasattr(m, "tenant_field") or m not in admin.site._registry
    ]
    assert stale == [], f"{stale} are allow-listed but tenant-owned or no longer registered"


@pytest.mark.parametrize("model", TENANT_OWNED, ids=label)
def test_tenant_owned_models_use_the_scoped_admin_base(model):
    assert isinstance(admin.site._registry[model], BaseModelAdmin)


@pytest.mark.parametrize("as_superuser", [False, True], ids=["staff", "superuser"])
@pytest.mark.parametrize("model", REGISTERED, ids=label)
def test_admin_pages_render(model, as_superuser, client, org_a, superuser):
    staff = None if as_superuser else StaffUserFactory(organisation=org_a)
    user = superuser if staff is None else grant_model_permissions(staff, model)
    obj = make(model, org_a)
    client.force_login(user)

    assert client.get(url(model, "changelist")).status_code == 200
    assert client.get(url(model, "changelist"), {"q": "x"}).status_code == 200
    assert client.get(url(model, "change", obj.pk)).status_code == 200
    assert client.get(url(model, "history", obj.pk)).status_code == 200
    if may_add(model, user):
        assert client.get(url(model, "add")).status_code == 200


@pytest.mark.parametrize("model", TENANT_OWNED, ids=label)
def test_staff_see_only_their_organisations_objects(model, client, org_a, org_b, staff_a):
    staff_a = grant_model_permissions(staff_a, model)
    own, other = make(model, org_a), make(model, org_b)
    client.force_login(staff_a)

    assert client.get(url(model, "change", own.pk)).status_code == 200
    assert client.get(url(model, "history", own.pk)).status_code == 200
    for view in ("change", "delete", "history"):
        assert client.get(url(model, view, other.pk)).status_code == 404, view

    response = client.get(url(model, "changelist"))
    assert response.status_code == 200
    listed = set(response.context["cl"].queryset.values_list("pk", flat=True))
    assert own.pk in listed
    assert other.pk not in listed
    assert url(model, "change", other.pk) not in response.content.decode()


@pytest.mark.parametrize("model", TENANT_OWNED, ids=label)
def test_other_organisations_objects_cannot_be_changed_by_post(model, client, org_a, org_b, staff_a):
    staff_a = grant_model_permissions(staff_a, model)
    other = make(model, org_b)
    client.force_login(staff_a)

    assert client.post(url(model, "change", other.pk), {}).status_code == 404
    assert client.post(url(model, "delete", other.pk), {"post": "yes"}).status_code == 404
    assert model._default_manager.filter(pk=other.pk).exists()
