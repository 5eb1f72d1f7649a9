"""Tap to confirm, through the gateway: a driver's card link request waiting at a charger is confirmed by
the card's Authorize there (OCPP 1.6 idTag, 2.0.1 idToken with its type), and the tap is answered as the
now-linked card's authorisation; a card that cannot be linked is refused for the link and answered as
it would have been anyway."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from apps.accounts.choices import IdTokenType
from apps.accounts.models import IdToken
from apps.charging.card_links import card_link_request
from apps.charging.choices import CardLinkStatus
from tests.factories import DriverFactory, IdTokenFactory
from tests.ocpp_gateway.conftest import Charger, connect

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def _charger(subprotocols: list[str], boot: dict) -> tuple:
    comm, connected, _subprotocol = await connect(subprotocols=subprotocols)
    assert connected
    charger = Charger(comm)
    answer = await charger.call("BootNotification", boot)
    assert answer[0] == 3 and answer[2]["status"] == "Accepted"
    return comm, charger


@database_sync_to_async
def _ask(charge_point, **kwargs):
    driver = DriverFactory()
    return driver, card_link_request(driver=driver, charge_point_id=charge_point.pk, **kwargs)


@database_sync_to_async
def _state(link):
    link.refresh_from_db()
    return link.status, link.token.uid if link.token else None, link.token.owner_id if link.token else None


async def test_ocpp16_authorize_confirms_the_link(charge_point):
    driver, link = await _ask(charge_point)
    comm, charger = await _charger(["ocpp1.6"], {"chargePointVendor": "ACME", "chargePointModel": "X"})
    answer = await charger.call("Authorize", {"idTag": "04A1B2C3"})
    assert answer[2] == {"idTagInfo": {"status": "Accepted"}}
    assert await _state(link) == (CardLinkStatus.LINKED, "04A1B2C3", driver.pk)
    # the next driver's request there meets another driver's card: refused, the tap answered as ever
    await database_sync_to_async(lambda: IdTokenFactory(uid="04A1B2C4", owner=DriverFactory()))()
    _next_driver, refused = await _ask(charge_point)
    answer = await charger.call("Authorize", {"idTag": "04A1B2C4"})
    assert answer[2] == {"idTagInfo": {"status": "Accepted"}}
    assert await _state(refused) == (CardLinkStatus.REFUSED, None, None)
    await comm.disconnect()


async def test_ocpp201_authorize_confirms_the_link_of_the_asked_type(charge_point):
    driver, link = await _ask(charge_point, type=IdTokenType.EMAID)
    comm, charger = await _charger(
        ["ocpp2.0.1"],
        {"chargingStation": {"model": "M2", "vendorName": "ACME"}, "reason": "PowerUp"},
    )
    # an RFID card at the charger is not the contract id the driver asked to link: unknown, Invalid
    answer = await charger.call("Authorize", {"idToken": {"idToken": "04A1B2C3", "type": "ISO14443"}})
    assert answer[2]["idTokenInfo"] == {"status": "Invalid"}
    assert await _state(link) == (CardLinkStatus.PENDING, None, None)
    answer = await charger.call("Authorize", {"idToken": {"idToken": "DE-ABC-123456-7", "type": "eMAID"}})
    assert answer[2]["idTokenInfo"] == {"status": "Accepted"}
    assert await _state(link) == (CardLinkStatus.LINKED, "DE-ABC-123456-7", driver.pk)
    assert not await database_sync_to_async(IdToken.objects.filter(uid="04A1B2C3").exists)()
    await comm.disconnect()
