import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django import db

from apps.ocpp_gateway.choices import CommandStatus
from apps.ocpp_gateway.services import command_send, command_wait
from apps.stations.models import ChargePoint
from tests.ocpp_gateway.conftest import Charger, connect

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def wait(fn):
    """A waiter is normally another process (admin, API, Celery, shell); here it runs in its own thread so
    it does not hold the thread the consumer's database calls run in."""

    def run(**kwargs):
        try:
            return fn(**kwargs)
        finally:
            db.connection.close()

    return sync_to_async(run, thread_sensitive=False)


def _send(action, payload, timeout_s=5.0):
    cp = ChargePoint.objects.get(identity="CP-1")
    return command_send(charge_point=cp, action=action, payload=payload, timeout_s=timeout_s).pk


async def test_command_reaches_charger_and_answer_comes_back(charge_point):
    comm, connected, _ = await connect()
    assert connected
    charger = Charger(comm)
    await charger.call("BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "X"})
    command_id = await database_sync_to_async(_send)("Reset", {"type": "Soft"})
    call = await charger.receive()
    assert call[0] == 2 and call[2] == "Reset" and call[3] == {"type": "Soft"}
    await charger.send_raw(json.dumps([3, call[1], {"status": "Accepted"}]))
    outcome = await wait(command_wait)(command_id=command_id, timeout_s=5)
    assert outcome["status"] == CommandStatus.ANSWERED
    assert outcome["response"] == {"status": "Accepted"}
    await comm.disconnect()


async def test_command_for_offline_charger_fails_at_once(charge_point):
    command_id = await database_sync_to_async(_send)("Reset", {"type": "Soft"})
    outcome = await wait(command_wait)(command_id=command_id, timeout_s=1)
    assert outcome["status"] == CommandStatus.CHARGER_OFFLINE


async def test_call_error_and_timeout_and_disconnect(charge_point):
    comm, _, _ = await connect()
    charger = Charger(comm)
    first = await database_sync_to_async(_send)("ClearCache", {})
    call = await charger.receive()
    await charger.send_raw(json.dumps([4, call[1], "NotSupported", "no cache", {}]))
    outcome = await wait(command_wait)(command_id=first, timeout_s=5)
    assert outcome["status"] == CommandStatus.CALL_ERROR and outcome["error_code"] == "NotSupported"

    second = await database_sync_to_async(_send)("ClearCache", {}, 1)
    await charger.receive()  # never answered
    outcome = await wait(command_wait)(command_id=second, timeout_s=3)
    assert outcome["status"] == CommandStatus.TIMEOUT

    third = await database_sync_to_async(_send)("ClearCache", {}, 10)
    await charger.receive()
    await comm.disconnect()
    outcome = await wait(command_wait)(command_id=third, timeout_s=5)
    assert outcome["status"] == CommandStatus.CHARGER_DISCONNECTED


async def test_commands_are_sent_one_at_a_time_in_order(charge_point):
    comm, _, _ = await connect()
    charger = Charger(comm)
    a = await database_sync_to_async(_send)("ClearCache", {})
    b = await database_sync_to_async(_send)("Reset", {"type": "Hard"})
    first = await charger.receive()
    assert first[2] == "ClearCache"
    assert await comm.receive_nothing(timeout=0.5)  # the second waits until the first is answered
    await charger.send_raw(json.dumps([3, first[1], {"status": "Accepted"}]))
    second = await charger.receive()
    assert second[2] == "Reset"
    await charger.send_raw(json.dumps([3, second[1], {"status": "Accepted"}]))
    for command_id in (a, b):
        outcome = await wait(command_wait)(command_id=command_id, timeout_s=5)
        assert outcome["status"] == CommandStatus.ANSWERED
    await comm.disconnect()


@pytest.mark.parametrize(
    "answer,failure",
    [
        ([3, None, {"status": "Rejected"}], "charger_rejected"),
        ([4, None, "InternalError", "busy", {}], "charger_rejected"),
    ],
)
async def test_a_drivers_start_follows_the_chargers_answer(charge_point, answer, failure):
    """A driver's RemoteStartTransaction answered Rejected or with a CALLERROR fails the driver's session,
    through the real consumer and whichever of the consumer and the waiter records the outcome first."""
    from apps.charging.driver_services import driver_session_start
    from apps.charging.models import DriverSession
    from apps.stations.models import Connector, Evse
    from tests.factories import DriverFactory

    def setup():
        cp = ChargePoint.objects.get(identity="CP-1")
        Connector.objects.create(
            evse=Evse.objects.create(charge_point=cp, evse_id=1), connector_id=1, status="Available"
        )
        session, _ = driver_session_start(
            driver=DriverFactory(), charge_point_id=cp.pk, evse_id=1, idempotency_key="k"
        )
        return session

    comm, _, _ = await connect()
    charger = Charger(comm)
    await charger.call("BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "X"})
    session = await database_sync_to_async(setup)()
    call = await charger.receive()
    assert call[2] == "RemoteStartTransaction"
    answer[1] = call[1]
    await charger.send_raw(json.dumps(answer))
    await wait(command_wait)(command_id=session.start_command_id, timeout_s=5)

    async def failed():
        for _ in range(100):
            s = await database_sync_to_async(DriverSession.objects.get)(pk=session.pk)
            if s.status == "FAILED":
                return s
            await asyncio.sleep(0.05)
        return s

    s = await failed()
    assert (s.status, s.failure_reason) == ("FAILED", failure)
    await comm.disconnect()


async def test_an_answer_followed_at_once_by_a_disconnect_is_still_recorded(charge_point):
    """A charger that accepts a new AuthorizationKey closes its socket right after answering, to connect
    with the new key: the disconnect stops the connection's workers, but the answer (and the key change it
    brings) is recorded and published all the same."""
    from apps.ocpp_gateway.models import OcppCommand
    from apps.stations import keys

    new_key = "fedcba9876543210fedcba9876543210"
    comm, connected, _ = await connect()
    assert connected
    charger = Charger(comm)
    command_id = await database_sync_to_async(_send)(
        "ChangeConfiguration", {"key": "AuthorizationKey", "value": new_key}
    )
    call = await charger.receive()
    await charger.send_raw(json.dumps([3, call[1], {"status": "Accepted"}]))
    await comm.disconnect()
    outcome = await wait(command_wait)(command_id=command_id, timeout_s=5)
    assert outcome["status"] == CommandStatus.ANSWERED
    command = await database_sync_to_async(OcppCommand.objects.select_related("charge_point").get)(
        pk=command_id
    )
    assert command.status == CommandStatus.ANSWERED
    assert keys.verify_key(new_key, command.charge_point.auth_key_hash)
