"""Reads for the driver API: a driver's sessions, what they show right now, and the driver's data export."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext as _

from apps.accounts.models import DriverProfile, IdToken, User
from apps.charging import hooks
from apps.charging.choices import DRIVER_SESSION_FINAL, DriverSessionStatus
from apps.charging.metering import ENERGY_REGISTER
from apps.charging.models import ChargingSession, DriverSession, MeterSample
from cpo import clock
from cpo.exceptions import NotFound

POWER = "Power.Active.Import"
RUNNING = (
    DriverSessionStatus.INITIATED,
    DriverSessionStatus.AUTHORISING,
    DriverSessionStatus.STARTING,
    DriverSessionStatus.ACTIVE,
    DriverSessionStatus.STOPPING,
)


def driver_session_list(*, driver: User) -> QuerySet[DriverSession]:
    return DriverSession.objects.filter(driver=driver).select_related(
        "charge_point", "charge_point__location", "charging_session"
    )


def driver_session_get(*, driver: User, pk: Any) -> DriverSession:
    """The driver's own session; another driver's (or none) is not_found (404), never forbidden."""
    try:
        pk = int(pk)
    except (TypeError, ValueError):
        pk = None
    session = driver_session_list(driver=driver).filter(pk=pk).first() if pk is not None else None
    if session is None:
        raise NotFound(_("No session with id {id}.").format(id=pk), code="session_not_found")
    return session


def driver_has_running_charge(*, driver: User) -> bool:
    return DriverSession.objects.filter(driver=driver, status__in=RUNNING).exists()


@dataclass(frozen=True)
class Usage:
    """What a session has used so far (or in all, once it completed)."""

    energy_wh: int
    duration_s: int
    power_w: int | None
    started_at: datetime | None
    stopped_at: datetime | None
    cost: Any  # a price breakdown (hooks.SessionPrice.cost) or None
    final: bool = False  # the cost is the issued charge detail record's


def _last_value(charging: ChargingSession, measurand: str) -> Any:
    return (
        MeterSample.objects.filter(session=charging, measurand=measurand, phase="", value__isnull=False)
        .order_by("-sampled_at")
        .values_list("value", flat=True)
        .first()
    )


def session_usage(*, session: DriverSession, now: datetime | None = None) -> Usage:
    """Energy (Wh), duration, latest power and cost of a driver session: final once completed, else so far
    (the cost as the pricing app tells it through `hooks.session_price`)."""
    now = now or clock.now()
    charging = session.charging_session
    if charging is None:
        return Usage(energy_wh=0, duration_s=0, power_w=None, started_at=None, stopped_at=None, cost=None)
    if charging.meter_stop_wh is not None:
        energy = charging.energy_wh or 0
    else:
        last = _last_value(charging, ENERGY_REGISTER)
        energy = max(0, int(last) - charging.meter_start_wh) if last is not None else 0
    end = charging.stopped_at or now
    power = None
    if charging.stopped_at is None:
        last_power = _last_value(charging, POWER)
        power = int(last_power) if last_power is not None else None
    price = hooks.session_price.get()(session=charging)
    return Usage(
        energy_wh=energy,
        duration_s=max(0, int((end - charging.started_at).total_seconds())),
        power_w=power,
        started_at=charging.started_at,
        stopped_at=charging.stopped_at,
        cost=price.cost if price is not None else None,
        final=price is not None and price.final,
    )


def is_final(session: DriverSession) -> bool:
    return session.status in DRIVER_SESSION_FINAL


def driver_export(*, driver: User) -> dict[str, Any]:
    """Everything we keep about the driver, as JSON-ready data (the right of access): what charging keeps,
    and what the apps above it add through `hooks.driver_export_parts` (receipts, cards, payments)."""
    profile = DriverProfile.objects.filter(user=driver).first()
    sessions = []
    for s in driver_session_list(driver=driver).prefetch_related("transitions").order_by("created_at", "pk"):
        usage = session_usage(session=s)
        sessions.append(
            {
                "id": s.pk,
                "status": s.status,
                "failure_reason": s.failure_reason,
                "source": s.source,
                "charger": s.charge_point.identity,
                "location": s.charge_point.location.name,
                "connector": s.evse_id,
                "created_at": s.created_at.isoformat(),
                "started_at": usage.started_at.isoformat() if usage.started_at else None,
                "stopped_at": usage.stopped_at.isoformat() if usage.stopped_at else None,
                "energy_wh": usage.energy_wh,
                "cost": usage.cost.as_dict() if usage.cost is not None else None,
                "transitions": [
                    {"from": t.from_status, "to": t.to_status, "at": t.at.isoformat(), "cause": t.cause}
                    for t in s.transitions.all()
                ],
            }
        )
    export: dict[str, Any] = {
        "exported_at": clock.now().isoformat(),
        "account": {
            "id": driver.pk,
            "pseudonym": driver.audit_repr(),  # how the audit trail names the driver
            "email": driver.email,
            "full_name": driver.full_name,
            "date_joined": driver.date_joined.isoformat(),
            "email_verified_at": driver.email_verified_at.isoformat() if driver.email_verified_at else None,
            "last_login": driver.last_login.isoformat() if driver.last_login else None,
        },
        "profile": {"phone": profile.phone, "preferred_language": profile.preferred_language}
        if profile
        else None,
        "tokens": [
            {
                "uid": t.uid,
                "type": t.type,
                "label": t.label,
                "status": t.status,
                "created_at": t.created_at.isoformat(),
            }
            for t in IdToken.objects.filter(owner=driver).order_by("pk")
        ],
        "sessions": sessions,
    }
    for part in hooks.driver_export_parts.receivers:
        added = part(driver=driver)
        clash = set(added) & set(export)
        if clash:  # a programming error: two apps must never answer for the same key
            raise RuntimeError(f"driver export: {sorted(clash)} given twice")
        export.update(added)
    return export
