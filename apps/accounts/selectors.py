"""Reads for accounts: how drivers, their profiles and their personal cards (shared rows, no
organisation) are linked to an operator organisation through what accounts knows (tenancy)."""

from __future__ import annotations

from django.db.models import Q

from apps.accounts.models import DriverProfile, IdToken, User
from apps.accounts.tenancy import shared_link_q


def driver_link_by_cards_q(organisation_ids: frozenset[int]) -> Q:
    """Drivers holding a card the organisations issued or restricted to their network (`valid_at`
    naming one of them), or in one of their customer accounts. A card valid everywhere (empty
    `valid_at`) links its holder to no operator in particular."""
    cards = IdToken.objects.filter(Q(organisation_id__in=organisation_ids) | Q(valid_at__in=organisation_ids))
    customers = DriverProfile.objects.filter(customer_account__organisation_id__in=organisation_ids)
    return Q(is_staff=False, is_superuser=False) & (
        Q(pk__in=cards.filter(owner__isnull=False).values("owner_id")) | Q(pk__in=customers.values("user_id"))
    )


def idtoken_link_by_network_q(organisation_ids: frozenset[int]) -> Q:
    """Personal cards restricted to the organisations' network (`valid_at` naming one of them)."""
    return Q(pk__in=IdToken.objects.filter(valid_at__in=organisation_ids).values("pk"))


def driverprofile_link_q(organisation_ids: frozenset[int]) -> Q:
    """Profiles of the drivers linked to the organisations (every registered driver link)."""
    linked = shared_link_q(User, organisation_ids)
    if linked is None:
        return Q(pk__in=[])
    return Q(user_id__in=User.objects.filter(linked).values("pk"))
