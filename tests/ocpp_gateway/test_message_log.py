"""The message log: every frame in and out, written in batches off the request path, purged by age."""

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async

from apps.ocpp_gateway import messagelog
from apps.ocpp_gateway.models import OcppMessage
from apps.ocpp_gateway.services import message_log_purge
from cpo import clock
from tests.factories import OcppMessageFactory
from tests.ocpp_gateway.conftest import Charger, connect

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def test_frames_in_and_out_are_logged_in_a_batch(charge_point):
    comm, connected, _ = await connect()
    charger = Charger(comm)
    await charger.call("BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "X"})
    await charger.send_raw("not json\u0000")
    await charger.call("Heartbeat", {})
    await messagelog.flush_now()
    rows = await database_sync_to_async(lambda: list(OcppMessage.objects.order_by("pk").values_list(
        "identity", "direction", "message_type", "action", "unique_id", "charge_point_id")))()
    assert rows == [
        ("CP-1", "in", 2, "BootNotification", "m1", charge_point.pk),
        ("CP-1", "out", 3, "BootNotification", "m1", charge_point.pk),
        ("CP-1", "in", None, "", "", charge_point.pk),  # kept even when unparsable (NUL removed)
        ("CP-1", "in", 2, "Heartbeat", "m2", charge_point.pk),
        ("CP-1", "out", 3, "Heartbeat", "m2", charge_point.pk),
    ]
    frame = await database_sync_to_async(lambda: OcppMessage.objects.get(direction="in", action="Heartbeat").frame)()
    assert frame == '[2, "m2", "Heartbeat", {}]'
    await comm.disconnect()


async def test_purge_removes_only_old_frames(charge_point):
    old = await database_sync_to_async(OcppMessageFactory)(charge_point=charge_point,
                                                           at=clock.now() - timedelta(days=31))
    new = await database_sync_to_async(OcppMessageFactory)(charge_point=charge_point, at=clock.now())
    assert await database_sync_to_async(message_log_purge)(days=30) == 1
    remaining = await database_sync_to_async(lambda: set(OcppMessage.objects.values_list("pk", flat=True)))()
    assert remaining == {new.pk} and old.pk not in remaining
