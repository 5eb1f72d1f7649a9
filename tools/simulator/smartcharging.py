"""Charging profiles on the simulated charger (OCPP 1.6 smart charging; pure, no I/O).

Which limit applies at an instant: the highest stack level among the profiles of a purpose that are
active then; a TxProfile (during a transaction) wins over TxDefaultProfiles (connector first, then
connector 0); the ChargePointMaxProfile caps both. Limits are handled in amperes and converted with
the connector's phases and voltage when a profile or a request speaks watts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tools.simulator.clock import parse_iso8601

RECURRENCE_S = {"Daily": 86_400, "Weekly": 7 * 86_400}
CHARGE_POINT_MAX = "ChargePointMaxProfile"
TX_DEFAULT = "TxDefaultProfile"
TX = "TxProfile"


@dataclass(frozen=True, slots=True)
class Period:
    start_s: int
    limit: float
    phases: int | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    """An installed charging profile, parsed from a SetChargingProfile or RemoteStartTransaction payload."""

    profile_id: int
    connector_id: int
    stack_level: int
    purpose: str
    kind: str
    unit: str
    periods: tuple[Period, ...]
    recurrency: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    start_schedule: datetime | None = None
    duration_s: int | None = None
    transaction_id: int | None = None

    @classmethod
    def from_payload(cls, data: dict[str, Any], *, connector_id: int) -> Profile:
        """`data` is a csChargingProfiles object with the ocpp library's snake_case keys. ValueError when
        it cannot be executed (e.g. an Absolute or Recurring profile without startSchedule)."""
        schedule = data["charging_schedule"]
        periods = tuple(
            sorted(
                (
                    Period(int(p["start_period"]), float(p["limit"]), p.get("number_phases"))
                    for p in schedule["charging_schedule_period"]
                ),
                key=lambda p: p.start_s,
            )
        )
        if not periods or periods[0].start_s != 0:
            raise ValueError("the first chargingSchedulePeriod must start at 0")
        kind = data["charging_profile_kind"]
        start = _time(schedule.get("start_schedule"))
        if kind in ("Absolute", "Recurring") and start is None:
            raise ValueError(f"a {kind} profile needs startSchedule")
        if kind == "Recurring" and data.get("recurrency_kind") not in RECURRENCE_S:
            raise ValueError("a Recurring profile needs recurrencyKind Daily or Weekly")
        return cls(
            profile_id=int(data["charging_profile_id"]),
            connector_id=connector_id,
            stack_level=int(data["stack_level"]),
            purpose=data["charging_profile_purpose"],
            kind=kind,
            unit=schedule["charging_rate_unit"],
            periods=periods,
            recurrency=data.get("recurrency_kind"),
            valid_from=_time(data.get("valid_from")),
            valid_to=_time(data.get("valid_to")),
            start_schedule=start,
            duration_s=schedule.get("duration"),
            transaction_id=data.get("transaction_id"),
        )

    def origin(self, at: datetime, *, relative_to: datetime) -> datetime | None:
        """Where the schedule period offsets count from, for the repetition that covers `at`."""
        if self.kind == "Relative":
            return relative_to
        assert self.start_schedule is not None
        if self.kind == "Absolute":
            return self.start_schedule
        period = timedelta(seconds=RECURRENCE_S[self.recurrency or "Daily"])
        if at < self.start_schedule:
            return None
        return self.start_schedule + period * ((at - self.start_schedule) // period)

    def limit_at(self, at: datetime, *, relative_to: datetime) -> Period | None:
        """The schedule period in force at `at`, or None when the profile does not apply then."""
        if (self.valid_from and at < self.valid_from) or (self.valid_to and at >= self.valid_to):
            return None
        origin = self.origin(at, relative_to=relative_to)
        if origin is None:
            return None
        offset = (at - origin).total_seconds()
        if offset < 0 or (self.duration_s is not None and offset >= self.duration_s):
            return None
        current = None
        for period in self.periods:
            if period.start_s <= offset:
                current = period
        return current

    def changes_between(self, start: datetime, end: datetime, *, relative_to: datetime) -> set[datetime]:
        """Instants in [start, end) at which this profile's limit may change."""
        instants = {t for t in (self.valid_from, self.valid_to) if t is not None}
        origins: list[datetime] = []
        if self.kind == "Recurring":
            assert self.start_schedule is not None
            step = timedelta(seconds=RECURRENCE_S[self.recurrency or "Daily"])
            first = self.origin(start, relative_to=relative_to) or self.start_schedule
            while first <= end:
                origins.append(first)
                first += step
        else:
            origin = self.origin(start, relative_to=relative_to)
            if origin is not None:
                origins.append(origin)
        for origin in origins:
            instants.update(origin + timedelta(seconds=p.start_s) for p in self.periods)
            if self.duration_s is not None:
                instants.add(origin + timedelta(seconds=self.duration_s))
        return {t for t in instants if start <= t < end}


def _time(value: Any) -> datetime | None:
    return parse_iso8601(value) if value else None


def to_amps(value: float, unit: str, *, phases: int, voltage_v: float) -> float:
    return value if unit == "A" else value / (voltage_v * phases)


class ProfileStore:
    """The profiles installed on one charger, with SetChargingProfile's replacement rules."""

    def __init__(self, *, phases: int, voltage_v: float) -> None:
        self.profiles: list[Profile] = []
        self.phases = phases
        self.voltage_v = voltage_v

    def install(self, profile: Profile) -> None:
        """Replace a profile with the same id, or the same stack level and purpose on the connector."""
        self.profiles = [
            p
            for p in self.profiles
            if p.profile_id != profile.profile_id
            and not (
                p.connector_id == profile.connector_id
                and p.stack_level == profile.stack_level
                and p.purpose == profile.purpose
            )
        ]
        self.profiles.append(profile)

    def clear(
        self,
        *,
        profile_id: int | None = None,
        connector_id: int | None = None,
        purpose: str | None = None,
        stack_level: int | None = None,
    ) -> int:
        """ClearChargingProfile: remove the profiles matching every criterion given; returns how many."""

        def matches(p: Profile) -> bool:
            if profile_id is not None:
                return p.profile_id == profile_id
            return (
                (connector_id is None or p.connector_id == connector_id)
                and (purpose is None or p.purpose == purpose)
                and (stack_level is None or p.stack_level == stack_level)
            )

        kept = [p for p in self.profiles if not matches(p)]
        removed = len(self.profiles) - len(kept)
        self.profiles = kept
        return removed

    def end_transaction(self, connector_id: int) -> None:
        """A TxProfile lives as long as its transaction."""
        self.profiles = [p for p in self.profiles if not (p.purpose == TX and p.connector_id == connector_id)]

    def _highest(self, candidates: list[Profile], at: datetime, relative_to: datetime) -> float | None:
        best: tuple[int, float] | None = None
        for profile in candidates:
            period = profile.limit_at(at, relative_to=relative_to)
            if period is None:
                continue
            amps = to_amps(
                period.limit, profile.unit, phases=period.phases or self.phases, voltage_v=self.voltage_v
            )
            if best is None or profile.stack_level > best[0]:
                best = (profile.stack_level, amps)
        return None if best is None else best[1]

    def limit_a(self, connector_id: int, at: datetime, *, transaction_start: datetime | None) -> float | None:
        """The current limit in force on `connector_id` at `at` (None: no profile limits it)."""
        relative_to = transaction_start or at
        limits = [self._highest([p for p in self.profiles if p.purpose == CHARGE_POINT_MAX], at, relative_to)]
        if connector_id > 0:
            tx_limit = None
            if transaction_start is not None:
                tx_limit = self._highest(
                    [p for p in self.profiles if p.purpose == TX and p.connector_id == connector_id],
                    at,
                    relative_to,
                )
            if tx_limit is None:
                tx_limit = self._highest(
                    [p for p in self.profiles if p.purpose == TX_DEFAULT and p.connector_id == connector_id],
                    at,
                    relative_to,
                )
            if tx_limit is None:
                tx_limit = self._highest(
                    [p for p in self.profiles if p.purpose == TX_DEFAULT and p.connector_id == 0],
                    at,
                    relative_to,
                )
            limits.append(tx_limit)
        found = [limit for limit in limits if limit is not None]
        return min(found) if found else None

    def composite(
        self,
        connector_id: int,
        start: datetime,
        duration_s: int,
        *,
        unit: str,
        physical_max_a: float,
        transaction_start: datetime | None,
        max_periods: int,
    ) -> list[dict[str, Any]]:
        """GetCompositeSchedule: the periods (snake_case, offsets from `start`) of the limit in force on the
        connector over [start, start + duration], capped by the physical maximum, in `unit`."""
        end = start + timedelta(seconds=duration_s)
        relative_to = transaction_start or start
        instants = {start}
        for profile in self.profiles:
            instants |= profile.changes_between(start, end, relative_to=relative_to)
        periods: list[dict[str, Any]] = []
        last: float | None = None
        for at in sorted(instants):
            limit_a = self.limit_a(connector_id, at, transaction_start=relative_to)
            amps = physical_max_a if limit_a is None else min(limit_a, physical_max_a)
            value = round(amps if unit == "A" else amps * self.voltage_v * self.phases, 1)
            if value != last:
                periods.append({"start_period": int((at - start).total_seconds()), "limit": value})
                last = value
        return periods[:max_periods]
