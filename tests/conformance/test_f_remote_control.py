"""OCPP 2.0.1 Core, CSMS test cases F (Remote Control): remote start, unlock, trigger messages
(part 6, section 3.7)."""

from __future__ import annotations

import pytest

from apps.charging.choices import SessionStatus
from apps.charging.models import ChargingSession, MeterSample
from apps.stations.models import ChargePoint, ChargerEvent, Connector
from tests.conformance.station import (
    Tx,
    assert_token_status,
    energy_transfer_started,
    ev_connected_pre_session,
    now_iso,
    operate,
)
from tests.e2e.conftest import orm

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

REMOTE_START_ID = 4711


def _session(identity: str, transaction_id: str) -> ChargingSession:
    return ChargingSession.objects.get(charge_point__identity=identity, transaction_ref=transaction_id)


async def _remote_start(station, octt, answer: dict) -> dict:
    """The operator starts a transaction for valid_idtoken on EVSE 1; the station answers `answer`."""
    request, _ = await operate(
        station,
        "RequestStartTransaction",
        {"idToken": octt.valid.wire(), "remoteStartId": REMOTE_START_ID, "evseId": 1},
        answer,
    )
    assert request["idToken"] == octt.valid.wire()
    assert request["remoteStartId"] == REMOTE_START_ID
    return request


async def _linked(identity: str, tx: Tx) -> tuple[str, str, int | None, str]:
    """(status, id tag, remote start id, charging state) of the transaction's session."""
    session = await orm(_session)(identity, tx.transaction_id)
    return session.status, session.id_tag, session.remote_start_id, session.charging_state


async def test_TC_F_01_CSMS(station, octt):
    """Remote start transaction - Cable plugin first: the running transaction gets the remote start."""
    tx = Tx(station)
    await ev_connected_pre_session(tx)
    await _remote_start(station, octt, {"status": "Accepted", "transactionId": tx.transaction_id})
    answer = await tx.event("Updated", "RemoteStart", token=octt.valid, remote_start_id=REMOTE_START_ID)
    assert_token_status(answer, "Accepted")
    tx.authorized = True
    await energy_transfer_started(tx, octt.valid)
    assert await _linked(octt.identity, tx) == (
        SessionStatus.ACTIVE,
        octt.valid.id_token,
        REMOTE_START_ID,
        "Charging",
    )


async def test_TC_F_02_CSMS(station, octt):
    """Remote start transaction - Remote start first - AuthorizeRemoteStart is true: the station
    authorises the token first."""
    await _remote_start(station, octt, {"status": "Accepted"})
    assert_token_status(await station.result("Authorize", {"idToken": octt.valid.wire()}), "Accepted")
    tx = Tx(station)
    answer = await tx.event("Started", "RemoteStart", token=octt.valid, remote_start_id=REMOTE_START_ID)
    assert_token_status(answer, "Accepted")
    tx.authorized = True
    await energy_transfer_started(tx, octt.valid)
    assert await _linked(octt.identity, tx) == (
        SessionStatus.ACTIVE,
        octt.valid.id_token,
        REMOTE_START_ID,
        "Charging",
    )


async def test_TC_F_03_CSMS(station, octt):
    """Remote start transaction - Remote start first - AuthorizeRemoteStart is false."""
    await _remote_start(station, octt, {"status": "Accepted"})
    tx = Tx(station)
    answer = await tx.event("Started", "RemoteStart", token=octt.valid, remote_start_id=REMOTE_START_ID)
    assert_token_status(answer, "Accepted")
    tx.authorized = True
    await energy_transfer_started(tx, octt.valid)
    assert await _linked(octt.identity, tx) == (
        SessionStatus.ACTIVE,
        octt.valid.id_token,
        REMOTE_START_ID,
        "Charging",
    )


async def test_TC_F_04_CSMS(station, octt):
    """Remote start transaction - Remote start first - Cable plugin timeout."""
    await _remote_start(station, octt, {"status": "Accepted"})
    tx = Tx(station)
    answer = await tx.event("Started", "RemoteStart", token=octt.valid, remote_start_id=REMOTE_START_ID)
    assert_token_status(answer, "Accepted")
    assert await tx.event("Updated", "EVConnectTimeout") == {}
    assert await _linked(octt.identity, tx) == (
        SessionStatus.ACTIVE,
        octt.valid.id_token,
        REMOTE_START_ID,
        "",
    )


async def test_TC_F_06_CSMS(station):
    """Remote unlock Connector - Without ongoing transaction - Accepted."""
    request, _ = await operate(
        station, "UnlockConnector", {"evseId": 1, "connectorId": 1}, {"status": "Unlocked"}
    )
    assert request == {"evseId": 1, "connectorId": 1}


def _samples(identity: str, context: str) -> list[tuple[int, str, object, int | None]]:
    return list(
        MeterSample.objects.filter(charge_point__identity=identity, context=context)
        .order_by("evse_id")
        .values_list("evse_id", "measurand", "value", "session_id")
    )


def _energy(value: int) -> list[dict]:
    return [
        {
            "timestamp": now_iso(),
            "sampledValue": [
                {"value": value, "context": "Trigger", "measurand": "Energy.Active.Import.Register"}
            ],
        }
    ]


async def test_TC_F_11_CSMS(station, octt):
    """Trigger message - MeterValues - Specific EVSE."""
    request, _ = await operate(
        station,
        "TriggerMessage",
        {"requestedMessage": "MeterValues", "evse": {"id": 1}},
        {"status": "Accepted"},
    )
    assert request == {"requestedMessage": "MeterValues", "evse": {"id": 1}}
    assert await station.result("MeterValues", {"evseId": 1, "meterValue": _energy(5_000)}) == {}
    assert await orm(_samples)(octt.identity, "Trigger") == [
        (1, "Energy.Active.Import.Register", 5_000, None)
    ]


async def test_TC_F_12_CSMS(station, octt):
    """Trigger message - MeterValues - All EVSE: one MeterValuesRequest per EVSE (the 2.0.1 schema
    requires evseId in every MeterValuesRequest)."""
    request, _ = await operate(
        station, "TriggerMessage", {"requestedMessage": "MeterValues"}, {"status": "Accepted"}
    )
    assert request == {"requestedMessage": "MeterValues"}
    for evse_id in (1, 2):
        assert (
            await station.result("MeterValues", {"evseId": evse_id, "meterValue": _energy(1_000 * evse_id)})
            == {}
        )
    assert await orm(_samples)(octt.identity, "Trigger") == [
        (1, "Energy.Active.Import.Register", 1_000, None),
        (2, "Energy.Active.Import.Register", 2_000, None),
    ]


async def _triggered_transaction_event(station, octt, trigger: dict) -> None:
    tx = Tx(station)
    await energy_transfer_started(tx, octt.valid)
    request, _ = await operate(station, "TriggerMessage", trigger, {"status": "Accepted"})
    assert request == trigger
    tx.register_wh += 1_234
    await tx.event(
        "Updated",
        "Trigger",
        charging_state="Charging",
        meter_value=tx.meter("Trigger"),
        evse="evse" in trigger,
    )
    session = await orm(_session)(octt.identity, tx.transaction_id)
    assert await orm(_samples)(octt.identity, "Trigger") == [
        (1, "Energy.Active.Import.Register", 13_234, session.pk)
    ]


async def test_TC_F_13_CSMS(station, octt):
    """Trigger message - TransactionEvent - Specific EVSE: the triggered event's meter value lands in the
    transaction's session."""
    await _triggered_transaction_event(
        station, octt, {"requestedMessage": "TransactionEvent", "evse": {"id": 1}}
    )


async def test_TC_F_14_CSMS(station, octt):
    """Trigger message - TransactionEvent - All EVSE (evse omitted in the triggered event)."""
    await _triggered_transaction_event(station, octt, {"requestedMessage": "TransactionEvent"})


async def test_TC_F_15_CSMS(station, octt):
    """Trigger message - LogStatusNotification - Idle."""
    request, _ = await operate(
        station, "TriggerMessage", {"requestedMessage": "LogStatusNotification"}, {"status": "Accepted"}
    )
    assert request == {"requestedMessage": "LogStatusNotification"}
    assert await station.result("LogStatusNotification", {"status": "Idle"}) == {}
    cp = await orm(ChargePoint.objects.get)(identity=octt.identity)
    assert cp.diagnostics_status == "Idle"


async def test_TC_F_18_CSMS(station, octt):
    """Trigger message - FirmwareStatusNotification - Idle."""
    request, _ = await operate(
        station, "TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"}, {"status": "Accepted"}
    )
    assert request == {"requestedMessage": "FirmwareStatusNotification"}
    await station.firmware_status("Idle")
    cp = await orm(ChargePoint.objects.get)(identity=octt.identity)
    assert cp.firmware_status == "Idle"


async def test_TC_F_20_CSMS(station):
    """Trigger message - Heartbeat."""
    request, _ = await operate(
        station, "TriggerMessage", {"requestedMessage": "Heartbeat"}, {"status": "Accepted"}
    )
    assert request == {"requestedMessage": "Heartbeat"}
    answer = await station.result("Heartbeat", {})
    assert set(answer) == {"currentTime"}


def _connector_status(identity: str, evse_id: int) -> str:
    return Connector.objects.get(
        evse__charge_point__identity=identity, evse__evse_id=evse_id, connector_id=1
    ).status


async def test_TC_F_23_CSMS(station, octt):
    """Trigger message - StatusNotification - Specific EVSE - Available."""
    trigger = {"requestedMessage": "StatusNotification", "evse": {"id": 1, "connectorId": 1}}
    request, _ = await operate(station, "TriggerMessage", trigger, {"status": "Accepted"})
    assert request == trigger
    await station.connector_status("Available")
    assert await orm(_connector_status)(octt.identity, 1) == "Available"


async def test_TC_F_24_CSMS(station, octt):
    """Trigger message - StatusNotification - Specific EVSE - Occupied."""
    await station.connector_status("Occupied")
    trigger = {"requestedMessage": "StatusNotification", "evse": {"id": 1, "connectorId": 1}}
    request, _ = await operate(station, "TriggerMessage", trigger, {"status": "Accepted"})
    assert request == trigger
    await station.connector_status("Occupied")
    assert await orm(_connector_status)(octt.identity, 1) == "Occupied"
    events = await orm(lambda: ChargerEvent.objects.filter(actual_value="Occupied").count())()
    assert events == 2


async def test_TC_F_27_CSMS(station):
    """Trigger message - NotImplemented: the station's answer is reported as it is."""
    request, result = await operate(
        station, "TriggerMessage", {"requestedMessage": "SignV2GCertificate"}, {"status": "NotImplemented"}
    )
    assert request == {"requestedMessage": "SignV2GCertificate"}
    assert result["response"] == {"status": "NotImplemented"}
