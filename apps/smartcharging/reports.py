"""What chargers tell us about charging limits (OCPP 2.0.1; payloads as the charger sent them, camelCase):
the profiles they hold (ReportChargingProfiles), limits someone else set at them (NotifyChargingLimit,
until ClearedChargingLimit) and what the car on an EVSE needs (NotifyEVChargingNeeds).

Each message is stored idempotently on its natural key (a repeat changes nothing) and, where it changes
how a site should be shared (an external limit set or cleared, a car's needs), the site is rebalanced
after commit (coalesced, like every other trigger).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from django.db import transaction

from apps.smartcharging.choices import RateUnit
from apps.smartcharging.models import EvChargingNeeds, ExternalChargingLimit, ReportedChargingProfile
from apps.smartcharging.services import TENTH, charge_point_changed
from cpo.clock import parse_iso8601

# A schedule in watts is turned into amperes per phase at this voltage (the site's is not known to the
# charger's message; 230 V is the common phase voltage) and the period's phase count (default 3).
DEFAULT_VOLTAGE_V = 230
DEFAULT_PHASES = 3


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return parse_iso8601(str(value))
    except ValueError:
        return None


# --- ReportChargingProfiles ----------------------------------------------------------------------------
@transaction.atomic
def charging_profiles_report(
    *,
    charge_point_id: int,
    request_id: int,
    source: str,
    evse_id: int,
    profiles: list[dict[str, Any]],
    reported_at: datetime,
) -> int:
    """Keep the profiles a charger reports for one EVSE. A report for a new request replaces what earlier
    requests reported for that EVSE; the parts of one request (tbc) add up. Returns the rows written."""
    ReportedChargingProfile.objects.filter(charge_point_id=charge_point_id, evse_id=evse_id).exclude(
        request_id=request_id
    ).delete()
    rows = {}
    for profile in profiles:
        profile_id = profile.get("id")
        if not isinstance(profile_id, int):
            continue
        rows[profile_id] = ReportedChargingProfile(
            charge_point_id=charge_point_id,
            evse_id=evse_id,
            profile_id=profile_id,
            request_id=request_id,
            source=str(source)[:20],
            purpose=str(profile.get("chargingProfilePurpose", ""))[:40],
            stack_level=max(0, int(profile.get("stackLevel") or 0)),
            profile=profile,
            reported_at=reported_at,
        )
    if rows:
        ReportedChargingProfile.objects.bulk_create(
            list(rows.values()),
            update_conflicts=True,
            unique_fields=["charge_point", "evse_id", "profile_id"],
            update_fields=["request_id", "source", "purpose", "stack_level", "profile", "reported_at"],
        )
    return len(rows)


# --- NotifyChargingLimit / ClearedChargingLimit --------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LowestLimit:
    limit: Decimal
    unit: str
    limit_a: Decimal


def schedule_lowest_limit(schedules: list[dict[str, Any]]) -> LowestLimit | None:
    """The lowest limit any period of the schedules reaches, in amperes per phase (watts at 230 V on the
    period's phases). Keeping the lowest is the safe reading of a schedule we hold as one number until
    the charger clears it. None: no period."""
    lowest: LowestLimit | None = None
    for schedule in schedules or []:
        unit = (
            RateUnit.WATTS if str(schedule.get("chargingRateUnit", "A")).upper() == "W" else RateUnit.AMPERES
        )
        for period in schedule.get("chargingSchedulePeriod") or []:
            try:
                limit = Decimal(str(period["limit"]))
            except (KeyError, ArithmeticError, ValueError):
                continue
            if not limit.is_finite() or limit < 0:
                continue
            phases = period.get("numberPhases") or DEFAULT_PHASES
            amperes = limit if unit == RateUnit.AMPERES else limit / (DEFAULT_VOLTAGE_V * int(phases))
            amperes = amperes.quantize(TENTH, rounding=ROUND_FLOOR)
            if lowest is None or amperes < lowest.limit_a:
                lowest = LowestLimit(
                    limit=limit.quantize(TENTH, rounding=ROUND_FLOOR), unit=unit, limit_a=amperes
                )
    return lowest


@transaction.atomic
def external_limit_record(
    *,
    charge_point_id: int,
    evse_id: int,
    source: str,
    is_grid_critical: bool | None,
    schedules: list[dict[str, Any]] | None,
    reported_at: datetime,
) -> ExternalChargingLimit:
    """NotifyChargingLimit: keep the limit `source` set on EVSE `evse_id` (0: the whole charger) and
    rebalance the charger's site when the limit changed. A repeat changes nothing."""
    lowest = schedule_lowest_limit(schedules or [])
    values = {
        "limit_a": lowest.limit_a if lowest else None,
        "limit": lowest.limit if lowest else None,
        "unit": lowest.unit if lowest else "",
        "is_grid_critical": is_grid_critical,
        "schedule": schedules or [],
    }
    row = (
        ExternalChargingLimit.objects.select_for_update(no_key=True)
        .filter(charge_point_id=charge_point_id, evse_id=evse_id, source=str(source)[:20])
        .first()
    )
    if row is not None and all(getattr(row, k) == v for k, v in values.items()):
        return row
    row, _created = ExternalChargingLimit.objects.update_or_create(
        charge_point_id=charge_point_id,
        evse_id=evse_id,
        source=str(source)[:20],
        defaults={**values, "reported_at": reported_at},
    )
    charge_point_changed(charge_point_id=charge_point_id)
    return row


@transaction.atomic
def external_limit_clear(*, charge_point_id: int, source: str, evse_id: int | None) -> int:
    """ClearedChargingLimit: the limit of `source` is gone (on EVSE `evse_id`; None: on every EVSE).
    Rebalances the site when one was kept. Returns how many were cleared."""
    rows = ExternalChargingLimit.objects.filter(charge_point_id=charge_point_id, source=str(source)[:20])
    if evse_id is not None:
        rows = rows.filter(evse_id=evse_id)
    deleted, _by_model = rows.delete()
    if deleted:
        charge_point_changed(charge_point_id=charge_point_id)
    return deleted


# --- NotifyEVChargingNeeds -----------------------------------------------------------------------------
@transaction.atomic
def ev_charging_needs_record(
    *, charge_point_id: int, evse_id: int, needs: dict[str, Any], reported_at: datetime
) -> EvChargingNeeds:
    """Keep what the car on EVSE `evse_id` needs (the latest per EVSE) and rebalance the charger's site:
    its requested energy and departure time set its priority, its current range bounds its share."""
    ac = needs.get("acChargingParameters") or {}
    dc = needs.get("dcChargingParameters") or {}
    energy = ac.get("energyAmount", dc.get("energyAmount"))
    row, _created = EvChargingNeeds.objects.update_or_create(
        charge_point_id=charge_point_id,
        evse_id=evse_id,
        defaults={
            "energy_transfer": str(needs.get("requestedEnergyTransfer", ""))[:40],
            "energy_amount_wh": energy if isinstance(energy, int) and energy >= 0 else None,
            "departure_at": _time(needs.get("departureTime")),
            "ev_min_current_a": _positive(ac.get("evMinCurrent")),
            "ev_max_current_a": _positive(ac.get("evMaxCurrent", dc.get("evMaxCurrent"))),
            "needs": needs,
            "reported_at": reported_at,
        },
    )
    charge_point_changed(charge_point_id=charge_point_id)
    return row


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None
