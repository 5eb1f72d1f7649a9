"""Handshake security (profiles 0/1/2, unknown chargers, failed-attempt limits) and presence epochs."""

import json

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django import db
from django.test import override_settings

from apps.ocpp_gateway import presence
from apps.ocpp_gateway.choices import CommandStatus
from apps.ocpp_gateway.services import chargepoint_accept, command_wait
from apps.stations import keys
from apps.stations.models import ChargePoint
from tests.factories import ChargePointFactory, OrganisationFactory
from tests.ocpp_gateway.conftest import KEY, Charger, basic, connect

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def basic_header(identity: str, key: str) -> str:
    return basic(identity, key)[1].decode()


def in_thread(fn):
    def run(**kwargs):
        try:
            return fn(**kwargs)
        finally:
            db.connection.close()

    return sync_to_async(run, thread_sensitive=False)


async def test_wrong_or_missing_credentials_refused(charge_point):
    for key in ("wrong-key-wrong-key", None):
        comm, connected, _ = await connect(key=key)
        assert not connected
        await comm.disconnect()


async def test_no_supported_subprotocol_refused(charge_point):
    _comm, connected, _ = await connect(subprotocols=["ocpp1.5", "foo"])
    assert not connected


async def test_subprotocol_follows_charger_preference(charge_point):
    comm, connected, subprotocol = await connect(subprotocols=["ocpp9.9", "ocpp2.1", "ocpp1.6"])
    assert connected and subprotocol == "ocpp2.1"
    await comm.disconnect()
    comm, connected, subprotocol = await connect(subprotocols=["ocpp1.6", "ocpp2.1"])
    assert connected and subprotocol == "ocpp1.6"
    await comm.disconnect()


async def test_unknown_identity_rejected_by_default(charge_point):
    _comm, connected, _ = await connect(identity="NOBODY", key=None)
    assert not connected
    assert not await database_sync_to_async(ChargePoint.objects.filter(identity="NOBODY").exists)()


async def test_invalid_identity_refused(charge_point):
    _comm, connected, _ = await connect(identity="bad%20id", key=None)
    assert not connected


async def test_failed_attempts_are_limited_per_identity_and_address(charge_point):
    """Failures make that (identity, address) wait for refusals only: the right key gets in from there
    too, and the real charger elsewhere always gets in."""
    from apps.ocpp_gateway.auth import authenticate

    with override_settings(CPO_OCPP_AUTH_FAILURES_PER_IDENTITY_ADDRESS=3):
        for _ in range(50):
            _comm, connected, _ = await connect(key="wrong-key-wrong-key", address="203.0.113.66")
            assert not connected
        decision = await in_thread(authenticate)(
            identity="CP-1",
            authorization=basic_header("CP-1", "wrong-key-wrong-key"),
            address="203.0.113.66",
            secure=False,
        )
        assert (decision.allowed, decision.status) == (False, 429)
        # The right key from that same address: a correct key always gets in.
        comm, connected, _ = await connect(address="203.0.113.66")
        assert connected
        await comm.disconnect()
        comm, connected, _ = await connect(address="198.51.100.7")  # the real charger
        assert connected
        await comm.disconnect()


async def test_failed_attempts_are_limited_per_address(charge_point):
    """One address trying many identities is stopped once it has failed CPO_OCPP_AUTH_FAILURES_PER_ADDRESS
    times, even for an identity it has not tried yet; an unknown identity and a wrong key get the same
    429 then. A correct key from that same address still gets in (chargers behind one carrier address)."""
    from apps.ocpp_gateway.auth import authenticate

    with override_settings(CPO_OCPP_AUTH_FAILURES_PER_ADDRESS=5):
        for n in range(5):
            decision = await in_thread(authenticate)(
                identity=f"GUESS-{n}", authorization=None, address="203.0.113.66", secure=False
            )
            assert decision.status == 401
        answers = set()
        for identity, authorization in [
            ("CP-1", basic_header("CP-1", "wrong-key-wrong-key")),
            ("NOBODY", basic_header("NOBODY", "wrong-key-wrong-key")),
            ("CP-1", None),
            ("NOBODY", None),
        ]:
            decision = await in_thread(authenticate)(
                identity=identity, authorization=authorization, address="203.0.113.66", secure=False
            )
            answers.add((decision.allowed, decision.status, decision.reason))
        assert answers == {(False, 429, "too many failed attempts; try later")}
        decision = await in_thread(authenticate)(
            identity="CP-1", authorization=basic_header("CP-1", KEY), address="203.0.113.66", secure=False
        )
        assert (decision.allowed, decision.status) == (True, 200)
        comm, connected, _ = await connect(address="203.0.113.66")  # over its limit, the right key
        assert connected
        await comm.disconnect()
        decision = await in_thread(authenticate)(
            identity="GUESS-9", authorization=None, address="203.0.113.67", secure=False
        )
        assert decision.status == 401  # another address is not affected
        comm, connected, _ = await connect(address="203.0.113.67")
        assert connected
        await comm.disconnect()


@override_settings(CPO_OCPP_UNKNOWN_CHARGERS="pending", CPO_OCPP_AUTH_FAILURES_PER_ADDRESS=2)
async def test_an_address_over_its_limit_does_not_auto_register(transactional_db):
    from apps.ocpp_gateway.auth import authenticate

    org = await database_sync_to_async(OrganisationFactory)(slug="home")
    await database_sync_to_async(ChargePointFactory)(
        identity="KEYED-1", organisation=org, auth_key_hash=keys.hash_key(KEY)
    )
    for _ in range(2):
        decision = await in_thread(authenticate)(
            identity="KEYED-1",
            authorization=basic_header("KEYED-1", "wrong-key-wrong-key"),
            address="203.0.113.66",
            secure=False,
        )
        assert decision.status == 401
    decision = await in_thread(authenticate)(
        identity="NEW-2", authorization=None, address="203.0.113.66", secure=False
    )
    assert decision.status == 429
    assert not await database_sync_to_async(ChargePoint.objects.filter(identity="NEW-2").exists)()


async def test_unknown_identity_and_wrong_key_get_the_same_answer(charge_point):
    """Status and body alike (here, the answer the consumer would send), so the fleet cannot be listed."""
    from apps.ocpp_gateway.auth import authenticate

    answers = set()
    for identity, authorization in [
        ("CP-1", basic_header("CP-1", "wrong-key-wrong-key")),
        ("NOBODY", basic_header("NOBODY", "wrong-key-wrong-key")),
        ("CP-1", None),
        ("NOBODY", None),
    ]:
        decision = await in_thread(authenticate)(
            identity=identity, authorization=authorization, address="203.0.113.5", secure=False
        )
        answers.add((decision.allowed, decision.status, decision.reason))
    assert answers == {(False, 401, "missing or wrong credentials")}


@override_settings(CPO_OCPP_ALLOW_PROFILE_0=False)
async def test_profile_0_needs_the_setting(transactional_db):
    org = await database_sync_to_async(OrganisationFactory)(slug="p0")
    await database_sync_to_async(ChargePointFactory)(
        identity="OPEN-1", organisation=org, security_profile=0, auth_key_hash=""
    )
    comm, connected, _ = await connect(identity="OPEN-1", key=None)
    assert not connected
    with override_settings(CPO_OCPP_ALLOW_PROFILE_0=True):
        comm, connected, _ = await connect(identity="OPEN-1", key=None)
        assert connected
        await comm.disconnect()


async def test_profile_2_requires_tls(transactional_db):
    org = await database_sync_to_async(OrganisationFactory)(slug="p2")
    await database_sync_to_async(ChargePointFactory)(
        identity="TLS-1", organisation=org, security_profile=2, auth_key_hash=keys.hash_key(KEY)
    )
    _comm, connected, _ = await connect(identity="TLS-1")
    assert not connected  # plain ws:// is refused for profile 2


@override_settings(CPO_OCPP_UNKNOWN_CHARGERS="pending")
async def test_pending_policy_registers_and_restricts_until_accepted(transactional_db):
    await database_sync_to_async(OrganisationFactory)(slug="home")
    comm, connected, _ = await connect(identity="NEW-1", key=None)
    assert connected
    cp = await database_sync_to_async(ChargePoint.objects.get)(identity="NEW-1")
    assert cp.registration_status == "Pending" and cp.security_profile == 0
    charger = Charger(comm)
    boot = await charger.call("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
    assert boot[2]["status"] == "Pending"
    refused = await charger.call(
        "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
    )
    assert refused[0] == 4 and refused[2] == "SecurityError"

    accepted = in_thread(chargepoint_accept)(charge_point=cp)
    cp_after, key, command = await accepted
    assert cp_after.registration_status == "Accepted" and len(key) == 40 and command is not None
    change = await charger.receive()
    assert change[2] == "ChangeConfiguration" and change[3] == {"key": "AuthorizationKey", "value": key}
    await charger.send_raw(json.dumps([3, change[1], {"status": "Accepted"}]))
    outcome = await in_thread(command_wait)(command_id=command.pk, timeout_s=5)
    assert outcome["status"] == CommandStatus.ANSWERED
    cp = await database_sync_to_async(ChargePoint.objects.get)(identity="NEW-1")
    assert cp.security_profile == 1 and keys.verify_key(key, cp.auth_key_hash)
    stored = await database_sync_to_async(lambda: command.__class__.objects.get(pk=command.pk).payload)()
    assert stored["value"] == "***"  # the key itself is never stored in clear text
    boot = await charger.call("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
    assert boot[2]["status"] == "Accepted"
    await comm.disconnect()
    comm, connected, _ = await connect(identity="NEW-1", key=None)
    assert not connected  # from now on the key is required
    comm, connected, _ = await connect(identity="NEW-1", key=key)
    assert connected
    await comm.disconnect()


async def test_new_connection_replaces_old_and_old_disconnect_keeps_presence(charge_point):
    first, connected, _ = await connect()
    assert connected
    p1 = await sync_to_async(presence.lookup)("CP-1")
    second, connected, _ = await connect()
    assert connected
    p2 = await sync_to_async(presence.lookup)("CP-1")
    assert p2.epoch == p1.epoch + 1 and p2.channel != p1.channel
    closed = await first.receive_output(timeout=5)
    assert closed["type"] == "websocket.close"  # the replaced socket is told to go
    await first.disconnect()
    p_after = await sync_to_async(presence.lookup)("CP-1")
    assert p_after is not None and p_after.epoch == p2.epoch
    await second.disconnect()
    assert await sync_to_async(presence.lookup)("CP-1") is None
