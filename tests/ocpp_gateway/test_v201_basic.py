"""OCPP 2.0.1 on the same gateway: boot, status, authorisation, the TransactionEvent flow (ordering,
de-duplication, gaps, late authorisation), device model reports, events and the 2.0.1 error spellings."""

import json

import pytest
from channels.db import database_sync_to_async

from apps.charging.models import ChargingSession, MeterSample, TransactionEvent
from apps.stations.models import ChargerEvent, DeviceVariable
from tests.factories import IdTokenFactory
from tests.ocpp_gateway.conftest import Charger, connect

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

BOOT = {
    "chargingStation": {"model": "M2", "vendorName": "ACME", "firmwareVersion": "2.0"},
    "reason": "PowerUp",
}


async def v201(charge_point):
    comm, connected, subprotocol = await connect(subprotocols=["ocpp2.0.1", "ocpp1.6"])
    assert connected and subprotocol == "ocpp2.0.1"
    charger = Charger(comm)
    answer = await charger.call("BootNotification", BOOT)
    assert answer[0] == 3 and answer[2]["status"] == "Accepted"
    return comm, charger


def event(event_type, seq_no, *, tx="TX-1", ts="2026-11-20T10:00:00Z", energy=None, context=None, **extra):
    payload = {
        "eventType": event_type,
        "timestamp": ts,
        "triggerReason": extra.pop("trigger", "MeterValuePeriodic"),
        "seqNo": seq_no,
        "transactionInfo": {"transactionId": tx, **extra.pop("info", {})},
        **extra,
    }
    if energy is not None:
        sv = {"value": energy, "measurand": "Energy.Active.Import.Register"}
        if context:
            sv["context"] = context
        payload["meterValue"] = [{"timestamp": ts, "sampledValue": [sv]}]
    return payload


def session_state():
    s = ChargingSession.objects.get(transaction_ref="TX-1")
    return (
        s.status,
        s.id_tag,
        s.auth_status,
        s.meter_start_wh,
        s.meter_stop_wh,
        s.charging_state,
        s.missing_seq_nos,
        s.review_reason,
        s.protocol,
    )


async def test_transaction_authorised_after_plug_in_with_replay_and_gap(charge_point):
    await database_sync_to_async(IdTokenFactory)(uid="04A1B2C3", group_id="G1")
    comm, charger = await v201(charge_point)
    started = await charger.call(
        "TransactionEvent",
        event(
            "Started",
            0,
            trigger="CablePluggedIn",
            evse={"id": 1, "connectorId": 1},
            energy=1000,
            context="Transaction.Begin",
            info={"chargingState": "EVConnected"},
        ),
    )
    assert started[0] == 3 and "idTokenInfo" not in started[2]
    authorised = await charger.call(
        "TransactionEvent",
        event(
            "Updated",
            1,
            trigger="Authorized",
            idToken={"idToken": "04a1b2c3", "type": "ISO14443"},
            info={"chargingState": "Charging"},
        ),
    )
    assert authorised[2]["idTokenInfo"] == {
        "status": "Accepted",
        "groupIdToken": {"idToken": "G1", "type": "Central"},
    }
    replay = await charger.call(
        "TransactionEvent",
        event(
            "Updated",
            1,
            trigger="Authorized",
            idToken={"idToken": "04a1b2c3", "type": "ISO14443"},
            info={"chargingState": "Charging"},
        ),
    )
    assert replay[2]["idTokenInfo"]["status"] == "Accepted"  # a duplicate is answered, not applied twice
    # seqNo 2 never arrives; the end comes with seqNo 3
    ended = await charger.call(
        "TransactionEvent",
        event(
            "Ended",
            3,
            ts="2026-11-20T11:00:00Z",
            trigger="EVDeparted",
            energy=12000,
            context="Transaction.End",
            info={"chargingState": "Idle", "stoppedReason": "EVDisconnected"},
        ),
    )
    assert ended[0] == 3
    state = await database_sync_to_async(session_state)()
    assert state == (
        "COMPLETED",
        "04A1B2C3",
        "Accepted",
        1000,
        12000,
        "Idle",
        [2],
        "missing_events",
        "ocpp2.0.1",
    )
    late = await charger.call(
        "TransactionEvent",
        event("Updated", 2, ts="2026-11-20T10:30:00Z", energy=6000, info={"chargingState": "SuspendedEV"}),
    )
    assert late[0] == 3, late
    state = await database_sync_to_async(session_state)()
    assert state[6] == [] and state[7] == "" and state[5] == "Idle"  # gap filled; the late state does not win
    assert await database_sync_to_async(TransactionEvent.objects.count)() == 4
    assert await database_sync_to_async(MeterSample.objects.count)() == 3
    await comm.disconnect()


async def test_device_model_events_and_status(charge_point):
    comm, charger = await v201(charge_point)
    report = {
        "requestId": 7,
        "generatedAt": "2026-11-20T10:00:00Z",
        "seqNo": 0,
        "tbc": False,
        "reportData": [
            {
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "HeartbeatInterval"},
                "variableAttribute": [{"type": "Actual", "value": "300", "mutability": "ReadWrite"}],
                "variableCharacteristics": {"dataType": "integer", "unit": "s", "supportsMonitoring": False},
            }
        ],
    }
    assert (await charger.call("NotifyReport", report))[0] == 3
    assert (await charger.call("NotifyReport", report))[
        0
    ] == 3  # the same report again updates, not duplicates
    rows = await database_sync_to_async(
        lambda: list(
            DeviceVariable.objects.values_list(
                "component", "variable", "attribute_type", "value", "data_type", "unit"
            )
        )
    )()
    assert rows == [("OCPPCommCtrlr", "HeartbeatInterval", "Actual", "300", "integer", "s")]
    assert (
        await charger.call(
            "NotifyEvent",
            {
                "generatedAt": "2026-11-20T10:00:00Z",
                "seqNo": 0,
                "eventData": [
                    {
                        "eventId": 1,
                        "timestamp": "2026-11-20T10:00:00Z",
                        "trigger": "Alerting",
                        "actualValue": "true",
                        "eventNotificationType": "HardWiredNotification",
                        "component": {"name": "EVSE"},
                        "variable": {"name": "Problem"},
                    }
                ],
            },
        )
    )[0] == 3
    assert (
        await charger.call(
            "SecurityEventNotification", {"type": "StartupOfTheDevice", "timestamp": "2026-11-20T10:00:00Z"}
        )
    )[0] == 3
    kinds = await database_sync_to_async(
        lambda: sorted(ChargerEvent.objects.values_list("kind", "trigger"))
    )()
    assert kinds == [("event", "Alerting"), ("security", "StartupOfTheDevice")]
    status = await charger.call(
        "StatusNotification",
        {"timestamp": "2026-11-20T10:00:00Z", "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1},
    )
    assert status == [3, status[1], {}]
    await comm.disconnect()


async def test_v201_error_spellings(charge_point):
    comm, charger = await v201(charge_point)
    missing = await charger.call("Heartbeat", [])
    assert missing[2] == "FormatViolation"
    required = await charger.call("Authorize", {})
    assert required[2] == "OccurrenceConstraintViolation"
    await charger.send_raw("this is not json")
    assert (await charger.receive())[:3] == [4, "-1", "RpcFrameworkError"]
    await charger.send_raw(json.dumps([7, "abc", "Heartbeat", {}]))
    assert (await charger.receive())[:3] == [4, "abc", "MessageTypeNotSupported"]
    assert (await charger.call("Heartbeat", {}))[0] == 3  # the connection is kept
    await comm.disconnect()


async def test_report_charging_profiles_is_acknowledged(charge_point):
    comm, charger = await v201(charge_point)
    answer = await charger.call(
        "ReportChargingProfiles",
        {
            "requestId": 1,
            "chargingLimitSource": "CSO",
            "evseId": 1,
            "tbc": False,
            "chargingProfile": [
                {
                    "id": 1,
                    "stackLevel": 0,
                    "chargingProfilePurpose": "TxDefaultProfile",
                    "chargingProfileKind": "Absolute",
                    "chargingSchedule": [
                        {
                            "id": 1,
                            "chargingRateUnit": "A",
                            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}],
                        }
                    ],
                }
            ],
        },
    )
    assert answer[0] == 3 and answer[2] == {}
    await comm.disconnect()


async def test_the_chargers_display_gets_the_prices_and_the_total(charge_point):
    """TransactionEventResponse: the tariff's gross prices at the start (updatedPersonalMessage), the total
    with VAT at the end (totalCost); every answer is checked against the schema by the test settings."""
    from decimal import Decimal

    from tests.factories import TariffAssignmentFactory, TariffElementFactory, TariffFactory

    def tariff():
        t = TariffFactory(organisation=charge_point.organisation)
        TariffElementFactory(
            tariff=t,
            energy_price=Decimal("0.30"),
            flat_price=Decimal("1.00"),
            energy_vat=Decimal("19"),
            flat_vat=Decimal("19"),
        )
        TariffAssignmentFactory(tariff=t)

    await database_sync_to_async(tariff)()
    comm, charger = await v201(charge_point)
    started = await charger.call(
        "TransactionEvent",
        event(
            "Started",
            0,
            energy=1000,
            context="Transaction.Begin",
            evse={"id": 1, "connectorId": 1},
            trigger="CablePluggedIn",
        ),
    )
    message = started[2]["updatedPersonalMessage"]
    assert message["format"] == "UTF8" and message["content"] == "0.3570 EUR/kWh, 1.19 EUR per session"
    ended = await charger.call(
        "TransactionEvent",
        event(
            "Ended",
            1,
            energy=11000,
            context="Transaction.End",
            trigger="EVDeparted",
            ts="2026-11-20T11:00:00Z",
            info={"stoppedReason": "EVDisconnected"},
        ),
    )
    # 1.00 + 10 kWh * 0.30 = 4.00 net, 4.76 with 19 % VAT
    assert ended[2] == {"totalCost": 4.76}
    await comm.disconnect()
