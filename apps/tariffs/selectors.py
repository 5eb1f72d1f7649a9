"""Reads: which tariff applies where, the price a driver sees before starting, what a session costs,
and a session's charge detail record."""

from __future__ import annotations

import logging
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import translation
from django.utils.translation import gettext as _

from apps.accounts.models import User
from apps.charging.choices import SessionStatus
from apps.charging.hooks import SessionPrice
from apps.charging.metering import ENERGY_REGISTER
from apps.charging.models import ChargingSession, DriverSession, MeterSample
from apps.stations.models import ChargePoint, Connector, Location
from apps.tariffs import pricing
from apps.tariffs.choices import CdrKind
from apps.tariffs.models import (
    ChargeDetailRecord,
    SessionActivity,
    SessionTariff,
    Tariff,
    TariffAssignment,
    TariffElement,
    VatRate,
)
from apps.tariffs.pricing import PriceBreakdown, TariffSpec
from cpo import clock
from cpo.units import Money

logger = logging.getLogger(__name__)

_ZERO = Decimal(0)
_SIXTY = Decimal(60)
_PER_UNIT = Decimal("0.0001")


# --- VAT -----------------------------------------------------------------------------------------


def vat_rates_for(*, countries: Iterable[str], on: date) -> dict[str, Decimal]:
    """The VAT rate (percent) of each country on a day; a country without a rate is absent."""
    rows = (
        VatRate.objects.filter(country__in=set(countries), valid_from__lte=on)
        .filter(Q(valid_until__isnull=True) | Q(valid_until__gt=on))
        .order_by("country", "-valid_from")
        .values_list("country", "rate")
    )
    rates: dict[str, Decimal] = {}
    for country, rate in rows:
        rates.setdefault(country, rate)
    return rates


def vat_rate_for(*, country: str, on: date) -> Decimal:
    """The country's VAT rate on the day; 0 (logged) when the table has none."""
    rate = vat_rates_for(countries=[country], on=on).get(country)
    if rate is None:
        logger.warning("no VAT rate for country %r on %s: using 0 %%", country, on)
        return _ZERO
    return rate


# --- which tariff applies --------------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    """Where a session charges, as tariff assignment needs it."""

    organisation_id: int
    location_id: int | None
    charge_point_id: int
    connector_id: int | None
    time_zone: str
    country: str


def _assignments(
    *,
    organisation_ids: set[int],
    location_ids: set[int],
    charge_point_ids: set[int],
    connector_ids: set[int],
    token_group_id: str,
    customer_account_id: int | None,
    at: datetime,
) -> list[TariffAssignment]:
    driver = Q(customer_account__isnull=True, token_group_id="")
    if customer_account_id is not None:
        driver |= Q(customer_account_id=customer_account_id, token_group_id="")
    if token_group_id:
        driver |= Q(customer_account__isnull=True, token_group_id=token_group_id)
        if customer_account_id is not None:
            driver |= Q(customer_account_id=customer_account_id, token_group_id=token_group_id)
    return list(
        TariffAssignment.objects.filter(organisation_id__in=organisation_ids)
        .filter(Q(location__isnull=True) | Q(location_id__in=location_ids))
        .filter(Q(charge_point__isnull=True) | Q(charge_point_id__in=charge_point_ids))
        .filter(Q(connector__isnull=True) | Q(connector_id__in=connector_ids))
        .filter(driver)
        .filter(Q(tariff__valid_from__isnull=True) | Q(tariff__valid_from__lte=at))
        .filter(Q(tariff__valid_until__isnull=True) | Q(tariff__valid_until__gt=at))
        .select_related("tariff")
    )


def _best(assignments: Iterable[TariffAssignment], place: Place) -> TariffAssignment | None:
    """The most specific assignment for the place: a driver-specific one (customer account, then token
    group) beats any other; then connector, charge point, location, operator default; then the most
    recently started tariff."""
    best, best_rank = None, None
    for a in assignments:
        if a.organisation_id != place.organisation_id:
            continue
        if a.connector_id is not None and a.connector_id != place.connector_id:
            continue
        if a.charge_point_id is not None and a.charge_point_id != place.charge_point_id:
            continue
        if a.location_id is not None and a.location_id != place.location_id:
            continue
        driver = 2 if a.customer_account_id else 1 if a.token_group_id else 0
        where = 3 if a.connector_id else 2 if a.charge_point_id else 1 if a.location_id else 0
        started = a.tariff.valid_from.timestamp() if a.tariff.valid_from else float("-inf")
        rank = (driver, where, started, a.pk)
        if best_rank is None or rank > best_rank:
            best, best_rank = a, rank
    return best


def _elements(tariff_ids: Iterable[int]) -> dict[int, list[TariffElement]]:
    out: dict[int, list[TariffElement]] = {}
    for element in TariffElement.objects.filter(tariff_id__in=set(tariff_ids)).order_by(
        "tariff", "position", "pk"
    ):
        out.setdefault(element.tariff_id, []).append(element)
    return out


def _clean(value: Decimal) -> Decimal:
    """0.300000 → 0.3 without an exponent (10 stays 10)."""
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


def tariff_spec_build(
    *, tariff: Tariff, elements: list[TariffElement], time_zone: str, vat: Decimal
) -> TariffSpec:
    """The pure snapshot of a tariff for a place whose VAT rate is `vat` (used by components with none)."""

    def component(
        price: Decimal | None, own_vat: Decimal | None, step: int = 0
    ) -> pricing.ComponentSpec | None:
        if price is None:
            return None
        return pricing.ComponentSpec(
            _clean(price), _clean(own_vat if own_vat is not None else vat), int(step)
        )

    def opt(value: Decimal | None) -> Decimal | None:
        return None if value is None else _clean(value)

    return TariffSpec(
        currency=tariff.currency,
        time_zone=time_zone,
        vat=_clean(vat),
        tariff_id=tariff.pk,
        min_price=opt(tariff.min_price),
        max_price=opt(tariff.max_price),
        alt_text=dict(tariff.alt_text or {}),
        elements=tuple(
            pricing.ElementSpec(
                energy=component(e.energy_price, e.energy_vat, e.energy_step_wh),
                time=component(e.time_price, e.time_vat, e.time_step_s),
                parking=component(e.parking_price, e.parking_vat, e.parking_step_s),
                flat=component(e.flat_price, e.flat_vat),
                restrictions=pricing.Restrictions(
                    start_time=e.start_time,
                    end_time=e.end_time,
                    start_date=e.start_date,
                    end_date=e.end_date,
                    day_of_week=frozenset(e.day_of_week or ()),
                    min_kwh=opt(e.min_kwh),
                    max_kwh=opt(e.max_kwh),
                    min_current=opt(e.min_current),
                    max_current=opt(e.max_current),
                    min_power=opt(e.min_power),
                    max_power=opt(e.max_power),
                    min_duration=e.min_duration_s,
                    max_duration=e.max_duration_s,
                    reservation=e.reservation,
                ),
            )
            for e in elements
        ),
    )


def local_date(at: datetime, time_zone: str) -> date:
    return at.astimezone(zoneinfo.ZoneInfo(time_zone)).date()


def place_for(*, charge_point: ChargePoint, connector_id: int | None) -> Place:
    """The place of a charge point (one query for its location; its operator's country without one)."""
    location = None
    if charge_point.location_id is not None:
        location = Location.objects.filter(pk=charge_point.location_id).values("time_zone", "country").first()
    if location is None:
        country = charge_point.organisation.country
        location = {"time_zone": "UTC", "country": country}
    return Place(
        charge_point.organisation_id,
        charge_point.location_id,
        charge_point.pk,
        connector_id,
        location["time_zone"],
        location["country"],
    )


def tariff_for_place(
    *, place: Place, at: datetime, token_group_id: str = "", customer_account_id: int | None = None
) -> tuple[Tariff, TariffSpec] | None:
    """The tariff in force at the place for this driver at `at`, and its snapshot (4 queries)."""
    best = _best(
        _assignments(
            organisation_ids={place.organisation_id},
            location_ids={place.location_id} - {None},
            charge_point_ids={place.charge_point_id},
            connector_ids={place.connector_id} - {None},
            token_group_id=token_group_id,
            customer_account_id=customer_account_id,
            at=at,
        ),
        place,
    )
    if best is None:
        return None
    elements = _elements([best.tariff_id]).get(best.tariff_id, [])
    vat = vat_rate_for(country=place.country, on=local_date(at, place.time_zone))
    return best.tariff, tariff_spec_build(
        tariff=best.tariff, elements=elements, time_zone=place.time_zone, vat=vat
    )


def tariff_in_force(
    *,
    charge_point: ChargePoint | None = None,
    location: Location | None = None,
    connector: Connector | None = None,
    at: datetime | None = None,
) -> Tariff | None:
    """The tariff a driver without an override gets at this charge point (or at a charge point of this
    location without its own assignment) now: for the admin."""
    at = at or clock.now()
    if charge_point is not None:
        place = place_for(charge_point=charge_point, connector_id=connector.pk if connector else None)
    elif location is not None:
        place = Place(location.organisation_id, location.pk, 0, None, location.time_zone, location.country)
    else:
        return None
    best = _best(
        _assignments(
            organisation_ids={place.organisation_id},
            location_ids={place.location_id} - {None},
            charge_point_ids={place.charge_point_id},
            connector_ids={place.connector_id} - {None},
            token_group_id="",
            customer_account_id=None,
            at=at,
        ),
        place,
    )
    return best.tariff if best is not None else None


def _assignments_in_force(at: datetime) -> QuerySet[TariffAssignment]:
    """Assignments for every driver (no customer account, no token group) whose tariff is valid at `at`."""
    return (
        TariffAssignment.objects.filter(customer_account__isnull=True, token_group_id="")
        .filter(Q(tariff__valid_from__isnull=True) | Q(tariff__valid_from__lte=at))
        .filter(Q(tariff__valid_until__isnull=True) | Q(tariff__valid_until__gt=at))
    )


def charge_points_without_tariff(
    *, charge_points: QuerySet[ChargePoint], at: datetime | None = None
) -> QuerySet[ChargePoint]:
    """The charge points of `charge_points` (already scoped to the viewer) where a driver without an
    override would charge for free now: no tariff assigned to the operator as a whole, the location or
    the charge point, and not every connector has one of its own. One query."""
    at = at or clock.now()
    in_force = _assignments_in_force(at)
    whole = in_force.filter(organisation_id=OuterRef("organisation_id")).filter(
        Q(location__isnull=True, charge_point__isnull=True, connector__isnull=True)
        | Q(location_id=OuterRef("location_id"))
        | Q(charge_point_id=OuterRef("pk"))
    )
    uncovered_connector = Connector.objects.filter(evse__charge_point_id=OuterRef("pk")).exclude(
        Exists(in_force.filter(connector_id=OuterRef("pk")))
    )
    has_connector = Connector.objects.filter(evse__charge_point_id=OuterRef("pk"))
    return charge_points.exclude(Exists(whole)).filter(Exists(uncovered_connector) | ~Exists(has_connector))


# --- the price a driver sees before starting ------------------------------------------------------


@dataclass(frozen=True)
class PriceSummary:
    """What a session started now would cost, gross (incl. VAT), from the tariff in force."""

    currency: str
    tariff_id: int
    energy_per_kwh: Decimal
    time_per_minute: Decimal
    session_fee: Decimal
    idle_per_minute: Decimal
    idle_grace_minutes: int | None
    min_price: Decimal | None
    max_price: Decimal | None
    text: str

    def as_dict(self) -> dict[str, Any]:
        q = pricing.quantum(self.currency)
        unit = min(q, _PER_UNIT)

        def money(value: Decimal | None, quantum: Decimal = q) -> str | None:
            return None if value is None else str(value.quantize(quantum, rounding=ROUND_HALF_UP))

        return {
            "currency": self.currency,
            "tariff_id": self.tariff_id,
            "energy_per_kwh": money(self.energy_per_kwh, unit),
            "time_per_minute": money(self.time_per_minute, unit),
            "session_fee": money(self.session_fee),
            "idle_per_minute": money(self.idle_per_minute, unit),
            "idle_grace_minutes": self.idle_grace_minutes,
            "min_price": money(self.min_price),
            "max_price": money(self.max_price),
            "text": self.text,
        }


def _alt_text(texts: dict[str, str]) -> str:
    if not texts:
        return ""
    language = (translation.get_language() or "en").lower()
    for key in (language, language.split("-")[0], "en"):
        if texts.get(key):
            return texts[key]
    return next(iter(texts.values()), "")


def price_summary_of(*, spec: TariffSpec, at: datetime) -> PriceSummary:
    """The summary of a snapshot for a session starting at `at` (pure apart from the active language).
    Energy, time and the flat fee come from the first element that prices them and matches a session
    just started (power and current unknown); the idle price is the first positive parking price as
    the session goes on, with the duration at which it starts as the grace period."""

    def first(dimension: str, duration_s: int = 0) -> pricing.ComponentSpec | None:
        for e in spec.elements:
            component = e.component(dimension)
            r = e.restrictions
            if component is None:
                continue
            relaxed = pricing.Restrictions(
                start_time=r.start_time,
                end_time=r.end_time,
                start_date=r.start_date,
                end_date=r.end_date,
                day_of_week=r.day_of_week,
                min_kwh=r.min_kwh,
                max_kwh=r.max_kwh,
                min_duration=r.min_duration,
                max_duration=r.max_duration,
                reservation=r.reservation,
            )
            if pricing.restrictions_match(
                relaxed,
                at=at + timedelta(seconds=duration_s),
                time_zone=spec.time_zone,
                energy_wh=_ZERO,
                duration_s=Decimal(duration_s),
                power_w=None,
                current_a=None,
            ):
                return component
        return None

    def gross(component: pricing.ComponentSpec | None) -> Decimal:
        return _ZERO if component is None else pricing.gross_of(component.price, component.vat)

    idle, grace = _ZERO, None
    thresholds = sorted(
        {0}
        | {
            d
            for e in spec.elements
            if e.parking is not None
            for d in (e.restrictions.min_duration, e.restrictions.max_duration)
            if d
        }
    )
    for seconds in thresholds:
        component = first(pricing.PARKING_TIME, seconds)
        if component is not None and component.price > 0:
            idle, grace = gross(component) / _SIXTY, (seconds // 60 if seconds else None)
            break

    def bound(value: Decimal | None) -> Decimal | None:
        return (
            None if value is None else pricing.round_money(pricing.gross_of(value, spec.vat), spec.currency)
        )

    return PriceSummary(
        currency=spec.currency,
        tariff_id=spec.tariff_id or 0,
        energy_per_kwh=gross(first(pricing.ENERGY)),
        time_per_minute=gross(first(pricing.TIME)) / _SIXTY,
        session_fee=pricing.round_money(gross(first(pricing.FLAT)), spec.currency),
        idle_per_minute=idle,
        idle_grace_minutes=grace,
        min_price=bound(spec.min_price),
        max_price=bound(spec.max_price),
        text=_alt_text(spec.alt_text),
    )


def price_summary_for_connectors(
    *, connector_ids: list[int], id_token: Any = None, at: datetime | None = None
) -> dict[int, PriceSummary]:
    """Gross prices of the tariff each connector would start a session under now (for `id_token`'s
    driver when given). Batched: five queries whatever the number of connectors. Connectors without
    a tariff are absent."""
    at = at or clock.now()
    rows = list(
        Connector.objects.filter(pk__in=set(connector_ids)).values(
            "pk",
            "evse__charge_point_id",
            "evse__charge_point__organisation_id",
            "evse__charge_point__location_id",
            "evse__charge_point__location__time_zone",
            "evse__charge_point__location__country",
            "evse__charge_point__organisation__country",
        )
    )
    if not rows:
        return {}
    places = {
        r["pk"]: Place(
            r["evse__charge_point__organisation_id"],
            r["evse__charge_point__location_id"],
            r["evse__charge_point_id"],
            r["pk"],
            r["evse__charge_point__location__time_zone"] or "UTC",
            r["evse__charge_point__location__country"] or r["evse__charge_point__organisation__country"],
        )
        for r in rows
    }
    assignments = _assignments(
        organisation_ids={p.organisation_id for p in places.values()},
        location_ids={p.location_id for p in places.values() if p.location_id is not None},
        charge_point_ids={p.charge_point_id for p in places.values()},
        connector_ids=set(places),
        token_group_id=getattr(id_token, "group_id", "") or "",
        customer_account_id=getattr(id_token, "customer_account_id", None),
        at=at,
    )
    chosen = {pk: _best(assignments, place) for pk, place in places.items()}
    tariff_ids = {a.tariff_id for a in chosen.values() if a is not None}
    if not tariff_ids:
        return {}
    elements = _elements(tariff_ids)
    days = {(p.country, local_date(at, p.time_zone)) for p in places.values()}
    rates: dict[tuple[str, date], Decimal] = {}
    for day in {d for _c, d in days}:
        found = vat_rates_for(countries={c for c, d in days if d == day}, on=day)
        for country, rate in found.items():
            rates[(country, day)] = rate
    out: dict[int, PriceSummary] = {}
    specs: dict[tuple[int, str, Decimal], PriceSummary] = {}
    for pk, assignment in chosen.items():
        if assignment is None:
            continue
        place = places[pk]
        vat = rates.get((place.country, local_date(at, place.time_zone)), _ZERO)
        key = (assignment.tariff_id, place.time_zone, vat)
        if key not in specs:
            spec = tariff_spec_build(
                tariff=assignment.tariff,
                elements=elements.get(assignment.tariff_id, []),
                time_zone=place.time_zone,
                vat=vat,
            )
            specs[key] = price_summary_of(spec=spec, at=at)
        out[pk] = specs[key]
    return out


# --- what a session costs ------------------------------------------------------------------------


def session_usage(
    *, session: ChargingSession, snapshot: SessionTariff | None, until: datetime | None = None
) -> pricing.SessionUsage:
    """What the session used from its start until the car left (or `until`, or now while it is open):
    energy from its meter register samples and its meter stop, charging/parking from its activity.
    Without a snapshot (no tariff) the car is not followed: it counts as gone when charging stopped."""
    now = until or clock.now()
    stopped = session.stopped_at if session.status == SessionStatus.COMPLETED else None
    if snapshot is not None and snapshot.departed_at is not None:
        end = max(snapshot.departed_at, stopped or snapshot.departed_at)
    else:
        end = max(now, stopped or now)
    end = max(end, session.started_at)
    readings = [
        pricing.EnergyReading(at, max(Decimal(0), value - session.meter_start_wh))
        for at, value in MeterSample.objects.filter(
            session=session,
            measurand=ENERGY_REGISTER,
            phase="",
            value__isnull=False,
        )
        .order_by("sampled_at")
        .values_list("sampled_at", "value")
        if at <= (stopped or end)
    ]
    if stopped is not None and session.meter_stop_wh is not None:
        readings.append(
            pricing.EnergyReading(stopped, max(0, session.meter_stop_wh - session.meter_start_wh))
        )
    changes = [
        (at, state)
        for at, state in SessionActivity.objects.filter(session=session).values_list("at", "state")
    ]
    periods = pricing.periods_from_states(
        start=session.started_at, end=end, stopped_at=stopped, changes=changes
    )
    reservation = None
    if snapshot is not None and snapshot.reservation_started_at is not None:
        reservation = pricing.ReservationUsage(
            start=snapshot.reservation_started_at,
            end=max(snapshot.reservation_ended_at or session.started_at, snapshot.reservation_started_at),
        )
    return pricing.SessionUsage(
        start=session.started_at,
        end=end,
        energy=tuple(readings),
        periods=periods,
        reservation=reservation,
    )


def cdr_for_session(session: ChargingSession) -> ChargeDetailRecord | None:
    """The session's charge detail record in force: the latest revision not cancelled by a credit."""
    return (
        ChargeDetailRecord.objects.filter(session=session, kind=CdrKind.CDR, credited_by__isnull=True)
        .order_by("-revision")
        .first()
    )


def session_cost(*, session: ChargingSession) -> PriceBreakdown | None:
    """The cost so far of a running session (usage up to now) or the final one (from its CDR once
    issued). None when the session has no tariff."""
    cdr = cdr_for_session(session)
    if cdr is not None:
        return PriceBreakdown.from_dict(cdr.breakdown)
    snapshot = SessionTariff.objects.filter(session=session).first()
    if snapshot is None:
        return None
    spec = TariffSpec.from_dict(snapshot.spec)
    return pricing.price_session(tariff=spec, usage=session_usage(session=session, snapshot=snapshot))


# --- what a charger's display shows (OCPP 2.0.1 TransactionEventResponse) ----------------------------

PERSONAL_MESSAGE_MAX = 512  # MessageContentType.content


def session_price(*, session: ChargingSession) -> SessionPrice | None:
    """What a session costs, for the driver (charging.hooks.session_price): the issued CDR's figures once
    the session stopped and is priced (final), else the cost so far. None when it is not priced."""
    cdr = cdr_for_session(session) if session.stopped_at is not None else None
    if cdr is not None:
        return SessionPrice(cost=PriceBreakdown.from_dict(cdr.breakdown), final=True)
    cost = session_cost(session=session)
    return None if cost is None else SessionPrice(cost=cost, final=False)


def session_price_text(*, session: ChargingSession) -> str:
    """The prices of the tariff a session was started under, for the charger's display: the tariff's own
    text in the active language when it has one, else the gross prices. '' when the session has no tariff."""
    snapshot = SessionTariff.objects.filter(session=session).first()
    if snapshot is None:
        return ""
    summary = price_summary_of(spec=TariffSpec.from_dict(snapshot.spec), at=session.started_at)
    if summary.text:
        return summary.text[:PERSONAL_MESSAGE_MAX]
    prices = summary.as_dict()
    cur = summary.currency
    parts = []
    if summary.energy_per_kwh:
        parts.append(_("{price} {currency}/kWh").format(price=prices["energy_per_kwh"], currency=cur))
    if summary.time_per_minute:
        parts.append(_("{price} {currency}/min").format(price=prices["time_per_minute"], currency=cur))
    if summary.session_fee:
        parts.append(_("{price} {currency} per session").format(price=prices["session_fee"], currency=cur))
    if summary.idle_per_minute:
        parts.append(
            _("parking {price} {currency}/min").format(price=prices["idle_per_minute"], currency=cur)
        )
    return ", ".join(parts)[:PERSONAL_MESSAGE_MAX]


def session_total_gross(*, session: ChargingSession) -> Decimal | None:
    """The session's total, VAT included, rounded to the currency's minor unit (None without a tariff)."""
    cost = session_cost(session=session)
    return (
        None if cost is None else cost.gross.quantize(pricing.quantum(cost.currency), rounding=ROUND_HALF_UP)
    )


def driver_receipts_export(*, driver: User) -> dict[str, Any]:
    """The driver's receipts for the data export (charging's `driver_export_parts`): every record issued
    for their sessions, corrections (credit notes and later revisions) included, with its number."""
    sessions = DriverSession.objects.filter(driver=driver, charging_session__isnull=False)
    records = ChargeDetailRecord.objects.filter(session__in=sessions.values("charging_session")).order_by(
        "issued_at", "pk"
    )
    session_of = dict(sessions.values_list("charging_session_id", "pk"))
    return {
        "receipts": [
            {
                "number": cdr.number,
                "kind": cdr.kind,
                "revision": cdr.revision,
                "session": session_of.get(cdr.session_id) if cdr.session_id is not None else None,
                "issued_at": cdr.issued_at.isoformat(),
                "currency": cdr.currency,
                "net": str(Money(cdr.net, cdr.currency).rounded().amount),
                "tax": str(Money(cdr.tax, cdr.currency).rounded().amount),
                "gross": str(Money(cdr.gross, cdr.currency).rounded().amount),
                "energy_wh": cdr.energy_wh,
            }
            for cdr in records
        ]
    }
