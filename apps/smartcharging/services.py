"""Smart charging: set a site's budget, rebalance it, and record what chargers make of our profiles.

A rebalance reads the site's active sessions, asks `allocation.allocate` for per-connector limits and sends
a profile (through the `charger_control` port: the gateway builds the charger's own SetChargingProfile)
only where the limit changed or the one in force is about to expire. It never waits for a charger: the
outcome comes back through `charging_limit_finished`, which the gateway calls when the command is final.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import redis
from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils.translation import gettext as _

from apps.accounts.services import audit_record_create
from apps.charging.choices import SessionStatus
from apps.charging.intents import ChargingLimit as LimitIntent
from apps.charging.intents import CommandOutcome, IntentOutcome, charger_control
from apps.charging.metering import Sample
from apps.charging.models import ChargingSession, MeterSample
from apps.smartcharging import allocation, hooks
from apps.smartcharging.choices import ProfilePurpose, ProfileStatus, RateUnit
from apps.smartcharging.configuration import rate_units, rate_units_many
from apps.smartcharging.models import (
    ChargingLimit,
    EvChargingNeeds,
    ExternalChargingLimit,
    GridEvent,
    GridIntegration,
    Site,
)
from apps.stations.choices import PowerType
from apps.stations.models import ChargePoint, Connector, Location
from cpo import clock
from cpo.exceptions import ValidationFailed

logger = logging.getLogger(__name__)

# Ours: profile ids from PROFILE_ID_BASE up (one per EVSE and purpose), at one stack level.
PROFILE_ID_BASE = 7_300_000
STACK_LEVEL = 8
_PURPOSE_INDEX = {ProfilePurpose.TX: 0, ProfilePurpose.TX_DEFAULT: 1, ProfilePurpose.CHARGER_MAX: 2}
_PHASES: dict[str, int] = {
    PowerType.AC_1_PHASE: 1,
    PowerType.AC_2_PHASE: 2,
    PowerType.AC_3_PHASE: 3,
    PowerType.DC: 3,
}
TENTH = Decimal("0.1")
SOURCE = "smartcharging"
REBALANCE_TASK = "smartcharging.site_rebalance"
COALESCE_KEY = "cpo:smart:rebalance:"
LAST_CHANGE_KEY = "cpo:smart:changed:"
# The last current a car drew per EVSE (a change beyond draw_change_a() rebalances its site).
DRAW_KEY = "cpo:smart:draw:"
CURRENT_MEASURAND = "Current.Import"
# Priorities derived from a car's needs stay within 0..MAX_PRIORITY (0: no needs known).
MAX_PRIORITY = 1000


def profile_id_for(*, evse_id: int, purpose: str) -> int:
    """Our profile id for an EVSE and purpose: sending it again replaces the profile at the charger."""
    return PROFILE_ID_BASE + evse_id * 10 + _PURPOSE_INDEX[ProfilePurpose(purpose)]


def profile_validity() -> timedelta:
    """How long a TxProfile of ours stays valid (refreshed by the periodic pass at half of it)."""
    return timedelta(seconds=getattr(settings, "CPO_SMART_PROFILE_VALID_S", 3600))


def static_profile_validity() -> timedelta:
    """How long the static profiles (TxDefaultProfile, ChargePointMaxProfile) stay valid."""
    return timedelta(seconds=getattr(settings, "CPO_SMART_STATIC_PROFILE_VALID_S", 7 * 86400))


def reject_retry() -> timedelta:
    """How long after a charger rejected our profile it is offered one again."""
    return timedelta(seconds=getattr(settings, "CPO_SMART_REJECT_RETRY_S", 300))


def draw_change_a() -> float:
    """A change in what a car draws (amperes per phase) that rebalances its site."""
    return float(getattr(settings, "CPO_SMART_DRAW_CHANGE_A", 2.0))


# --- sites ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SiteChange:
    site: Site
    created: bool
    changes: dict[str, tuple[Any, Any]]


@transaction.atomic
def site_set(
    *,
    location: Location,
    max_current_a: Decimal,
    phases: int | None = None,
    actor: Any = None,
    source: str = "service",
) -> SiteChange:
    """Set the budget (and phase count) of a location's site, making the site when the location has none.
    ValidationFailed on a negative budget or a phase count outside 1..3; nothing is stored then."""
    if max_current_a < 0:
        raise ValidationFailed(
            _("The budget must not be negative (got {value} A).").format(value=max_current_a),
            code="invalid_budget",
        )
    if phases is not None and phases not in (1, 2, 3):
        raise ValidationFailed(
            _("A site has 1, 2 or 3 phases (got {value}).").format(value=phases), code="invalid_phases"
        )
    max_current_a = max_current_a.quantize(TENTH, rounding=ROUND_FLOOR)
    site = Site.objects.select_for_update(no_key=True).filter(location=location, name="").first()
    created = site is None
    if site is None:
        site = Site(organisation_id=location.organisation_id, location=location, max_current_a=max_current_a)
        if phases is not None:
            site.phases = phases
        changes: dict[str, tuple[Any, Any]] = {
            "max_current_a": (None, max_current_a),
            "phases": (None, site.phases),
        }
    else:
        changes = {}
        if site.max_current_a != max_current_a:
            changes["max_current_a"] = (site.max_current_a, max_current_a)
            site.max_current_a = max_current_a
        if phases is not None and site.phases != phases:
            changes["phases"] = (site.phases, phases)
            site.phases = phases
    if changes:
        site.save()
        audit_record_create(
            actor=actor,
            action="site.budget_set",
            target=site,
            organisation_id=site.organisation_id,
            source=source,
            detail={
                k: [str(old) if old is not None else None, str(new)] for k, (old, new) in changes.items()
            },
        )
        site_rebalance_soon(site_id=site.pk)
    return SiteChange(site=site, created=created, changes=changes)


def site_charge_points(site: Site) -> list[ChargePoint]:
    """The charge points on the site's grid connection: its group, or every charge point of its location."""
    group = list(site.charge_points.order_by("pk"))
    if group:
        return group
    return list(ChargePoint.objects.filter(location_id=site.location_id).order_by("pk"))


def site_for_charge_point(*, charge_point_id: int) -> Site | None:
    """The site a charge point belongs to: one that names it, else its location's site without a group.
    One query (a rebalance trigger runs it on every start, stop and change in draw)."""
    named = Site.charge_points.through.objects.filter(site_id=OuterRef("pk"), chargepoint_id=charge_point_id)
    return (
        Site.objects.filter(
            Q(Exists(named)) | Q(location__charge_points__id=charge_point_id, charge_points__isnull=True)
        )
        .annotate(named=Exists(named))
        .order_by("-named", "pk")
        .first()
    )


def site_grid_events_now(*, site: Site, now: datetime | None = None) -> list[GridEvent]:
    """The grid events in force at the site at `now` (started, not over, not ended early)."""
    now = now or clock.now()
    return list(
        GridEvent.objects.filter(sites=site, starts_at__lte=now, ends_at__gt=now)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=now))
        .order_by("-reduce_percent", "pk")
    )


def site_cut_percent(*, site: Site, now: datetime) -> Decimal:
    """The deepest grid-event cut in force at the site at `now` (0 when none)."""
    deepest = max(
        (event.reduce_percent for event in site_grid_events_now(site=site, now=now)), default=Decimal("0")
    )
    return min(deepest, Decimal("100"))


def site_budget_a(*, site: Site, now: datetime | None = None) -> Decimal:
    """The budget in force (amperes per phase): the site's, less the deepest grid-event cut at `now`."""
    cut = site_cut_percent(site=site, now=now or clock.now())
    return (site.max_current_a * (100 - cut) / 100).quantize(TENTH, rounding=ROUND_FLOOR)


# --- grid events ---------------------------------------------------------------------------------------
@transaction.atomic
def grid_event_declare(
    *,
    sites: list[Site],
    reduce_percent: Decimal = Decimal("20"),
    starts_at: datetime,
    ends_at: datetime,
    actor: Any = None,
    source: str = "service",
    reference: str = "",
    integration: GridIntegration | None = None,
) -> GridEvent:
    """Declare a demand-response event for `sites` (all of one operator). Their budgets drop by
    `reduce_percent` for the window; they are rebalanced when it starts and when it ends. ValidationFailed
    on an empty or mixed set of sites, a percentage outside (0, 100] or a window that ends before it
    starts or is over; nothing is stored then."""
    if not sites:
        raise ValidationFailed(_("A grid event needs at least one site."), code="no_sites")
    organisations = {site.organisation_id for site in sites}
    if len(organisations) != 1:
        raise ValidationFailed(_("The sites of a grid event belong to one operator."), code="mixed_operators")
    if not (Decimal("0") < reduce_percent <= Decimal("100")):
        raise ValidationFailed(
            _("The reduction is a percentage above 0 and at most 100 (got {value}).").format(
                value=reduce_percent
            ),
            code="invalid_percent",
        )
    if ends_at <= starts_at:
        raise ValidationFailed(_("A grid event must end after it starts."), code="invalid_window")
    if ends_at <= clock.now():
        raise ValidationFailed(_("This grid event is already over."), code="invalid_window")
    event = GridEvent.objects.create(
        organisation_id=organisations.pop(),
        reduce_percent=reduce_percent,
        starts_at=starts_at,
        ends_at=ends_at,
        source=source,
        reference=reference[:100],
        integration=integration,
    )
    event.sites.set(sites)
    audit_record_create(
        actor=actor,
        action="gridevent.declare",
        target=event,
        organisation_id=event.organisation_id,
        source=source,
        detail={
            "sites": [site.pk for site in sites],
            "reduce_percent": str(reduce_percent),
            "starts_at": starts_at.isoformat(),
            "ends_at": ends_at.isoformat(),
            **({"integration": integration.pk} if integration is not None else {}),
        },
    )
    _rebalance_at_both_ends(event)
    return event


@transaction.atomic
def grid_event_end(*, event: GridEvent, actor: Any = None, source: str = "service") -> GridEvent:
    """End an event now (budgets restored, sites rebalanced). An event already over is returned unchanged."""
    event = GridEvent.objects.select_for_update(no_key=True).get(pk=event.pk)
    now = clock.now()
    if event.ends_at <= now or (event.ended_at is not None and event.ended_at <= now):
        return event
    event.ended_at = now
    event.save(update_fields=["ended_at", "updated_at"])
    audit_record_create(
        actor=actor,
        action="gridevent.end",
        target=event,
        organisation_id=event.organisation_id,
        source=source,
    )
    for site_id in event.sites.values_list("pk", flat=True):
        site_rebalance_soon(site_id=site_id)
    return event


def grid_event_rebalance_schedule(*, event: GridEvent) -> None:
    """Rebalance the event's sites when it starts and after it ends (after commit)."""
    _rebalance_at_both_ends(event)


def _rebalance_at_both_ends(event: GridEvent) -> None:
    site_ids = list(event.sites.values_list("pk", flat=True))
    now = clock.now()

    def schedule() -> None:
        for site_id in site_ids:
            if event.starts_at <= now:
                site_rebalance_dispatch(site_id=site_id)
            else:
                current_app.send_task(REBALANCE_TASK, args=(site_id,), eta=event.starts_at)
            current_app.send_task(REBALANCE_TASK, args=(site_id,), eta=event.ends_at + timedelta(seconds=1))

    transaction.on_commit(schedule, robust=True)


# --- dispatch ------------------------------------------------------------------------------------------
def site_rebalance_soon(*, site_id: int) -> None:
    """Rebalance the site after commit, coalesced: a burst of requests within the coalescing window makes
    one run (apps.smartcharging.tasks)."""
    # robust: a broker that does not answer must never fail the charger's message (the periodic pass
    # catches up)
    transaction.on_commit(lambda: site_rebalance_dispatch(site_id=site_id), robust=True)


def site_rebalance_dispatch(*, site_id: int) -> bool:
    """Queue one rebalance of the site unless one is already queued (a Redis key with a short TTL marks it,
    holding when the first change came; the run clears it before reading, so a change after that queues
    another). Every change also notes when it came: the run waits until changes have been quiet for
    CPO_SMART_QUIET_S, but never longer than CPO_SMART_COALESCE_S after the first (site_rebalance_wait),
    so that a burst of starts makes one run with the final shares. True when queued."""
    coalesce_s, quiet_s = _coalesce_s(), _quiet_s()
    now = time.time()
    try:
        pipe = _redis().pipeline(transaction=False)
        pipe.set(f"{LAST_CHANGE_KEY}{site_id}", repr(now), ex=max(int(coalesce_s * 10), 5))
        pipe.set(f"{COALESCE_KEY}{site_id}", repr(now), nx=True, ex=max(int(coalesce_s * 10), 5))
        fresh = pipe.execute()[1]
    except redis.RedisError:
        logger.warning("site %s: Redis unavailable, rebalancing without coalescing", site_id)
        fresh = True
    if fresh:
        current_app.send_task(REBALANCE_TASK, args=(site_id,), countdown=min(quiet_s, coalesce_s))
    return bool(fresh)


def _coalesce_s() -> float:
    return float(getattr(settings, "CPO_SMART_COALESCE_S", 2.0))


def _quiet_s() -> float:
    return float(getattr(settings, "CPO_SMART_QUIET_S", 0.3))


def site_rebalance_wait(*, site_id: int, now: float | None = None) -> float:
    """How much longer a queued run should wait (seconds; 0: run now): until the site's changes have been
    quiet for CPO_SMART_QUIET_S, at most until CPO_SMART_COALESCE_S after the first. 0 when no burst is
    marked (the periodic pass, a grid event's edge) or Redis does not answer."""
    now = time.time() if now is None else now
    try:
        first, last = _redis().mget(f"{COALESCE_KEY}{site_id}", f"{LAST_CHANGE_KEY}{site_id}")
        if first is None:
            return 0.0
        first_at = float(first)
        last_at = float(last) if last is not None else first_at
    except (redis.RedisError, ValueError):
        return 0.0
    wait = min(last_at + _quiet_s(), first_at + _coalesce_s()) - now
    return wait if wait > 0.01 else 0.0


def site_rebalance_claim(*, site_id: int) -> None:
    """A rebalance run starts: later changes queue another run."""
    try:
        _redis().delete(f"{COALESCE_KEY}{site_id}", f"{LAST_CHANGE_KEY}{site_id}")
    except redis.RedisError:
        logger.warning("site %s: Redis unavailable, could not clear the coalescing mark", site_id)


@functools.cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)


def charge_point_changed(*, charge_point_id: int) -> None:
    """Something at a charger changed what its site should allocate (a start, a stop, a change in draw,
    going offline or coming back): rebalance its site soon."""
    site = site_for_charge_point(charge_point_id=charge_point_id)
    if site is not None:
        site_rebalance_soon(site_id=site.pk)


def session_started(
    *,
    session: ChargingSession,
    charge_point: ChargePoint,
    token_group_id: str,
    customer_account_id: int | None,
) -> None:
    """charging.hooks.session_started receiver."""
    charge_point_changed(charge_point_id=charge_point.pk)


def session_stopped(*, session: ChargingSession, reason: str) -> None:
    """charging.hooks.session_stopped receiver."""
    charge_point_changed(charge_point_id=session.charge_point_id)


def meter_values_recorded(
    *, charge_point_id: int, evse_id: int, session: ChargingSession | None, samples: list[Sample]
) -> None:
    """charging.hooks.meter_values_recorded receiver: when the current a car draws (its highest phase in
    the latest reading) moved by draw_change_a() or more since the last reading (kept in Redis, so most
    readings cost no database query), its site is rebalanced (coalesced)."""
    currents = [s for s in samples if s.measurand == CURRENT_MEASURAND and s.value is not None]
    if not currents or evse_id < 1:
        return
    latest = max(s.sampled_at for s in currents)
    draw = max(float(s.value) for s in currents if s.sampled_at == latest and s.value is not None)
    try:
        previous = _redis().set(f"{DRAW_KEY}{charge_point_id}:{evse_id}", f"{draw:.1f}", ex=86400, get=True)
    except redis.RedisError:
        logger.warning("charger %s: Redis unavailable, change in draw not checked", charge_point_id)
        return  # the periodic pass catches up
    if previous is not None and abs(float(previous) - draw) < draw_change_a():
        return
    charge_point_changed(charge_point_id=charge_point_id)


# --- rebalancing ---------------------------------------------------------------------------------------
def _connector_for(session: ChargingSession) -> Connector | None:
    if session.connector_id is not None:
        return session.connector
    return (
        Connector.objects.filter(evse__charge_point_id=session.charge_point_id, evse__evse_id=session.evse_id)
        .order_by("connector_id")
        .first()
    )


def _draw_a(session: ChargingSession, *, since: datetime) -> float | None:
    """What the car draws under the limit in force since `since` (the highest phase current of the latest
    reading taken after it), if the charger says. Older readings say nothing about the present limit."""
    latest = (
        MeterSample.objects.filter(session=session, measurand=CURRENT_MEASURAND, received_at__gte=since)
        .order_by("-sampled_at")
        .values_list("sampled_at", flat=True)
        .first()
    )
    if latest is None:
        return None
    values = [
        float(value)
        for value in MeterSample.objects.filter(
            session=session, measurand=CURRENT_MEASURAND, sampled_at=latest, value__isnull=False
        ).values_list("value", flat=True)
        if value is not None
    ]
    return max(values) if values else None


def external_limits_a(*, charge_point_ids: list[int]) -> dict[tuple[int, int], Decimal]:
    """(charge point, EVSE) → the lowest limit someone else set there (NotifyChargingLimit), in amperes
    per phase. EVSE 0 is the whole charger: it applies to each of its EVSEs."""
    limits: dict[tuple[int, int], Decimal] = {}
    rows = ExternalChargingLimit.objects.filter(charge_point_id__in=charge_point_ids, limit_a__isnull=False)
    for cp_id, evse_id, limit_a in rows.values_list("charge_point_id", "evse_id", "limit_a"):
        if limit_a is None:
            continue
        key = (cp_id, evse_id)
        limits[key] = min(limit_a, limits.get(key, limit_a))
    return limits


def needs_priority(*, needs: EvChargingNeeds, now: datetime, voltage_v: int, phases: int) -> int:
    """How urgent a car is (NotifyEVChargingNeeds): the current per phase (A, rounded up) it needs on
    average to get the energy it asked for by its departure, within 1..MAX_PRIORITY; MAX_PRIORITY when it
    is due to leave already; 0 when it did not say both. Higher priorities are admitted first when the
    minimums do not all fit."""
    if needs.energy_amount_wh is None or needs.departure_at is None:
        return 0
    hours = (needs.departure_at - now).total_seconds() / 3600
    if hours <= 0:
        return MAX_PRIORITY
    need_a = needs.energy_amount_wh / (hours * max(voltage_v, 1) * max(phases, 1))
    return max(1, min(MAX_PRIORITY, math.ceil(need_a)))


@dataclass(frozen=True, slots=True)
class _Slot:
    """What a rebalance knows of one running session besides its Demand."""

    session: ChargingSession
    phases: int
    retry: bool  # its charger rejected our profile a while ago: offer one again


def _demands(
    site: Site, charge_points: list[ChargePoint], *, now: datetime
) -> tuple[list[allocation.Demand], dict[Any, _Slot]]:
    sessions = list(
        ChargingSession.objects.filter(charge_point__in=charge_points, status=SessionStatus.ACTIVE)
        .select_related("connector", "charge_point")
        .order_by("started_at", "pk")
    )
    in_force = {
        (limit.charge_point_id, limit.evse_id): limit
        for limit in ChargingLimit.objects.filter(charge_point__in=charge_points, purpose=ProfilePurpose.TX)
    }
    external = external_limits_a(charge_point_ids=[cp.pk for cp in charge_points])
    needs = {
        (row.charge_point_id, row.evse_id): row
        for row in EvChargingNeeds.objects.filter(charge_point__in=charge_points)
    }
    retry_after = reject_retry()
    demands, context = [], {}
    for order, session in enumerate(sessions):
        key = (session.charge_point_id, session.evse_id)
        if key in context:  # one session per EVSE: a stale duplicate counts once
            continue
        connector = _connector_for(session)
        max_a = float(connector.max_current_a) if connector else 32.0
        phases = min(_PHASES.get(connector.power_type, 3) if connector else 3, site.phases)
        # A limit someone else set at the charger caps what it takes (the charger enforces it itself).
        caps = [external[k] for k in (key, (session.charge_point_id, 0)) if k in external]
        if caps:
            max_a = min(max_a, float(min(caps)))
        min_a, priority = allocation.DEFAULT_MINIMUM_A, 0
        need = needs.get(key)
        if need is not None and need.reported_at >= session.started_at:
            if need.ev_max_current_a:
                max_a = min(max_a, float(need.ev_max_current_a))
            if need.ev_min_current_a:
                min_a = max(min_a, float(need.ev_min_current_a))
            priority = needs_priority(needs=need, now=now, voltage_v=site.voltage_v, phases=phases)
        limit = in_force.get(key)
        fixed: float | None = None
        retry = False
        if not session.charge_point.is_online:
            fixed = float(limit.limit_a) if limit and limit.status == ProfileStatus.ACCEPTED else max_a
        elif limit is not None and limit.status == ProfileStatus.REJECTED:
            # It refused our profile: assume it takes its maximum until it accepts one. After a while it
            # is offered one again (at that maximum: safe whatever it answers).
            fixed = max_a
            retry = limit.answered_at is None or now - limit.answered_at >= retry_after
        want: float | None = None
        draw = None
        if limit is not None and limit.status == ProfileStatus.ACCEPTED and limit.answered_at is not None:
            draw = _draw_a(session, since=limit.answered_at)
        if draw is not None and limit is not None and draw < float(limit.limit_a) - 2:
            want = draw + 1  # the car takes less than it was given: the rest goes to the others
        demands.append(
            allocation.Demand(
                key=key,
                phases=tuple(range(1, phases + 1)),
                max_a=max_a,
                min_a=min_a,
                want_a=want,
                priority=priority,
                order=order,
                fixed_a=fixed,
            )
        )
        context[key] = _Slot(session=session, phases=phases, retry=retry)
    return demands, context


def charge_point_rate_units(*, charge_point_id: int) -> set[str]:
    """Which units the charger accepts, from what it told us (1.6 GetConfiguration
    ChargingScheduleAllowedChargingRateUnit; 2.0.1 SmartChargingCtrlr.RateUnit). Empty: not known."""
    return rate_units(charge_point_id=charge_point_id)


@dataclass(frozen=True, slots=True)
class RebalanceResult:
    site_id: int
    budget_a: Decimal
    limits: dict[Any, float]
    sent: list[int]  # command ids


def _unchanged(
    current: ChargingLimit | None, *, limit_a: Decimal, now: datetime, validity: timedelta
) -> bool:
    """The profile in force already says `limit_a` (sent or accepted) and is not about to expire."""
    return (
        current is not None
        and current.limit_a == limit_a
        and current.status in (ProfileStatus.SENT, ProfileStatus.ACCEPTED)
        and current.valid_to - now > validity / 2
    )


def site_rebalance(*, site_id: int, now: Any = None) -> RebalanceResult:
    """Allocate the site's budget and send a TxProfile to each running session whose limit changed (or
    whose profile in force expires within half its validity), and keep the static profiles in force at
    each online charger (static_limits). Runs under the site's row lock: two rebalances of a site never
    interleave. Never waits for a charger."""
    now = now or clock.now()
    sent: list[int] = []
    with transaction.atomic():
        site = Site.objects.select_for_update(no_key=True).get(pk=site_id)
        charge_points = site_charge_points(site)
        budget = site_budget_a(site=site, now=now)
        demands, context = _demands(site, charge_points, now=now)
        limits = allocation.allocate(budget_a=float(budget), phases=site.phases, demands=demands)
        fixed = {d.key for d in demands if d.fixed_a is not None}
        in_force: dict[Any, ChargingLimit] = {
            (limit.charge_point_id, limit.evse_id, limit.purpose): limit
            for limit in ChargingLimit.objects.select_for_update(no_key=True).filter(
                charge_point__in=charge_points
            )
        }
        validity = profile_validity()
        units = rate_units_many(charge_point_ids=[cp.pk for cp in charge_points])
        for key, value in sorted(limits.items()):
            slot = context[key]
            if key in fixed and not slot.retry:
                continue
            limit_a = Decimal(str(value)).quantize(TENTH, rounding=ROUND_FLOOR)
            current = in_force.get((slot.session.charge_point_id, slot.session.evse_id, ProfilePurpose.TX))
            if _unchanged(current, limit_a=limit_a, now=now, validity=validity) and (
                current is not None and current.transaction_ref == slot.session.transaction_ref
            ):
                continue
            command_id = _send(
                site=site,
                charge_point=slot.session.charge_point,
                evse_id=slot.session.evse_id,
                purpose=ProfilePurpose.TX,
                session=slot.session,
                phases=slot.phases,
                limit_a=limit_a,
                now=now,
                validity=validity,
                unit=_unit(units, slot.session.charge_point),
                current=current,
            )
            if command_id is not None:
                sent.append(command_id)
        sent += _static_profiles(
            site=site, charge_points=charge_points, in_force=in_force, units=units, now=now
        )
        if site.budget_applied_a != budget:
            _budget_applied(site=site, budget=budget, limits=limits, sent=len(sent), now=now)
        # Profiles of sessions that ended are forgotten (the charger drops a TxProfile with its transaction).
        stale = [
            row.pk
            for (cp_id, evse_id, purpose), row in in_force.items()
            if purpose == ProfilePurpose.TX and (cp_id, evse_id) not in context
        ]
        if stale:
            ChargingLimit.objects.filter(pk__in=stale).delete()
    return RebalanceResult(site_id=site_id, budget_a=budget, limits=dict(limits), sent=sent)


def _budget_applied(
    *, site: Site, budget: Decimal, limits: dict[Any, float], sent: int, now: datetime
) -> None:
    """The budget a rebalance shares out changed (a grid event began or ended, the site's budget was
    set): keep it and audit the effect (the events in force, what the sessions got)."""
    previous = site.budget_applied_a
    Site.objects.filter(pk=site.pk).update(budget_applied_a=budget)
    site.budget_applied_a = budget
    audit_record_create(
        actor=None,
        action="site.budget_applied",
        target=site,
        organisation_id=site.organisation_id,
        source=SOURCE[:16],
        detail={
            "budget_a": [str(previous) if previous is not None else None, str(budget)],
            "grid_events": [event.pk for event in site_grid_events_now(site=site, now=now)],
            "sessions": len(limits),
            "allocated_a": str(sum(Decimal(str(v)) for v in limits.values())),
            "profiles_sent": sent,
        },
    )


def static_limits(site: Site) -> dict[str, Decimal]:
    """The profiles every charger of the site holds at EVSE 0 besides those of its running sessions:
    TxDefaultProfile, the fail-safe for a transaction that starts before we allocated it (and for one
    whose TxProfile expired because the charger lost us): the site's fallback limit, else the minimum
    (6 A); ChargePointMaxProfile (2.0.1: ChargingStationMaxProfile), the static cap: no charger ever draws
    more than the whole site's budget, whatever happens to us."""
    fallback = site.fallback_limit_a
    if fallback is None:
        fallback = Decimal(str(allocation.DEFAULT_MINIMUM_A))
    return {
        ProfilePurpose.TX_DEFAULT: min(fallback, site.max_current_a).quantize(TENTH, rounding=ROUND_FLOOR),
        ProfilePurpose.CHARGER_MAX: site.max_current_a.quantize(TENTH, rounding=ROUND_FLOOR),
    }


def _static_profiles(
    *,
    site: Site,
    charge_points: list[ChargePoint],
    in_force: dict[Any, ChargingLimit],
    units: dict[int, set[str]],
    now: datetime,
) -> list[int]:
    """Send the static profiles (static_limits) to online chargers that do not hold them yet, hold other
    values, or hold them until soon. One that rejected them is offered them again after a while."""
    sent: list[int] = []
    validity = static_profile_validity()
    retry_after = reject_retry()
    wanted = static_limits(site)
    for charge_point in charge_points:
        if not charge_point.is_online:
            continue  # sent when it comes back (presence flush rebalances its site)
        for purpose, limit_a in wanted.items():
            current = in_force.get((charge_point.pk, 0, purpose))
            if _unchanged(current, limit_a=limit_a, now=now, validity=validity):
                continue
            if (
                current is not None
                and current.status == ProfileStatus.REJECTED
                and current.limit_a == limit_a
                and current.answered_at is not None
                and now - current.answered_at < retry_after
            ):
                continue
            command_id = _send(
                site=site,
                charge_point=charge_point,
                evse_id=0,
                purpose=purpose,
                session=None,
                phases=site.phases,
                limit_a=limit_a,
                now=now,
                validity=validity,
                unit=_unit(units, charge_point),
                current=current,
            )
            if command_id is not None:
                sent.append(command_id)
    return sent


def _unit(units: dict[int, set[str]], charge_point: ChargePoint) -> str:
    """The unit the charger takes profiles in (amperes unless it allows only watts)."""
    return RateUnit.WATTS if units.get(charge_point.pk) == {RateUnit.WATTS} else RateUnit.AMPERES


def _send(
    *,
    site: Site,
    charge_point: ChargePoint,
    evse_id: int,
    purpose: str,
    session: ChargingSession | None,
    phases: int,
    limit_a: Decimal,
    now: datetime,
    validity: timedelta,
    unit: str,
    current: ChargingLimit | None,
) -> int | None:
    """Send one profile of ours and record it as the one in force (`current`: the row it replaces)."""
    value = limit_a
    if unit == RateUnit.WATTS:
        value = (limit_a * site.voltage_v * phases).quantize(TENTH, rounding=ROUND_FLOOR)
    valid_to = now + validity
    profile_id = profile_id_for(evse_id=evse_id, purpose=purpose)
    intent = LimitIntent(
        evse_id=evse_id,
        purpose=str(purpose),
        profile_id=profile_id,
        stack_level=STACK_LEVEL,
        limit=value,
        unit=unit,
        valid_from=now,
        valid_to=valid_to,
        number_phases=phases,
        session=session,
    )
    command_id: int | None = None
    try:
        result = charger_control.get().set_charging_limit(
            charge_point=charge_point, limit=intent, actor=None, source=SOURCE
        )
    except ValidationFailed:
        logger.exception("charger %s: our charging profile was refused before sending", charge_point.identity)
        status = ProfileStatus.FAILED
    else:
        # The command is handed to the charger when this rebalance commits, so its outcome always finds
        # this row (an offline charger's command is final at once: recorded here as not delivered).
        command_id = result.command_id
        status = ProfileStatus.FAILED if result.offline else ProfileStatus.SENT
    row = current or ChargingLimit(charge_point=charge_point, evse_id=evse_id, purpose=purpose)
    row.site = site
    row.profile_id = profile_id
    row.stack_level = STACK_LEVEL
    row.limit_a = limit_a
    row.limit = value
    row.unit = unit
    row.transaction_ref = session.transaction_ref if session is not None else ""
    row.status = status
    row.command_id = command_id
    row.sent_at = now
    row.answered_at = None
    row.valid_to = valid_to
    row.save()
    return command_id


_OUTCOME_STATUS = {
    CommandOutcome.ACCEPTED: ProfileStatus.ACCEPTED,
    CommandOutcome.REFUSED: ProfileStatus.REJECTED,
}


def charging_limit_finished(*, charge_point_id: int, outcome: IntentOutcome) -> None:
    """The final outcome of a SetChargingProfile: the profile in force is accepted, rejected (the charger
    is flagged: its share counts at its maximum until it accepts one, and its site is rebalanced) or not
    delivered. A command that is not our latest for that EVSE changes nothing."""
    status = _OUTCOME_STATUS.get(outcome.outcome, ProfileStatus.FAILED)
    updated = ChargingLimit.objects.filter(
        charge_point_id=charge_point_id, command_id=outcome.command_id, status=ProfileStatus.SENT
    ).update(status=status, answered_at=clock.now())
    if updated and status in (ProfileStatus.ACCEPTED, ProfileStatus.REJECTED):
        hooks.charging_profile_answered.emit(
            charge_point_id=charge_point_id,
            command_id=outcome.command_id,
            accepted=status == ProfileStatus.ACCEPTED,
        )
    if updated and status == ProfileStatus.REJECTED:
        logger.warning(
            "charger %s rejected our charging profile (command %s)", charge_point_id, outcome.command_id
        )
        charge_point_changed(charge_point_id=charge_point_id)


def sites_rebalance(*, now: Any = None) -> int:
    """The periodic pass: every site with an active session or a profile in force is rebalanced
    (refreshing profiles before their validTo). Returns how many sites ran."""
    count = 0
    site_ids = list(
        Site.objects.filter(
            Q(location__charge_points__charging_sessions__status=SessionStatus.ACTIVE)
            | Q(limits__isnull=False)
        )
        .distinct()
        .values_list("pk", flat=True)
    )
    for site_id in site_ids:
        site_rebalance(site_id=site_id, now=now)
        count += 1
    return count
