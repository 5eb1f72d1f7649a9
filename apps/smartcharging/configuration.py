"""What a charger told us about its abilities (smart charging's units; reservations read whether it holds
any connector): the 1.6 configuration store (filled from GetConfiguration answers, whoever asked) and,
for 2.0.1, the device model kept by stations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apps.smartcharging.models import ChargerConfigurationKey
from apps.stations.models import DeviceVariable

RATE_UNIT_KEY = "ChargingScheduleAllowedChargingRateUnit"
# 1.6 spells the units Current and Power; 2.0.1's RateUnit says A and W.
_UNITS = {"current": "A", "power": "W", "a": "A", "w": "W"}


def configuration_record(*, charge_point_id: int, keys: list[dict[str, Any]], reported_at: datetime) -> int:
    """Upsert the keys of a 1.6 GetConfiguration answer (configurationKey items: key, value, readonly).
    Keys without a value (the charger did not say) are stored empty. Returns the rows written."""
    rows = {}
    for item in keys:
        key = str(item.get("key") or "")[:50]
        if not key:
            continue
        rows[key] = ChargerConfigurationKey(
            charge_point_id=charge_point_id,
            key=key,
            value=str(item.get("value") or "")[:500],
            readonly=bool(item.get("readonly", False)),
            reported_at=reported_at,
        )
    if rows:
        ChargerConfigurationKey.objects.bulk_create(
            list(rows.values()),
            update_conflicts=True,
            unique_fields=["charge_point", "key"],
            update_fields=["value", "readonly", "reported_at"],
        )
    return len(rows)


def _parse(value: str) -> set[str]:
    return {_UNITS[part.strip().casefold()] for part in value.split(",") if part.strip().casefold() in _UNITS}


def rate_units(*, charge_point_id: int) -> set[str]:
    """The units ("A", "W") the charger takes charging schedules in; empty when it has not told us."""
    value = (
        ChargerConfigurationKey.objects.filter(charge_point_id=charge_point_id, key__iexact=RATE_UNIT_KEY)
        .values_list("value", flat=True)
        .first()
    )
    if value:
        return _parse(value)
    values = DeviceVariable.objects.filter(
        charge_point_id=charge_point_id,
        component__iexact="SmartChargingCtrlr",
        variable__iexact="RateUnit",
        attribute_type="Actual",
    ).values_list("value", flat=True)
    units: set[str] = set()
    for item in values:
        units |= _parse(item)
    return units


def rate_units_many(*, charge_point_ids: list[int]) -> dict[int, set[str]]:
    """rate_units for many chargers in two queries (a rebalance asks for every charger of a site)."""
    units: dict[int, set[str]] = {}
    configured = ChargerConfigurationKey.objects.filter(
        charge_point_id__in=charge_point_ids, key__iexact=RATE_UNIT_KEY
    ).values_list("charge_point_id", "value")
    for cp_id, value in configured:
        if value:
            units[cp_id] = _parse(value)
    rest = [pk for pk in charge_point_ids if pk not in units]
    if rest:
        variables = DeviceVariable.objects.filter(
            charge_point_id__in=rest,
            component__iexact="SmartChargingCtrlr",
            variable__iexact="RateUnit",
            attribute_type="Actual",
        ).values_list("charge_point_id", "value")
        for cp_id, value in variables:
            units.setdefault(cp_id, set()).update(_parse(value))
    return {pk: units.get(pk, set()) for pk in charge_point_ids}


def configuration_value(*, charge_point_id: int, key: str) -> str | None:
    """The value a 1.6 charger last reported for configuration key `key` (None: never reported)."""
    return (
        ChargerConfigurationKey.objects.filter(charge_point_id=charge_point_id, key__iexact=key)
        .values_list("value", flat=True)
        .first()
    )


def device_variable_value(*, charge_point_id: int, component: str, variable: str) -> str | None:
    """The Actual value a 2.x charger last reported for a station-wide device model variable (None: never
    reported)."""
    return (
        DeviceVariable.objects.filter(
            charge_point_id=charge_point_id,
            component__iexact=component,
            variable__iexact=variable,
            attribute_type="Actual",
            evse_id__isnull=True,
        )
        .values_list("value", flat=True)
        .first()
    )
