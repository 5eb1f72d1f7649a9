"""Smart charging: set a site's budget, rebalance it, and record what chargers make of our profiles.

A rebalance reads the site's active sessions, asks `allocation.allocate` for per-connector limits and sends
a profile (through the `charger_control` port: the gateway builds the charger's own SetChargingProfile)
only where the limit changed or the one in force is about to expire. It never waits for a charger: the
outcome comes back through `charging_limit_finished`, which the gateway calls when the command is final.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import redis
from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext as _

from apps.accounts.services import audit_record_create
from apps.charging.choices import SessionStatus
from apps.charging.intents import ChargingLimit as LimitIntent
from apps.charging.intents import CommandOutcome, IntentOutcome, charger_control
from apps.charging.models import ChargingSession, MeterSample
from apps.smartcharging import allocation, hooks
from apps.smartcharging.choices import ProfilePurpose, ProfileStatus, RateUnit
from apps.smartcharging.configuration import rate_units
from apps.smartcharging.models import ChargingLimit, GridEvent, Site
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


def profile_id_for(*, evse_id: int, purpose: str) -> int:
    """Our profile id for an EVSE and purpose: sending it again replaces the profile at the charger."""
    return PROFILE_ID_BASE + evse_id * 10 + _PURPOSE_INDEX[ProfilePurpose(purpose)]


def profile_validity() -> timedelta:
    return timedelta(seconds=getattr(settings, "CPO_SMART_PROFILE_VALID_S", 3600))


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
    """The site a charge point belongs to: one that names it, else its location's site without a group."""
    named = Site.objects.filter(charge_points__id=charge_point_id).order_by("pk").first()
    if named is not None:
        return named
    return (
        Site.objects.filter(location__charge_points__id=charge_point_id, charge_points__isnull=True)
        .order_by("pk")
        .first()
    )


def site_cut_percent(*, site: Site, now: datetime) -> Decimal:
    """The deepest grid-event cut in force at the site at `now` (0 when none)."""
    cuts = GridEvent.objects.filter(sites=site, starts_at__lte=now, ends_at__gt=now).filter(
        Q(ended_at__isnull=True) | Q(ended_at__gt=now)
    )
    deepest = max((event.reduce_percent for event in cuts), default=Decimal("0"))
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
    """Queue one rebalance of the site unless one is already queued (a Redis key with a short TTL marks it;
    the run clears it before reading, so a change after that queues another). True when queued."""
    coalesce_s = float(getattr(settings, "CPO_SMART_COALESCE_S", 1.0))
    try:
        fresh = _redis().set(f"{COALESCE_KEY}{site_id}", "1", nx=True, ex=max(int(coalesce_s * 10), 5))
    except redis.RedisError:
        logger.warning("site %s: Redis unavailable, rebalancing without coalescing", site_id)
        fresh = True
    if fresh:
        current_app.send_task(REBALANCE_TASK, args=(site_id,), countdown=coalesce_s)
    return bool(fresh)


def site_rebalance_claim(*, site_id: int) -> None:
    """A rebalance run starts: later changes queue another run."""
    try:
        _redis().delete(f"{COALESCE_KEY}{site_id}")
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
        MeterSample.objects.filter(session=session, measurand="Current.Import", received_at__gte=since)
        .order_by("-sampled_at")
        .values_list("sampled_at", flat=True)
        .first()
    )
    if latest is None:
        return None
    values = [
        float(value)
        for value in MeterSample.objects.filter(
            session=session, measurand="Current.Import", sampled_at=latest, value__isnull=False
        ).values_list("value", flat=True)
        if value is not None
    ]
    return max(values) if values else None


def _demands(site: Site, charge_points: list[ChargePoint]) -> tuple[list[allocation.Demand], dict[Any, Any]]:
    sessions = list(
        ChargingSession.objects.filter(charge_point__in=charge_points, status=SessionStatus.ACTIVE)
        .select_related("connector", "charge_point")
        .order_by("started_at", "pk")
    )
    in_force = {
        (limit.charge_point_id, limit.evse_id): limit
        for limit in ChargingLimit.objects.filter(charge_point__in=charge_points, purpose=ProfilePurpose.TX)
    }
    demands, context = [], {}
    for order, session in enumerate(sessions):
        key = (session.charge_point_id, session.evse_id)
        if key in context:  # one session per EVSE: a stale duplicate counts once
            continue
        connector = _connector_for(session)
        max_a = float(connector.max_current_a) if connector else 32.0
        phases = _PHASES.get(connector.power_type, 3) if connector else 3
        limit = in_force.get(key)
        fixed: float | None = None
        if not session.charge_point.is_online:
            fixed = float(limit.limit_a) if limit and limit.status == ProfileStatus.ACCEPTED else max_a
        elif limit is not None and limit.status == ProfileStatus.REJECTED:
            fixed = max_a  # it refused our profile: assume it takes its maximum until it accepts one
        want: float | None = None
        draw = None
        if limit is not None and limit.status == ProfileStatus.ACCEPTED and limit.answered_at is not None:
            draw = _draw_a(session, since=limit.answered_at)
        if draw is not None and limit is not None and draw < float(limit.limit_a) - 2:
            want = draw + 1  # the car takes less than it was given: the rest goes to the others
        demands.append(
            allocation.Demand(
                key=key,
                phases=tuple(range(1, min(phases, site.phases) + 1)),
                max_a=max_a,
                want_a=want,
                order=order,
                fixed_a=fixed,
            )
        )
        context[key] = (session, connector, phases)
    return demands, context


def _rate_unit(charge_point: ChargePoint) -> str:
    """The unit the charger takes profiles in (amperes unless it allows only watts)."""
    allowed = charge_point_rate_units(charge_point_id=charge_point.pk)
    return RateUnit.WATTS if allowed == {RateUnit.WATTS} else RateUnit.AMPERES


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


def site_rebalance(*, site_id: int, now: Any = None) -> RebalanceResult:
    """Allocate the site's budget and send a profile to each charger whose limit changed (or whose profile
    in force expires within half its validity). Runs under the site's row lock: two rebalances of a site
    never interleave. Never waits for a charger."""
    now = now or clock.now()
    sent: list[int] = []
    with transaction.atomic():
        site = Site.objects.select_for_update(no_key=True).get(pk=site_id)
        charge_points = site_charge_points(site)
        budget = site_budget_a(site=site, now=now)
        demands, context = _demands(site, charge_points)
        limits = allocation.allocate(budget_a=float(budget), phases=site.phases, demands=demands)
        fixed = {d.key for d in demands if d.fixed_a is not None}
        in_force: dict[Any, ChargingLimit] = {
            (limit.charge_point_id, limit.evse_id): limit
            for limit in ChargingLimit.objects.select_for_update(no_key=True).filter(
                charge_point__in=charge_points, purpose=ProfilePurpose.TX
            )
        }
        validity = profile_validity()
        for key, value in sorted(limits.items()):
            if key in fixed:
                continue
            session, _connector, phases = context[key]
            limit_a = Decimal(str(value)).quantize(TENTH, rounding=ROUND_FLOOR)
            current = in_force.get(key)
            if (
                current is not None
                and current.limit_a == limit_a
                and current.transaction_ref == session.transaction_ref
                and current.status in (ProfileStatus.SENT, ProfileStatus.ACCEPTED)
                and current.valid_to - now > validity / 2
            ):
                continue
            command_id = _send(
                site=site, session=session, phases=min(phases, site.phases), limit_a=limit_a, now=now
            )
            if command_id is not None:
                sent.append(command_id)
        # Profiles of sessions that ended are forgotten (the charger drops a TxProfile with its transaction).
        active = set(context)
        stale = [pk for key, row in in_force.items() if key not in active for pk in [row.pk]]
        if stale:
            ChargingLimit.objects.filter(pk__in=stale).delete()
    return RebalanceResult(site_id=site_id, budget_a=budget, limits=dict(limits), sent=sent)


def _send(*, site: Site, session: ChargingSession, phases: int, limit_a: Decimal, now: Any) -> int | None:
    charge_point = session.charge_point
    unit = _rate_unit(charge_point)
    value = limit_a
    if unit == RateUnit.WATTS:
        value = (limit_a * site.voltage_v * phases).quantize(TENTH, rounding=ROUND_FLOOR)
    valid_to = now + profile_validity()
    profile_id = profile_id_for(evse_id=session.evse_id, purpose=ProfilePurpose.TX)
    intent = LimitIntent(
        evse_id=session.evse_id,
        purpose=ProfilePurpose.TX.value,
        profile_id=profile_id,
        stack_level=STACK_LEVEL,
        limit=value,
        unit=unit,
        valid_from=now,
        valid_to=valid_to,
        number_phases=phases,
        session=session,
    )
    row, _created = ChargingLimit.objects.update_or_create(
        charge_point=charge_point,
        evse_id=session.evse_id,
        purpose=ProfilePurpose.TX,
        defaults={
            "site": site,
            "profile_id": profile_id,
            "stack_level": STACK_LEVEL,
            "limit_a": limit_a,
            "limit": value,
            "unit": unit,
            "transaction_ref": session.transaction_ref,
            "status": ProfileStatus.SENT,
            "command_id": None,
            "sent_at": now,
            "answered_at": None,
            "valid_to": valid_to,
        },
    )
    try:
        result = charger_control.get().set_charging_limit(
            charge_point=charge_point, limit=intent, actor=None, source=SOURCE
        )
    except ValidationFailed:
        logger.exception("charger %s: our charging profile was refused before sending", charge_point.identity)
        ChargingLimit.objects.filter(pk=row.pk).update(status=ProfileStatus.FAILED)
        return None
    status = ProfileStatus.FAILED if result.offline else ProfileStatus.SENT
    ChargingLimit.objects.filter(pk=row.pk).update(command_id=result.command_id, status=status)
    return result.command_id


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
