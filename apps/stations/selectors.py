"""Reads for the station registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.gis.db.models.functions import Distance
from django.contrib.gis.geos import Point
from django.contrib.gis.measure import D
from django.db.models import Count, Exists, OuterRef, Prefetch, QuerySet

from apps.stations.choices import ConnectorStatus, RegistrationStatus
from apps.stations.models import ChargePoint, Connector, Evse, Location


def location_list(*, actor: Any) -> QuerySet[Location]:
    return (
        Location.objects.for_actor(actor)
        .select_related("organisation")
        .annotate(charge_point_count=Count("charge_points"))
    )


def chargepoint_list(*, actor: Any) -> QuerySet[ChargePoint]:
    return ChargePoint.objects.for_actor(actor).select_related("organisation", "location")


def chargepoint_get_by_identity(*, identity: str) -> ChargePoint | None:
    """The charge point whose OCPP identity is exactly `identity` (the URL is case-sensitive)."""
    return ChargePoint.objects.filter(identity=identity).select_related("organisation", "location").first()


def connector_list_for_chargepoint(*, charge_point: ChargePoint) -> QuerySet[Connector]:
    return (
        Connector.objects.filter(evse__charge_point=charge_point)
        .select_related("evse")
        .order_by("evse__evse_id", "connector_id")
    )


# --- the driver API ----------------------------------------------------------------------------------

NEARBY_MAX_RESULTS = 50
# With available=true, chargers are checked for a live connection in batches of this many, nearest first.
_NEARBY_BATCH = 200


def _driver_visible() -> QuerySet[ChargePoint]:
    return ChargePoint.objects.filter(
        location__is_published=True, registration_status=RegistrationStatus.ACCEPTED
    )


def chargepoint_list_nearby(
    *,
    point: Point,
    radius_m: int,
    connector_type: str | None = None,
    min_power_w: int | None = None,
    available: bool = False,
    online: Callable[[list[str]], set[str]] | None = None,
    limit: int = NEARBY_MAX_RESULTS,
) -> list[ChargePoint]:
    """Published, accepted chargers within `radius_m` metres of `point`, nearest first, each annotated with
    `distance` (a Distance) and its EVSEs and connectors prefetched. ST_DWithin on the geography column
    uses the location's spatial index. `connector_type` / `min_power_w` keep chargers with at least one
    connector that matches both; `available` keeps chargers with such a connector reported Available
    whose charger `online` (a live-presence check, given by the caller) says is connected."""
    matching = Connector.objects.filter(evse__charge_point=OuterRef("pk"))
    if connector_type:
        matching = matching.filter(standard=connector_type)
    if min_power_w:
        matching = matching.filter(max_power_w__gte=min_power_w)
    if available:
        matching = matching.filter(status=ConnectorStatus.AVAILABLE)
    qs = (
        _driver_visible()
        .filter(location__point__dwithin=(point, D(m=radius_m)))
        .annotate(distance=Distance("location__point", point))
        .select_related("location")
        .prefetch_related(
            Prefetch("evses", queryset=Evse.objects.order_by("evse_id")),
            Prefetch("evses__connectors", queryset=Connector.objects.order_by("connector_id")),
        )
        .order_by("distance", "pk")
    )
    if connector_type or min_power_w or available:
        qs = qs.filter(Exists(matching))
    if not available or online is None:
        return list(qs[:limit])
    found: list[ChargePoint] = []
    offset = 0
    while len(found) < limit:
        batch = list(qs[offset : offset + _NEARBY_BATCH])
        if not batch:
            break
        connected = online([cp.identity for cp in batch])
        found.extend(cp for cp in batch if cp.identity in connected)
        offset += _NEARBY_BATCH
    return found[:limit]


def chargepoint_get_for_driver(*, pk: Any) -> ChargePoint | None:
    """A charger drivers may see (published location, accepted registration), with EVSEs and connectors."""
    try:
        pk = int(pk)
    except (TypeError, ValueError):
        return None
    return (
        _driver_visible()
        .select_related("location")
        .prefetch_related(
            Prefetch("evses", queryset=Evse.objects.order_by("evse_id")),
            Prefetch("evses__connectors", queryset=Connector.objects.order_by("connector_id")),
        )
        .filter(pk=pk)
        .first()
    )
