"""OCPP 2.0.1 Core, CSMS test cases B (Provisioning): boot, Pending/Rejected, device model, reset,
network profiles (part 6, section 3.3)."""

from __future__ import annotations

import pytest

from apps.charging.choices import SessionStatus
from apps.charging.models import ChargingSession
from apps.ocpp_gateway.services import chargepoint_accept
from apps.stations.choices import RegistrationStatus
from apps.stations.models import ChargePoint, ChargerEvent, Connector, DeviceVariable
from tests.conformance.station import (
    SUBPROTOCOL,
    Tx,
    energy_transfer_started,
    operate,
)
from tests.e2e.conftest import orm

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

OFFLINE_THRESHOLD = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "OfflineThreshold"}}
AUTHORIZE_REMOTE_START = {"component": {"name": "AuthCtrlr"}, "variable": {"name": "AuthorizeRemoteStart"}}
NETWORK_PROFILE = {
    "configurationSlot": 2,
    "connectionData": {
        "ocppVersion": "OCPP20",
        "ocppTransport": "JSON",
        "ocppCsmsUrl": "wss://csms.example.org/ocpp",
        "messageTimeout": 30,
        "securityProfile": 1,
        "ocppInterface": "Wired0",
    },
}


def _charge_point(identity: str) -> ChargePoint:
    return ChargePoint.objects.get(identity=identity)


def _connector_statuses(identity: str) -> list[tuple[int, int, str]]:
    return list(
        Connector.objects.filter(evse__charge_point__identity=identity)
        .order_by("evse__evse_id", "connector_id")
        .values_list("evse__evse_id", "connector_id", "status")
    )


def _device_model(identity: str) -> set[tuple[str, str, str, str]]:
    return set(
        DeviceVariable.objects.filter(charge_point__identity=identity).values_list(
            "component", "variable", "attribute_type", "value"
        )
    )


def _session(identity: str, transaction_id: str) -> ChargingSession:
    return ChargingSession.objects.get(charge_point__identity=identity, transaction_ref=transaction_id)


async def _accept_pending(station) -> None:
    """The operator accepts the Pending station (admin action); the CSMS sends its new BasicAuthPassword
    during the Pending interval, which the station accepts (B02: the CSMS may configure it then)."""
    _cp, key, command = await orm(lambda: chargepoint_accept(charge_point=_charge_point(station.identity)))()
    assert command is not None
    request = await station.answer(
        "SetVariables",
        {
            "setVariableResult": [
                {
                    "attributeStatus": "Accepted",
                    "component": {"name": "SecurityCtrlr"},
                    "variable": {"name": "BasicAuthPassword"},
                }
            ]
        },
    )
    [item] = request["setVariableData"]
    assert (item["component"]["name"], item["variable"]["name"], item["attributeValue"]) == (
        "SecurityCtrlr",
        "BasicAuthPassword",
        key,
    )


async def test_TC_B_01_CSMS(connect, octt):
    """Cold Boot Charging Station - Accepted: Reusable State Booted."""
    station = await connect()
    await station.booted()

    cp = await orm(_charge_point)(octt.identity)
    assert (cp.registration_status, cp.ocpp_protocol, cp.vendor, cp.model, cp.serial_number) == (
        "Accepted",
        SUBPROTOCOL,
        "OCTT",
        "OCTT-AC22",
        octt.identity,
    )
    assert await orm(_connector_statuses)(octt.identity) == [(1, 1, "Available"), (2, 1, "Available")]
    events = await orm(
        lambda: list(
            ChargerEvent.objects.filter(charge_point=cp).values_list(
                "trigger", "component", "variable", "actual_value"
            )
        )
    )()
    assert events == [("Delta", "Connector", "AvailabilityState", "Available")] * 2


@pytest.mark.parametrize("registration_status", [RegistrationStatus.PENDING])
async def test_TC_B_02_CSMS(connect, octt):
    """Cold Boot Charging Station - Pending: Pending first, Accepted once the operator accepted it."""
    station = await connect()
    answer = await station.boot(status="Pending")
    assert answer["interval"] > 0

    await _accept_pending(station)

    await station.booted()
    cp = await orm(_charge_point)(octt.identity)
    assert cp.registration_status == "Accepted"
    assert await orm(_connector_statuses)(octt.identity) == [(1, 1, "Available"), (2, 1, "Available")]


@pytest.mark.parametrize("registration_status", [RegistrationStatus.PENDING, RegistrationStatus.REJECTED])
async def test_TC_B_30_CSMS(connect, octt, registration_status):
    """Cold Boot Charging Station - Pending/Rejected - SecurityError: while not Accepted, the station's
    StatusNotification and NotifyEvent are answered with CALLERROR SecurityError, and nothing is stored."""
    station = await connect()
    await station.boot(status=registration_status)

    status = await station.call(
        "StatusNotification",
        {"timestamp": "2025-01-15T10:00:00Z", "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
    )
    event = await station.call(
        "NotifyEvent",
        {
            "generatedAt": "2025-01-15T10:00:00Z",
            "seqNo": 0,
            "eventData": [
                {
                    "eventId": 1,
                    "timestamp": "2025-01-15T10:00:00Z",
                    "trigger": "Delta",
                    "actualValue": "Available",
                    "eventNotificationType": "HardWiredNotification",
                    "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
                    "variable": {"name": "AvailabilityState"},
                }
            ],
        },
    )
    assert (status[0], status[2]) == (4, "SecurityError"), status
    assert (event[0], event[2]) == (4, "SecurityError"), event
    assert await orm(_connector_statuses)(octt.identity) == []
    assert not await orm(lambda: ChargerEvent.objects.exists())()


@pytest.mark.parametrize("registration_status", [RegistrationStatus.PENDING])
async def test_TC_B_31_CSMS(connect, octt):
    """Cold Boot Charging Station - Pending/Rejected - TriggerMessage: the CSMS triggers a
    BootNotification before the interval expired; the triggered boot is Accepted."""
    station = await connect()
    await station.boot(status="Pending")
    await _accept_pending(station)

    request, _ = await operate(
        station, "TriggerMessage", {"requestedMessage": "BootNotification"}, {"status": "Accepted"}
    )
    assert request == {"requestedMessage": "BootNotification"}
    await station.booted(reason="Triggered")
    assert await orm(_connector_statuses)(octt.identity) == [(1, 1, "Available"), (2, 1, "Available")]


async def test_TC_B_06_CSMS(station):
    """Get Variables - single value: OCPPCommCtrlr.OfflineThreshold, read and kept for operators."""
    result = {
        "attributeStatus": "Accepted",
        "attributeType": "Actual",
        "attributeValue": "60",
        **OFFLINE_THRESHOLD,
    }
    request, _ = await operate(
        station, "GetVariables", {"getVariableData": [OFFLINE_THRESHOLD]}, {"getVariableResult": [result]}
    )
    [item] = request["getVariableData"]
    assert item["component"] == {"name": "OCPPCommCtrlr"} and item["variable"] == {"name": "OfflineThreshold"}
    assert item.get("attributeType", "Actual") in ("Actual", "Target", "MinSet", "MaxSet")
    assert await orm(_device_model)(station.identity) == {
        ("OCPPCommCtrlr", "OfflineThreshold", "Actual", "60")
    }


async def test_TC_B_07_CSMS(station):
    """Get Variables - multiple values: OfflineThreshold and AuthCtrlr.AuthorizeRemoteStart in one request."""
    results = [
        {"attributeStatus": "Accepted", "attributeValue": "60", **OFFLINE_THRESHOLD},
        {"attributeStatus": "Accepted", "attributeValue": "false", **AUTHORIZE_REMOTE_START},
    ]
    request, _ = await operate(
        station,
        "GetVariables",
        {"getVariableData": [OFFLINE_THRESHOLD, AUTHORIZE_REMOTE_START]},
        {"getVariableResult": results},
    )
    assert request == {"getVariableData": [OFFLINE_THRESHOLD, AUTHORIZE_REMOTE_START]}
    assert await orm(_device_model)(station.identity) == {
        ("OCPPCommCtrlr", "OfflineThreshold", "Actual", "60"),
        ("AuthCtrlr", "AuthorizeRemoteStart", "Actual", "false"),
    }


async def test_TC_B_09_CSMS(station):
    """Set Variables - single value: OfflineThreshold = "123"."""
    data = [{"attributeValue": "123", **OFFLINE_THRESHOLD}]
    request, _ = await operate(
        station,
        "SetVariables",
        {"setVariableData": data},
        {"setVariableResult": [{"attributeStatus": "Accepted", **OFFLINE_THRESHOLD}]},
    )
    assert request == {"setVariableData": data}
    assert await orm(_device_model)(station.identity) == {
        ("OCPPCommCtrlr", "OfflineThreshold", "Actual", "123")
    }


async def test_TC_B_10_CSMS(station):
    """Set Variables - multiple values: OfflineThreshold = "123" and AuthorizeRemoteStart = "false"."""
    data = [
        {"attributeValue": "123", **OFFLINE_THRESHOLD},
        {"attributeValue": "false", **AUTHORIZE_REMOTE_START},
    ]
    results = [
        {"attributeStatus": "Accepted", **OFFLINE_THRESHOLD},
        {"attributeStatus": "Accepted", **AUTHORIZE_REMOTE_START},
    ]
    request, _ = await operate(
        station, "SetVariables", {"setVariableData": data}, {"setVariableResult": results}
    )
    assert request == {"setVariableData": data}
    assert await orm(_device_model)(station.identity) == {
        ("OCPPCommCtrlr", "OfflineThreshold", "Actual", "123"),
        ("AuthCtrlr", "AuthorizeRemoteStart", "Actual", "false"),
    }


async def _base_report(station, report_base: str, parts: list[list[dict]]) -> None:
    request, _ = await operate(
        station, "GetBaseReport", {"requestId": 7, "reportBase": report_base}, {"status": "Accepted"}
    )
    assert request["requestId"] >= 0 and request["reportBase"] == report_base
    for seq_no, report_data in enumerate(parts):
        payload = {
            "requestId": request["requestId"],
            "generatedAt": "2025-01-15T10:00:00Z",
            "seqNo": seq_no,
            "reportData": report_data,
        }
        if seq_no < len(parts) - 1:
            payload["tbc"] = True
        assert await station.result("NotifyReport", payload) == {}


def _report_item(
    component: str, variable: str, value: str, mutability: str = "ReadWrite", data_type: str = "integer"
) -> dict:
    return {
        "component": {"name": component},
        "variable": {"name": variable},
        "variableAttribute": [{"type": "Actual", "value": value, "mutability": mutability}],
        "variableCharacteristics": {"dataType": data_type, "supportsMonitoring": False},
    }


async def test_TC_B_12_CSMS(station):
    """Get Base Report - ConfigurationInventory: every NotifyReport part is stored for operators."""
    await _base_report(
        station,
        "ConfigurationInventory",
        [
            [_report_item("OCPPCommCtrlr", "HeartbeatInterval", "300")],
            [_report_item("AuthCtrlr", "AuthorizeRemoteStart", "false", data_type="boolean")],
        ],
    )
    assert await orm(_device_model)(station.identity) == {
        ("OCPPCommCtrlr", "HeartbeatInterval", "Actual", "300"),
        ("AuthCtrlr", "AuthorizeRemoteStart", "Actual", "false"),
    }


async def test_TC_B_13_CSMS(station):
    """Get Base Report - FullInventory: every NotifyReport part (including read-only data) is stored."""
    await _base_report(
        station,
        "FullInventory",
        [
            [
                _report_item("OCPPCommCtrlr", "HeartbeatInterval", "300"),
                _report_item("ChargingStation", "Model", "OCTT-AC22", "ReadOnly", "string"),
            ],
            [_report_item("SecurityCtrlr", "SecurityProfile", "1", "ReadOnly")],
            [_report_item("AuthCtrlr", "AuthorizeRemoteStart", "false", data_type="boolean")],
        ],
    )
    assert await orm(_device_model)(station.identity) == {
        ("OCPPCommCtrlr", "HeartbeatInterval", "Actual", "300"),
        ("ChargingStation", "Model", "Actual", "OCTT-AC22"),
        ("SecurityCtrlr", "SecurityProfile", "Actual", "1"),
        ("AuthCtrlr", "AuthorizeRemoteStart", "Actual", "false"),
    }


async def _rebooted(connect, station, *, reason: str, occupied: tuple[int, ...] = ()) -> None:
    """The station goes down and comes back: a new connection, BootNotification, all connectors."""
    await station.close()
    again = await connect()
    await again.booted(reason=reason, occupied=occupied)


async def test_TC_B_20_CSMS(connect, station, octt):
    """Reset Charging Station - Without ongoing transaction - OnIdle."""
    request, _ = await operate(station, "Reset", {"type": "OnIdle"}, {"status": "Accepted"})
    assert request == {"type": "OnIdle"}
    await _rebooted(connect, station, reason="RemoteReset")
    assert await orm(_connector_statuses)(octt.identity) == [(1, 1, "Available"), (2, 1, "Available")]


async def test_TC_B_21_CSMS(connect, station, octt):
    """Reset Charging Station - With Ongoing Transaction - OnIdle: Scheduled, the transaction ends, then
    the reboot."""
    tx = Tx(station)
    await energy_transfer_started(tx, octt.valid)
    request, _ = await operate(station, "Reset", {"type": "OnIdle"}, {"status": "Scheduled"})
    assert request == {"type": "OnIdle"}
    await tx.event("Updated", "StopAuthorized", charging_state="EVConnected", token=octt.valid)
    await tx.event("Ended", "EVCommunicationLost", charging_state="Idle", stopped_reason="EVDisconnected")
    await _rebooted(connect, station, reason="ScheduledReset")

    session = await orm(_session)(octt.identity, tx.transaction_id)
    assert (session.status, session.stop_reason, session.charging_state) == (
        SessionStatus.COMPLETED,
        "EVDisconnected",
        "Idle",
    )


async def test_TC_B_22_CSMS(connect, station, octt):
    """Reset Charging Station - With Ongoing Transaction - Immediate: the transaction ends with
    ImmediateReset; after the reboot the configured connector is still Occupied."""
    tx = Tx(station)
    await energy_transfer_started(tx, octt.valid)
    request, _ = await operate(station, "Reset", {"type": "Immediate"}, {"status": "Accepted"})
    assert request == {"type": "Immediate"}
    await tx.event("Ended", "ResetCommand", charging_state="EVConnected", stopped_reason="ImmediateReset")
    await _rebooted(connect, station, reason="RemoteReset", occupied=(1,))

    session = await orm(_session)(octt.identity, tx.transaction_id)
    assert (session.status, session.stop_reason) == (SessionStatus.COMPLETED, "ImmediateReset")
    assert session.meter_stop_wh - session.meter_start_wh == 7_500
    assert await orm(_connector_statuses)(octt.identity) == [(1, 1, "Occupied"), (2, 1, "Available")]


async def test_TC_B_25_CSMS(station):
    """Reset EVSE - Without ongoing transaction."""
    request, _ = await operate(station, "Reset", {"type": "OnIdle", "evseId": 1}, {"status": "Accepted"})
    assert request == {"type": "OnIdle", "evseId": 1}


async def test_TC_B_26_CSMS(station, octt):
    """Reset EVSE - With Ongoing Transaction - OnIdle: Scheduled; the transaction ends normally."""
    tx = Tx(station)
    await energy_transfer_started(tx, octt.valid)
    request, _ = await operate(station, "Reset", {"type": "OnIdle", "evseId": 1}, {"status": "Scheduled"})
    assert request == {"type": "OnIdle", "evseId": 1}
    await tx.event("Updated", "StopAuthorized", charging_state="EVConnected", token=octt.valid)
    await tx.event("Ended", "EVCommunicationLost", charging_state="Idle", stopped_reason="EVDisconnected")
    session = await orm(_session)(octt.identity, tx.transaction_id)
    assert (session.status, session.stop_reason) == (SessionStatus.COMPLETED, "EVDisconnected")


async def test_TC_B_27_CSMS(station, octt):
    """Reset EVSE - With Ongoing Transaction - Immediate: the transaction ends with ImmediateReset."""
    tx = Tx(station)
    await energy_transfer_started(tx, octt.valid)
    request, _ = await operate(station, "Reset", {"type": "Immediate", "evseId": 1}, {"status": "Accepted"})
    assert request == {"type": "Immediate", "evseId": 1}
    await tx.event("Ended", "ResetCommand", charging_state="EVConnected", stopped_reason="ImmediateReset")
    session = await orm(_session)(octt.identity, tx.transaction_id)
    assert (session.status, session.stop_reason) == (SessionStatus.COMPLETED, "ImmediateReset")


async def test_TC_B_42_CSMS(station):
    """Set new NetworkConnectionProfile - Accepted."""
    request, _ = await operate(station, "SetNetworkProfile", NETWORK_PROFILE, {"status": "Accepted"})
    assert request == NETWORK_PROFILE


async def test_TC_B_44_CSMS(station):
    """Set new NetworkConnectionProfile - Failed: the charger's refusal is reported as its answer."""
    request, result = await operate(station, "SetNetworkProfile", NETWORK_PROFILE, {"status": "Failed"})
    assert request == NETWORK_PROFILE and result["response"] == {"status": "Failed"}
