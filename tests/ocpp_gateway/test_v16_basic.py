import pytest

from tests.ocpp_gateway.conftest import Charger, connect

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def test_boot_and_heartbeat(charge_point):
    comm, connected, subprotocol = await connect()
    assert connected and subprotocol == "ocpp1.6"
    cp = Charger(comm)
    answer = await cp.call("BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "X"})
    assert answer[0] == 3 and answer[2]["status"] == "Accepted" and answer[2]["interval"] == 300
    answer = await cp.call("Heartbeat", {})
    assert answer[0] == 3 and "currentTime" in answer[2]
    answer = await cp.call("Foo", {})
    assert answer[:3] == [4, "m3", "NotImplemented"]
    answer = await cp.call("Reset", {"type": "Hard"})
    assert answer[:3] == [4, "m4", "NotSupported"]
    await comm.disconnect()
