"""OCPP 2.0.1 Core, CSMS test cases P (DataTransfer): vendor-specific data and custom data the CSMS
does not know (part 6, section 3.17)."""

from __future__ import annotations

import pytest

from apps.charging.models import ChargingSession
from apps.stations.models import Connector
from tests.conformance.station import Tx, now_iso
from tests.e2e.conftest import orm

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

CUSTOM = {"vendorId": "com.octt", "note": "anything the vendor likes", "level": 3}


async def test_TC_P_02_CSMS(station):
    """Data Transfer to the CSMS - Rejected / Unknown VendorId / Unknown MessageId."""
    answer = await station.result(
        "DataTransfer", {"vendorId": "com.octt", "messageId": "octt-message", "data": "x"}
    )
    assert answer["status"] in ("UnknownVendorId", "UnknownMessageId", "Rejected")


async def test_TC_P_03_CSMS(station, octt):
    """CustomData - Receive custom data: accepted and ignored wherever the schema allows it."""
    status = {
        "timestamp": now_iso(),
        "connectorStatus": "Occupied",
        "evseId": 1,
        "connectorId": 1,
        "customData": CUSTOM,
    }
    assert await station.result("StatusNotification", status) == {}
    tx = Tx(station)
    payload = {
        "eventType": "Started",
        "timestamp": now_iso(),
        "triggerReason": "CablePluggedIn",
        "seqNo": 0,
        "transactionInfo": {
            "transactionId": tx.transaction_id,
            "chargingState": "EVConnected",
            "customData": CUSTOM,
        },
        "evse": {"id": 1, "connectorId": 1},
        "customData": CUSTOM,
    }
    assert await station.result("TransactionEvent", payload) == {}
    connector = await orm(Connector.objects.get)(evse__charge_point__identity=octt.identity, evse__evse_id=1)
    assert connector.status == "Occupied"
    session = await orm(ChargingSession.objects.get)(transaction_ref=tx.transaction_id)
    assert (session.evse_id, session.charging_state) == (1, "EVConnected")
