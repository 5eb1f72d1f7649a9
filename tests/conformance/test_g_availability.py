"""OCPP 2.0.1 Core, CSMS test cases G (Availability): ChangeAvailability of the station, an EVSE or a
connector, with and without a transaction, and connector lock failures (part 6, section 3.8)."""

from __future__ import annotations

import pytest

from apps.charging.choices import SessionStatus
from apps.charging.models import ChargingSession
from apps.stations.models import ChargerEvent, Connector
from tests.conformance.station import (
    Tx,
    energy_transfer_started,
    ev_connected_post_session,
    ev_disconnected,
    operate,
    stop_authorized,
)
from tests.e2e.conftest import orm

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


def _statuses(identity: str) -> list[tuple[int, str]]:
    return list(
        Connector.objects.filter(evse__charge_point__identity=identity)
        .order_by("evse__evse_id")
        .values_list("evse__evse_id", "status")
    )


async def _change(station, payload: dict, status: str = "Accepted") -> None:
    request, _ = await operate(station, "ChangeAvailability", payload, {"status": status})
    assert request == payload


async def _unavailable_evse(station) -> None:
    """Reusable State Unavailable for EVSE 1."""
    await _change(station, {"operationalStatus": "Inoperative", "evse": {"id": 1}})
    await station.connector_status("Unavailable", evse_id=1)


async def test_TC_G_03_CSMS(station, octt):
    """Change Availability EVSE - Operative to inoperative."""
    await _unavailable_evse(station)
    assert await orm(_statuses)(octt.identity) == [(1, "Unavailable"), (2, "Available")]


async def test_TC_G_04_CSMS(station, octt):
    """Change Availability EVSE - Inoperative to operative."""
    await _unavailable_evse(station)
    await _change(station, {"operationalStatus": "Operative", "evse": {"id": 1}})
    await station.connector_status("Available", evse_id=1)
    await station.notify_event("EVSE", "AvailabilityState", "Available", evse={"id": 1})
    assert await orm(_statuses)(octt.identity) == [(1, "Available"), (2, "Available")]


async def test_TC_G_05_CSMS(station, octt):
    """Change Availability Charging Station - Operative to inoperative."""
    await _change(station, {"operationalStatus": "Inoperative"})
    for evse_id in (1, 2):
        await station.connector_status("Unavailable", evse_id=evse_id)
    assert await orm(_statuses)(octt.identity) == [(1, "Unavailable"), (2, "Unavailable")]


async def test_TC_G_06_CSMS(station, octt):
    """Change Availability Charging Station - Inoperative to operative."""
    await _change(station, {"operationalStatus": "Inoperative"})
    for evse_id in (1, 2):
        await station.connector_status("Unavailable", evse_id=evse_id)
    await _change(station, {"operationalStatus": "Operative"})
    for evse_id in (1, 2):
        await station.connector_status("Available", evse_id=evse_id)
    assert await orm(_statuses)(octt.identity) == [(1, "Available"), (2, "Available")]


async def test_TC_G_07_CSMS(station, octt):
    """Change Availability Connector - Operative to inoperative."""
    await _change(station, {"operationalStatus": "Inoperative", "evse": {"id": 1, "connectorId": 1}})
    await station.connector_status("Unavailable", evse_id=1)
    assert await orm(_statuses)(octt.identity) == [(1, "Unavailable"), (2, "Available")]


async def test_TC_G_08_CSMS(station, octt):
    """Change Availability Connector - Inoperative to operative."""
    await _change(station, {"operationalStatus": "Inoperative", "evse": {"id": 1, "connectorId": 1}})
    await station.connector_status("Unavailable", evse_id=1)
    await _change(station, {"operationalStatus": "Operative", "evse": {"id": 1, "connectorId": 1}})
    await station.connector_status("Available", evse_id=1)
    assert await orm(_statuses)(octt.identity) == [(1, "Available"), (2, "Available")]


async def _scheduled_then_ended(station, octt, payload: dict, *, unoccupied_first: bool = False) -> Tx:
    """A transaction runs on EVSE 1; the change is Scheduled; the transaction ends normally and EVSE 1
    turns Unavailable afterwards."""
    tx = Tx(station)
    await energy_transfer_started(tx, octt.valid)
    await _change(station, payload, "Scheduled")
    if unoccupied_first:
        await station.connector_status("Unavailable", evse_id=2)
    await stop_authorized(tx, octt.valid)
    await ev_connected_post_session(tx)
    await ev_disconnected(tx)
    await station.connector_status("Unavailable", evse_id=1)
    session = await orm(ChargingSession.objects.get)(transaction_ref=tx.transaction_id)
    assert (session.status, session.stop_reason) == (SessionStatus.COMPLETED, "EVDisconnected")
    return tx


async def test_TC_G_11_CSMS(station, octt):
    """Change Availability EVSE - With ongoing transaction: Scheduled until the transaction ends."""
    await _scheduled_then_ended(station, octt, {"operationalStatus": "Inoperative", "evse": {"id": 1}})
    assert await orm(_statuses)(octt.identity) == [(1, "Unavailable"), (2, "Available")]


async def test_TC_G_14_CSMS(station, octt):
    """Change Availability Charging Station - With ongoing transaction: unoccupied connectors at once,
    the charging one after its transaction."""
    await _scheduled_then_ended(station, octt, {"operationalStatus": "Inoperative"}, unoccupied_first=True)
    assert await orm(_statuses)(octt.identity) == [(1, "Unavailable"), (2, "Unavailable")]


async def test_TC_G_17_CSMS(station, octt):
    """Change Availability Connector - With ongoing transaction."""
    await _scheduled_then_ended(
        station, octt, {"operationalStatus": "Inoperative", "evse": {"id": 1, "connectorId": 1}}
    )
    assert await orm(_statuses)(octt.identity) == [(1, "Unavailable"), (2, "Available")]


async def test_TC_G_20_CSMS(station, octt):
    """Connector status Notification - Lock Failure: the event is kept for operators."""
    assert (
        await station.notify_event(
            "ConnectorPlugRetentionLock", "Problem", "true", evse={"id": 1, "connectorId": 1}
        )
        == {}
    )
    events = await orm(
        lambda: list(
            ChargerEvent.objects.filter(component="ConnectorPlugRetentionLock").values_list(
                "trigger", "variable", "actual_value"
            )
        )
    )()
    assert events == [("Delta", "Problem", "true")]
