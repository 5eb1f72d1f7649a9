"""No request received in full is thrown away when the charger's socket closes (issue 13).

A charger that sends StopTransaction / MeterValues / TransactionEvent(Ended) and closes its socket at
once (a reboot after Reset Hard) gets no answer, but what it sent is applied: by the closing connection
within its drain bound, or, past that bound, kept (`OcppFailedMessage`) and replayed in order before the
first request of the charger's next connection, or by the periodic task.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async

from apps.charging.choices import SessionStatus
from apps.charging.models import ChargingSession, MeterSample
from apps.ocpp_gateway import drain
from apps.ocpp_gateway.connection import OcppConnection
from apps.ocpp_gateway.models import OcppFailedMessage
from apps.ocpp_gateway.redis_clients import sync_redis
from apps.ocpp_gateway.replay import kept_messages_replay
from apps.ocpp_gateway.services import UNPROCESSED_ERROR
from apps.ocpp_gateway.tasks import kept_messages_replay_task
from apps.ocpp_gateway.v16 import handlers as v16_handlers
from tests.factories import IdTokenFactory
from tests.ocpp_gateway.conftest import Charger, connect

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

ID_TAG = "04AABBCCDD"
DISCONNECT_TIMEOUT_S = 30  # the consumer finishes what it received before it ends (bounded by the drain)


async def eventually(check: Callable[[], Awaitable[Any]], *, timeout: float = 20.0, what: str = "") -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what or 'condition'} not reached within {timeout:g} s (last: {value!r})")
        await asyncio.sleep(0.05)


def orm(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    return database_sync_to_async(fn)


def meter_value(ts: str, wh: int) -> dict[str, Any]:
    return {
        "timestamp": ts,
        "sampledValue": [{"value": str(wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}],
    }


def meter_value_201(ts: str, wh: int) -> dict[str, Any]:
    return {"timestamp": ts, "sampledValue": [{"value": wh, "measurand": "Energy.Active.Import.Register"}]}


async def started_v16(charge_point) -> tuple[Any, Charger, int]:
    await orm(IdTokenFactory)(uid=ID_TAG, organisation=charge_point.organisation)
    comm, connected, _ = await connect()
    assert connected
    charger = Charger(comm)
    answer = await charger.call("BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "X"})
    assert answer[2]["status"] == "Accepted"
    answer = await charger.call(
        "StartTransaction",
        {"connectorId": 1, "idTag": ID_TAG, "meterStart": 1000, "timestamp": "2026-11-20T10:00:00Z"},
    )
    assert answer[0] == 3, answer
    return comm, charger, answer[2]["transactionId"]


def stop_transaction(transaction_id: int, wh: int = 4000) -> dict[str, Any]:
    return {
        "transactionId": transaction_id,
        "meterStop": wh,
        "timestamp": "2026-11-20T11:00:00Z",
        "idTag": ID_TAG,
        "reason": "HardReset",
    }


def meter_values(transaction_id: int) -> dict[str, Any]:
    return {
        "connectorId": 1,
        "transactionId": transaction_id,
        "meterValue": [meter_value("2026-11-20T10:30:00Z", 2500)],
    }


async def send_and_hang_up(charger: Charger, comm, *calls: tuple[str, dict[str, Any]]) -> None:
    """Send the CALLs without waiting for their answers and close the socket at once."""
    for n, (action, payload) in enumerate(calls, start=100):
        await charger.send_raw(json.dumps([2, f"late-{n}", action, payload]))
    await comm.disconnect(timeout=DISCONNECT_TIMEOUT_S)


def session(charge_point_id: int) -> ChargingSession:
    return ChargingSession.objects.get(charge_point_id=charge_point_id)


def energy_samples(charge_point_id: int) -> list[int]:
    return sorted(
        int(s.value)
        for s in MeterSample.objects.filter(
            charge_point_id=charge_point_id, measurand="Energy.Active.Import.Register"
        )
    )


def kept(charge_point_id: int) -> list[tuple[str, str, bool, str]]:
    return [
        (m.action, m.error, m.replayed_at is not None, m.replay_error)
        for m in OcppFailedMessage.objects.filter(charge_point_id=charge_point_id).order_by("pk")
    ]


async def test_a_stop_transaction_sent_just_before_the_socket_closes_stops_the_session(charge_point):
    comm, charger, transaction_id = await started_v16(charge_point)

    await send_and_hang_up(charger, comm, ("StopTransaction", stop_transaction(transaction_id)))

    stopped = await orm(session)(charge_point.pk)
    assert stopped.status == SessionStatus.COMPLETED
    assert stopped.meter_stop_wh == 4000
    assert await orm(kept)(charge_point.pk) == []  # handled by the closing connection, nothing kept


async def test_meter_values_and_the_stop_sent_before_the_socket_closes_are_all_stored(charge_point):
    comm, charger, transaction_id = await started_v16(charge_point)

    await send_and_hang_up(
        charger,
        comm,
        ("MeterValues", meter_values(transaction_id)),
        ("StopTransaction", stop_transaction(transaction_id)),
    )

    assert 2500 in await orm(energy_samples)(charge_point.pk)
    assert (await orm(session)(charge_point.pk)).status == SessionStatus.COMPLETED


async def test_a_2_0_1_ended_event_sent_just_before_the_socket_closes_stops_the_session(charge_point):
    await orm(IdTokenFactory)(uid=ID_TAG, organisation=charge_point.organisation)
    comm, connected, _ = await connect(subprotocols=["ocpp2.0.1"])
    assert connected
    charger = Charger(comm)
    boot = {"chargingStation": {"model": "M2", "vendorName": "ACME"}, "reason": "PowerUp"}
    assert (await charger.call("BootNotification", boot))[2]["status"] == "Accepted"
    started = {
        "eventType": "Started",
        "timestamp": "2026-11-20T10:00:00Z",
        "triggerReason": "Authorized",
        "seqNo": 0,
        "transactionInfo": {"transactionId": "TX-1"},
        "idToken": {"idToken": ID_TAG, "type": "ISO14443"},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [meter_value_201("2026-11-20T10:00:00Z", 1000)],
    }
    answer = await charger.call("TransactionEvent", started)
    assert answer[0] == 3, answer
    updated = {
        "eventType": "Updated",
        "timestamp": "2026-11-20T10:30:00Z",
        "triggerReason": "MeterValuePeriodic",
        "seqNo": 1,
        "transactionInfo": {"transactionId": "TX-1"},
        "meterValue": [meter_value_201("2026-11-20T10:30:00Z", 3500)],
    }
    ended = {
        "eventType": "Ended",
        "timestamp": "2026-11-20T11:00:00Z",
        "triggerReason": "ResetCommand",
        "seqNo": 2,
        "transactionInfo": {"transactionId": "TX-1", "stoppedReason": "ImmediateReset"},
        "meterValue": [meter_value_201("2026-11-20T11:00:00Z", 6000)],
    }

    await send_and_hang_up(charger, comm, ("TransactionEvent", updated), ("TransactionEvent", ended))

    stopped = await orm(session)(charge_point.pk)
    assert stopped.status == SessionStatus.COMPLETED
    assert stopped.meter_stop_wh == 6000
    assert 3500 in await orm(energy_samples)(charge_point.pk)


async def test_requests_not_finished_within_the_drain_bound_are_kept_and_replayed_in_order_on_reconnect(
    charge_point, settings
):
    settings.CPO_OCPP_DRAIN_TIMEOUT_S = 0  # nothing is finished by the closing connection: all is kept
    comm, charger, transaction_id = await started_v16(charge_point)

    await send_and_hang_up(
        charger,
        comm,
        ("MeterValues", meter_values(transaction_id)),
        ("StopTransaction", stop_transaction(transaction_id)),
    )

    rows = await orm(kept)(charge_point.pk)
    assert ("StopTransaction", UNPROCESSED_ERROR, False, "") in rows
    assert [action for action, *_ in rows] in (["MeterValues", "StopTransaction"], ["StopTransaction"])
    assert sync_redis().exists(drain.KEPT_PREFIX + str(charge_point.pk))

    # The charger comes back: what was kept runs before its first request is answered.
    comm, connected, _ = await connect()
    assert connected
    answer = await Charger(comm).call("Heartbeat", {})
    assert answer[0] == 3
    assert (await orm(session)(charge_point.pk)).status == SessionStatus.COMPLETED
    assert 2500 in await orm(energy_samples)(charge_point.pk)
    assert all(replayed and error == "" for _, _, replayed, error in await orm(kept)(charge_point.pk))
    assert not sync_redis().exists(drain.KEPT_PREFIX + str(charge_point.pk))
    await comm.disconnect()


async def test_requests_kept_for_a_charger_that_does_not_come_back_are_replayed_once_by_the_task(
    charge_point, settings
):
    settings.CPO_OCPP_DRAIN_TIMEOUT_S = 0
    comm, charger, transaction_id = await started_v16(charge_point)
    await send_and_hang_up(charger, comm, ("StopTransaction", stop_transaction(transaction_id)))
    assert [a for a, *_ in await orm(kept)(charge_point.pk)] == ["StopTransaction"]

    # Not yet due: the charger may still come back to have it replayed in order.
    assert await orm(kept_messages_replay)(older_than_s=3600) == {"replayed": 0, "failed": 0, "busy": 0}
    counts = await orm(kept_messages_replay)(older_than_s=0)

    assert counts == {"replayed": 1, "failed": 0, "busy": 0}
    assert (await orm(session)(charge_point.pk)).status == SessionStatus.COMPLETED
    assert await orm(kept)(charge_point.pk) == [("StopTransaction", UNPROCESSED_ERROR, True, "")]
    # Once: a second pass finds nothing left to replay.
    assert await orm(kept_messages_replay)(older_than_s=0) == {"replayed": 0, "failed": 0, "busy": 0}


async def test_a_new_connection_waits_for_the_old_one_to_finish_before_its_first_request(charge_point):
    """An earlier connection of the charger still finishing its requests holds the new one's first
    request back (bounded), so the new connection's StopTransaction never overtakes them."""
    await drain.draining_begin("CP-1", 0)
    comm, connected, _ = await connect()
    assert connected
    charger = Charger(comm)
    await charger.send_raw(json.dumps([2, "hb", "Heartbeat", {}]))
    assert await comm.receive_nothing(timeout=0.5)  # held back while connection 0 drains
    await drain.draining_end("CP-1", 0)
    answer = await charger.receive()
    assert answer[:2] == [3, "hb"]
    await comm.disconnect()


async def test_a_replaced_connections_requests_run_before_those_of_the_connection_replacing_it(
    charge_point, monkeypatch
):
    """The charger reconnects while its old connection still holds a MeterValues: the old connection
    finishes it, and the new connection's StopTransaction runs after it, not before."""
    order: list[str] = []

    def recording(name: str, service: Callable[..., Any]) -> Callable[..., Any]:
        def run(**kwargs: Any) -> Any:
            order.append(name)
            return service(**kwargs)

        return run

    handlers = "apps.ocpp_gateway.v16.handlers"
    monkeypatch.setattr(
        f"{handlers}.meter_values_record", recording("MeterValues", v16_handlers.meter_values_record)
    )
    monkeypatch.setattr(f"{handlers}.session_stop", recording("StopTransaction", v16_handlers.session_stop))
    gate = (
        asyncio.Event()
    )  # holds the old connection's MeterValues until the new connection has sent its stop
    handle_call = OcppConnection._handle_call

    async def held(self: OcppConnection, call: Any) -> None:
        if call.action == "MeterValues":
            await gate.wait()
        await handle_call(self, call)

    monkeypatch.setattr(OcppConnection, "_handle_call", held)
    old, old_charger, transaction_id = await started_v16(charge_point)
    await old_charger.send_raw(json.dumps([2, "mv", "MeterValues", meter_values(transaction_id)]))

    new, connected, _ = await connect()  # the same charger, from the same address: it replaces the old one
    assert connected
    assert (await old.receive_output(timeout=10))["type"] == "websocket.close"
    old_closing = asyncio.ensure_future(old.disconnect(timeout=DISCONNECT_TIMEOUT_S))
    await eventually(
        lambda: asyncio.to_thread(sync_redis().exists, drain.DRAINING_PREFIX + "CP-1"), what="old draining"
    )
    new_charger = Charger(new)
    await new_charger.send_raw(json.dumps([2, "stop", "StopTransaction", stop_transaction(transaction_id)]))
    assert await new.receive_nothing(timeout=0.3)  # held back while the old connection drains
    gate.set()

    answer = await new_charger.receive()
    assert answer[:2] == [3, "stop"], answer
    await old_closing
    assert order == ["MeterValues", "StopTransaction"]
    assert 2500 in await orm(energy_samples)(charge_point.pk)
    assert (await orm(session)(charge_point.pk)).status == SessionStatus.COMPLETED
    await new.disconnect()


async def test_the_periodic_task_replays_what_is_due(charge_point, settings):
    schedule = settings.CELERY_BEAT_SCHEDULE["ocpp-kept-messages-replay"]
    assert schedule["task"] == kept_messages_replay_task.name
    settings.CPO_OCPP_DRAIN_TIMEOUT_S = 0
    comm, charger, transaction_id = await started_v16(charge_point)
    await send_and_hang_up(charger, comm, ("StopTransaction", stop_transaction(transaction_id)))
    settings.CPO_OCPP_REPLAY_AFTER_S = 3600
    assert await orm(kept_messages_replay_task)() == {"replayed": 0, "failed": 0, "busy": 0}
    assert await orm(kept)(charge_point.pk) == [("StopTransaction", UNPROCESSED_ERROR, False, "")]

    settings.CPO_OCPP_REPLAY_AFTER_S = 0
    assert await orm(kept_messages_replay_task)() == {"replayed": 1, "failed": 0, "busy": 0}
    assert await orm(kept)(charge_point.pk) == [("StopTransaction", UNPROCESSED_ERROR, True, "")]
    assert (await orm(session)(charge_point.pk)).status == SessionStatus.COMPLETED
