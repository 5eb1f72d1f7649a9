import pytest
from prometheus_client import REGISTRY

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


def _metric(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_chargers_messages_connection_and_handler_time_are_counted(charge_point):
    heartbeat_in = {"direction": "in", "action": "Heartbeat", "version": "1.6"}
    heartbeat_out = {"direction": "out", "action": "Heartbeat", "version": "1.6"}
    handled = {"action": "Heartbeat", "version": "1.6"}
    before = (
        _metric("cpo_ocpp_messages_total", heartbeat_in),
        _metric("cpo_ocpp_messages_total", heartbeat_out),
        _metric("cpo_ocpp_handler_seconds_count", handled),
        _metric("cpo_ocpp_connections", {}),
    )
    comm, connected, _subprotocol = await connect()
    assert connected
    assert _metric("cpo_ocpp_connections", {}) == before[3] + 1
    cp = Charger(comm)
    await cp.call("BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "X"})
    await cp.call("Heartbeat", {})
    await cp.call("Heartbeat", {})
    assert _metric("cpo_ocpp_messages_total", heartbeat_in) == before[0] + 2
    assert _metric("cpo_ocpp_messages_total", heartbeat_out) == before[1] + 2
    assert _metric("cpo_ocpp_handler_seconds_count", handled) == before[2] + 2
    await comm.disconnect()
    assert _metric("cpo_ocpp_connections", {}) == before[3]
