"""cpo.runtime.tune_gc: the collector settings of the product's long-running processes."""

from __future__ import annotations

import gc

import pytest

from cpo.runtime import DEFAULT_GC_THRESHOLDS, tune_gc


@pytest.fixture
def restored_gc():
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_tune_gc_freezes_start_up_objects_and_collects_the_old_generation_rarely(restored_gc, monkeypatch):
    monkeypatch.delenv("CPO_GC_THRESHOLDS", raising=False)
    assert tune_gc() == tuple(int(n) for n in DEFAULT_GC_THRESHOLDS.split(","))
    assert gc.get_threshold() == (2000, 10, 5000)
    assert gc.get_freeze_count() > 0


def test_tune_gc_follows_the_setting_and_an_empty_one_keeps_pythons_defaults(restored_gc, monkeypatch):
    monkeypatch.setenv("CPO_GC_THRESHOLDS", "1000,5,5")
    assert tune_gc() == (1000, 5, 5) and gc.get_threshold() == (1000, 5, 5)
    gc.set_threshold(700, 10, 10)
    monkeypatch.setenv("CPO_GC_THRESHOLDS", "")
    assert tune_gc() is None and gc.get_threshold() == (700, 10, 10)


def test_redis_lib_version_is_looked_up_once(monkeypatch):
    import redis.utils
    from redis.driver_info import DriverInfo

    from cpo.runtime import cache_redis_lib_version

    calls = []

    def lookup():
        calls.append(1)
        return "1.2.3"

    monkeypatch.setattr(redis.utils, "get_lib_version", lookup)
    cache_redis_lib_version()
    cache_redis_lib_version()  # idempotent: not cached twice
    assert [DriverInfo().lib_version for _ in range(3)] == ["1.2.3"] * 3
    assert calls == [1]


@pytest.fixture
def restored_switch_interval():
    import sys

    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_switch_interval_is_one_millisecond_unless_set(restored_switch_interval, monkeypatch):
    from cpo.runtime import tune_switch_interval

    monkeypatch.delenv("CPO_SWITCH_INTERVAL_MS", raising=False)
    assert tune_switch_interval() == pytest.approx(0.001)
    monkeypatch.setenv("CPO_SWITCH_INTERVAL_MS", "5")
    assert tune_switch_interval() == pytest.approx(0.005)
    for wrong in ("0", "-1", "1000"):
        monkeypatch.setenv("CPO_SWITCH_INTERVAL_MS", wrong)
        with pytest.raises(ValueError, match="CPO_SWITCH_INTERVAL_MS"):
            tune_switch_interval()
