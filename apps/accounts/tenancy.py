"""Tenancy: the one helper every queryset read by admin, API and services goes through.

A tenant-owned model uses `TenantQuerySet.as_manager()` and names the path to its organisation in
`tenant_field` ("organisation", or "charge_point__organisation" for rows owned through a parent).
A staff member sees their organisation and all its sub-operators; the superuser sees everything.

`tenant_shared_when_null = True` marks models whose rows without an organisation belong to the
deployment as a whole: drivers, their profiles and their personal cards. Such a row is nobody's to
browse: staff see it only where it is linked to one of their organisations, and links are named by
the apps that know them (`register_shared_link`, wired in `AppConfig.ready()`): a driver who charged at
the organisation's chargers, who holds a card the organisation issued or whose card is restricted to
its network (`valid_at` naming it; a card valid everywhere links its holder to no operator in
particular), or who is in one of its customer accounts; a personal card restricted to the
organisation's network or used at its chargers. Seeing is not changing: `writable_by` is what a
staff member may change or delete, which never includes a shared row (only a superuser changes
drivers, their credentials and their personal cards; the driver does through the API).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.db import models
from django.db.models import Q

if TYPE_CHECKING:
    from apps.accounts.models import User

_CACHE_ATTR = "_cpo_organisation_ids"

SharedLink = Callable[[frozenset[int]], Q]
_SHARED_LINKS: dict[str, list[SharedLink]] = {}


def register_shared_link(model_label: str, link: SharedLink) -> None:
    """Name a way a shared row (no organisation) of `model_label` ("accounts.User") is linked to
    organisations: `link(organisation_ids)` returns a Q on that model matching the linked rows. Called
    from AppConfig.ready(); registering the same callable twice is harmless."""
    links = _SHARED_LINKS.setdefault(model_label, [])
    if link not in links:
        links.append(link)


def shared_link_q(model: type[models.Model], organisation_ids: frozenset[int]) -> Q | None:
    """The shared rows of `model` linked to any of `organisation_ids`, or None when nothing links them."""
    if not organisation_ids:
        return None
    condition: Q | None = None
    for link in _SHARED_LINKS.get(model._meta.label, []):
        q = link(organisation_ids)
        condition = q if condition is None else condition | q
    return condition


def organisation_ids_for(user: Any) -> frozenset[int]:
    """Ids of the organisations `user` may act for: theirs and every descendant. Cached on the user."""
    cached = getattr(user, _CACHE_ATTR, None)
    if cached is not None:
        return cached
    from apps.accounts.models import Organisation  # noqa: PLC0415 - accounts.models imports this module

    org_id = getattr(user, "organisation_id", None)
    ids: set[int] = set()
    if org_id is not None and getattr(user, "is_active", False):
        frontier = {org_id}
        while frontier:
            ids |= frontier
            frontier = (
                set(Organisation.objects.filter(parent_id__in=frontier).values_list("pk", flat=True)) - ids
            )
    result = frozenset(ids)
    setattr(user, _CACHE_ATTR, result)
    return result


def forget_organisation_ids(user: Any) -> None:
    if hasattr(user, _CACHE_ATTR):
        delattr(user, _CACHE_ATTR)


def sees_everything(user: Any) -> bool:
    return bool(getattr(user, "is_active", False) and getattr(user, "is_superuser", False))


def _tenant_field(model: type[models.Model]) -> str:
    return str(model.tenant_field)  # type: ignore[attr-defined]


class TenantQuerySet(models.QuerySet):
    def for_actor(self, user: User | Any) -> TenantQuerySet:
        """The rows `user` may see. Anonymous and inactive users see nothing; shared rows (no
        organisation) only where linked to one of the user's organisations."""
        if sees_everything(user):
            return self
        field = _tenant_field(self.model)
        ids = organisation_ids_for(user)
        condition = Q(**{f"{field}__in": ids})
        if (
            getattr(self.model, "tenant_shared_when_null", False)
            and getattr(user, "is_active", False)
            and getattr(user, "is_staff", False)
        ):
            linked = shared_link_q(self.model, ids)
            if linked is not None:
                condition |= Q(**{f"{field}__isnull": True}) & linked
        return self.filter(condition)

    def writable_by(self, user: User | Any) -> TenantQuerySet:
        """The rows `user` may change or delete: those of the user's organisations (never a shared row),
        everything for the superuser."""
        if sees_everything(user):
            return self
        return self.filter(**{f"{_tenant_field(self.model)}__in": organisation_ids_for(user)})

    def for_organisation(self, organisation_id: int) -> TenantQuerySet:
        return self.filter(**{_tenant_field(self.model): organisation_id})
