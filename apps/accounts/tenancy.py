"""Tenancy: the one helper every queryset read by admin, API and services goes through.

A tenant-owned model uses `TenantQuerySet.as_manager()` and names the path to its organisation in
`tenant_field` ("organisation", or "charge_point__organisation" for rows owned through a parent).
`tenant_shared_when_null = True` marks models whose rows without an organisation belong to the
deployment as a whole (drivers and their app tokens), which every staff member may see.
A staff member sees their organisation and all its sub-operators; the superuser sees everything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import models
from django.db.models import Q

if TYPE_CHECKING:
    from apps.accounts.models import User

_CACHE_ATTR = "_cpo_organisation_ids"


def organisation_ids_for(user: Any) -> frozenset[int]:
    """Ids of the organisations `user` may act for: theirs and every descendant. Cached on the user."""
    cached = getattr(user, _CACHE_ATTR, None)
    if cached is not None:
        return cached
    from apps.accounts.models import Organisation

    org_id = getattr(user, "organisation_id", None)
    ids: set[int] = set()
    if org_id is not None and getattr(user, "is_active", False):
        frontier = {org_id}
        while frontier:
            ids |= frontier
            frontier = set(
                Organisation.objects.filter(parent_id__in=frontier).values_list("pk", flat=True)
            ) - ids
    result = frozenset(ids)
    setattr(user, _CACHE_ATTR, result)
    return result


def forget_organisation_ids(user: Any) -> None:
    if hasattr(user, _CACHE_ATTR):
        delattr(user, _CACHE_ATTR)


def sees_everything(user: Any) -> bool:
    return bool(getattr(user, "is_active", False) and getattr(user, "is_superuser", False))


class TenantQuerySet(models.QuerySet):
    def for_actor(self, user: User | Any) -> TenantQuerySet:
        """The rows `user` may see. Anonymous and inactive users see nothing."""
        if sees_everything(user):
            return self
        field = self.model.tenant_field
        condition = Q(**{f"{field}__in": organisation_ids_for(user)})
        if getattr(self.model, "tenant_shared_when_null", False) and getattr(user, "is_active", False) \
                and getattr(user, "is_staff", False):
            condition |= Q(**{f"{field}__isnull": True})
        return self.filter(condition)

    def for_organisation(self, organisation_id: int) -> TenantQuerySet:
        return self.filter(**{self.model.tenant_field: organisation_id})
