"""Property-based tests of the pure allocation (apps/smartcharging/allocation.py): no database."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from apps.smartcharging.allocation import Demand, allocate

PHASE_SETS = [(1,), (2,), (3,), (1, 2, 3)]


@st.composite
def demands(draw) -> list[Demand]:
    count = draw(st.integers(min_value=0, max_value=12))
    result = []
    for index in range(count):
        max_a = draw(st.sampled_from([6.0, 10.0, 16.0, 20.0, 32.0, 63.0]))
        fixed = draw(st.one_of(st.none(), st.sampled_from([0.0, 6.0, 10.0, 16.0])))
        want = draw(st.one_of(st.none(), st.floats(min_value=0, max_value=63, allow_nan=False)))
        result.append(
            Demand(
                key=("cp", index),
                phases=draw(st.sampled_from(PHASE_SETS)),
                max_a=max_a,
                want_a=want,
                priority=draw(st.integers(min_value=0, max_value=2)),
                order=draw(st.integers(min_value=0, max_value=5)),
                fixed_a=fixed if draw(st.integers(0, 4)) == 0 else None,
            )
        )
    return result


budgets = st.floats(min_value=0, max_value=250, allow_nan=False)
site_phases = st.sampled_from([1, 3])


def _load(limits, items, phase):
    return sum(limits[d.key] for d in items if phase in d.phases)


@settings(max_examples=300, deadline=None)
@given(budget=budgets, phases=site_phases, items=demands())
def test_no_phase_over_the_budget_and_every_connector_within_its_limits(budget, phases, items):
    limits = allocate(budget_a=budget, phases=phases, demands=items)
    assert set(limits) == {d.key for d in items}
    fixed = {p: _load(limits, [d for d in items if d.fixed_a is not None], p) for p in (1, 2, 3)}
    for p in (1, 2, 3):
        site = budget if p <= phases else 0.0
        # Fixed draws may already exceed the budget (they are not ours to set); ours never add to that.
        adjustable = _load(limits, [d for d in items if d.fixed_a is None], p)
        assert adjustable <= max(site - fixed[p], 0.0) + 1e-6
    for d in items:
        if d.fixed_a is not None:
            assert limits[d.key] == d.fixed_a
        else:
            assert limits[d.key] == 0.0 or min(d.min_a, d.max_a) <= limits[d.key] <= d.max_a


@settings(max_examples=300, deadline=None)
@given(budget=budgets, phases=site_phases, items=demands())
def test_every_minimum_when_the_minimums_fit(budget, phases, items):
    ours = [d for d in items if d.fixed_a is None]
    free = {
        p: (budget if p <= phases else 0.0)
        - sum(d.fixed_a for d in items if d.fixed_a is not None and p in d.phases)
        for p in (1, 2, 3)
    }
    feasible = all(sum(min(d.min_a, d.max_a) for d in ours if p in d.phases) <= free[p] for p in (1, 2, 3))
    limits = allocate(budget_a=budget, phases=phases, demands=items)
    if feasible:
        assert all(limits[d.key] >= min(d.min_a, d.max_a) for d in ours)


@settings(max_examples=300, deadline=None)
@given(budget=budgets, phases=site_phases, items=demands())
def test_no_starvation_a_paused_session_could_not_have_had_its_minimum(budget, phases, items):
    """A session is paused only when its minimum does not fit next to the minimums of those admitted
    before it (higher priority, then older): no paused car while others get more than it would need."""
    limits = allocate(budget_a=budget, phases=phases, demands=items)
    ours = sorted((d for d in items if d.fixed_a is None), key=lambda d: (-d.priority, d.order, repr(d.key)))
    free = {
        p: (budget if p <= phases else 0.0)
        - sum(d.fixed_a for d in items if d.fixed_a is not None and p in d.phases)
        for p in (1, 2, 3)
    }
    for d in ours:
        minimum = min(d.min_a, d.max_a)
        if limits[d.key] == 0.0 and minimum > 0:
            assert any(free[p] - minimum < -1e-9 for p in d.phases)
        else:
            for p in d.phases:
                free[p] -= minimum


@settings(max_examples=200, deadline=None)
@given(budget=budgets, phases=site_phases, items=demands(), seed=st.integers(0, 1000))
def test_stable_when_nothing_changed_whatever_the_order(budget, phases, items, seed):
    first = allocate(budget_a=budget, phases=phases, demands=items)
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    assert allocate(budget_a=budget, phases=phases, demands=shuffled) == first
    assert allocate(budget_a=budget, phases=phases, demands=items) == first


@settings(max_examples=200, deadline=None)
@given(budget=st.floats(min_value=0, max_value=200, allow_nan=False), count=st.integers(1, 8))
def test_equal_connectors_get_equal_shares(budget, count):
    items = [Demand(key=i, max_a=32.0) for i in range(count)]
    limits = allocate(budget_a=budget, phases=3, demands=items)
    admitted = sorted({v for v in limits.values() if v > 0})
    assert len(admitted) <= 1


def test_a_64_a_site_with_four_32_a_charge_points_gives_16_a_each():
    items = [Demand(key=i, max_a=32.0, order=i) for i in range(4)]
    assert allocate(budget_a=64, phases=3, demands=items) == {0: 16.0, 1: 16.0, 2: 16.0, 3: 16.0}
    # One stops: the rest share its part.
    assert allocate(budget_a=64, phases=3, demands=items[:3]) == {0: 21.3, 1: 21.3, 2: 21.3}
    # A 20% cut: 51.2 A.
    assert allocate(budget_a=51.2, phases=3, demands=items) == {0: 12.8, 1: 12.8, 2: 12.8, 3: 12.8}


def test_what_a_car_does_not_take_goes_to_the_others():
    items = [Demand(key="slow", max_a=32.0, want_a=8.0), Demand(key="a"), Demand(key="b")]
    assert allocate(budget_a=64, phases=3, demands=items) == {"slow": 8.0, "a": 28.0, "b": 28.0}


def test_when_the_minimums_do_not_fit_the_newest_lowest_priority_is_paused():
    items = [
        Demand(key="old", order=0),
        Demand(key="new", order=2),
        Demand(key="vip", order=3, priority=1),
    ]
    assert allocate(budget_a=13, phases=3, demands=items) == {"vip": 6.5, "old": 6.5, "new": 0.0}


def test_offline_and_refusing_chargers_count_at_their_fixed_limit():
    items = [Demand(key="offline", fixed_a=20.0), Demand(key="a"), Demand(key="b")]
    assert allocate(budget_a=64, phases=3, demands=items) == {"offline": 20.0, "a": 22.0, "b": 22.0}


def test_single_phase_cars_share_only_their_phase():
    items = [Demand(key="l1a", phases=(1,)), Demand(key="l1b", phases=(1,)), Demand(key="three")]
    assert allocate(budget_a=32, phases=3, demands=items) == {"l1a": 10.6, "l1b": 10.6, "three": 10.6}
