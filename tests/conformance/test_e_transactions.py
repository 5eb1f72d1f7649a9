"""OCPP 2.0.1 Core, CSMS test cases E (Transactions): start and stop points, cable on the EV side,
transaction status, sequence numbers (part 6, section 3.6)."""

from __future__ import annotations

import pytest

from apps.charging.choices import ReviewReason, SessionStatus
from apps.charging.models import ChargingSession, MeterSample
from tests.conformance.station import (
    Tx,
    assert_token_status,
    authorized,
    energy_transfer_started,
    energy_transfer_suspended,
    ev_connected_post_session,
    ev_connected_pre_session,
    ev_disconnected,
    operate,
    stop_authorized,
)
from tests.e2e.conftest import orm

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


def _session(identity: str, transaction_id: str) -> ChargingSession:
    return ChargingSession.objects.get(charge_point__identity=identity, transaction_ref=transaction_id)


async def _state(identity: str, tx: Tx) -> tuple[str, str, str, str]:
    """(status, id tag, charging state, stop reason) of the transaction's session."""
    session = await orm(_session)(identity, tx.transaction_id)
    return session.status, session.id_tag, session.charging_state, session.stop_reason


async def _local_start(
    station,
    tx: Tx,
    token,
    *,
    trigger_reason: str,
    charging_state: str | None = None,
    meter_value: list | None = None,
) -> None:
    """Authorize, the connector Occupied, then the TransactionEventRequest Started with the token."""
    assert_token_status(await station.result("Authorize", {"idToken": token.wire()}), "Accepted")
    await station.connector_status("Occupied", evse_id=tx.evse_id, connector_id=tx.connector_id)
    answer = await tx.event(
        "Started", trigger_reason, charging_state=charging_state, token=token, meter_value=meter_value
    )
    assert_token_status(answer, "Accepted")


async def test_TC_E_01_CSMS(station, octt):
    """Start transaction options - PowerPathClosed."""
    tx = Tx(station)
    await _local_start(
        station, tx, octt.valid, trigger_reason="ChargingStateChanged", charging_state="SuspendedEVSE"
    )
    await tx.event("Updated", "ChargingStateChanged", charging_state="Charging")
    assert await _state(octt.identity, tx) == (SessionStatus.ACTIVE, octt.valid.id_token, "Charging", "")


async def test_TC_E_02_CSMS(station, octt):
    """Start transaction options - EnergyTransfer."""
    tx = Tx(station)
    await _local_start(
        station, tx, octt.valid, trigger_reason="ChargingStateChanged", charging_state="Charging"
    )
    assert await _state(octt.identity, tx) == (SessionStatus.ACTIVE, octt.valid.id_token, "Charging", "")


async def test_TC_E_03_CSMS(station, octt):
    """Local start transaction - Cable plugin first - Success: the transaction starts on plug-in without a
    token and is authorised later."""
    tx = Tx(station)
    await ev_connected_pre_session(tx)
    session = await orm(_session)(octt.identity, tx.transaction_id)
    assert (session.id_tag, session.auth_status) == ("", "")
    await authorized(tx, octt.valid)
    await energy_transfer_started(tx, octt.valid)
    session = await orm(_session)(octt.identity, tx.transaction_id)
    assert (session.id_tag, session.auth_status, session.charging_state, session.meter_start_wh) == (
        octt.valid.id_token,
        "Accepted",
        "Charging",
        12_000,
    )


async def test_TC_E_04_CSMS(station, octt):
    """Local start transaction - Authorization first - Success."""
    tx = Tx(station)
    await authorized(tx, octt.valid)
    await energy_transfer_started(tx, octt.valid)
    session = await orm(_session)(octt.identity, tx.transaction_id)
    assert (session.id_tag, session.auth_status, session.charging_state, session.evse_id) == (
        octt.valid.id_token,
        "Accepted",
        "Charging",
        1,
    )


async def test_TC_E_39_CSMS(station, octt):
    """Stop transaction options - Deauthorized - timeout: no EV connected within EVConnectionTimeOut."""
    tx = Tx(station)
    await authorized(tx, octt.valid)
    await tx.event("Ended", "EVConnectTimeout", stopped_reason="Timeout")
    assert await _state(octt.identity, tx) == (SessionStatus.COMPLETED, octt.valid.id_token, "", "Timeout")


async def test_TC_E_14_CSMS(station, octt):
    """Stop transaction options - EVDisconnected - Charging Station side."""
    tx = Tx(station)
    await energy_transfer_started(tx, octt.valid)
    await stop_authorized(tx, octt.valid)
    await ev_connected_post_session(tx)
    await ev_disconnected(tx)
    assert await _state(octt.identity, tx) == (
        SessionStatus.COMPLETED,
        octt.valid.id_token,
        "Idle",
        "EVDisconnected",
    )


async def test_TC_E_20_CSMS(station, octt):
    """Stop transaction options - EVDisconnected - EV side (able to charge IEC 61851-1 EV)."""
    tx = Tx(station)
    await energy_transfer_started(tx, octt.valid)
    await energy_transfer_suspended(tx)
    await ev_disconnected(tx)
    assert await _state(octt.identity, tx) == (
        SessionStatus.COMPLETED,
        octt.valid.id_token,
        "Idle",
        "EVDisconnected",
    )


async def test_TC_E_15_CSMS(station, octt):
    """Stop transaction options - StopAuthorized - Local."""
    tx = Tx(station)
    await energy_transfer_started(tx, octt.valid)
    await tx.event("Ended", "StopAuthorized", stopped_reason="Local")
    session = await orm(_session)(octt.identity, tx.transaction_id)
    assert (session.status, session.stop_reason, session.energy_wh) == (
        SessionStatus.COMPLETED,
        "Local",
        7_500,
    )


async def test_TC_E_21_CSMS(station, octt):
    """Stop transaction options - StopAuthorized - Remote: RequestStopTransaction names the station's
    transactionId."""
    tx = Tx(station)
    await energy_transfer_started(tx, octt.valid)
    request, _ = await operate(
        station, "RequestStopTransaction", {"transactionId": tx.transaction_id}, {"status": "Accepted"}
    )
    assert request == {"transactionId": tx.transaction_id}
    await tx.event("Ended", "RemoteStop", stopped_reason="Remote")
    assert await _state(octt.identity, tx) == (
        SessionStatus.COMPLETED,
        octt.valid.id_token,
        "Charging",
        "Remote",
    )


async def test_TC_E_09_CSMS(station, octt):
    """Start transaction options - EVConnected."""
    tx = Tx(station)
    await station.connector_status("Occupied")
    assert await tx.event("Started", "CablePluggedIn", charging_state="EVConnected") == {}
    session = await orm(_session)(octt.identity, tx.transaction_id)
    assert (session.status, session.id_tag, session.charging_state, session.evse_id) == (
        SessionStatus.ACTIVE,
        "",
        "EVConnected",
        1,
    )


async def test_TC_E_10_CSMS(station, octt):
    """Start transaction options - Authorized - Local."""
    tx = Tx(station)
    assert_token_status(await station.result("Authorize", {"idToken": octt.valid.wire()}), "Accepted")
    assert_token_status(await tx.event("Started", "Authorized", token=octt.valid), "Accepted")
    assert await _state(octt.identity, tx) == (SessionStatus.ACTIVE, octt.valid.id_token, "", "")


async def test_TC_E_11_CSMS(station, octt):
    """Start transaction options - DataSigned: the signed Transaction.Begin value is kept verbatim."""
    tx = Tx(station, register_wh=0)
    signed = {
        "signedMeterData": "AQIDBAUGBwgJCgsMDQ4PEA==",
        "signingMethod": "ECDSA-secp256r1-SHA256",
        "encodingMethod": "OCMF",
        "publicKey": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
    }
    await _local_start(
        station,
        tx,
        octt.valid,
        trigger_reason="SignedDataReceived",
        meter_value=tx.meter("Transaction.Begin", signed=signed),
    )
    await tx.event("Updated", "ChargingStateChanged", charging_state="Charging")
    session = await orm(_session)(octt.identity, tx.transaction_id)
    assert (session.status, session.meter_start_wh, session.auth_status) == (
        SessionStatus.ACTIVE,
        0,
        "Accepted",
    )
    samples = await orm(
        lambda: list(
            MeterSample.objects.filter(session=session).values_list("context", "value", "signed_data")
        )
    )()
    assert samples == [("Transaction.Begin", 0, signed["signedMeterData"])]


async def test_TC_E_12_CSMS(station, octt):
    """Start transaction options - ParkingBayOccupied: a transaction without EVSE, token or meter yet."""
    tx = Tx(station)
    assert await tx.event("Started", "EVDetected", evse=False, meter_value=[]) == {}
    assert await _state(octt.identity, tx) == (SessionStatus.ACTIVE, "", "", "")


async def test_TC_E_38_CSMS(station, octt):
    """Local start transaction - EV not ready: SuspendedEV right after plug-in."""
    tx = Tx(station)
    await authorized(tx, octt.valid)
    await ev_connected_pre_session(tx)
    await tx.event("Updated", "ChargingStateChanged", charging_state="SuspendedEV")
    assert await _state(octt.identity, tx) == (SessionStatus.ACTIVE, octt.valid.id_token, "SuspendedEV", "")


async def test_TC_E_07_CSMS(station, octt):
    """Stop transaction options - PowerPathClosed - Local stop."""
    tx = Tx(station)
    await energy_transfer_started(tx, octt.valid)
    await tx.event("Ended", "StopAuthorized", stopped_reason="Local")
    assert await _state(octt.identity, tx) == (
        SessionStatus.COMPLETED,
        octt.valid.id_token,
        "Charging",
        "Local",
    )


async def test_TC_E_08_CSMS(station, octt):
    """Stop transaction options - EnergyTransfer stopped - StopAuthorized."""
    tx = Tx(station)
    await energy_transfer_started(tx, octt.valid)
    await stop_authorized(tx, octt.valid)
    await tx.event("Ended", "ChargingStateChanged", charging_state="EVConnected", stopped_reason="Local")
    assert await _state(octt.identity, tx) == (
        SessionStatus.COMPLETED,
        octt.valid.id_token,
        "EVConnected",
        "Local",
    )


async def test_TC_E_16_CSMS(station, octt):
    """Stop transaction options - Deauthorized - Invalid idToken: answered Invalid, the station ends the
    transaction, and the session is kept for review."""
    tx = Tx(station)
    answer = await tx.event("Started", "Authorized", token=octt.invalid)
    assert_token_status(answer, "Invalid", "Unknown")
    await tx.event("Ended", "Deauthorized", stopped_reason="DeAuthorized")
    session = await orm(_session)(octt.identity, tx.transaction_id)
    assert (session.status, session.stop_reason, session.auth_status, session.review_reason) == (
        SessionStatus.COMPLETED,
        "DeAuthorized",
        "Invalid",
        ReviewReason.UNKNOWN_TOKEN,
    )


async def test_TC_E_17_CSMS(station, octt):
    """Stop transaction options - Deauthorized - EV side disconnect."""
    tx = Tx(station)
    await energy_transfer_started(tx, octt.valid)
    await energy_transfer_suspended(tx)
    await tx.event("Ended", "EVCommunicationLost", charging_state="Idle", stopped_reason="EVDisconnected")
    assert await _state(octt.identity, tx) == (
        SessionStatus.COMPLETED,
        octt.valid.id_token,
        "Idle",
        "EVDisconnected",
    )


async def test_TC_E_22_CSMS(station, octt):
    """Stop transaction options - EnergyTransfer stopped - SuspendedEV."""
    tx = Tx(station)
    await energy_transfer_started(tx, octt.valid)
    await tx.event(
        "Ended", "ChargingStateChanged", charging_state="SuspendedEV", stopped_reason="StoppedByEV"
    )
    assert await _state(octt.identity, tx) == (
        SessionStatus.COMPLETED,
        octt.valid.id_token,
        "SuspendedEV",
        "StoppedByEV",
    )


async def test_TC_E_19_CSMS(station, octt):
    """Stop transaction options - ParkingBayUnoccupied: the transaction ended when the EV left the bay,
    after the cable was already disconnected."""
    tx = Tx(station)
    await energy_transfer_started(tx, octt.valid)
    await stop_authorized(tx, octt.valid)
    await ev_connected_post_session(tx)
    await station.connector_status("Available")
    await tx.event("Updated", "EVCommunicationLost", charging_state="Idle")
    await tx.event("Ended", "EVDeparted", stopped_reason="Local")
    assert await _state(octt.identity, tx) == (SessionStatus.COMPLETED, octt.valid.id_token, "Idle", "Local")


async def test_TC_E_26_CSMS(station, octt):
    """Disconnect cable on EV-side - Suspend transaction: the cable goes and comes back, the transaction
    goes on."""
    tx = Tx(station)
    await energy_transfer_started(tx, octt.valid)
    await energy_transfer_suspended(tx)
    await tx.event("Updated", "EVCommunicationLost", charging_state="Idle")
    await station.connector_status("Available")
    await tx.event("Updated", "CablePluggedIn", charging_state="EVConnected")
    await tx.event("Updated", "ChargingStateChanged", charging_state="Charging")
    assert await _state(octt.identity, tx) == (SessionStatus.ACTIVE, octt.valid.id_token, "Charging", "")


async def _offline_then_back(connect, station):
    """The OCTT closes the WebSocket connection and comes back on a new one (no new boot)."""
    await station.close()
    return await connect()


async def test_TC_E_29_CSMS(connect, station, octt):
    """Check Transaction status - Transaction with id ongoing - with message in queue."""
    tx = Tx(station)
    await energy_transfer_started(tx, octt.valid)
    tx.station = await _offline_then_back(connect, station)
    request, _ = await operate(
        tx.station,
        "GetTransactionStatus",
        {"transactionId": tx.transaction_id},
        {"ongoingIndicator": True, "messagesInQueue": True},
    )
    assert request == {"transactionId": tx.transaction_id}
    await tx.event("Updated", "MeterValuePeriodic", offline=True, meter_value=tx.meter("Sample.Periodic"))
    session = await orm(_session)(octt.identity, tx.transaction_id)
    assert (session.status, session.last_seq_no, session.missing_seq_nos) == (SessionStatus.ACTIVE, 3, [])


async def test_TC_E_30_CSMS(station, octt):
    """Check Transaction status - Transaction with id ongoing - without message in queue."""
    tx = Tx(station)
    await energy_transfer_started(tx, octt.valid)
    request, _ = await operate(
        station,
        "GetTransactionStatus",
        {"transactionId": tx.transaction_id},
        {"ongoingIndicator": True, "messagesInQueue": False},
    )
    assert request == {"transactionId": tx.transaction_id}


async def test_TC_E_31_CSMS(connect, station, octt):
    """Check Transaction status - Transaction with id ended - with message in queue: the Ended event
    arrives before two queued ones; the gap is flagged, then closed by the late events."""
    tx = Tx(station)
    await energy_transfer_started(tx, octt.valid)
    tx.station = await _offline_then_back(connect, station)
    skipped = tx.seq_no
    await tx.event(
        "Ended",
        "EVCommunicationLost",
        charging_state="Idle",
        stopped_reason="EVDisconnected",
        offline=True,
        seq_no=skipped + 2,
    )
    session = await orm(_session)(octt.identity, tx.transaction_id)
    assert (session.status, session.missing_seq_nos, session.review_reason) == (
        SessionStatus.COMPLETED,
        [skipped, skipped + 1],
        ReviewReason.MISSING_EVENTS,
    )

    request, _ = await operate(
        tx.station,
        "GetTransactionStatus",
        {"transactionId": tx.transaction_id},
        {"ongoingIndicator": False, "messagesInQueue": True},
    )
    assert request == {"transactionId": tx.transaction_id}
    await tx.event("Updated", "StopAuthorized", token=octt.valid, offline=True, seq_no=skipped)
    await tx.event(
        "Updated", "ChargingStateChanged", charging_state="EVConnected", offline=True, seq_no=skipped + 1
    )
    session = await orm(_session)(octt.identity, tx.transaction_id)
    assert (session.status, session.missing_seq_nos, session.review_reason, session.charging_state) == (
        SessionStatus.COMPLETED,
        [],
        ReviewReason.NONE,
        "Idle",
    )


async def test_TC_E_33_CSMS(connect, station, octt):
    """Check Transaction status - Without transactionId - with message in queue."""
    tx = Tx(station)
    await energy_transfer_started(tx, octt.valid)
    tx.station = await _offline_then_back(connect, station)
    request, _ = await operate(tx.station, "GetTransactionStatus", {}, {"messagesInQueue": True})
    assert request == {}
    await tx.event("Updated", "MeterValuePeriodic", offline=True, meter_value=tx.meter("Sample.Periodic"))
    assert (await _state(octt.identity, tx))[0] == SessionStatus.ACTIVE


async def test_TC_E_34_CSMS(station):
    """Check Transaction status - Without transactionId - without message in queue."""
    request, _ = await operate(station, "GetTransactionStatus", {}, {"messagesInQueue": False})
    assert request == {}


async def test_TC_E_53_CSMS(station, octt):
    """Reset Sequence Number - CSMS accepting seqNo = 0 at start of transaction: two transactions in a row,
    each numbering its events from 0, are two complete sessions."""
    first = Tx(station)
    await energy_transfer_started(first, octt.valid)
    await ev_disconnected(first)
    second = Tx(station, register_wh=first.register_wh)
    await energy_transfer_started(second, octt.valid)
    await ev_disconnected(second)
    for tx in (first, second):
        session = await orm(_session)(octt.identity, tx.transaction_id)
        assert (session.status, session.missing_seq_nos, session.review_reason, session.energy_wh) == (
            SessionStatus.COMPLETED,
            [],
            ReviewReason.NONE,
            7_500,
        )
