"""The simulator's pure parts: configuration store, charging profiles, meter, back-off (no server)."""

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.conftest import assert_schema_valid
from tools.simulator.backoff import Backoff
from tools.simulator.configuration import ConfigurationStore, default_values
from tools.simulator.fleet import fleet_id_tags, fleet_identities
from tools.simulator.meter import Meter
from tools.simulator.smartcharging import Profile, ProfileStore

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def store() -> ConfigurationStore:
    return ConfigurationStore(
        default_values(
            connectors=2,
            heartbeat_interval_s=300,
            meter_interval_s=60,
            authorization_key="0123456789abcdef0123",
        )
    )


@pytest.mark.parametrize(
    ("key", "value", "status", "stored"),
    [
        ("HeartbeatInterval", " 120 ", "Accepted", "120"),
        ("HeartbeatInterval", "-1", "Rejected", "300"),
        ("HeartbeatInterval", "2 minutes", "Rejected", "300"),
        ("LocalPreAuthorize", "TRUE", "Accepted", "true"),
        ("LocalPreAuthorize", "yes", "Rejected", "false"),
        (
            "MeterValuesSampledData",
            "Energy.Active.Import.Register, Voltage",
            "Accepted",
            "Energy.Active.Import.Register,Voltage",
        ),
        (
            "MeterValuesSampledData",
            "Energy.Active.Import.Register,SoC",
            "Rejected",
            "Energy.Active.Import.Register,Power.Active.Import,Current.Import",
        ),
        ("NumberOfConnectors", "3", "Rejected", "2"),
        ("AuthorizationKey", "short", "Rejected", "0123456789abcdef0123"),
        ("AuthorizationKey", "fedcba9876543210fedcba98", "Accepted", "fedcba9876543210fedcba98"),
        ("AuthorizationKey", "with space 0123456789", "Rejected", "0123456789abcdef0123"),
    ],
)
def test_change_configuration_follows_the_specification(key, value, status, stored):
    config = store()
    assert config.change(key, value) == status
    assert config.get(key) == stored


def test_unknown_keys_are_not_supported_and_reported_as_unknown():
    config = store()
    assert config.change("Colour", "red") == "NotSupported"
    known, unknown = config.report(["HeartbeatInterval", "Colour", "AuthorizationKey"])
    assert known == [
        {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
        {"key": "AuthorizationKey", "readonly": False},
    ]
    assert unknown == ["Colour"]
    everything, none = config.report(None)
    assert none == [] and len(everything) == len(
        default_values(connectors=2, heartbeat_interval_s=1, meter_interval_s=1, authorization_key=None)
    )
    assert_schema_valid("GetConfiguration", {"configurationKey": everything})


def _profile(
    purpose: str,
    periods: list[tuple[int, float]],
    *,
    kind: str = "Relative",
    stack: int = 0,
    unit: str = "A",
    connector: int = 1,
    **schedule,
) -> Profile:
    return Profile.from_payload(
        {
            "charging_profile_id": stack * 10 + connector,
            "stack_level": stack,
            "charging_profile_purpose": purpose,
            "charging_profile_kind": kind,
            **{k: v for k, v in schedule.items() if k == "recurrency_kind"},
            "charging_schedule": {
                "charging_rate_unit": unit,
                **{k: v for k, v in schedule.items() if k != "recurrency_kind"},
                "charging_schedule_period": [{"start_period": s, "limit": lim} for s, lim in periods],
            },
        },
        connector_id=connector,
    )


def test_limits_follow_stack_levels_purposes_and_the_charge_point_maximum():
    profiles = ProfileStore(phases=3, voltage_v=230)
    assert profiles.limit_a(1, NOW, transaction_start=None) is None
    profiles.install(_profile("TxDefaultProfile", [(0, 20.0)], connector=0))
    profiles.install(_profile("TxDefaultProfile", [(0, 16.0), (600, 8.0)], stack=1))
    assert profiles.limit_a(1, NOW, transaction_start=NOW) == 16.0
    assert profiles.limit_a(1, NOW + timedelta(minutes=11), transaction_start=NOW) == 8.0
    assert profiles.limit_a(2, NOW, transaction_start=NOW) == 20.0  # connector 0's default applies
    profiles.install(_profile("TxProfile", [(0, 30.0)], stack=2))
    assert profiles.limit_a(1, NOW, transaction_start=NOW) == 30.0
    assert profiles.limit_a(1, NOW, transaction_start=None) == 16.0  # a TxProfile needs a transaction
    profiles.install(_profile("ChargePointMaxProfile", [(0, 6900.0)], unit="W", connector=0))
    assert profiles.limit_a(1, NOW, transaction_start=NOW) == pytest.approx(10.0)
    profiles.end_transaction(1)
    assert profiles.clear(purpose="ChargePointMaxProfile") == 1
    assert profiles.limit_a(1, NOW, transaction_start=NOW) == 16.0


def test_a_profile_with_the_same_stack_level_and_purpose_replaces_the_old_one():
    profiles = ProfileStore(phases=3, voltage_v=230)
    profiles.install(_profile("TxDefaultProfile", [(0, 16.0)], stack=1))
    profiles.install(replace(_profile("TxDefaultProfile", [(0, 12.0)], stack=1), profile_id=99))
    assert [(p.profile_id, p.periods[0].limit) for p in profiles.profiles] == [(99, 12.0)]
    profiles.install(replace(_profile("TxDefaultProfile", [(0, 10.0)], stack=2), profile_id=99))
    assert [(p.profile_id, p.stack_level) for p in profiles.profiles] == [(99, 2)]  # same id replaces too


def test_composite_schedule_of_an_absolute_and_a_daily_profile():
    profiles = ProfileStore(phases=3, voltage_v=230)
    profiles.install(
        _profile(
            "TxDefaultProfile",
            [(0, 32.0), (1800, 10.0)],
            kind="Absolute",
            start_schedule="2025-03-01T11:00:00Z",
            duration=7200,
        )
    )
    profiles.install(
        _profile(
            "ChargePointMaxProfile",
            [(0, 16.0), (3600, 32.0)],
            kind="Recurring",
            connector=0,
            recurrency_kind="Daily",
            start_schedule="2025-02-01T12:30:00Z",
        )
    )
    periods = profiles.composite(
        1, NOW, 7200, unit="A", physical_max_a=25.0, transaction_start=None, max_periods=24
    )
    # 12:00 the absolute profile gives 10 A (from 11:30), the daily cap 32 A until 12:30, then 16 A;
    # 13:00 the absolute profile ends (25 A physical), 13:30 the daily cap returns to 32 A.
    assert periods == [
        {"start_period": 0, "limit": 10.0},
        {"start_period": 3600, "limit": 16.0},
        {"start_period": 5400, "limit": 25.0},
    ]
    in_watts = profiles.composite(
        1, NOW, 600, unit="W", physical_max_a=25.0, transaction_start=None, max_periods=24
    )
    assert in_watts == [{"start_period": 0, "limit": 6900.0}]
    assert_schema_valid(
        "GetCompositeSchedule",
        {
            "status": "Accepted",
            "connectorId": 1,
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.3}],
            },
        },
    )


@pytest.mark.parametrize(
    "payload",
    [
        {"charging_schedule_period": [{"start_period": 60, "limit": 10}]},
        {"charging_schedule_period": []},
    ],
)
def test_unexecutable_profiles_are_refused(payload):
    with pytest.raises(ValueError):
        Profile.from_payload(
            {
                "charging_profile_id": 1,
                "stack_level": 0,
                "charging_profile_purpose": "TxProfile",
                "charging_profile_kind": "Relative",
                "charging_schedule": {"charging_rate_unit": "A", **payload},
            },
            connector_id=1,
        )
    with pytest.raises(ValueError, match="startSchedule"):
        _profile("TxDefaultProfile", [(0, 10.0)], kind="Absolute")


def test_meter_integrates_power_and_reports_per_phase_values():
    meter = Meter(energy_wh=1000.0, _at=0.0)
    meter.set_power(11_040.0, offered_a=16.0, now=0.0)
    meter.advance(now=1800.0)
    assert meter.register_wh == 1000 + 5520
    values = meter.sampled_values(
        ["Energy.Active.Import.Register", "Current.Import", "Voltage"], context="Sample.Periodic", now=1800.0
    )
    assert [(v["measurand"], v.get("phase", ""), v["unit"]) for v in values] == [
        ("Energy.Active.Import.Register", "", "Wh"),
        ("Current.Import", "L1", "A"),
        ("Current.Import", "L2", "A"),
        ("Current.Import", "L3", "A"),
        ("Voltage", "L1-N", "V"),
        ("Voltage", "L2-N", "V"),
        ("Voltage", "L3-N", "V"),
    ]
    assert values[1]["value"] == "16.00"
    assert_schema_valid(
        "MeterValues",
        {"connectorId": 1, "meterValue": [{"timestamp": "2025-03-01T12:00:00Z", "sampledValue": values}]},
        kind=2,
    )


def test_backoff_grows_randomly_up_to_the_maximum_and_resets():
    backoff = Backoff(base_s=1.0, maximum_s=8.0, rng=random.Random(7))
    waits = [backoff.next() for _ in range(6)]
    caps = [1, 2, 4, 8, 8, 8]
    assert all(cap / 2 <= wait <= cap for wait, cap in zip(waits, caps, strict=True))
    assert len(set(waits)) == len(waits)
    backoff.reset()
    assert 0.5 <= backoff.next() <= 1.0


def test_fleet_names():
    assert fleet_identities("SIM-", 3) == ["SIM-00001", "SIM-00002", "SIM-00003"]
    assert fleet_identities("X", 123456)[-1] == "X123456"
    assert fleet_id_tags("04A1", 42, 2) == ("04A100002A01", "04A100002A02")
