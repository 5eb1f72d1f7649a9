"""How a site's power budget is shared among its charging sessions. Pure: no ORM, no clock, no I/O.

`allocate` takes the site's budget (amperes per phase) and what each connector needs, and returns one
limit per connector:

- no phase ever carries more than the budget (fixed draws included: an offline charger counted at its
  last limit, a charger that refused our profile at its maximum);
- every admitted session gets at least its minimum (6 A); when the minimums do not all fit, the sessions
  are admitted by priority (higher first), then by age (older first), and the rest are paused (0 A);
- what is left is shared fairly: equal increments (water-filling) up to what each connector may take
  (its own limit, or what the car actually draws when it takes less than it was given), then what one
  does not take goes to the others;
- the result depends only on the input (not on its order): nothing changed, nothing is sent.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

PHASES = (1, 2, 3)
DEFAULT_MINIMUM_A = 6.0
# Limits are sent in tenths of an ampere, always rounded down (never over the budget).
RESOLUTION = 10
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Demand:
    """One connector at the site. `phases`: the grid phases it draws on (a 1-phase car on phase 1);
    `max_a`: the most it may take per phase (connector and charger limits); `want_a`: what it would take
    (None: its maximum; less when the car draws less than it was given); `min_a`: the least worth sending
    (below it the car is paused at 0 A); `priority`: higher is admitted first; `order`: among equal
    priorities, lower (older) first; `fixed_a`: not ours to set (offline at its last limit, or a charger
    that refused our profile, at its maximum): it is counted and returned unchanged."""

    key: Hashable
    phases: tuple[int, ...] = PHASES
    max_a: float = 32.0
    min_a: float = DEFAULT_MINIMUM_A
    want_a: float | None = None
    priority: int = 0
    order: int = 0
    fixed_a: float | None = None

    def ceiling(self) -> float:
        want = self.max_a if self.want_a is None else min(self.max_a, self.want_a)
        return max(want, min(self.min_a, self.max_a))


def _floor(value: float) -> float:
    return math.floor(value * RESOLUTION + _EPSILON) / RESOLUTION if value > 0 else 0.0


def allocate(*, budget_a: float, phases: int, demands: Sequence[Demand]) -> dict[Hashable, float]:
    """Per-connector limits (amperes per phase) for a site of `phases` phases with `budget_a` per phase.
    Demands on a phase the site does not have get 0 A (unless fixed)."""
    capacity = {p: (max(budget_a, 0.0) if p <= phases else 0.0) for p in PHASES}
    limits: dict[Hashable, float] = {}
    for demand in demands:
        if demand.fixed_a is not None:
            limits[demand.key] = demand.fixed_a
            for p in demand.phases:
                capacity[p] -= demand.fixed_a
    adjustable = sorted(
        (d for d in demands if d.fixed_a is None), key=lambda d: (-d.priority, d.order, repr(d.key))
    )
    # Admission: minimums first, in priority and age order; what does not fit is paused.
    current: dict[Hashable, float] = {}
    for demand in adjustable:
        minimum = min(demand.min_a, demand.max_a)
        fits = demand.phases and all(capacity[p] - minimum >= -_EPSILON for p in demand.phases)
        if fits:
            current[demand.key] = minimum
            for p in demand.phases:
                capacity[p] -= minimum
        else:
            limits[demand.key] = 0.0
    # Water-filling: raise every unsaturated demand by the same step until it reaches its ceiling or one
    # of its phases is full; what a saturated one does not take stays for the others.
    active = [d for d in adjustable if d.key in current]
    while active:
        per_phase = {p: sum(1 for d in active if p in d.phases) for p in PHASES}
        step = min(
            [capacity[p] / n for p, n in per_phase.items() if n]
            + [d.ceiling() - current[d.key] for d in active]
        )
        step = max(step, 0.0)
        for d in active:
            current[d.key] += step
            for p in d.phases:
                capacity[p] -= step
        full = {p for p in PHASES if capacity[p] <= _EPSILON}
        active = [d for d in active if d.ceiling() - current[d.key] > _EPSILON and not (set(d.phases) & full)]
    for key, value in current.items():
        limits[key] = _floor(value)
    return limits
