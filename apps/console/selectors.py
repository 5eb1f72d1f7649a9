"""Reads of the console: the operations dashboard (what a staff member's organisations look like right
now, live state from the presence records in Redis, not the periodic database copy) and uptime."""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, F, Q, Sum

from apps.accounts.models import Organisation
from apps.accounts.tenancy import organisation_ids_for, sees_everything
from apps.billing.choices import PaymentStatus
from apps.billing.models import Payment
from apps.charging.choices import SessionStatus
from apps.charging.models import ChargingSession
from apps.console import mapview
from apps.console.choices import ChargerState
from apps.console.models import Alert, ConnectionInterval, StatusInterval
from apps.ocpp_gateway import presence
from apps.ocpp_gateway.choices import FINAL_COMMAND_STATUSES, CommandStatus
from apps.ocpp_gateway.models import OcppCommand
from apps.stations.choices import Availability, ConnectorStatus
from apps.stations.models import ChargePoint, Connector, Evse, Location
from apps.tariffs.models import ChargeDetailRecord
from cpo import clock

# Worst first: a location takes the worst state of its chargers.
STATE_ORDER = (
    ChargerState.FAULTED,
    ChargerState.OFFLINE,
    ChargerState.UNAVAILABLE,
    ChargerState.CHARGING,
    ChargerState.AVAILABLE,
)
CENT = Decimal("0.01")
CHARGING_STATUSES = frozenset(
    {ConnectorStatus.CHARGING, ConnectorStatus.SUSPENDED_EV, ConnectorStatus.SUSPENDED_EVSE}
)
# Answers that say the charger did not do what was asked (a command with such an answer failed).
REFUSED_ANSWERS = ("Rejected", "Failed", "NotSupported", "UnknownConnector", "Unknown")


def silent_after_s() -> float:
    """A connected charger without a frame for this long is listed as silent (default 10 minutes)."""
    return float(getattr(settings, "CPO_CONSOLE_SILENT_AFTER_S", 600))


def organisation_ids_seen(user: Any) -> list[int]:
    """The organisations whose network `user` watches (all of them for a superuser)."""
    if sees_everything(user):
        return list(Organisation.objects.values_list("pk", flat=True))
    return sorted(organisation_ids_for(user))


def charger_state(
    *,
    online: bool,
    charger_status: str,
    availability: str,
    connector_statuses: list[str],
    inoperative_evses: int,
) -> str:
    """A charger's dashboard state: offline, else its worst condition (faulted, unavailable, charging)."""
    if not online:
        return ChargerState.OFFLINE
    statuses = {charger_status, *connector_statuses}
    if ConnectorStatus.FAULTED in statuses:
        return ChargerState.FAULTED
    if (
        ConnectorStatus.UNAVAILABLE in statuses
        or availability == Availability.INOPERATIVE
        or inoperative_evses > 0
    ):
        return ChargerState.UNAVAILABLE
    if statuses & CHARGING_STATUSES:
        return ChargerState.CHARGING
    return ChargerState.AVAILABLE


def worst_state(states: list[str]) -> str:
    for state in STATE_ORDER:
        if state in states:
            return state
    return ChargerState.OFFLINE


@dataclass(frozen=True, slots=True)
class ChargerRow:
    pk: int
    identity: str
    location_id: int | None
    state: str
    last_frame_at: float | None


def charger_rows(user: Any, *, charge_points: Any = None) -> list[ChargerRow]:
    """Every charger `user` may see (or of `charge_points`, already scoped), with its live state."""
    chargers = list(
        (charge_points if charge_points is not None else ChargePoint.objects.for_actor(user)).values(
            "pk", "identity", "location_id", "status", "availability"
        )
    )
    ids = [c["pk"] for c in chargers]
    statuses: dict[int, list[str]] = defaultdict(list)
    for charge_point_id, status in Connector.objects.filter(evse__charge_point_id__in=ids).values_list(
        "evse__charge_point_id", "status"
    ):
        statuses[charge_point_id].append(status)
    inoperative = dict(
        Evse.objects.filter(charge_point_id__in=ids, availability=Availability.INOPERATIVE)
        .values("charge_point_id")
        .annotate(n=Count("pk"))
        .values_list("charge_point_id", "n")
    )
    live = presence.lookup_many([c["identity"] for c in chargers])
    rows = []
    for c in chargers:
        holder = live.get(c["identity"])
        rows.append(
            ChargerRow(
                pk=c["pk"],
                identity=c["identity"],
                location_id=c["location_id"],
                state=charger_state(
                    online=holder is not None,
                    charger_status=c["status"],
                    availability=c["availability"],
                    connector_statuses=statuses.get(c["pk"], []),
                    inoperative_evses=inoperative.get(c["pk"], 0),
                ),
                last_frame_at=holder.last_frame_at if holder is not None else None,
            )
        )
    return rows


def day_start(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(UTC).date(), time.min, tzinfo=UTC)


def dashboard_snapshot(user: Any, *, now: datetime | None = None) -> dict[str, Any]:
    """What the operations dashboard shows `user` (JSON-ready). "Today" is the UTC day so far."""
    now = now or clock.now()
    rows = charger_rows(user)
    counts = {state.value: 0 for state in ChargerState}
    for row in rows:
        counts[row.state] += 1
    counts["total"] = len(rows)
    counts["online"] = len(rows) - counts[ChargerState.OFFLINE]

    silent_cutoff = now.timestamp() - silent_after_s()
    quiet = sorted(
        (row.last_frame_at, row.pk, row.identity)
        for row in rows
        if row.last_frame_at is not None and row.last_frame_at < silent_cutoff
    )
    silent = [
        {"id": pk, "identity": identity, "silent_min": int((now.timestamp() - last_frame_at) // 60)}
        for last_frame_at, pk, identity in quiet
    ]

    sessions = ChargingSession.objects.for_actor(user)
    today = day_start(now)
    active_sessions = sessions.filter(status=SessionStatus.ACTIVE).count()
    energy_wh = (
        sessions.filter(stopped_at__gte=today, meter_stop_wh__isnull=False).aggregate(
            wh=Sum(F("meter_stop_wh") - F("meter_start_wh"))
        )["wh"]
        or 0
    )
    revenue = [
        {
            "currency": item["currency"],
            "amount": str((item["gross"] or Decimal(0)).quantize(CENT, ROUND_HALF_UP)),
        }
        for item in ChargeDetailRecord.objects.for_actor(user)
        .filter(issued_at__gte=today)
        .values("currency")
        .annotate(gross=Sum("gross"))
        .order_by("currency")
    ]
    day_ago = now - timedelta(hours=24)
    failed_commands = (
        OcppCommand.objects.for_actor(user)
        .filter(created_at__gte=day_ago)
        .filter(
            Q(status__in=sorted(FINAL_COMMAND_STATUSES - {CommandStatus.ANSWERED}))
            | Q(status=CommandStatus.ANSWERED, response__status__in=REFUSED_ANSWERS)
        )
        .count()
    )
    failed_payments = (
        Payment.objects.for_actor(user)
        .filter(status__in=[PaymentStatus.FAILED, PaymentStatus.DEBT], updated_at__gte=day_ago)
        .count()
    )
    alerts = Alert.objects.for_actor(user).filter(resolved_at__isnull=True)
    alert_counts = alerts.aggregate(
        open=Count("pk"), unacknowledged=Count("pk", filter=Q(acknowledged_at__isnull=True))
    )

    by_location: dict[int, list[str]] = defaultdict(list)
    for row in rows:
        if row.location_id is not None:
            by_location[row.location_id].append(row.state)
    locations = [
        {
            "id": loc.pk,
            "name": loc.name,
            "city": loc.city,
            "lat": loc.point.y,
            "lon": loc.point.x,
            "chargers": len(by_location.get(loc.pk, [])),
            "state": worst_state(by_location[loc.pk]) if by_location.get(loc.pk) else "none",
        }
        for loc in Location.objects.for_actor(user).only("pk", "name", "city", "point").order_by("name")
    ]
    return {
        "generated_at": now.isoformat(),
        "counts": counts,
        "active_sessions": active_sessions,
        "energy_today_wh": int(energy_wh),
        "energy_today_kwh": f"{Decimal(int(energy_wh)) / 1000:.1f}",
        "revenue_today": revenue,
        "silent": silent[:20],
        "silent_count": len(silent),
        "failed_commands_24h": failed_commands,
        "failed_payments_24h": failed_payments,
        "open_alerts": alert_counts["open"] or 0,
        "unacknowledged_alerts": alert_counts["unacknowledged"] or 0,
        "locations": locations,
    }


def dashboard_map(snapshot: dict[str, Any]) -> mapview.MapView:
    points = [(loc["id"], loc["lat"], loc["lon"]) for loc in snapshot["locations"]]
    return mapview.fit(points, tile_url=str(getattr(settings, "CPO_MAP_TILE_URL", "") or ""))


# --- uptime -------------------------------------------------------------------------------------------

# Time in these statuses is excluded from the uptime figure (the operator took the connector out of
# service: maintenance, works on site), as AFIR and NEVI allow for planned outages.
EXCLUDED_STATUSES: dict[str, str] = {ConnectorStatus.UNAVAILABLE.value: "unavailable (taken out of service)"}
NO_DATA = "no status known"


@dataclass(frozen=True, slots=True)
class Uptime:
    """Uptime of one connector (or a location: the sum over its connectors) over a period, in seconds."""

    period_s: float
    up_s: float
    down_s: float
    excluded_s: dict[str, float]

    @property
    def considered_s(self) -> float:
        return self.period_s - sum(self.excluded_s.values())

    @property
    def percent(self) -> Decimal | None:
        if self.considered_s <= 0:
            return None
        return (Decimal(self.up_s) * 100 / Decimal(self.considered_s)).quantize(Decimal("0.01"))

    def __add__(self, other: Uptime) -> Uptime:
        excluded = dict(self.excluded_s)
        for reason, seconds in other.excluded_s.items():
            excluded[reason] = excluded.get(reason, 0.0) + seconds
        return Uptime(
            self.period_s + other.period_s, self.up_s + other.up_s, self.down_s + other.down_s, excluded
        )


def uptime_from_intervals(
    *,
    start: datetime,
    end: datetime,
    statuses: list[tuple[datetime, datetime | None, str]],
    connections: list[tuple[datetime, datetime | None]] | None,
) -> Uptime:
    """Pure: classify [start, end) from a connector's status intervals (from, until or None, status) and
    its charger's connection intervals (None: no connection history yet, e.g. before the first presence
    flush after the console came: the status alone decides). Up: connected and in a status that can
    charge; down: faulted, or not connected; excluded: a status in EXCLUDED_STATUSES, or before any
    status is known."""
    cuts = {start, end}
    for a, b, _status in statuses:
        cuts.update(t for t in (a, b) if t is not None and start < t < end)
    for a, b in connections or []:
        cuts.update(t for t in (a, b) if t is not None and start < t < end)
    points = sorted(cuts)
    up = down = 0.0
    excluded: dict[str, float] = {}
    for a, b in itertools.pairwise(points):
        seconds = (b - a).total_seconds()
        status = next((s for s0, s1, s in statuses if s0 <= a and (s1 is None or a < s1)), None)
        if status is None:
            excluded[NO_DATA] = excluded.get(NO_DATA, 0.0) + seconds
            continue
        if status in EXCLUDED_STATUSES:
            reason = EXCLUDED_STATUSES[status]
            excluded[reason] = excluded.get(reason, 0.0) + seconds
            continue
        connected = connections is None or any(c0 <= a and (c1 is None or a < c1) for c0, c1 in connections)
        if connected and status != ConnectorStatus.FAULTED:
            up += seconds
        else:
            down += seconds
    return Uptime((end - start).total_seconds(), up, down, excluded)


def month_bounds(year: int, month: int) -> tuple[datetime, datetime]:
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


@dataclass(frozen=True, slots=True)
class UptimeRow:
    location: str
    identity: str
    evse_id: int
    connector_id: int
    uptime: Uptime


def uptime_report(
    user: Any, *, year: int, month: int, now: datetime | None = None, charge_point_id: int | None = None
) -> list[UptimeRow]:
    """Uptime per connector of `user`'s chargers (or of one of them) for a month (up to now when the month
    is not over), followed per location by its total (rows without an identity)."""
    start, end = month_bounds(year, month)
    end = min(end, now or clock.now())
    if end <= start:
        return []
    charge_points = ChargePoint.objects.for_actor(user)
    if charge_point_id is not None:
        charge_points = charge_points.filter(pk=charge_point_id)
    connectors = list(
        Connector.objects.filter(evse__charge_point__in=charge_points)
        .select_related("evse__charge_point__location")
        .order_by(
            "evse__charge_point__location__name",
            "evse__charge_point__identity",
            "evse__evse_id",
            "connector_id",
        )
    )
    ids = {c.evse.charge_point_id for c in connectors}
    status_rows: dict[tuple[int, int, int], list[tuple[datetime, datetime | None, str]]] = defaultdict(list)
    for row in (
        StatusInterval.objects.filter(charge_point_id__in=ids, started_at__lt=end)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=start))
        .exclude(evse_id=0)
        .values_list("charge_point_id", "evse_id", "connector_id", "started_at", "ended_at", "status")
    ):
        status_rows[(row[0], row[1], row[2])].append((row[3], row[4], row[5]))
    # Chargers with a connection history at all (one without is judged by its statuses alone).
    with_history = set(
        ConnectionInterval.objects.filter(charge_point_id__in=ids)
        .values_list("charge_point_id", flat=True)
        .distinct()
    )
    connection_rows: dict[int, list[tuple[datetime, datetime | None]]] = defaultdict(list)
    for cp_id, a, b in (
        ConnectionInterval.objects.filter(charge_point_id__in=ids, started_at__lt=end)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=start))
        .values_list("charge_point_id", "started_at", "ended_at")
    ):
        connection_rows[cp_id].append((a, b))
    result: list[UptimeRow] = []
    totals: dict[str, Uptime] = {}
    for connector in connectors:
        cp = connector.evse.charge_point
        uptime = uptime_from_intervals(
            start=start,
            end=end,
            statuses=status_rows.get((cp.pk, connector.evse.evse_id, connector.connector_id), []),
            connections=connection_rows.get(cp.pk, []) if cp.pk in with_history else None,
        )
        location = cp.location.name if cp.location else "-"
        result.append(
            UptimeRow(location, cp.identity, connector.evse.evse_id, connector.connector_id, uptime)
        )
        totals[location] = totals[location] + uptime if location in totals else uptime
    for location, uptime in sorted(totals.items()):
        result.append(UptimeRow(location, "", 0, 0, uptime))
    return result
