"""A Pending charger without a key cannot be hijacked: a connection without credentials never replaces a
live one, and the operator's accept page keys exactly the connection it shows."""

import json

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django import db
from django.test import Client
from django.urls import reverse

from apps.ocpp_gateway import presence
from apps.ocpp_gateway.models import OcppCommand
from apps.ocpp_gateway.redis_clients import sync_redis
from apps.ocpp_gateway.services import chargepoint_accept
from apps.stations.models import ChargePoint
from cpo import clock
from cpo.exceptions import ValidationFailed
from tests.factories import ChargePointFactory, OrganisationFactory
from tests.ocpp_gateway.conftest import Charger, connect

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
BOOT = {
    "chargePointVendor": "RealVendor",
    "chargePointModel": "RealModel",
    "chargePointSerialNumber": "SN-REAL",
}


def in_thread(fn):
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            db.connection.close()

    return sync_to_async(run, thread_sensitive=False)


@pytest.fixture
def pending(transactional_db):
    org = OrganisationFactory(slug="pending-org")
    return ChargePointFactory(
        identity="PEND-1",
        organisation=org,
        registration_status="Pending",
        security_profile=0,
        auth_key_hash="",
    )


def _went_silent(identity: str) -> None:
    """The holder's last frame is older than the takeover delay (as if it had been silent that long)."""
    sync_redis().hset(presence.PREFIX + identity, "last_frame_at", clock.now().timestamp() - 3600)


async def test_unauthenticated_newcomer_never_replaces_a_live_connection(pending):
    real, connected, _ = await connect(identity="PEND-1", key=None, address="198.51.100.7")
    assert connected
    charger = Charger(real)
    assert (await charger.call("BootNotification", BOOT))[2]["status"] == "Pending"
    held = await sync_to_async(presence.lookup)("PEND-1")

    _hijacker, connected, _ = await connect(identity="PEND-1", key=None, address="203.0.113.66")
    assert not connected
    after = await sync_to_async(presence.lookup)("PEND-1")
    assert (after.epoch, after.address) == (held.epoch, "198.51.100.7")
    assert (await charger.call("BootNotification", BOOT))[2]["status"] == "Pending"  # the real one stays

    # Once the holder has been silent longer than the takeover delay, it counts as gone.
    await sync_to_async(_went_silent)("PEND-1")
    newcomer, connected, _ = await connect(identity="PEND-1", key=None, address="203.0.113.66")
    assert connected
    assert (await real.receive_output(timeout=5))["type"] == "websocket.close"  # the silent one is told to go
    await newcomer.disconnect()
    await real.disconnect()


async def test_key_goes_only_to_the_connection_the_page_showed(pending):
    """The page shows connection A; A goes silent and B takes over: accepting A's epoch sends nothing and
    changes nothing; the page then shows B, and accepting B's epoch keys B."""
    first, connected, _ = await connect(identity="PEND-1", key=None, address="198.51.100.7")
    assert connected
    await Charger(first).call("BootNotification", BOOT)
    shown = await sync_to_async(presence.lookup)("PEND-1")
    assert (shown.address, shown.boot_serial, shown.boot_vendor, shown.boot_model) == (
        "198.51.100.7",
        "SN-REAL",
        "RealVendor",
        "RealModel",
    )
    assert shown.booted_at > 0

    await sync_to_async(_went_silent)("PEND-1")
    second, connected, _ = await connect(identity="PEND-1", key=None, address="203.0.113.66")
    assert connected
    with pytest.raises(ValidationFailed) as refused:
        await in_thread(chargepoint_accept)(charge_point=pending, epoch=shown.epoch)
    assert refused.value.code == "connection_changed"
    cp = await database_sync_to_async(ChargePoint.objects.get)(pk=pending.pk)
    assert cp.registration_status == "Pending"
    assert not await database_sync_to_async(OcppCommand.objects.exists)()  # nothing was sent to anyone

    now = await sync_to_async(presence.lookup)("PEND-1")
    _cp, key, _command = await in_thread(chargepoint_accept)(charge_point=pending, epoch=now.epoch)
    frame = json.loads(await second.receive_from(timeout=10))
    assert frame[2] == "ChangeConfiguration" and frame[3] == {"key": "AuthorizationKey", "value": key}
    await second.disconnect()
    await first.disconnect()


def _admin_page(cp_pk: int, data: dict | None = None):
    from apps.accounts.models import User

    user = User.objects.filter(email="root@example.com").first() or User.objects.create_superuser(
        email="root@example.com", password="root-password-123"
    )
    client = Client()
    client.force_login(user)
    url = reverse("admin:ocpp_gateway_ocppcommand_accept", args=[cp_pk])
    if data is None:
        return client.get(url).content.decode()
    response = client.post(url, data, follow=True)
    return [str(m) for m in response.context["messages"]]


async def test_accept_page_shows_the_connection_and_refuses_a_changed_one(pending):
    first, connected, _ = await connect(identity="PEND-1", key=None, address="198.51.100.7")
    assert connected
    await Charger(first).call("BootNotification", BOOT)
    held = await sync_to_async(presence.lookup)("PEND-1")
    page = await in_thread(_admin_page)(pending.pk)
    for shown in ("198.51.100.7", "SN-REAL", "RealVendor", "RealModel", f'name="epoch" value="{held.epoch}"'):
        assert shown in page

    messages = await in_thread(_admin_page)(pending.pk, {"epoch": str(held.epoch + 1)})
    assert any(
        "changed since the page was shown" in m and "nothing was accepted or sent" in m for m in messages
    )
    # A page that showed no connection does not key one that appeared since.
    messages = await in_thread(_admin_page)(pending.pk, {"epoch": "0"})
    assert any("changed since the page was shown" in m for m in messages)
    cp = await database_sync_to_async(ChargePoint.objects.get)(pk=pending.pk)
    assert cp.registration_status == "Pending"
    assert not await database_sync_to_async(OcppCommand.objects.exists)()  # nothing was sent to anyone
    await first.disconnect()


@pytest.mark.parametrize("status", ["Pending", "Accepted"])
async def test_keyless_charger_reconnecting_from_its_address_takes_over(transactional_db, settings, status):
    """A keyless charger (profile 0 allowed, or Pending) reconnects after a reboot or a network drop
    before the server has noticed its old connection is dead: from the live connection's address the
    newcomer takes over at once; from another address it is still refused."""
    settings.CPO_OCPP_ALLOW_PROFILE_0 = True
    org = await database_sync_to_async(OrganisationFactory)(slug="keyless-org")
    await database_sync_to_async(ChargePointFactory)(
        identity="OPEN-1", organisation=org, registration_status=status, security_profile=0, auth_key_hash=""
    )
    old, connected, _ = await connect(identity="OPEN-1", key=None, address="198.51.100.7")
    assert connected
    await Charger(old).call("BootNotification", BOOT)
    held = await sync_to_async(presence.lookup)("OPEN-1")

    _other, connected, _ = await connect(identity="OPEN-1", key=None, address="203.0.113.66")
    assert not connected
    assert (await sync_to_async(presence.lookup)("OPEN-1")).epoch == held.epoch

    new, connected, _ = await connect(identity="OPEN-1", key=None, address="198.51.100.7")
    assert connected
    now = await sync_to_async(presence.lookup)("OPEN-1")
    assert now.epoch > held.epoch and (now.address, now.authenticated) == ("198.51.100.7", False)
    assert (await old.receive_output(timeout=5))["type"] == "websocket.close"  # the stale one is told to go
    assert (await Charger(new).call("BootNotification", BOOT))[0] == 3
    await new.disconnect()
    await old.disconnect()
