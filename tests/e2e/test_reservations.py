"""Reservations against a real server and simulated OCPP 1.6 and 2.0.1 chargers over real WebSockets:
reserve (the charger holds the connector under our id for the driver's token), the holder starts there
and the reservation is consumed, another driver is refused, expiry with a controllable clock (the beat's
`now=`, the charger's `expire_reservations(now=)`), cancel, concurrent reservations with one winner, and
the charger's Occupied answer."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
import pytest_asyncio
import requests
from rest_framework_simplejwt.tokens import AccessToken

from apps.charging.models import ChargingSession
from apps.reservations.models import Reservation
from apps.reservations.services import reservations_expire
from tests.e2e.conftest import KEY, command, eventually, orm
from tests.factories import ChargePointFactory, DriverFactory, LocationFactory, OrganisationFactory
from tools.simulator import Fleet
from tools.simulator.clock import now as charger_now

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


@pytest_asyncio.fixture(params=["ocpp1.6", "ocpp2.0.1"])
async def site(request, server, caplog):
    """A published charger with two connectors, connected, and three drivers with API tokens."""
    caplog.set_level(logging.WARNING, logger="ocpp")
    protocol = request.param
    prefix = "RSV16-" if protocol == "ocpp1.6" else "RSV201-"

    def register() -> tuple[int, list[str]]:
        org = OrganisationFactory(slug=f"resv-{prefix.lower().strip('-')}")
        cp = ChargePointFactory(
            identity=f"{prefix}00001", organisation=org, location=LocationFactory(organisation=org)
        )
        return cp.pk, [str(AccessToken.for_user(DriverFactory())) for _ in range(3)]

    cp_id, tokens = await orm(register)()
    fleet = Fleet(
        url=server.url,
        count=1,
        prefix=prefix,
        protocol=protocol,
        key=KEY,
        connectors=2,
        meter_interval_s=1,
        reconnect_base_s=0.2,
        reconnect_max_s=1.0,
        unplug_delay_s=0.2,
    )
    fleet.start()
    await eventually(lambda: _async(fleet.connected == 1), what="the charger booted")
    base = f"http://127.0.0.1:{server.port}/api/v1"
    site = {"base": base, "cp": cp_id, "fleet": fleet, "station": fleet.chargers[0], "tokens": tokens}
    # Booted is not yet reported: wait until the server knows both connectors.
    for connector in (1, 2):
        await _connector_reported(site, "Available", connector)
    yield site
    await fleet.stop()


async def _async(value):
    return value


def _http_sync(method: str, url: str, token: str | None = None, **kwargs) -> requests.Response:
    headers = kwargs.pop("headers", {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, url, headers=headers, timeout=30, **kwargs)


async def _http(method: str, url: str, token: str | None = None, **kwargs) -> requests.Response:
    """An HTTP call in a thread: the simulated charger runs on this test's event loop and must go on
    answering meanwhile."""
    return await asyncio.to_thread(_http_sync, method, url, token, **kwargs)


async def _reserve(site, token: str, connector: int | None = 1) -> requests.Response:
    body = (
        {"charge_point": site["cp"]}
        if connector is None
        else {"charge_point": site["cp"], "connector": connector}
    )
    return await _http(
        "POST",
        f"{site['base']}/reservations",
        token,
        json=body,
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )


async def _start(site, token: str, connector: int = 1) -> requests.Response:
    return await _http(
        "POST",
        f"{site['base']}/sessions",
        token,
        json={"charge_point": site["cp"], "connector": connector},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )


async def _connector_reported(site, status: str, connector: int = 1) -> None:
    def reported() -> bool:
        from apps.stations.models import Connector

        return Connector.objects.filter(
            evse__charge_point_id=site["cp"], evse__evse_id=connector, status=status
        ).exists()

    await eventually(orm(reported), what=f"connector {connector} reported {status}")


async def test_reserve_then_the_holder_starts_and_consumes_it_and_others_are_refused(site):
    holder, other = site["tokens"][0], site["tokens"][1]
    answer = await _reserve(site, holder)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["status"] == "RESERVED" and body["connector"] == 1 and body["expires_at"]
    # The charger holds connector 1 under our id, for the driver's app token.
    held = site["station"].connectors[1].reservation
    token_uid = await orm(lambda: Reservation.objects.get(pk=body["id"]).id_tag)()
    assert held is not None and held.reservation_id == body["id"] and held.id_tag == token_uid
    await _connector_reported(site, "Reserved")
    # Discovery shows it Reserved to everyone else.
    charger = (await _http("GET", f"{site['base']}/chargers/{site['cp']}", other)).json()
    assert "Reserved" in str(charger)

    refused = await _start(site, other)
    assert refused.status_code == 409 and refused.json()["code"] == "connector_reserved", refused.text
    taken = await _reserve(site, other)
    assert taken.status_code == 409 and taken.json()["code"] == "connector_reserved", taken.text

    started = await _start(site, holder)
    assert started.status_code == 201, started.text

    async def consumed():
        return (await _http("GET", f"{site['base']}/reservations/{body['id']}", holder)).json()[
            "status"
        ] == "CONSUMED"

    await eventually(consumed, timeout=30, what="the reservation consumed by the holder's start")
    session = await orm(
        lambda: ChargingSession.objects.get(pk=Reservation.objects.get(pk=body["id"]).charging_session_id)
    )()
    assert session.id_tag == token_uid and session.reservation_id == body["id"]
    listed = (await _http("GET", f"{site['base']}/reservations", holder)).json()
    assert [r["status"] for r in listed["results"]] == ["CONSUMED"]


async def test_concurrent_reservations_for_one_connector_give_exactly_one_winner(site):
    answers = await asyncio.gather(*(_reserve(site, token) for token in site["tokens"]))
    codes = sorted(a.status_code for a in answers)
    assert codes == [201, 409, 409], [a.text for a in answers]
    assert {a.json()["code"] for a in answers if a.status_code == 409} == {"connector_reserved"}
    assert await orm(lambda: Reservation.objects.filter(status="RESERVED").count())() == 1


async def test_the_charger_answering_occupied_gives_409_connector_occupied(site):
    # Someone at the charger holds connector 1 (the charger has not told us yet).
    site["station"].reserve(
        reservation_id=999_999,
        connector_id=1,
        id_tag="SOMEONE",
        parent_id_tag=None,
        expires_at=charger_now().replace(year=charger_now().year + 1),
    )
    answer = await _reserve(site, site["tokens"][0])
    assert answer.status_code == 409, answer.text
    assert answer.json()["code"] == "connector_occupied"
    assert answer.json()["reservation"]["status"] == "FAILED"


async def test_expiry_by_the_beat_and_cancel_of_an_expired_one_is_a_no_op(site):
    holder = site["tokens"][0]
    body = (await _reserve(site, holder)).json()
    reservation = await orm(lambda: Reservation.objects.get(pk=body["id"]))()
    assert await orm(reservations_expire)(now=reservation.expires_at) == {"expired": 1, "failed": 0}
    assert (await _http("GET", f"{site['base']}/reservations/{body['id']}", holder)).json()[
        "status"
    ] == "EXPIRED"
    # The beat told the charger too: it drops the reservation, and the connector is free again.
    await eventually(
        lambda: _async(site["station"].connectors[1].reservation is None), what="the charger dropped it"
    )
    cancelled = await _http("DELETE", f"{site['base']}/reservations/{body['id']}", holder)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "EXPIRED"
    # The connector may be reserved again.
    assert (await _reserve(site, site["tokens"][1])).status_code == 201


async def test_expiry_by_the_chargers_own_clock(site):
    holder = site["tokens"][0]
    body = (await _reserve(site, holder)).json()
    await _connector_reported(site, "Reserved")
    reservation = await orm(lambda: Reservation.objects.get(pk=body["id"]))()
    # The charger's clock reaches the end (1.6: StatusNotification Available; 2.0.1: ReservationStatusUpdate).
    assert site["station"].expire_reservations(now=reservation.expires_at) == [body["id"]]

    async def expired():
        return (await _http("GET", f"{site['base']}/reservations/{body['id']}", holder)).json()[
            "status"
        ] == "EXPIRED"

    if site["station"].subprotocol == "ocpp1.6":
        # A 1.6 charger's Available before our expires_at is no end; the beat (or the clock) decides.
        await _connector_reported(site, "Available")
        await orm(reservations_expire)(now=reservation.expires_at)
    await eventually(expired, what="the reservation expired")


async def test_cancel_sends_cancel_reservation(site):
    holder = site["tokens"][0]
    body = (await _reserve(site, holder)).json()
    cancelled = await _http("DELETE", f"{site['base']}/reservations/{body['id']}", holder)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
    await eventually(
        lambda: _async(site["station"].connectors[1].reservation is None), what="the charger dropped it"
    )
    refused = await _http("DELETE", f"{site['base']}/reservations/{body['id']}", site["tokens"][1])
    assert refused.status_code == 404


async def _any_connector_reported(site) -> None:
    """The charger tells us, as asked through the command service, that it takes reservations for any
    connector: 1.6 GetConfiguration ReserveConnectorZeroSupported (this charger is set to true), 2.0.1
    GetVariables ReservationCtrlr.NonEvseSpecific."""
    station = site["station"]
    if station.subprotocol == "ocpp1.6":
        station.config.set("ReserveConnectorZeroSupported", "true")
        answer = await command(
            station.identity, "GetConfiguration", {"key": ["ReserveConnectorZeroSupported"]}
        )
    else:
        variable = {"component": {"name": "ReservationCtrlr"}, "variable": {"name": "NonEvseSpecific"}}
        answer = await command(station.identity, "GetVariables", {"getVariableData": [variable]})
    assert answer["status"] == "answered", answer


async def test_reserving_any_connector_needs_the_chargers_support(site):
    refused = await _reserve(site, site["tokens"][0], connector=None)
    assert refused.status_code == 409 and refused.json()["code"] == "any_connector_unsupported", refused.text
    assert await orm(lambda: Reservation.objects.count())() == 0


async def test_any_connector_keeps_one_free_for_the_holder_who_starts_at_any(site):
    holder, other, third = site["tokens"]
    await _any_connector_reported(site)
    answer = await _reserve(site, holder, connector=None)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["status"] == "RESERVED" and body["connector"] == 0 and body["any_connector"] is True
    # The charger holds it for any connector (1.6 connectorId 0, 2.0.1 without evseId), under our id.
    held = site["station"].floating
    assert [r.reservation_id for r in held] == [body["id"]] and held[0].connector_id == 0
    # Another driver may take connector 1: connector 2 stays free for the holder.
    started = await _start(site, other, connector=1)
    assert started.status_code == 201, started.text

    def charging_at_1() -> bool:
        return ChargingSession.objects.filter(charge_point_id=site["cp"], evse_id=1, status="ACTIVE").exists()

    await eventually(orm(charging_at_1), timeout=30, what="the other driver charging at connector 1")
    # The last free connector is the holder's: refused to anyone else, at the API.
    refused = await _start(site, third, connector=2)
    assert refused.status_code == 409 and refused.json()["code"] == "connector_reserved", refused.text
    # The holder starts there and the reservation is consumed, on our side and at the charger.
    mine = await _start(site, holder, connector=2)
    assert mine.status_code == 201, mine.text

    async def consumed():
        return (await _http("GET", f"{site['base']}/reservations/{body['id']}", holder)).json()[
            "status"
        ] == "CONSUMED"

    await eventually(consumed, timeout=30, what="the reservation consumed by the holder's start")
    assert site["station"].floating == []
    shown = (await _http("GET", f"{site['base']}/reservations/{body['id']}", holder)).json()
    assert shown["connector"] == 2
    # The holder's session shows the reservation it consumed (list and live body).
    sessions = (await _http("GET", f"{site['base']}/sessions", holder)).json()["results"]
    assert sessions[0]["reservation"]["id"] == body["id"]
    assert sessions[0]["reservation"]["status"] == "CONSUMED"
