"""Reads for the station registry."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, QuerySet

from apps.stations.models import ChargePoint, Connector, Location


def location_list(*, actor: Any) -> QuerySet[Location]:
    return Location.objects.for_actor(actor).select_related("organisation").annotate(
        charge_point_count=Count("charge_points")
    )


def chargepoint_list(*, actor: Any) -> QuerySet[ChargePoint]:
    return ChargePoint.objects.for_actor(actor).select_related("organisation", "location")


def chargepoint_get_by_identity(*, identity: str) -> ChargePoint | None:
    """The charge point whose OCPP identity is exactly `identity` (the URL is case-sensitive)."""
    return ChargePoint.objects.filter(identity=identity).select_related("organisation", "location").first()


def connector_list_for_chargepoint(*, charge_point: ChargePoint) -> QuerySet[Connector]:
    return Connector.objects.filter(evse__charge_point=charge_point).select_related("evse").order_by(
        "evse__evse_id", "connector_id"
    )
