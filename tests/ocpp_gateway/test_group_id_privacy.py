"""A card's fleet group (1.6 parentIdTag / 2.0.1 groupIdToken) is told only to chargers where the card
is valid (its network: `valid_at` empty, or naming the charger's operator), never with Invalid:
Authorize and StartTransaction (1.6), Authorize and TransactionEvent (2.0.1), and local lists."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from apps.accounts.models import IdToken
from apps.ocpp_gateway import localauth
from apps.ocpp_gateway.models import LocalAuthListMember
from apps.stations.models import ChargePoint
from tests.factories import ChargePointFactory, IdTokenFactory, LocalAuthListFactory, OrganisationFactory
from tests.ocpp_gateway.conftest import Charger, connect

TS = "2026-11-20T10:00:00Z"


def cards():
    """One card of another operator's network (not valid here), one valid everywhere; both grouped."""
    other = OrganisationFactory(slug="other-network")
    elsewhere = IdTokenFactory(uid="04EE0001", group_id="FLEET-OTHER", organisation=other)
    elsewhere.valid_at.add(other)
    IdTokenFactory(uid="04EE0002", group_id="FLEET-ALL")


async def boot16():
    comm, connected, _ = await connect()
    assert connected
    charger = Charger(comm)
    assert (await charger.call("BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "X"}))[
        0
    ] == 3
    return comm, charger


async def boot201():
    comm, connected, subprotocol = await connect(subprotocols=["ocpp2.0.1"])
    assert connected and subprotocol == "ocpp2.0.1"
    charger = Charger(comm)
    boot = {"chargingStation": {"model": "M2", "vendorName": "ACME"}, "reason": "PowerUp"}
    assert (await charger.call("BootNotification", boot))[0] == 3
    return comm, charger


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_v16_authorize_and_start_transaction(charge_point):
    await database_sync_to_async(cards)()
    comm, charger = await boot16()

    answer = await charger.call("Authorize", {"idTag": "04EE0001"})
    assert answer[2]["idTagInfo"] == {"status": "Invalid"}
    answer = await charger.call(
        "StartTransaction", {"connectorId": 1, "idTag": "04EE0001", "meterStart": 0, "timestamp": TS}
    )
    assert answer[2]["idTagInfo"] == {"status": "Invalid"}

    answer = await charger.call("Authorize", {"idTag": "04EE0002"})
    assert answer[2]["idTagInfo"] == {"status": "Accepted", "parentIdTag": "FLEET-ALL"}
    answer = await charger.call(
        "StartTransaction", {"connectorId": 2, "idTag": "04EE0002", "meterStart": 0, "timestamp": TS}
    )
    assert answer[2]["idTagInfo"] == {"status": "Accepted", "parentIdTag": "FLEET-ALL"}
    await comm.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_v201_authorize_and_transaction_event(charge_point):
    await database_sync_to_async(cards)()
    comm, charger = await boot201()

    answer = await charger.call("Authorize", {"idToken": {"idToken": "04EE0001", "type": "ISO14443"}})
    assert answer[2]["idTokenInfo"] == {"status": "Invalid"}
    started = {
        "eventType": "Started",
        "timestamp": TS,
        "triggerReason": "Authorized",
        "seqNo": 0,
        "transactionInfo": {"transactionId": "TX-G1"},
        "evse": {"id": 1, "connectorId": 1},
        "idToken": {"idToken": "04EE0001", "type": "ISO14443"},
    }
    answer = await charger.call("TransactionEvent", started)
    assert answer[2]["idTokenInfo"] == {"status": "Invalid"}

    answer = await charger.call("Authorize", {"idToken": {"idToken": "04EE0002", "type": "ISO14443"}})
    assert answer[2]["idTokenInfo"] == {
        "status": "Accepted",
        "groupIdToken": {"idToken": "FLEET-ALL", "type": "Central"},
    }
    started = {
        **started,
        "transactionInfo": {"transactionId": "TX-G2"},
        "evse": {"id": 2, "connectorId": 1},
        "idToken": {"idToken": "04EE0002", "type": "ISO14443"},
    }
    answer = await charger.call("TransactionEvent", started)
    assert answer[2]["idTokenInfo"]["groupIdToken"] == {"idToken": "FLEET-ALL", "type": "Central"}
    await comm.disconnect()


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
def test_local_lists_carry_the_group_only_where_the_card_is_valid(db, protocol):
    cards()
    org = OrganisationFactory()
    local_list = LocalAuthListFactory(organisation=org, name="Depot")
    cp = ChargePointFactory(organisation=org, identity="CP-LLG")
    ChargePoint.objects.filter(pk=cp.pk).update(ocpp_protocol=protocol)
    cp.refresh_from_db()
    member = LocalAuthListMember.objects.create(local_list=local_list, charge_point=cp)
    localauth.local_list_set_members(local_list=local_list, id_tokens=list(IdToken.objects.all()))
    payload = localauth.local_list_payload(member=member, update_type="Full").payload
    entries = payload.get("localAuthorizationList")
    if protocol == "ocpp1.6":
        assert entries == [
            {"idTag": "04EE0001", "idTagInfo": {"status": "Invalid"}},
            {"idTag": "04EE0002", "idTagInfo": {"status": "Accepted", "parentIdTag": "FLEET-ALL"}},
        ]
    else:
        assert [entry["idTokenInfo"] for entry in entries] == [
            {"status": "Invalid"},
            {"status": "Accepted", "groupIdToken": {"idToken": "FLEET-ALL", "type": "Central"}},
        ]
