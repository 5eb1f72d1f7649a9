"""Charger discovery shapes for the driver API."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from rest_framework import serializers

from apps.stations.choices import ConnectorStandard, ConnectorStatus
from apps.stations.hours import is_open
from apps.stations.models import ChargePoint

NEARBY_DEFAULT_RADIUS_M = 5_000
NEARBY_MAX_RADIUS_M = 100_000


class NearbyQuery(serializers.Serializer):
    lat = serializers.FloatField(min_value=-90, max_value=90, help_text="Latitude (WGS 84).")
    lng = serializers.FloatField(min_value=-180, max_value=180, help_text="Longitude (WGS 84).")
    radius = serializers.IntegerField(
        min_value=1,
        max_value=NEARBY_MAX_RADIUS_M,
        default=NEARBY_DEFAULT_RADIUS_M,
        required=False,
        help_text="Metres (at most 100,000).",
    )
    connector_type = serializers.ChoiceField(choices=ConnectorStandard.choices, required=False)
    min_power_kw = serializers.DecimalField(
        max_digits=7, decimal_places=1, min_value=Decimal(0), max_value=Decimal(10_000), required=False
    )
    available = serializers.BooleanField(
        required=False, default=False, help_text="Only chargers online with a matching connector Available."
    )


class PriceSummaryOutput(serializers.Serializer):
    """Gross prices (VAT included) a driver sees before starting."""

    currency = serializers.CharField()
    tariff_id = serializers.IntegerField()
    energy_per_kwh = serializers.CharField()
    time_per_minute = serializers.CharField()
    session_fee = serializers.CharField()
    idle_per_minute = serializers.CharField()
    idle_grace_minutes = serializers.IntegerField(allow_null=True)
    min_price = serializers.CharField(allow_null=True)
    max_price = serializers.CharField(allow_null=True)
    text = serializers.CharField()


class ConnectorOutput(serializers.Serializer):
    connector_id = serializers.IntegerField()
    standard = serializers.CharField()
    format = serializers.CharField()
    power_type = serializers.CharField()
    max_power_kw = serializers.FloatField()
    status = serializers.ChoiceField(choices=ConnectorStatus.choices)
    price = PriceSummaryOutput(allow_null=True)


class EvseOutput(serializers.Serializer):
    connector = serializers.IntegerField(
        help_text="The number to start a session on (`connector` in POST sessions)."
    )
    status = serializers.ChoiceField(
        choices=ConnectorStatus.choices, help_text="Live: Unavailable while the charger is offline."
    )
    available = serializers.BooleanField()
    connectors = ConnectorOutput(many=True)


class LocationOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    address = serializers.CharField()
    postal_code = serializers.CharField()
    city = serializers.CharField()
    country = serializers.CharField()
    lat = serializers.FloatField()
    lng = serializers.FloatField()
    time_zone = serializers.CharField()
    open_now = serializers.BooleanField()


class ChargerOutput(serializers.Serializer):
    id = serializers.IntegerField()
    identity = serializers.CharField()
    distance_m = serializers.IntegerField(allow_null=True)
    online = serializers.BooleanField()
    available = serializers.BooleanField()
    max_power_kw = serializers.FloatField()
    location = LocationOutput()
    evses = EvseOutput(many=True)
    price = PriceSummaryOutput(allow_null=True, help_text="The price of the first available connector.")


def _kw(watts: int | None) -> float:
    return round((watts or 0) / 1000, 1)


def charger_data(cp: ChargePoint, *, online: bool, prices: dict[int, Any], now: datetime) -> dict[str, Any]:
    """One charger as the API shows it. `prices` maps connector pk → PriceSummary."""
    loc = cp.location
    evses = []
    best_price = None
    any_available = False
    max_w = cp.max_power_w or 0
    for evse in cp.evses.all():
        connectors = []
        statuses = []
        for c in evse.connectors.all():
            price = prices.get(c.pk)
            status = c.status if online else ConnectorStatus.UNAVAILABLE
            statuses.append(status)
            max_w = max(max_w, c.max_power_w or 0)
            connectors.append(
                {
                    "connector_id": c.connector_id,
                    "standard": c.standard,
                    "format": c.format,
                    "power_type": c.power_type,
                    "max_power_kw": _kw(c.max_power_w),
                    "status": status,
                    "price": price.as_dict() if price is not None else None,
                }
            )
            if status == ConnectorStatus.AVAILABLE and best_price is None and price is not None:
                best_price = price
        if not connectors:
            continue
        available = ConnectorStatus.AVAILABLE in statuses
        any_available = any_available or available
        evse_status = ConnectorStatus.AVAILABLE if available else statuses[0]
        evses.append(
            {
                "connector": evse.evse_id,
                "status": evse_status,
                "available": available,
                "connectors": connectors,
            }
        )
    if best_price is None:
        best_price = next(
            (
                p
                for p in (prices.get(c.pk) for e in cp.evses.all() for c in e.connectors.all())
                if p is not None
            ),
            None,
        )
    distance = getattr(cp, "distance", None)
    return {
        "id": cp.pk,
        "identity": cp.identity,
        "distance_m": round(distance.m) if distance is not None else None,
        "online": online,
        "available": any_available,
        "max_power_kw": _kw(max_w),
        "location": {
            "id": loc.pk,
            "name": loc.name,
            "address": loc.address,
            "postal_code": loc.postal_code,
            "city": loc.city,
            "country": loc.country,
            "lat": loc.latitude,
            "lng": loc.longitude,
            "time_zone": loc.time_zone,
            "open_now": is_open(
                loc.opening_hours or {"twentyfourseven": True}, now.astimezone(ZoneInfo(loc.time_zone))
            ),
        },
        "evses": evses,
        "price": best_price.as_dict() if best_price is not None else None,
    }
