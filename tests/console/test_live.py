"""The dashboard's live feed over a real WebSocket of the ASGI application: the admin's session
authenticates it, status changes are announced on commit, each socket reads only its user's network."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from apps.stations.services import connector_status_record
from cpo import clock
from tests.console.conftest import charger, put_presence
from tests.factories import DriverFactory, LocationFactory, OrganisationFactory, StaffUserFactory

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def _login(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


async def _open(session: str | None, origin: str = "http://localhost"):
    from config.asgi import application

    headers = [(b"origin", origin.encode()), (b"host", b"localhost")]
    if session:
        headers.append((b"cookie", f"sessionid={session}".encode()))
    communicator = WebsocketCommunicator(application, "/admin/console/live/", headers=headers)
    connected, code = await communicator.connect(timeout=10)
    return communicator, connected, code


def _seed():
    org_a, org_b = OrganisationFactory(slug="live-a"), OrganisationFactory(slug="live-b")
    cp_a = charger(org_a, LocationFactory(organisation=org_a), "LIVE-A", "Available")
    cp_b = charger(org_b, LocationFactory(organisation=org_b), "LIVE-B", "Available")
    put_presence("LIVE-A")
    put_presence("LIVE-B")
    staff = StaffUserFactory(organisation=org_a, role="Support")
    return cp_a, cp_b, _login(staff)


async def _until(communicator, predicate, timeout: float = 10.0) -> dict:
    """The first snapshot the socket sends that satisfies `predicate` (bounded wait, no reload)."""
    async with asyncio.timeout(timeout):
        while True:
            message = await communicator.receive_json_from(timeout=timeout)
            assert message["type"] == "snapshot"
            if predicate(message["snapshot"]):
                return message["snapshot"]


def _report(cp, status):
    connector_status_record(
        charge_point_id=cp.pk,
        evse_id=1,
        connector_id=1,
        status=status,
        received_at=clock.now(),
        charger_at=clock.now(),
    )


async def test_a_status_change_reaches_the_dashboard_without_a_reload():
    cp_a, _cp_b, session = await database_sync_to_async(_seed)()
    communicator, connected, _code = await _open(session)
    assert connected
    first = await communicator.receive_json_from(timeout=10)
    assert first["type"] == "snapshot"
    assert first["snapshot"]["counts"]["total"] == 1  # LIVE-B is another organisation's
    assert first["snapshot"]["counts"]["faulted"] == 0
    await database_sync_to_async(_report)(cp_a, "Faulted")  # commits, then announces
    update = await _until(communicator, lambda s: s["counts"]["faulted"] == 1 and s["open_alerts"] == 1)
    assert update["locations"][0]["state"] == "faulted"
    assert update["counts"]["total"] == 1
    await communicator.disconnect()


async def test_the_page_may_ask_for_a_fresh_read():
    _cp_a, _cp_b, session = await database_sync_to_async(_seed)()
    communicator, connected, _code = await _open(session)
    assert connected
    await communicator.receive_json_from(timeout=10)
    put_presence("LIVE-A", last_frame_at=clock.now().timestamp() - 900)  # silent, and nobody announces it
    await communicator.send_json_to({"type": "refresh"})
    update = await _until(communicator, lambda s: s["silent_count"] == 1)
    assert [item["identity"] for item in update["silent"]] == ["LIVE-A"]
    await communicator.disconnect()


async def test_without_a_staff_session_the_socket_is_refused():
    await database_sync_to_async(_seed)()
    _communicator, connected, code = await _open(None)
    assert (connected, code) == (False, 4403)
    driver = await database_sync_to_async(DriverFactory)()
    _communicator, connected, code = await _open(await database_sync_to_async(_login)(driver))
    assert (connected, code) == (False, 4403)


async def test_a_page_of_another_site_may_not_open_it():
    _cp_a, _cp_b, session = await database_sync_to_async(_seed)()
    _communicator, connected, _code = await _open(session, origin="http://evil.example")
    assert not connected


async def test_a_charger_connecting_and_leaving_is_seen_without_a_reload():
    from tests.ocpp_gateway.conftest import connect

    _cp_a, _cp_b, session = await database_sync_to_async(_seed)()

    def offline_first():
        from apps.ocpp_gateway import presence
        from apps.ocpp_gateway.redis_clients import sync_redis

        sync_redis().delete(presence.PREFIX + "LIVE-A")

    await database_sync_to_async(offline_first)()
    communicator, connected, _code = await _open(session)
    assert connected
    first = await communicator.receive_json_from(timeout=10)
    assert (first["snapshot"]["counts"]["online"], first["snapshot"]["counts"]["offline"]) == (0, 1)
    ocpp, ok, _protocol = await connect("LIVE-A")
    assert ok
    online = await _until(communicator, lambda s: s["counts"]["online"] == 1)
    assert online["counts"]["offline"] == 0
    await ocpp.disconnect()
    gone = await _until(communicator, lambda s: s["counts"]["offline"] == 1)
    assert gone["counts"]["online"] == 0
    await communicator.disconnect()
