"""What 2.0.1 chargers tell smart charging, over the real ASGI application: the profiles they hold
(ReportChargingProfiles), limits set by others (NotifyChargingLimit / ClearedChargingLimit) and the car's
needs (NotifyEVChargingNeeds). Each answer is checked against the OCPP schema by the test settings."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest
from channels.db import database_sync_to_async

from apps.smartcharging import services
from apps.smartcharging.models import EvChargingNeeds, ExternalChargingLimit, ReportedChargingProfile, Site
from tests.factories import LocationFactory
from tests.ocpp_gateway.conftest import Charger, connect

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

BOOT = {"chargingStation": {"model": "M2", "vendorName": "ACME"}, "reason": "PowerUp"}


async def v201() -> tuple[object, Charger]:
    comm, connected, subprotocol = await connect(subprotocols=["ocpp2.0.1"])
    assert connected and subprotocol == "ocpp2.0.1"
    charger = Charger(comm)
    assert (await charger.call("BootNotification", BOOT))[2]["status"] == "Accepted"
    return comm, charger


def _profile(profile_id: int, purpose: str = "TxDefaultProfile", limit: float = 16) -> dict:
    return {
        "id": profile_id,
        "stackLevel": 2,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Absolute",
        "chargingSchedule": [
            {
                "id": profile_id,
                "startSchedule": "2026-11-20T10:00:00Z",
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
            }
        ],
    }


@pytest.fixture
def dispatched(monkeypatch):
    """Site rebalances queued (after commit), instead of Celery."""
    queued: list[int] = []
    monkeypatch.setattr(services, "site_rebalance_dispatch", lambda *, site_id: queued.append(site_id))
    return queued


def _site_for(charge_point) -> Site:
    location = LocationFactory(organisation=charge_point.organisation)
    charge_point.location = location
    charge_point.save(update_fields=["location"])
    return Site.objects.create(
        organisation=charge_point.organisation, location=location, max_current_a=D("64")
    )


async def test_reported_profiles_are_kept_and_a_new_request_replaces_them(charge_point):
    comm, charger = await v201()
    report = {"requestId": 1, "chargingLimitSource": "CSO", "evseId": 1, "tbc": True}
    answer = await charger.call("ReportChargingProfiles", {**report, "chargingProfile": [_profile(1)]})
    assert answer[0] == 3 and answer[2] == {}
    await charger.call(
        "ReportChargingProfiles",
        {**report, "tbc": False, "chargingProfile": [_profile(2, "TxProfile", 10)]},
    )
    rows = await database_sync_to_async(
        lambda: list(
            ReportedChargingProfile.objects.order_by("profile_id").values_list(
                "charge_point__identity",
                "evse_id",
                "profile_id",
                "request_id",
                "source",
                "purpose",
                "stack_level",
            )
        )
    )()
    assert rows == [
        ("CP-1", 1, 1, 1, "CSO", "TxDefaultProfile", 2),
        ("CP-1", 1, 2, 1, "CSO", "TxProfile", 2),
    ]
    stored = await database_sync_to_async(lambda: ReportedChargingProfile.objects.get(profile_id=2).profile)()
    # Kept as the charger sent it (camelCase).
    assert stored["chargingSchedule"][0]["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 10}]
    # A later request replaces what the earlier one reported for that EVSE.
    await charger.call(
        "ReportChargingProfiles", {**report, "requestId": 2, "tbc": False, "chargingProfile": [_profile(3)]}
    )
    ids = await database_sync_to_async(
        lambda: list(ReportedChargingProfile.objects.values_list("profile_id", "request_id"))
    )()
    assert ids == [(3, 2)]
    await comm.disconnect()


async def test_an_external_limit_is_kept_until_cleared_and_rebalances_the_site(charge_point, dispatched):
    site = await database_sync_to_async(_site_for)(charge_point)
    comm, charger = await v201()
    notify = {
        "evseId": 1,
        "chargingLimit": {"chargingLimitSource": "EMS", "isGridCritical": True},
        "chargingSchedule": [
            {
                "id": 1,
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": 11040, "numberPhases": 3},
                    {"startPeriod": 3600, "limit": 6900, "numberPhases": 3},
                ],
            }
        ],
    }
    answer = await charger.call("NotifyChargingLimit", notify)
    assert answer[0] == 3 and answer[2] == {}
    row = await database_sync_to_async(ExternalChargingLimit.objects.get)()
    # The lowest the schedule reaches: 6900 W on 3 phases at 230 V = 10 A per phase.
    assert (row.evse_id, row.source, row.limit, row.unit, row.limit_a, row.is_grid_critical) == (
        1,
        "EMS",
        D("6900.0"),
        "W",
        D("10.0"),
        True,
    )
    assert dispatched == [site.pk]
    # The same again changes nothing (no second rebalance).
    await charger.call("NotifyChargingLimit", notify)
    assert dispatched == [site.pk]
    # Cleared by another source: nothing; by its own: gone, and the site is rebalanced.
    assert (await charger.call("ClearedChargingLimit", {"chargingLimitSource": "SO", "evseId": 1}))[2] == {}
    assert await database_sync_to_async(ExternalChargingLimit.objects.count)() == 1
    assert dispatched == [site.pk]
    assert (await charger.call("ClearedChargingLimit", {"chargingLimitSource": "EMS"}))[2] == {}
    assert await database_sync_to_async(ExternalChargingLimit.objects.count)() == 0
    assert dispatched == [site.pk, site.pk]
    await comm.disconnect()


async def test_the_cars_needs_are_accepted_kept_and_rebalance_the_site(charge_point, dispatched):
    site = await database_sync_to_async(_site_for)(charge_point)
    comm, charger = await v201()
    answer = await charger.call(
        "NotifyEVChargingNeeds",
        {
            "evseId": 1,
            "chargingNeeds": {
                "requestedEnergyTransfer": "AC_three_phase",
                "departureTime": "2026-11-20T18:00:00Z",
                "acChargingParameters": {
                    "energyAmount": 30000,
                    "evMinCurrent": 8,
                    "evMaxCurrent": 16,
                    "evMaxVoltage": 400,
                },
            },
        },
    )
    assert answer[0] == 3 and answer[2] == {"status": "Accepted"}
    needs = await database_sync_to_async(EvChargingNeeds.objects.get)()
    assert (
        needs.evse_id,
        needs.energy_transfer,
        needs.energy_amount_wh,
        needs.departure_at,
        needs.ev_min_current_a,
        needs.ev_max_current_a,
    ) == (1, "AC_three_phase", 30000, datetime(2026, 11, 20, 18, tzinfo=UTC), 8, 16)
    assert needs.needs["acChargingParameters"]["evMaxVoltage"] == 400
    assert dispatched == [site.pk]
    await comm.disconnect()


async def test_a_charging_limit_without_its_required_source_is_refused(charge_point):
    comm, charger = await v201()
    answer = await charger.call("NotifyChargingLimit", {"chargingLimit": {"isGridCritical": True}})
    assert answer[0] == 4 and answer[2] == "OccurrenceConstraintViolation"
    assert await database_sync_to_async(ExternalChargingLimit.objects.count)() == 0
    await comm.disconnect()
