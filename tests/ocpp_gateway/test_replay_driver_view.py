"""A 2.0.1 Ended event whose session stop fails half-way, seen from the driver's side (issue 13).

The failure rolls the whole event back (`transaction_event_record` is one transaction): the charger gets
InternalError, the event is kept for replay, and the driver API, the live stream and the driver
session all still show the session charging, never half stopped. The replay path picks the kept event up
by itself (before the charger's next connection's first request): the session then ends exactly once,
and the driver sees it end.
"""

import asyncio
import json
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from apps.charging import driver_services
from apps.charging import services as charging_services
from apps.charging.choices import DriverSessionStatus, SessionStatus
from apps.charging.models import ChargingSession, DriverSession, TransactionEvent
from apps.ocpp_gateway import presence
from apps.ocpp_gateway.choices import CommandStatus
from apps.ocpp_gateway.models import OcppFailedMessage
from apps.ocpp_gateway.redis_clients import sync_redis
from apps.ocpp_gateway.services import command_record_outcome
from apps.stations.choices import ConnectorStatus, OcppProtocol
from tests.factories import ConnectorFactory, DriverFactory, EvseFactory
from tests.ocpp_gateway.conftest import Charger, connect

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

BOOT = {"chargingStation": {"model": "M2", "vendorName": "ACME"}, "reason": "PowerUp"}


class Injected(Exception):
    """The failure the test injects between the Ended event and the session stop."""


def meter(ts: str, wh: int) -> list[dict[str, Any]]:
    return [{"timestamp": ts, "sampledValue": [{"value": wh, "measurand": "Energy.Active.Import.Register"}]}]


def driver_session_started(charge_point) -> tuple[Any, DriverSession]:
    """A driver's session on a 2.0.1 charger, its RequestStartTransaction accepted."""
    charge_point.ocpp_protocol = OcppProtocol.OCPP201
    charge_point.save(update_fields=["ocpp_protocol"])
    ConnectorFactory(evse=EvseFactory(charge_point=charge_point, evse_id=1), status=ConnectorStatus.AVAILABLE)
    sync_redis().hset(  # online, so that the start command is sent (the real connection comes next)
        presence.PREFIX + charge_point.identity,
        mapping={
            "channel": "specific.x!y",
            "epoch": 1,
            "server": "t",
            "connected_at": time.time(),
            "last_frame_at": time.time(),
        },
    )
    driver = DriverFactory()
    session, _ = driver_services.driver_session_start(
        driver=driver, charge_point_id=charge_point.pk, evse_id=1, idempotency_key="k-1"
    )
    command_record_outcome(
        command_id=session.start_command_id, status=CommandStatus.ANSWERED, response={"status": "Accepted"}
    )
    return driver, session


def api_session(driver, pk: int) -> dict[str, Any]:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(driver)}")
    response = client.get(f"/api/v1/sessions/{pk}")
    assert response.status_code == 200, response.content
    return response.json()


def states(pk: int) -> tuple[str, str, int | None]:
    """(driver session status, charging session status, meter stop) as stored."""
    session = DriverSession.objects.select_related("charging_session").get(pk=pk)
    return session.status, session.charging_session.status, session.charging_session.meter_stop_wh


async def next_events(stream, count: int, timeout: float = 10) -> list[tuple[str, dict]]:
    events: list[tuple[str, dict]] = []
    buffer = b""
    iterator = stream.streaming_content.__aiter__()
    async with asyncio.timeout(timeout):
        while len(events) < count:
            buffer += await iterator.__anext__()
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                lines = dict(
                    line.split(": ", 1) for line in block.decode().splitlines() if not line.startswith(":")
                )
                if "event" in lines:
                    events.append((lines["event"], json.loads(lines["data"])))
    return events


async def test_an_ended_event_whose_stop_failed_is_replayed_and_the_driver_sees_the_session_end(
    charge_point, monkeypatch
):
    driver, session = await database_sync_to_async(driver_session_started)(charge_point)
    comm, connected, _ = await connect(subprotocols=["ocpp2.0.1"])
    assert connected
    charger = Charger(comm)
    assert (await charger.call("BootNotification", BOOT))[2]["status"] == "Accepted"
    started = {
        "eventType": "Started",
        "timestamp": "2026-11-20T10:00:00Z",
        "triggerReason": "RemoteStart",
        "seqNo": 0,
        "transactionInfo": {"transactionId": "TX-D", "remoteStartId": session.start_command_id},
        "idToken": {"idToken": session.id_tag, "type": "Central"},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": meter("2026-11-20T10:00:00Z", 1000),
    }
    assert (await charger.call("TransactionEvent", started))[0] == 3
    assert (await database_sync_to_async(api_session)(driver, session.pk))["status"] == "ACTIVE"

    stream = await AsyncClient().get(
        f"/api/v1/sessions/{session.pk}/live",
        headers={"Authorization": f"Bearer {AccessToken.for_user(driver)}"},
    )
    assert stream.status_code == 200
    assert (await next_events(stream, 1))[0][1]["status"] == "ACTIVE"

    real_stop = charging_services.session_stop

    def failing_stop(**kwargs):
        raise Injected("the database went away between the event and the stop")

    monkeypatch.setattr(charging_services, "session_stop", failing_stop)
    ended = {
        "eventType": "Ended",
        "timestamp": "2026-11-20T11:00:00Z",
        "triggerReason": "StopAuthorized",
        "seqNo": 1,
        "transactionInfo": {"transactionId": "TX-D", "stoppedReason": "Local"},
        "meterValue": meter("2026-11-20T11:00:00Z", 5000),
    }
    answer = await charger.call("TransactionEvent", ended)
    assert answer[:3] == [4, "m3", "InternalError"], answer

    # Not half stopped: the event is not applied at all, and every view of the driver says charging.
    assert await database_sync_to_async(states)(session.pk) == (
        DriverSessionStatus.ACTIVE,
        SessionStatus.ACTIVE,
        None,
    )
    body = await database_sync_to_async(api_session)(driver, session.pk)
    assert body["status"] == "ACTIVE"
    assert not await database_sync_to_async(
        TransactionEvent.objects.filter(transaction_ref="TX-D", seq_no=1).exists
    )()
    kept = await database_sync_to_async(lambda: list(OcppFailedMessage.objects.all()))()
    assert [(m.action, m.payload["eventType"], m.replayed_at) for m in kept] == [
        ("TransactionEvent", "Ended", None)
    ]

    # The fault is gone; the charger reboots and comes back. Its next connection replays the kept event
    # before it answers anything.
    monkeypatch.setattr(charging_services, "session_stop", real_stop)
    await comm.disconnect()
    comm, connected, _ = await connect(subprotocols=["ocpp2.0.1"])
    assert connected
    assert (await Charger(comm).call("BootNotification", BOOT))[2]["status"] == "Accepted"

    assert await database_sync_to_async(states)(session.pk) == (
        DriverSessionStatus.COMPLETED,
        SessionStatus.COMPLETED,
        5000,
    )
    body = await database_sync_to_async(api_session)(driver, session.pk)
    assert body["status"] == "COMPLETED" and body["energy_wh"] == 4000
    last = await next_events(stream, 2)
    assert [e[0] for e in last] == ["session", "end"]
    assert last[0][1]["status"] == "COMPLETED" and last[0][1]["energy_wh"] == 4000
    replayed = await database_sync_to_async(OcppFailedMessage.objects.get)()
    assert replayed.replayed_at is not None and replayed.replay_error == ""
    assert (
        await database_sync_to_async(ChargingSession.objects.filter(status=SessionStatus.COMPLETED).count)()
        == 1
    )
    await comm.disconnect()
