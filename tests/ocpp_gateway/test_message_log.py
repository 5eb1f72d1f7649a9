"""The message log: every frame in and out, written in batches off the request path (retention by whole
monthly partitions: tests/cpo/test_partitions.py)."""

import json

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django import db

from apps.ocpp_gateway import masking, messagelog
from apps.ocpp_gateway.models import OcppMessage
from apps.stations import keys
from apps.stations.models import DeviceVariable
from tests.factories import ChargePointFactory, OrganisationFactory
from tests.ocpp_gateway.conftest import KEY, Charger, connect

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def test_frames_in_and_out_are_logged_in_a_batch(charge_point):
    comm, _, _ = await connect()
    charger = Charger(comm)
    await charger.call("BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "X"})
    await charger.send_raw("not json\u0000")
    await charger.call("Heartbeat", {})
    await messagelog.flush_now()
    rows = await database_sync_to_async(
        lambda: list(
            OcppMessage.objects.order_by("pk").values_list(
                "identity", "direction", "message_type", "action", "unique_id", "charge_point_id"
            )
        )
    )()
    assert rows == [
        ("CP-1", "in", 2, "BootNotification", "m1", charge_point.pk),
        ("CP-1", "out", 3, "BootNotification", "m1", charge_point.pk),
        ("CP-1", "in", None, "", "", charge_point.pk),  # kept even when unparsable (NUL removed)
        ("CP-1", "in", 2, "Heartbeat", "m2", charge_point.pk),
        ("CP-1", "out", 3, "Heartbeat", "m2", charge_point.pk),
    ]
    frame = await database_sync_to_async(
        lambda: OcppMessage.objects.get(direction="in", action="Heartbeat").frame
    )()
    assert frame == '[2, "m2", "Heartbeat", {}]'
    await comm.disconnect()


def _send(**kwargs):
    from apps.ocpp_gateway.services import command_send

    try:
        return command_send(**kwargs)
    finally:
        db.connection.close()


async def _all_logged_and_recorded() -> str:
    """Every logged frame and every command record (payload and response), as one text."""
    from apps.ocpp_gateway.models import OcppCommand

    def read() -> str:
        try:
            frames = list(OcppMessage.objects.values_list("frame", flat=True))
            commands = [json.dumps([c.payload, c.response]) for c in OcppCommand.objects.all()]
            return "\n".join(frames + commands)
        finally:
            db.connection.close()

    return await sync_to_async(read, thread_sensitive=False)()


async def test_charger_keys_are_masked_in_the_log_both_ways_v16(charge_point):
    """Our ChangeConfiguration of AuthorizationKey (the accept action's too), the charger's GetConfiguration
    answer listing it, and anything the charger sends naming it: logged and recorded with the key masked."""
    from apps.ocpp_gateway.services import chargepoint_accept, command_wait

    new_key = "SECRET-KEY-16-chars-or-more-1"
    comm, connected, _ = await connect()
    assert connected
    charger = Charger(comm)
    command = await sync_to_async(_send, thread_sensitive=False)(
        charge_point=charge_point,
        action="ChangeConfiguration",
        payload={"key": "AuthorizationKey", "value": new_key},
        timeout_s=10,
    )
    change = await charger.receive()
    assert change[3] == {"key": "AuthorizationKey", "value": new_key}  # the charger gets it in clear
    await charger.send_raw(json.dumps([3, change[1], {"status": "Rejected"}]))
    await sync_to_async(command_wait, thread_sensitive=False)(command_id=command.pk, timeout_s=5)

    command = await sync_to_async(_send, thread_sensitive=False)(
        charge_point=charge_point,
        action="GetConfiguration",
        payload={"key": ["AuthorizationKey"]},
        timeout_s=10,
    )
    get = await charger.receive()
    await charger.send_raw(
        json.dumps(
            [
                3,
                get[1],
                {
                    "configurationKey": [
                        {"key": "authorizationkey", "readonly": False, "value": new_key},
                        {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
                    ]
                },
            ]
        )
    )
    await sync_to_async(command_wait, thread_sensitive=False)(command_id=command.pk, timeout_s=5)
    # A charger that echoes it in a request of its own, even one that breaks the schema.
    await charger.send_raw(
        json.dumps(
            [2, "echo", "DataTransfer", {"vendorId": "X", "key": "AuthorizationKey", "value": new_key}]
        )
    )
    await charger.receive()
    await charger.send_raw('[2, "bad", "AuthorizationKey" ' + new_key)  # unreadable, yet names the key
    await comm.disconnect()

    def pending() -> tuple:
        try:
            cp = charge_point.__class__.objects.get(pk=charge_point.pk)
            cp.registration_status = "Pending"
            cp.save(update_fields=["registration_status"])
            return cp
        finally:
            db.connection.close()

    cp = await sync_to_async(pending, thread_sensitive=False)()
    comm, connected, _ = await connect()
    charger = Charger(comm)
    accept = sync_to_async(chargepoint_accept, thread_sensitive=False)
    _cp, accept_key, command = await accept(charge_point=cp)
    change = await charger.receive()
    assert change[3]["value"] == accept_key
    await charger.send_raw(json.dumps([3, change[1], {"status": "Accepted"}]))
    await sync_to_async(command_wait, thread_sensitive=False)(command_id=command.pk, timeout_s=5)
    await comm.disconnect()
    await messagelog.flush_now()

    stored = await _all_logged_and_recorded()
    assert new_key not in stored and accept_key not in stored
    # both ChangeConfigurations, the GetConfiguration answer, the echo
    assert stored.count('"value":"***"') >= 4
    withheld = await database_sync_to_async(OcppMessage.objects.filter(frame=masking.WITHHELD).count)()
    assert withheld == 1


async def test_charger_keys_are_masked_in_the_log_both_ways_v201(transactional_db):
    """2.0.1: SetVariables of SecurityCtrlr.BasicAuthPassword, the GetVariables result that reads it and a
    NotifyReport that reports it are logged and recorded with the password masked."""
    from apps.ocpp_gateway.services import command_wait

    org = await database_sync_to_async(OrganisationFactory)(slug="v201-org")
    cp = await database_sync_to_async(ChargePointFactory)(
        identity="CS-1", organisation=org, ocpp_protocol="ocpp2.0.1", auth_key_hash=keys.hash_key(KEY)
    )
    secret = "BASIC-AUTH-password-0123"
    comm, connected, _ = await connect(identity="CS-1", subprotocols=["ocpp2.0.1"])
    assert connected
    charger = Charger(comm)
    item = {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}}
    command = await sync_to_async(_send, thread_sensitive=False)(
        charge_point=cp,
        action="SetVariables",
        payload={"setVariableData": [{**item, "attributeValue": secret}]},
        timeout_s=10,
    )
    sent = await charger.receive()
    assert sent[3]["setVariableData"][0]["attributeValue"] == secret
    await charger.send_raw(
        json.dumps([3, sent[1], {"setVariableResult": [{**item, "attributeStatus": "Rejected"}]}])
    )
    await sync_to_async(command_wait, thread_sensitive=False)(command_id=command.pk, timeout_s=5)

    command = await sync_to_async(_send, thread_sensitive=False)(
        charge_point=cp, action="GetVariables", payload={"getVariableData": [item]}, timeout_s=10
    )
    get = await charger.receive()
    await charger.send_raw(
        json.dumps(
            [
                3,
                get[1],
                {"getVariableResult": [{**item, "attributeStatus": "Accepted", "attributeValue": secret}]},
            ]
        )
    )
    await sync_to_async(command_wait, thread_sensitive=False)(command_id=command.pk, timeout_s=5)

    await charger.call(
        "BootNotification", {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}}
    )
    await charger.call(
        "NotifyReport",
        {
            "requestId": 1,
            "generatedAt": "2026-01-01T00:00:00Z",
            "seqNo": 0,
            "tbc": False,
            "reportData": [{**item, "variableAttribute": [{"type": "Actual", "value": secret}]}],
        },
    )
    await comm.disconnect()
    await messagelog.flush_now()

    stored = await _all_logged_and_recorded()
    assert secret not in stored
    assert stored.count('"***"') >= 3
    # Nor in the device model the report and the GetVariables answer update (readable in the admin).
    values = await database_sync_to_async(
        lambda: list(DeviceVariable.objects.values_list("value", flat=True))
    )()
    assert values and secret not in values
