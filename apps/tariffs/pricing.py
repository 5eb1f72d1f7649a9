"""Pricing a charging session under an OCPI 2.2.1 tariff. Pure: no ORM, no clock, no settings.

`price_session(tariff=..., usage=...)` takes a tariff snapshot (`TariffSpec`) and what the session
used (`SessionUsage`: energy readings, charging and parking periods) and returns a `PriceBreakdown`.

The model (OCPI 2.2.1 "Tariff"):

* A tariff is an ordered list of elements. Each element has price components (ENERGY per kWh, TIME per
  hour of charging, PARKING_TIME per hour of not charging, FLAT once per session) and restrictions.
* The session is cut into segments at every instant where a restriction could change its answer:
  local time-of-day and date boundaries (in the location's time zone, both folds of an ambiguous
  local time and every daylight-saving transition), min/max duration, the instants the consumed
  energy crosses min/max kWh (linear between readings), meter readings, and charging/parking changes.
* Per segment and per dimension, the FIRST element whose restrictions all match at the start of the
  segment AND that has a component of that dimension is used. A FLAT fee is charged once: from the
  first segment in which an element with a FLAT component matches.
* Restriction bounds are inclusive at the minimum and exclusive at the maximum (OCPI). A time-of-day
  window whose end is before its start wraps over midnight. end_date is exclusive. Power and current
  are those of the segment (power from the energy slope when no power reading is known; an unknown
  current never satisfies a current restriction). Elements restricted to reservations never match a
  charging session: they price the reservation before it (`reservation_lines`).

Rounding (the one rule):

1. Step sizes first, on the session totals: all energy billed under ENERGY components is rounded up to
   a multiple of the step size of the last ENERGY component that applied; all time billed under TIME
   and PARKING_TIME components together is rounded up to a multiple of the step size of the last of
   those components that applied. The extra quantity is billed at that last component's price.
2. Line amounts are kept exact. They are summed per VAT rate and each sum is rounded half-up to the
   currency's minor unit, once per session per VAT rate; the net total is the sum of those.
3. min_price / max_price (excluding VAT) are applied last, to the net total: a shortfall below the
   minimum is added at the tariff's VAT rate; an excess over the maximum is taken off every VAT rate in
   proportion (rounded half-up, the remainder of a minor unit on the largest).
4. VAT per rate is rounded half-up to the minor unit; gross = net + VAT per rate, summed.
"""

from __future__ import annotations

import itertools
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, localcontext
from typing import Any

from cpo.units import minor_digits

ENERGY = "ENERGY"
TIME = "TIME"
PARKING_TIME = "PARKING_TIME"
FLAT = "FLAT"
DIMENSIONS = (ENERGY, FLAT, TIME, PARKING_TIME)
MIN_PRICE = "MIN_PRICE"
MAX_PRICE = "MAX_PRICE"

CHARGING = "CHARGING"
PARKING = "PARKING"

# OCPI ReservationRestrictionType, and the price lines a reservation's elements make.
RESERVATION = "RESERVATION"
RESERVATION_EXPIRES = "RESERVATION_EXPIRES"
RESERVATION_FLAT = "RESERVATION_FLAT"
RESERVATION_TIME = "RESERVATION_TIME"

DAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
_SECONDS_PER_HOUR = Decimal(3600)
_WH_PER_KWH = Decimal(1000)
_PRECISION = 60
_ENERGY_GRID_WH = Decimal("0.000001")  # interpolated meter readings (see _energy_at)


def quantum(currency: str) -> Decimal:
    """The currency's minor unit as a Decimal exponent (EUR → 0.01, JPY → 1, BHD → 0.001)."""
    return Decimal(1).scaleb(-minor_digits(currency))


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Half-up to the currency's minor unit."""
    return amount.quantize(quantum(currency), rounding=ROUND_HALF_UP)


def gross_of(net: Decimal, vat: Decimal) -> Decimal:
    """Exact gross of an exact net amount (no rounding)."""
    return net * (_HUNDRED + vat) / _HUNDRED


# --- the tariff snapshot -------------------------------------------------------------------------


@dataclass(frozen=True)
class ComponentSpec:
    """One price component: price excluding VAT per kWh (ENERGY), per hour (TIME, PARKING_TIME) or per
    session (FLAT); the VAT percentage; step size in Wh (ENERGY) or seconds (TIME, PARKING_TIME)."""

    price: Decimal
    vat: Decimal
    step_size: int = 0


@dataclass(frozen=True)
class Restrictions:
    """OCPI TariffRestrictions. Times and dates are local to the location (TariffSpec.time_zone);
    kWh and kW as Decimal, durations in seconds."""

    start_time: time | None = None
    end_time: time | None = None
    start_date: date | None = None
    end_date: date | None = None
    day_of_week: frozenset[str] = frozenset()
    min_kwh: Decimal | None = None
    max_kwh: Decimal | None = None
    min_current: Decimal | None = None
    max_current: Decimal | None = None
    min_power: Decimal | None = None
    max_power: Decimal | None = None
    min_duration: int | None = None
    max_duration: int | None = None
    reservation: str = ""

    @property
    def is_empty(self) -> bool:
        return self == Restrictions()


@dataclass(frozen=True)
class ElementSpec:
    """A tariff element: its components by dimension (None: the element does not price it)."""

    energy: ComponentSpec | None = None
    time: ComponentSpec | None = None
    parking: ComponentSpec | None = None
    flat: ComponentSpec | None = None
    restrictions: Restrictions = field(default_factory=Restrictions)

    def component(self, dimension: str) -> ComponentSpec | None:
        return {ENERGY: self.energy, TIME: self.time, PARKING_TIME: self.parking, FLAT: self.flat}[dimension]


@dataclass(frozen=True)
class TariffSpec:
    """Everything needed to price a session, frozen when the session starts. `vat` is the rate of the
    location's country on that day, used for min/max price; every component carries its own rate."""

    currency: str
    time_zone: str
    elements: tuple[ElementSpec, ...]
    vat: Decimal = _ZERO
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    tariff_id: int | None = None
    alt_text: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def comp(c: ComponentSpec | None) -> dict[str, Any] | None:
            return None if c is None else {"price": str(c.price), "vat": str(c.vat), "step_size": c.step_size}

        def restr(r: Restrictions) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for name in ("start_time", "end_time", "start_date", "end_date"):
                value = getattr(r, name)
                if value is not None:
                    out[name] = value.isoformat()
            if r.day_of_week:
                out["day_of_week"] = [d for d in DAYS if d in r.day_of_week]
            for name in ("min_kwh", "max_kwh", "min_current", "max_current", "min_power", "max_power"):
                value = getattr(r, name)
                if value is not None:
                    out[name] = str(value)
            for name in ("min_duration", "max_duration"):
                value = getattr(r, name)
                if value is not None:
                    out[name] = value
            if r.reservation:
                out["reservation"] = r.reservation
            return out

        return {
            "tariff_id": self.tariff_id,
            "currency": self.currency,
            "time_zone": self.time_zone,
            "vat": str(self.vat),
            "min_price": None if self.min_price is None else str(self.min_price),
            "max_price": None if self.max_price is None else str(self.max_price),
            "alt_text": dict(self.alt_text),
            "elements": [
                {
                    "energy": comp(e.energy),
                    "time": comp(e.time),
                    "parking": comp(e.parking),
                    "flat": comp(e.flat),
                    "restrictions": restr(e.restrictions),
                }
                for e in self.elements
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TariffSpec:
        def comp(c: dict[str, Any] | None) -> ComponentSpec | None:
            if c is None:
                return None
            return ComponentSpec(Decimal(c["price"]), Decimal(c["vat"]), int(c.get("step_size") or 0))

        def restr(r: dict[str, Any]) -> Restrictions:
            kwargs: dict[str, Any] = {}
            for name in ("start_time", "end_time"):
                if r.get(name):
                    kwargs[name] = time.fromisoformat(r[name])
            for name in ("start_date", "end_date"):
                if r.get(name):
                    kwargs[name] = date.fromisoformat(r[name])
            if r.get("day_of_week"):
                kwargs["day_of_week"] = frozenset(r["day_of_week"])
            for name in ("min_kwh", "max_kwh", "min_current", "max_current", "min_power", "max_power"):
                if r.get(name) is not None:
                    kwargs[name] = Decimal(r[name])
            for name in ("min_duration", "max_duration"):
                if r.get(name) is not None:
                    kwargs[name] = int(r[name])
            kwargs["reservation"] = r.get("reservation", "")
            return Restrictions(**kwargs)

        def opt(value: Any) -> Decimal | None:
            return None if value is None else Decimal(value)

        return cls(
            currency=data["currency"],
            time_zone=data["time_zone"],
            vat=Decimal(data.get("vat") or "0"),
            min_price=opt(data.get("min_price")),
            max_price=opt(data.get("max_price")),
            tariff_id=data.get("tariff_id"),
            alt_text=dict(data.get("alt_text") or {}),
            elements=tuple(
                ElementSpec(
                    energy=comp(e.get("energy")),
                    time=comp(e.get("time")),
                    parking=comp(e.get("parking")),
                    flat=comp(e.get("flat")),
                    restrictions=restr(e.get("restrictions") or {}),
                )
                for e in data["elements"]
            ),
        )


# --- what the session used -----------------------------------------------------------------------


@dataclass(frozen=True)
class EnergyReading:
    """Energy consumed since the session started (Wh) at an instant; linear in between."""

    at: datetime
    wh: Decimal | int


@dataclass(frozen=True)
class PowerReading:
    """Power (W) and/or current (A) measured at an instant, held until the next reading."""

    at: datetime
    watts: Decimal | None = None
    amps: Decimal | None = None


@dataclass(frozen=True)
class UsagePeriod:
    start: datetime
    end: datetime
    kind: str  # CHARGING or PARKING


@dataclass(frozen=True)
class ReservationUsage:
    """A reservation's period: from when it was made until the driver started charging (or it expired,
    or was cancelled). `expired`: it ended without a charge at its time (a no-show), so
    RESERVATION_EXPIRES elements apply too."""

    start: datetime
    end: datetime
    expired: bool = False


@dataclass(frozen=True)
class SessionUsage:
    """From `start` (transaction start) to `end` (the car left, or now for a running session). Time not
    covered by `periods` counts as charging. Energy before the first reading is 0 at `start`; after the
    last one it stays at the last value."""

    start: datetime
    end: datetime
    energy: tuple[EnergyReading, ...] = ()
    periods: tuple[UsagePeriod, ...] = ()
    power: tuple[PowerReading, ...] = ()
    reservation: ReservationUsage | None = None  # the reservation the session started on


def periods_from_states(
    *, start: datetime, end: datetime, stopped_at: datetime | None, changes: Iterable[tuple[datetime, str]]
) -> tuple[UsagePeriod, ...]:
    """Charging/parking periods from timestamped state changes (CHARGING or PARKING, in any order):
    the session charges from `start` until the first change to PARKING, and so on; from `stopped_at`
    (the transaction ended but the car is still there) everything is parking."""
    if end <= start:
        return ()
    limit = min(end, stopped_at) if stopped_at is not None else end
    ordered = sorted((max(at, start), kind) for at, kind in changes if at < limit)
    periods: list[UsagePeriod] = []
    cursor, kind = start, CHARGING
    for at, new_kind in ordered:
        if new_kind == kind:
            continue
        if at > cursor:
            periods.append(UsagePeriod(cursor, at, kind))
        cursor, kind = at, new_kind
    if limit > cursor:
        periods.append(UsagePeriod(cursor, limit, kind))
    if limit < end:
        periods.append(UsagePeriod(limit, end, PARKING))
    merged: list[UsagePeriod] = []
    for p in periods:
        if merged and merged[-1].kind == p.kind and merged[-1].end == p.start:
            merged[-1] = UsagePeriod(merged[-1].start, p.end, p.kind)
        else:
            merged.append(p)
    return tuple(merged)


# --- the result ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PriceLine:
    """What one component of one element charged: `quantity` in kWh, hours or sessions, at `price`
    (excluding VAT) per unit; `net` is exact (rounding happens per VAT rate, see the module)."""

    component: str
    element: int | None
    price: Decimal
    vat: Decimal
    quantity: Decimal
    net: Decimal

    @property
    def unit(self) -> str:
        return {ENERGY: "kWh", TIME: "h", PARKING_TIME: "h", RESERVATION_TIME: "h"}.get(self.component, "")


@dataclass(frozen=True)
class VatLine:
    """Net, VAT and gross of everything charged at one VAT rate, each rounded to the minor unit."""

    vat: Decimal
    net: Decimal
    tax: Decimal
    gross: Decimal


@dataclass(frozen=True)
class CdrPeriod:
    """A stretch of the session with one state and one element per dimension (an OCPI ChargingPeriod)."""

    start: datetime
    end: datetime
    kind: str
    energy_wh: Decimal
    elements: dict[str, int | None]


@dataclass(frozen=True)
class PriceBreakdown:
    currency: str
    lines: tuple[PriceLine, ...]
    vat_lines: tuple[VatLine, ...]
    net: Decimal
    tax: Decimal
    gross: Decimal
    energy_wh: Decimal
    charging_seconds: Decimal
    parking_seconds: Decimal
    periods: tuple[CdrPeriod, ...] = ()
    tariff_id: int | None = None

    @property
    def vat(self) -> Decimal:
        return self.tax

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: money rounded to the minor unit as strings (line amounts too: their sum may
        differ from the total by a minor unit, the total is what is charged); exact values under
        `net_exact`."""
        q = quantum(self.currency)
        return {
            "currency": self.currency,
            "tariff_id": self.tariff_id,
            "net": str(self.net),
            "vat": str(self.tax),
            "gross": str(self.gross),
            "energy_wh": _plain(self.energy_wh),
            "charging_seconds": str(int(self.charging_seconds)),
            "parking_seconds": str(int(self.parking_seconds)),
            "lines": [
                {
                    "component": line.component,
                    "element": line.element,
                    "price": str(line.price),
                    "vat": str(line.vat),
                    "quantity": _plain(line.quantity),
                    "unit": line.unit,
                    "net": str(line.net.quantize(q, rounding=ROUND_HALF_UP)),
                    "net_exact": _plain(line.net),
                    "gross": str(gross_of(line.net, line.vat).quantize(q, rounding=ROUND_HALF_UP)),
                }
                for line in self.lines
            ],
            "vat_lines": [
                {"vat": str(v.vat), "net": str(v.net), "tax": str(v.tax), "gross": str(v.gross)}
                for v in self.vat_lines
            ],
            "periods": [
                {
                    "start": p.start.astimezone(UTC).isoformat(),
                    "end": p.end.astimezone(UTC).isoformat(),
                    "kind": p.kind,
                    "energy_wh": _plain(p.energy_wh),
                    "elements": p.elements,
                }
                for p in self.periods
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PriceBreakdown:
        return cls(
            currency=data["currency"],
            tariff_id=data.get("tariff_id"),
            net=Decimal(data["net"]),
            tax=Decimal(data["vat"]),
            gross=Decimal(data["gross"]),
            energy_wh=Decimal(data["energy_wh"]),
            charging_seconds=Decimal(data["charging_seconds"]),
            parking_seconds=Decimal(data["parking_seconds"]),
            lines=tuple(
                PriceLine(
                    component=x["component"],
                    element=x["element"],
                    price=Decimal(x["price"]),
                    vat=Decimal(x["vat"]),
                    quantity=Decimal(x["quantity"]),
                    net=Decimal(x["net_exact"]),
                )
                for x in data["lines"]
            ),
            vat_lines=tuple(
                VatLine(Decimal(v["vat"]), Decimal(v["net"]), Decimal(v["tax"]), Decimal(v["gross"]))
                for v in data["vat_lines"]
            ),
            periods=tuple(
                CdrPeriod(
                    datetime.fromisoformat(p["start"]),
                    datetime.fromisoformat(p["end"]),
                    p["kind"],
                    Decimal(p["energy_wh"]),
                    dict(p["elements"]),
                )
                for p in data.get("periods", [])
            ),
        )


def _plain(value: Decimal) -> str:
    """A Decimal as a plain string with at most 6 decimals (no exponent)."""
    text = format(value.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


# --- the calculation -----------------------------------------------------------------------------


@dataclass
class _Segment:
    start: datetime
    end: datetime
    kind: str
    e0: Decimal  # energy consumed since the start, at segment start (Wh)
    e1: Decimal
    power_w: Decimal | None
    current_a: Decimal | None

    @property
    def seconds(self) -> Decimal:
        delta = self.end - self.start
        return Decimal(delta.days * 86400 + delta.seconds) + Decimal(delta.microseconds) / Decimal(1_000_000)


def _seconds(delta: timedelta) -> Decimal:
    return Decimal(delta.days * 86400 + delta.seconds) + Decimal(delta.microseconds) / Decimal(1_000_000)


def _energy_points(usage: SessionUsage) -> list[tuple[datetime, Decimal]]:
    points: list[tuple[datetime, Decimal]] = [(usage.start, _ZERO)]
    for r in sorted(usage.energy, key=lambda r: r.at):
        if r.at < usage.start:
            continue
        wh = max(Decimal(r.wh), points[-1][1])  # a meter never runs backwards for pricing
        if r.at == points[-1][0]:
            points[-1] = (r.at, wh)
        else:
            points.append((r.at, wh))
    return points


def _energy_at(points: Sequence[tuple[datetime, Decimal]], at: datetime) -> Decimal:
    if at <= points[0][0]:
        return points[0][1]
    for (t0, e0), (t1, e1) in itertools.pairwise(points):
        if at <= t1:
            if at == t1:
                return e1
            # On a fixed grid (a millionth of a Wh): the sums of the parts then add up to the whole
            # exactly. Unrounded (60 digits) they could come out a hair above the meter's total, which
            # the step size rounded up to one more step (2,669 Wh billed as 2,670 at a step of 1 Wh).
            return (e0 + (e1 - e0) * _seconds(at - t0) / _seconds(t1 - t0)).quantize(_ENERGY_GRID_WH)
    return points[-1][1]


def _local_boundaries(spec: TariffSpec, start: datetime, end: datetime) -> set[datetime]:
    """UTC instants where a local time-of-day, date or weekday restriction may change its answer."""
    tz = zoneinfo.ZoneInfo(spec.time_zone)
    times = {time(0, 0)}
    for e in spec.elements:
        for t in (e.restrictions.start_time, e.restrictions.end_time):
            if t is not None:
                times.add(t)
    first = start.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date() + timedelta(days=1)
    out: set[datetime] = set()
    day = first
    while day <= last:
        for t in times:
            for fold in (0, 1):
                out.add(datetime.combine(day, t, tzinfo=tz).replace(fold=fold).astimezone(UTC))
        # daylight-saving transitions of that day: find where the offset changes
        lo = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
        hi = lo + timedelta(days=1, hours=2)
        if lo.astimezone(tz).utcoffset() != hi.astimezone(tz).utcoffset():
            a, b = lo, hi
            while (b - a) > timedelta(seconds=1):
                mid = a + (b - a) / 2
                if mid.astimezone(tz).utcoffset() == a.astimezone(tz).utcoffset():
                    a = mid
                else:
                    b = mid
            out.add(b.replace(microsecond=0) if b.microsecond else b)
        day += timedelta(days=1)
    return out


def _segments(spec: TariffSpec, usage: SessionUsage) -> list[_Segment]:
    start, end = usage.start, usage.end
    if end <= start:
        return []
    points = _energy_points(usage)
    cuts: dict[datetime, Decimal | None] = {start: _ZERO, end: None}
    for at, _wh in points:
        cuts.setdefault(at, None)
    for p in usage.periods:
        cuts.setdefault(p.start, None)
        cuts.setdefault(p.end, None)
    for r in usage.power:
        cuts.setdefault(r.at, None)
    for at in _local_boundaries(spec, start, end):
        cuts.setdefault(at, None)
    for e in spec.elements:
        for seconds in (e.restrictions.min_duration, e.restrictions.max_duration):
            if seconds is not None:
                cuts.setdefault(start + timedelta(seconds=seconds), None)
        for kwh in (e.restrictions.min_kwh, e.restrictions.max_kwh):
            if kwh is None:
                continue
            target = kwh * _WH_PER_KWH
            for (t0, e0), (t1, e1) in itertools.pairwise(points):
                if e0 < target < e1:
                    offset = _seconds(t1 - t0) * (target - e0) / (e1 - e0)
                    at = t0 + timedelta(microseconds=int(offset * 1_000_000))
                    if t0 < at < t1:
                        cuts[at] = target  # the energy is exactly the threshold here
    instants = sorted(at for at in cuts if start <= at <= end)
    energy = {at: (cuts[at] if cuts[at] is not None else _energy_at(points, at)) for at in instants}
    # keep energy monotonic across the exact threshold points
    running = _ZERO
    for at in instants:
        running = max(running, energy[at])
        energy[at] = running
    periods = sorted(usage.periods, key=lambda p: p.start)
    power = sorted(usage.power, key=lambda r: r.at)
    segments = []
    for a, b in itertools.pairwise(instants):
        kind = CHARGING
        for p in periods:
            if p.start <= a < p.end:
                kind = p.kind
                break
        reading = None
        for r in power:
            if r.at <= a:
                reading = r
            else:
                break
        e0, e1 = energy[a], energy[b]
        seconds = _seconds(b - a)
        watts = (
            reading.watts
            if reading is not None and reading.watts is not None
            else ((e1 - e0) * _SECONDS_PER_HOUR / seconds if seconds else _ZERO)
        )
        amps = reading.amps if reading is not None else None
        segments.append(_Segment(a, b, kind, e0, e1, watts, amps))
    return segments


def _in_range(value: Decimal | None, low: Decimal | None, high: Decimal | None) -> bool:
    if low is None and high is None:
        return True
    if value is None:
        return False
    return (low is None or value >= low) and (high is None or value < high)


def restrictions_match(
    r: Restrictions,
    *,
    at: datetime,
    time_zone: str,
    energy_wh: Decimal,
    duration_s: Decimal,
    power_w: Decimal | None,
    current_a: Decimal | None,
    reservation: bool = False,
) -> bool:
    """Whether an element's restrictions hold at `at` with the session in the given state."""
    if r.reservation:
        return reservation
    local = at.astimezone(zoneinfo.ZoneInfo(time_zone))
    now = local.time().replace(tzinfo=None)
    if r.start_time is not None or r.end_time is not None:
        begin, finish = r.start_time or time(0), r.end_time
        if finish is None or (finish == time(0) and begin != time(0)):
            inside = now >= begin
        elif begin == finish:
            inside = True
        elif begin <= finish:
            inside = begin <= now < finish
        else:  # wraps over midnight
            inside = now >= begin or now < finish
        if not inside:
            return False
    if r.start_date is not None and local.date() < r.start_date:
        return False
    if r.end_date is not None and local.date() >= r.end_date:
        return False
    if r.day_of_week and DAYS[local.weekday()] not in r.day_of_week:
        return False
    kwh = energy_wh / _WH_PER_KWH
    if not _in_range(kwh, r.min_kwh, r.max_kwh):
        return False
    if not _in_range(
        duration_s,
        None if r.min_duration is None else Decimal(r.min_duration),
        None if r.max_duration is None else Decimal(r.max_duration),
    ):
        return False
    kw = None if power_w is None else power_w / _WH_PER_KWH
    if not _in_range(kw, r.min_power, r.max_power):
        return False
    return _in_range(current_a, r.min_current, r.max_current)


def _ceil_to(quantity: Decimal, step: Decimal) -> Decimal:
    return (quantity / step).to_integral_value(rounding=ROUND_CEILING) * step


def price_session(*, tariff: TariffSpec, usage: SessionUsage) -> PriceBreakdown:
    """Price `usage` under `tariff` (see the module docstring for the rules). Never negative."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return _price(tariff, usage)


def _in_utc(usage: SessionUsage) -> SessionUsage:
    """Every instant in UTC: Python subtracts datetimes that share a tzinfo as wall-clock times, which
    is wrong across a daylight-saving change."""

    def u(at: datetime) -> datetime:
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("naive datetime in session usage: an aware datetime is required")
        return at.astimezone(UTC)

    return SessionUsage(
        start=u(usage.start),
        end=u(usage.end),
        energy=tuple(EnergyReading(u(r.at), r.wh) for r in usage.energy),
        periods=tuple(UsagePeriod(u(p.start), u(p.end), p.kind) for p in usage.periods),
        power=tuple(PowerReading(u(r.at), r.watts, r.amps) for r in usage.power),
        reservation=None
        if usage.reservation is None
        else ReservationUsage(
            u(usage.reservation.start), u(usage.reservation.end), usage.reservation.expired
        ),
    )


def _price(spec: TariffSpec, usage: SessionUsage) -> PriceBreakdown:
    usage = _in_utc(usage)
    segments = _segments(spec, usage)
    # (dimension, element index) -> exact quantity (kWh for energy, hours for time, 1 for flat)
    energy_wh: dict[int, Decimal] = {}
    time_s: dict[tuple[str, int], Decimal] = {}
    last_energy: int | None = None
    last_time: tuple[str, int] | None = None
    flat: int | None = None
    cdr_periods: list[CdrPeriod] = []
    total_energy = charging_s = parking_s = _ZERO
    for seg in segments:
        duration = _seconds(seg.start - usage.start)
        matching = [
            i
            for i, e in enumerate(spec.elements)
            if restrictions_match(
                e.restrictions,
                at=seg.start,
                time_zone=spec.time_zone,
                energy_wh=seg.e0,
                duration_s=duration,
                power_w=seg.power_w,
                current_a=seg.current_a,
            )
        ]

        def first(dimension: str, matching: list[int] = matching) -> int | None:
            return next((i for i in matching if spec.elements[i].component(dimension) is not None), None)

        chosen: dict[str, int | None] = {}
        used_wh = seg.e1 - seg.e0
        total_energy += used_wh
        if seg.kind == PARKING:
            parking_s += seg.seconds
        else:
            charging_s += seg.seconds
        i = first(ENERGY)
        chosen[ENERGY] = i
        if i is not None and used_wh > 0:
            energy_wh[i] = energy_wh.get(i, _ZERO) + used_wh
            last_energy = i
        dimension = PARKING_TIME if seg.kind == PARKING else TIME
        i = first(dimension)
        chosen[dimension] = i
        if i is not None and seg.seconds > 0:
            time_s[(dimension, i)] = time_s.get((dimension, i), _ZERO) + seg.seconds
            last_time = (dimension, i)
        if flat is None:
            flat = first(FLAT)
        chosen[FLAT] = flat
        if (
            cdr_periods
            and cdr_periods[-1].kind == seg.kind
            and cdr_periods[-1].elements == chosen
            and cdr_periods[-1].end == seg.start
        ):
            prev = cdr_periods[-1]
            cdr_periods[-1] = CdrPeriod(prev.start, seg.end, seg.kind, prev.energy_wh + used_wh, chosen)
        else:
            cdr_periods.append(CdrPeriod(seg.start, seg.end, seg.kind, used_wh, chosen))

    # 1. step sizes on the session totals
    if last_energy is not None:
        step = spec.elements[last_energy].energy.step_size  # type: ignore[union-attr]
        if step:
            total = sum(energy_wh.values(), _ZERO)
            energy_wh[last_energy] += _ceil_to(total, Decimal(step)) - total
    if last_time is not None:
        component = spec.elements[last_time[1]].component(last_time[0])
        assert component is not None
        if component.step_size:
            total = sum(time_s.values(), _ZERO)
            time_s[last_time] += _ceil_to(total, Decimal(component.step_size)) - total

    lines: list[PriceLine] = []
    if flat is not None:
        c = spec.elements[flat].flat
        assert c is not None
        lines.append(PriceLine(FLAT, flat, c.price, c.vat, Decimal(1), c.price))
    for i, wh in sorted(energy_wh.items()):
        c = spec.elements[i].energy
        assert c is not None
        kwh = wh / _WH_PER_KWH
        lines.append(PriceLine(ENERGY, i, c.price, c.vat, kwh, kwh * c.price))
    for (dimension, i), seconds in sorted(time_s.items(), key=lambda kv: (kv[0][0] != TIME, kv[0][1])):
        c = spec.elements[i].component(dimension)
        assert c is not None
        hours = seconds / _SECONDS_PER_HOUR
        lines.append(PriceLine(dimension, i, c.price, c.vat, hours, hours * c.price))
    if usage.reservation is not None:
        lines.extend(reservation_lines(tariff=spec, usage=usage.reservation))
    return _totals(
        spec,
        lines,
        energy_wh=total_energy,
        charging_s=charging_s,
        parking_s=parking_s,
        periods=tuple(cdr_periods),
    )


def _totals(
    spec: TariffSpec,
    lines: list[PriceLine],
    *,
    energy_wh: Decimal,
    charging_s: Decimal,
    parking_s: Decimal,
    periods: tuple[CdrPeriod, ...],
    bounded: bool = True,
) -> PriceBreakdown:
    """Steps 2-4 of the rounding rule on `lines` (min/max price only when `bounded`)."""
    # 2. exact sums per VAT rate, rounded once each
    currency = spec.currency.upper()
    by_vat: dict[Decimal, Decimal] = {}
    for line in lines:
        by_vat[line.vat] = by_vat.get(line.vat, _ZERO) + line.net
    rounded = {vat: round_money(amount, currency) for vat, amount in by_vat.items()}
    net = sum(rounded.values(), _ZERO)

    # 3. min / max price on the net total
    if bounded and spec.min_price is not None and net < spec.min_price:
        shortfall = round_money(spec.min_price, currency) - net
        lines.append(PriceLine(MIN_PRICE, None, shortfall, spec.vat, Decimal(1), shortfall))
        rounded[spec.vat] = rounded.get(spec.vat, _ZERO) + shortfall
    elif bounded and spec.max_price is not None and net > spec.max_price:
        target = round_money(spec.max_price, currency)
        scaled = {vat: round_money(amount * target / net, currency) for vat, amount in rounded.items()}
        largest = max(scaled, key=lambda vat: (scaled[vat], vat))
        scaled[largest] += target - sum(scaled.values(), _ZERO)
        for vat in sorted(rounded):
            if scaled[vat] != rounded[vat]:
                cut = scaled[vat] - rounded[vat]
                lines.append(PriceLine(MAX_PRICE, None, cut, vat, Decimal(1), cut))
        rounded = scaled

    # 4. VAT per rate
    vat_lines = []
    for vat in sorted(rounded):
        line_net = rounded[vat]
        tax = round_money(line_net * vat / _HUNDRED, currency)
        vat_lines.append(VatLine(vat, line_net, tax, line_net + tax))
    q = quantum(currency)
    return PriceBreakdown(
        currency=currency,
        lines=tuple(lines),
        vat_lines=tuple(vat_lines),
        net=sum((v.net for v in vat_lines), _ZERO).quantize(q),
        tax=sum((v.tax for v in vat_lines), _ZERO).quantize(q),
        gross=sum((v.gross for v in vat_lines), _ZERO).quantize(q),
        energy_wh=energy_wh,
        charging_seconds=charging_s,
        parking_seconds=parking_s,
        periods=periods,
        tariff_id=spec.tariff_id,
    )


def prices_reservations(tariff: TariffSpec) -> bool:
    """Whether the tariff has elements for reservations (OCPI restrictions.reservation)."""
    return any(e.restrictions.reservation for e in tariff.elements)


def reservation_lines(*, tariff: TariffSpec, usage: ReservationUsage) -> list[PriceLine]:
    """What a reservation costs under the tariff's reservation elements (OCPI 2.2.1 TariffRestrictions
    `reservation`; such an element has only FLAT and TIME components, TIME for the reservation's length):
    a FLAT fee once and the reserved time, each from the first element that prices it. A used (or
    cancelled) reservation is priced by RESERVATION elements; an expired one by RESERVATION_EXPIRES
    elements first, then RESERVATION ones (the spec's note: with a TIME component in both, the expired
    reservation's time is priced by RESERVATION_EXPIRES). The time is rounded up to the step size of the
    component that prices it; amounts stay exact (rounded with the rest, see the module). The other
    restrictions of a reservation element are not evaluated."""
    kinds = (RESERVATION_EXPIRES, RESERVATION) if usage.expired else (RESERVATION,)
    candidates = [
        i
        for kind in kinds
        for i, element in enumerate(tariff.elements)
        if element.restrictions.reservation == kind
    ]

    def first(dimension: str) -> int | None:
        return next((i for i in candidates if tariff.elements[i].component(dimension) is not None), None)

    lines: list[PriceLine] = []
    i = first(FLAT)
    if i is not None:
        c = tariff.elements[i].flat
        assert c is not None
        lines.append(PriceLine(RESERVATION_FLAT, i, c.price, c.vat, Decimal(1), c.price))
    i = first(TIME)
    seconds = max(_ZERO, _seconds(usage.end - usage.start))
    if i is not None and seconds > 0:
        c = tariff.elements[i].time
        assert c is not None
        if c.step_size:
            seconds = _ceil_to(seconds, Decimal(c.step_size))
        hours = seconds / _SECONDS_PER_HOUR
        lines.append(PriceLine(RESERVATION_TIME, i, c.price, c.vat, hours, hours * c.price))
    return lines


def price_reservation(*, tariff: TariffSpec, usage: ReservationUsage) -> PriceBreakdown:
    """Price a reservation that no charge followed (expired, or cancelled) on its own: its lines only,
    rounded as a session's (min_price and max_price are a charging session's bounds and do not apply)."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        usage = ReservationUsage(usage.start.astimezone(UTC), usage.end.astimezone(UTC), usage.expired)
        return _totals(
            tariff,
            reservation_lines(tariff=tariff, usage=usage),
            energy_wh=_ZERO,
            charging_s=_ZERO,
            parking_s=_ZERO,
            periods=(),
            bounded=False,
        )


def step_rounded(quantity: Decimal, step: int) -> Decimal:
    """`quantity` rounded up to a multiple of `step` (no rounding for a step of 0)."""
    return _ceil_to(quantity, Decimal(step)) if step else quantity


__all__ = [
    "CHARGING",
    "DAYS",
    "DIMENSIONS",
    "ENERGY",
    "FLAT",
    "MAX_PRICE",
    "MIN_PRICE",
    "PARKING",
    "PARKING_TIME",
    "TIME",
    "CdrPeriod",
    "ComponentSpec",
    "ElementSpec",
    "EnergyReading",
    "PowerReading",
    "PriceBreakdown",
    "PriceLine",
    "Restrictions",
    "SessionUsage",
    "TariffSpec",
    "UsagePeriod",
    "VatLine",
    "gross_of",
    "periods_from_states",
    "price_session",
    "quantum",
    "restrictions_match",
    "round_money",
    "step_rounded",
]
