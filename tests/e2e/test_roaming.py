"""Roaming end to end: a real server, a small eMSP written from the OCPI 2.2.1 specification on loopback
(tests/roaming/emsp.py) and a simulated OCPP 1.6 charger over a real WebSocket. The eMSP registers with
our token A, pulls our locations and tariffs, receives a status change, pushes its driver's token; the
charger presents it and is accepted; the session and its CDR (with our price) reach the eMSP; a
START_SESSION from the eMSP starts the charger and the result reaches its response_url. Every payload
either side sends is checked against the specification's tables. (The pushes and the CDR a Celery worker
would send and issue are run by the test.)"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

import pytest
import pytest_asyncio

from apps.charging.models import ChargingSession, MeterSample
from apps.roaming import pushes
from apps.roaming.credentials import token_a_issue
from apps.roaming.models import RemoteCommand, RoamingSession
from apps.stations.models import Connector, Evse
from apps.tariffs.services import cdr_issue
from tests.e2e.conftest import KEY, eventually, orm
from tests.factories import (
    ChargePointFactory,
    LocationFactory,
    OrganisationFactory,
    TariffAssignmentFactory,
    TariffElementFactory,
    TariffFactory,
    VatRateFactory,
)
from tests.roaming import ocpi_spec
from tests.roaming.emsp import EmspServer
from tools.simulator import Fleet

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

UID = "04E1A2B3C4D5E6"


async def _async(value):
    return value


def _setup() -> dict:
    org = OrganisationFactory(slug="roaming-e2e", country="DE")
    VatRateFactory(country="DE", rate=Decimal("19.00"))
    location = LocationFactory(organisation=org, name="Roaming e2e")
    ChargePointFactory(identity="ROAM-00001", organisation=org, location=location)
    tariff = TariffFactory(organisation=org, name="Roaming")
    # 1.00 per session and 30.00 per kWh (high, so that the few Wh of a short test show up)
    TariffElementFactory(tariff=tariff, flat_price=Decimal("1.00"), energy_price=Decimal("30.00"))
    TariffAssignmentFactory(tariff=tariff, organisation=org)
    _party, token_a = token_a_issue(organisation=org, name="Test eMSP")
    return {"location": location.pk, "tariff": tariff.pk, "token_a": token_a}


@pytest_asyncio.fixture
async def world(server, caplog):
    caplog.set_level(logging.WARNING, logger="ocpp")
    setup = await orm(_setup)()
    fleet = Fleet(
        url=server.url,
        count=1,
        prefix="ROAM-",
        protocol="ocpp1.6",
        key=KEY,
        connectors=1,
        meter_interval_s=1,
        reconnect_base_s=0.2,
        reconnect_max_s=1.0,
        unplug_delay_s=0.2,
        max_power_w=22_000,
    )
    fleet.start()
    await eventually(lambda: _async(fleet.connected == 1), what="the charger booted")
    await eventually(
        orm(lambda: Evse.objects.filter(charge_point__identity="ROAM-00001").exists()), what="the EVSE known"
    )
    with EmspServer() as emsp:
        yield {**setup, "emsp": emsp, "station": fleet.chargers[0], "base": f"http://127.0.0.1:{server.port}"}
        await fleet.stop()
    assert not emsp.errors, "\n".join(emsp.errors)


async def _worker() -> int:
    """What the Celery worker would do: send the due pushes."""
    return await orm(pushes.pushes_send_due)()


async def _call(emsp, method, url, **kwargs):
    return await asyncio.to_thread(emsp.call, method, url, **kwargs)


async def test_an_emsp_connects_pulls_pushes_a_token_and_its_driver_charges(server, world):
    emsp, station, base = world["emsp"], world["station"], world["base"]
    # 1. the credentials handshake, started by the eMSP with the token A we issued
    ours = await asyncio.to_thread(emsp.register_with, f"{base}/ocpi/versions", world["token_a"])
    assert ours["url"] == f"{base}/ocpi/versions"
    locations_url = emsp.endpoints[("locations", "SENDER")]
    # 2. it pulls our locations and tariffs
    response = await _call(emsp, "GET", locations_url)
    [location] = response.json()["data"]
    ocpi_spec.validate(location, "Location")
    assert response.headers["X-Total-Count"] == "1"
    evse_uid = location["evses"][0]["uid"]
    assert location["evses"][0]["connectors"][0]["tariff_ids"] == [str(world["tariff"])]
    response = await _call(emsp, "GET", emsp.endpoints[("tariffs", "SENDER")])
    [tariff] = response.json()["data"]
    ocpi_spec.validate(tariff, "Tariff")
    # 3. it pushes its driver's token
    token = emsp.token(UID, whitelist="ALLOWED")
    response = await _call(emsp, "PUT", f"{emsp.endpoints[('tokens', 'RECEIVER')]}/NL/EMS/{UID}", body=token)
    assert response.json()["status_code"] == 1000
    # 4. the charger presents it: accepted, the session starts
    assert await station.start_transaction(1, UID, authorize=True)
    roaming = await eventually(
        orm(lambda: RoamingSession.objects.select_related("session").filter(token__uid=UID).first()),
        what="the roaming session",
    )
    # 5. the session and the status change reach the eMSP
    await _worker_until(lambda: roaming.ocpi_id in emsp.sessions)
    assert emsp.sessions[roaming.ocpi_id]["status"] == "ACTIVE"
    await _worker_until(
        lambda: emsp.locations.get(f"{location['id']}/{evse_uid}", {}).get("status") == "CHARGING"
    )
    # 6. it ends; the CDR carries our price
    await eventually(
        orm(lambda: MeterSample.objects.filter(session_id=roaming.session_id).exists()), what="a meter value"
    )
    assert station.stop_transaction(1, reason="Local")
    await eventually(
        orm(lambda: ChargingSession.objects.filter(pk=roaming.session_id, status="COMPLETED").exists()),
        what="the session completed",
    )
    cdr = await orm(cdr_issue)(session_id=roaming.session_id)
    assert cdr is not None
    await _worker_until(lambda: emsp.cdrs and emsp.sessions[roaming.ocpi_id]["status"] == "COMPLETED")
    [posted] = emsp.cdrs
    ocpi_spec.validate(posted, "CDR")
    assert Decimal(str(posted["total_cost"]["incl_vat"])) == cdr.gross.quantize(Decimal("0.01"))
    assert Decimal(str(posted["total_cost"]["excl_vat"])) == cdr.net.quantize(Decimal("0.01"))
    assert cdr.gross > Decimal("1.19")  # the flat fee and some energy
    # the eMSP can fetch it too
    response = await _call(emsp, "GET", emsp.endpoints[("cdrs", "SENDER")])
    assert [c["id"] for c in response.json()["data"]] == [posted["id"]]

    # The car has left and the charger reports the connector free again (as a driver would find it).
    await eventually(lambda: _async(station.accepted and station.free_for(1, UID)), what="the connector free")
    await eventually(
        orm(
            lambda: Connector.objects.filter(
                evse__charge_point__identity="ROAM-00001", connector_id=1, status="Available"
            ).exists()
        ),
        what="Available reported",
    )

    # 7. START_SESSION from the eMSP: answered at once, the charger starts, the result reaches response_url
    response = await _call(
        emsp,
        "POST",
        f"{emsp.endpoints[('commands', 'RECEIVER')]}/START_SESSION",
        body=ocpi_spec.validate(
            {
                "response_url": f"{emsp.base}/results/start-1",
                "token": token,
                "location_id": location["id"],
                "evse_uid": evse_uid,
                "authorization_reference": "AUTH-REF-1",
            },
            "StartSession",
        ),
    )
    answer = ocpi_spec.validate(response.json()["data"], "CommandResponse")
    assert answer["result"] == "ACCEPTED"
    remote = await eventually(
        orm(lambda: RemoteCommand.objects.filter(finished_at__isnull=False).first()),
        what="the charger's answer",
        timeout=60,
    )
    assert (remote.command, remote.result) == ("START_SESSION", "ACCEPTED"), remote.message
    await _worker_until(lambda: "start-1" in emsp.results)
    assert emsp.results["start-1"] == {"result": "ACCEPTED"}
    second = await eventually(
        orm(lambda: RoamingSession.objects.filter(auth_method="COMMAND").first()),
        what="the commanded session",
    )
    assert second.authorization_reference == "AUTH-REF-1"

    # 8. STOP_SESSION from the eMSP: the charger stops, the result and the completed session reach it
    response = await _call(
        emsp,
        "POST",
        f"{emsp.endpoints[('commands', 'RECEIVER')]}/STOP_SESSION",
        body=ocpi_spec.validate(
            {"response_url": f"{emsp.base}/results/stop-1", "session_id": second.ocpi_id}, "StopSession"
        ),
    )
    assert ocpi_spec.validate(response.json()["data"], "CommandResponse")["result"] == "ACCEPTED"
    await eventually(
        orm(lambda: ChargingSession.objects.filter(pk=second.session_id, status="COMPLETED").exists()),
        what="the commanded session stopped",
    )
    await _worker_until(
        lambda: "stop-1" in emsp.results and emsp.sessions[second.ocpi_id]["status"] == "COMPLETED"
    )
    assert emsp.results["stop-1"] == {"result": "ACCEPTED"}


async def _worker_until(condition, timeout: float = 30.0) -> None:
    async def check():
        await _worker()
        return condition()

    await eventually(check, timeout=timeout, interval=0.2, what="the eMSP received it")
