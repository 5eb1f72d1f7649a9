"""A tap links a card and its owner to the charger's operator only where the card is accepted by the
network rule: a card valid only at operator A, presented in a StartTransaction at operator B's charger
(a driver's tap that B refuses, or B's own simulated charger naming a known uid), shows B's staff
neither the card nor its driver in the admin; the same tap at A's charger shows them to A's staff."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.urls import reverse

from apps.accounts.choices import Role
from apps.charging.models import ChargingSession
from apps.stations import keys
from tests.factories import (
    ChargePointFactory,
    DriverFactory,
    IdTokenFactory,
    OrganisationFactory,
    StaffUserFactory,
)
from tests.ocpp_gateway.conftest import KEY, Charger, connect

TS = "2026-11-20T10:00:00Z"
UID = "04AA0A01"
EMAIL = "tapping.driver@example.com"
CHANGELISTS = (
    "admin:accounts_user_changelist",
    "admin:accounts_idtoken_changelist",
    "admin:accounts_driverprofile_changelist",
)


def setup(operator_b):
    network_a = OrganisationFactory(slug="network-a")
    ChargePointFactory(identity="CP-A", organisation=network_a, auth_key_hash=keys.hash_key(KEY))
    driver = DriverFactory(email=EMAIL, full_name="Tapping Driver")
    card = IdTokenFactory(uid=UID, owner=driver, organisation=network_a)
    card.valid_at.add(network_a)
    staff_a = StaffUserFactory(organisation=network_a, role=Role.OPERATOR_ADMIN, email="admin@network-a.test")
    staff_b = StaffUserFactory(
        organisation=operator_b, role=Role.OPERATOR_ADMIN, email="admin@network-b.test"
    )
    return staff_a, staff_b


def card_of_network_a() -> None:
    """A's charger and a driver's card valid only at A (no staff: role groups are not needed)."""
    network_a = OrganisationFactory(slug="network-a")
    ChargePointFactory(identity="CP-A", organisation=network_a, auth_key_hash=keys.hash_key(KEY))
    card = IdTokenFactory(uid=UID, owner=DriverFactory(email=EMAIL), organisation=network_a)
    card.valid_at.add(network_a)


def shown_to(staff) -> list[str]:
    """The changelists (users, cards, driver profiles) where `staff` sees the driver or the card."""
    client = Client()
    client.force_login(staff)
    shown = []
    for name in CHANGELISTS:
        response = client.get(reverse(name))
        assert response.status_code == 200, name
        page = response.content.decode()
        if EMAIL in page or UID in page or "Tapping" in page:
            shown.append(name)
    return shown


async def tap(identity: str) -> dict:
    comm, connected, _ = await connect(identity=identity)
    assert connected
    charger = Charger(comm)
    boot = {"chargePointVendor": "ACME", "chargePointModel": "X"}
    assert (await charger.call("BootNotification", boot))[0] == 3
    answer = await charger.call(
        "StartTransaction", {"connectorId": 1, "idTag": UID, "meterStart": 0, "timestamp": TS}
    )
    await comm.disconnect()
    return answer[2]["idTagInfo"]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_tap_refused_by_the_network_rule_links_nobody(charge_point):
    staff_a, staff_b = await database_sync_to_async(setup)(charge_point.organisation)

    assert (await tap("CP-A"))["status"] == "Accepted"  # the card's own network
    assert await database_sync_to_async(shown_to)(staff_a) == list(CHANGELISTS)

    assert await tap("CP-1") == {"status": "Invalid"}  # operator B's charger
    assert await database_sync_to_async(shown_to)(staff_b) == []
    session = await ChargingSession.objects.aget(charge_point=charge_point)
    assert session.id_tag == UID and session.id_token_id is None  # recorded for review, tied to no card
    assert session.review_reason == "token_not_accepted"


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_refused_transaction_elsewhere_does_not_block_the_card_at_its_own_network(charge_point):
    """Operator B starting a transaction with the uid of A's card (refused: Invalid) must not make the card
    ConcurrentTx at A's chargers: only transactions the card was accepted for count."""
    await database_sync_to_async(card_of_network_a)()

    assert await tap("CP-1") == {"status": "Invalid"}  # operator B's charger, left ACTIVE there
    assert await ChargingSession.objects.filter(charge_point=charge_point, status="ACTIVE").aexists()

    assert (await tap("CP-A"))["status"] == "Accepted"
