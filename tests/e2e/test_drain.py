"""A charger that sends its last messages and closes its socket at once (a reboot after Reset Hard) over
a real server: nothing it sent in full is thrown away (issue 13). The closing connection finishes the
requests (nobody is answered), or keeps them for replay; a server shutdown (SIGTERM) does the same.
"""

import asyncio
import json
import signal
from typing import Any

import pytest

from apps.charging.choices import SessionStatus
from apps.charging.models import ChargingSession, MeterSample
from apps.ocpp_gateway.models import OcppFailedMessage
from apps.ocpp_gateway.replay import kept_messages_replay
from tests.e2e.conftest import RawCharger, eventually, in_thread, orm
from tests.factories import ChargePointFactory, IdTokenFactory, OrganisationFactory

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

ID_TAG = "04DDEEFF00"


@pytest.fixture
def chargers(transactional_db):
    org = OrganisationFactory(slug="drain-org")
    IdTokenFactory(uid=ID_TAG, organisation=org)
    for identity in ("DR-16", "DR-201", "DR-SIGTERM"):
        ChargePointFactory(identity=identity, organisation=org)


def session_of(identity: str) -> ChargingSession | None:
    return ChargingSession.objects.filter(charge_point__identity=identity).first()


def energy_values(identity: str) -> list[int]:
    return sorted(
        int(v)
        for v in MeterSample.objects.filter(
            charge_point__identity=identity, measurand="Energy.Active.Import.Register"
        ).values_list("value", flat=True)
    )


def meter_values_16(transaction_id: int, wh: int) -> dict[str, Any]:
    return {
        "connectorId": 1,
        "transactionId": transaction_id,
        "meterValue": [
            {
                "timestamp": "2025-02-01T10:30:00Z",
                "sampledValue": [{"value": str(wh), "measurand": "Energy.Active.Import.Register"}],
            }
        ],
    }


def stop_16(transaction_id: int, wh: int) -> dict[str, Any]:
    return {
        "transactionId": transaction_id,
        "meterStop": wh,
        "timestamp": "2025-02-01T11:00:00Z",
        "idTag": ID_TAG,
        "reason": "HardReset",
    }


async def started_16(server, identity: str) -> tuple[RawCharger, int]:
    charger = await RawCharger.open(server, identity)
    await charger.boot()
    started = await charger.result(
        "StartTransaction",
        {"connectorId": 1, "idTag": ID_TAG, "meterStart": 1000, "timestamp": "2025-02-01T10:00:00Z"},
    )
    return charger, started["transactionId"]


async def fire(charger: RawCharger, *calls: tuple[str, dict[str, Any]]) -> None:
    """Send the CALLs without waiting for any answer."""
    for action, payload in calls:
        await charger.send(json.dumps([2, charger.next_id(), action, payload]))


async def call_201(charger: RawCharger, action: str, payload: dict[str, Any]) -> list:
    """A 2.0.1 CALL and its answer (RawCharger.call checks answers against the 1.6 schemas)."""
    unique_id = charger.next_id()
    await charger.send(json.dumps([2, unique_id, action, payload]))
    answer = await charger.recv()
    assert answer[:2] == [3, unique_id], answer
    return answer


async def stopped(identity: str) -> ChargingSession | None:
    session = await orm(session_of)(identity)
    return session if session is not None and session.status == SessionStatus.COMPLETED else None


async def test_1_6_meter_values_and_stop_sent_right_before_the_close_are_stored(server, chargers):
    charger, transaction_id = await started_16(server, "DR-16")

    await fire(
        charger,
        ("MeterValues", meter_values_16(transaction_id, 2500)),
        ("StopTransaction", stop_16(transaction_id, 4200)),
    )
    await charger.close()

    session = await eventually(lambda: stopped("DR-16"), what="session stopped")
    assert session.meter_stop_wh == 4200 and session.energy_wh == 3200
    assert 2500 in await orm(energy_values)("DR-16")


async def test_1_6_stop_sent_right_before_the_link_drops_stops_the_session(server, chargers):
    charger, transaction_id = await started_16(server, "DR-16")

    await fire(
        charger,
        ("MeterValues", meter_values_16(transaction_id, 2600)),
        ("StopTransaction", stop_16(transaction_id, 4300)),
    )
    charger.ws.transport.abort()  # no closing handshake: the TCP connection just ends

    session = await eventually(lambda: stopped("DR-16"), what="session stopped")
    assert session.meter_stop_wh == 4300
    assert 2600 in await orm(energy_values)("DR-16")


async def test_2_0_1_events_sent_right_before_the_close_end_the_session(server, chargers):
    charger = await RawCharger.open(server, "DR-201", subprotocols=("ocpp2.0.1",))
    answer = await call_201(
        charger,
        "BootNotification",
        {"chargingStation": {"model": "M2", "vendorName": "ACME"}, "reason": "PowerUp"},
    )
    assert answer[0] == 3 and answer[2]["status"] == "Accepted"

    def event(event_type: str, seq_no: int, minutes: int, wh: int, **extra: Any) -> dict[str, Any]:
        ts = f"2025-02-01T10:{minutes:02d}:00Z"
        return {
            "eventType": event_type,
            "timestamp": ts,
            "seqNo": seq_no,
            "meterValue": [
                {
                    "timestamp": ts,
                    "sampledValue": [{"value": wh, "measurand": "Energy.Active.Import.Register"}],
                }
            ],
            **extra,
        }

    started = event(
        "Started",
        0,
        0,
        1000,
        triggerReason="Authorized",
        transactionInfo={"transactionId": "DR-TX"},
        idToken={"idToken": ID_TAG, "type": "ISO14443"},
        evse={"id": 1, "connectorId": 1},
    )
    answer = await call_201(charger, "TransactionEvent", started)
    assert answer[0] == 3, answer

    await fire(
        charger,
        (
            "TransactionEvent",
            event(
                "Updated",
                1,
                30,
                3000,
                triggerReason="MeterValuePeriodic",
                transactionInfo={"transactionId": "DR-TX"},
            ),
        ),
        (
            "TransactionEvent",
            event(
                "Ended",
                2,
                59,
                5000,
                triggerReason="ResetCommand",
                transactionInfo={"transactionId": "DR-TX", "stoppedReason": "ImmediateReset"},
            ),
        ),
    )
    await charger.close()

    session = await eventually(lambda: stopped("DR-201"), what="session ended")
    assert session.meter_stop_wh == 5000
    assert 3000 in await orm(energy_values)("DR-201")


def meter_values_at(transaction_id: int, minute: int, wh: int) -> dict[str, Any]:
    payload = meter_values_16(transaction_id, wh)
    payload["meterValue"][0]["timestamp"] = f"2025-02-01T10:{minute:02d}:00Z"
    return payload


async def test_requests_queued_when_the_server_shuts_down_are_finished_or_kept(servers, chargers, settings):
    """SIGTERM while a charger's requests are queued: uvicorn closes the socket (1012) and waits for the
    application; the connection finishes what it can within its drain bound (here shorter than uvicorn's
    grace period) and keeps the rest, which a replay applies."""
    settings.MEDIA_ROOT = servers.media_root
    server = servers.get("drain-sigterm", env={"CPO_OCPP_DRAIN_TIMEOUT_S": "1"})
    readings = [(minute, 1000 + minute * 50) for minute in range(1, 41)]
    try:
        charger, transaction_id = await started_16(server, "DR-SIGTERM")
        await fire(
            charger,
            *(("MeterValues", meter_values_at(transaction_id, minute, wh)) for minute, wh in readings),
            ("StopTransaction", stop_16(transaction_id, 4400)),
        )
        server.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(server.process.wait, 30)
    finally:
        server.stop()

    # Whatever the server did not finish before it exited, it kept: the replay (the next connection's
    # or the periodic task's) applies it.
    kept = await orm(lambda: list(OcppFailedMessage.objects.filter(charge_point__identity="DR-SIGTERM")))()
    assert all(m.replayed_at is None for m in kept)
    await in_thread(kept_messages_replay)(older_than_s=0)

    session = await orm(session_of)("DR-SIGTERM")
    assert session.status == SessionStatus.COMPLETED and session.meter_stop_wh == 4400
    assert set(await orm(energy_values)("DR-SIGTERM")) >= {wh for _, wh in readings}
