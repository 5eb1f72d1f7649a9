"""Reads for charging used by other layers: how drivers and their personal cards are linked to an
operator organisation through sessions at its chargers (registered with accounts' tenancy)."""

from __future__ import annotations

from django.db.models import Q

from apps.charging.models import ChargingSession, DriverSession


def driver_link_by_sessions_q(organisation_ids: frozenset[int]) -> Q:
    """Drivers who started a charge at the organisations' chargers (app), or whose card did."""
    app = DriverSession.objects.filter(organisation_id__in=organisation_ids).values("driver_id")
    card = ChargingSession.objects.filter(
        organisation_id__in=organisation_ids, id_token__owner__isnull=False
    ).values("id_token__owner_id")
    return Q(is_staff=False, is_superuser=False) & (Q(pk__in=app) | Q(pk__in=card))


def idtoken_link_by_sessions_q(organisation_ids: frozenset[int]) -> Q:
    """Cards used in a session at the organisations' chargers."""
    sessions = ChargingSession.objects.filter(organisation_id__in=organisation_ids, id_token__isnull=False)
    driver_sessions = DriverSession.objects.filter(
        organisation_id__in=organisation_ids, id_token__isnull=False
    )
    return Q(pk__in=sessions.values("id_token_id")) | Q(pk__in=driver_sessions.values("id_token_id"))
