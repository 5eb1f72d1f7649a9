"""The driver's whole journey against a real server and a simulated OCPP 1.6 charger over a real
WebSocket: register, log in, find the charger nearby, start, read the live stream, stop, get the
receipt with the right energy and price. (The CDR task a Celery worker would run is run here.)"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from decimal import ROUND_HALF_UP, Decimal

import pytest
import pytest_asyncio
import requests
from django.contrib.gis.geos import Point

from apps.charging.models import DriverSession
from apps.ocpp_gateway.models import OcppCommand
from tests.e2e.conftest import KEY, eventually, orm
from tests.factories import (
    ChargePointFactory,
    LocationFactory,
    OrganisationFactory,
    TariffAssignmentFactory,
    TariffElementFactory,
    TariffFactory,
)
from tools.simulator import Fleet

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

IDENTITY = "SIM-00001"
LAT, LNG = 48.1374, 11.5755  # Munich


@pytest_asyncio.fixture
async def charger(server, caplog):
    caplog.set_level(logging.WARNING, logger="ocpp")

    def register() -> None:
        org = OrganisationFactory(slug="journey-org", country="DE")
        location = LocationFactory(organisation=org, city="München", point=Point(LNG + 0.003, LAT, srid=4326))
        ChargePointFactory(identity=IDENTITY, organisation=org, location=location)
        tariff = TariffFactory(organisation=org)
        # 1.00 per session and 30.00 per kWh (a high price, so that the few Wh of a short test show up)
        TariffElementFactory(
            tariff=tariff,
            flat_price=Decimal("1.00"),
            energy_price=Decimal("30.00"),
            energy_vat=Decimal("19"),
            flat_vat=Decimal("19"),
        )
        TariffAssignmentFactory(tariff=tariff)

    await orm(register)()
    fleet = Fleet(
        url=server.url,
        count=1,
        key=KEY,
        connectors=2,
        meter_interval_s=1,
        connect_rate=50,
        reconnect_base_s=0.2,
        reconnect_max_s=1.0,
        unplug_delay_s=0.2,
        max_power_w=22_000,
    )
    fleet.start()
    await eventually(lambda: _async(fleet.connected == 1), what="the charger booted")
    yield fleet
    await fleet.stop()


async def _async(value):
    return value


def _http(method: str, url: str, token: str | None = None, **kwargs) -> requests.Response:
    headers = kwargs.pop("headers", {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, url, headers=headers, timeout=15, **kwargs)


class LiveReader(threading.Thread):
    """Reads a session's SSE stream into `events` until the server ends it."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.events: list[tuple[str, dict]] = []
        self.content_type = ""

    def run(self) -> None:
        with requests.get(
            self.url, headers={"Authorization": f"Bearer {self.token}"}, stream=True, timeout=60
        ) as response:
            self.content_type = response.headers.get("Content-Type", "")
            event = None
            for line in response.iter_lines(decode_unicode=True):
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event:
                    self.events.append((event, json.loads(line[6:])))


async def test_register_find_start_watch_stop_and_get_the_receipt(server, charger):
    base = f"http://127.0.0.1:{server.port}/api/v1"
    registered = _http(
        "POST",
        f"{base}/auth/register",
        json={"email": "journey@example.com", "password": "a-long-password-42"},
    )
    assert registered.status_code == 202, registered.text
    token = _http(
        "POST", f"{base}/auth/token", json={"email": "journey@example.com", "password": "a-long-password-42"}
    ).json()["access"]

    found = await eventually(lambda: _async(_available(base, token)), what="the charger listed as available")
    assert found["identity"] == IDENTITY and 150 < found["distance_m"] < 300
    assert Decimal(found["price"]["energy_per_kwh"]) == Decimal("35.7")  # 30.00 + 19 % VAT, per kWh

    # The app's start, sent five times at once with one Idempotency-Key (a flaky network retrying):
    # one session, one start command, the same answer to all.
    key = str(uuid.uuid4())
    answers: list[requests.Response] = []

    def post() -> None:
        answers.append(
            _http(
                "POST",
                f"{base}/sessions",
                token,
                json={"charge_point": found["id"], "connector": 1},
                headers={"Idempotency-Key": key},
            )
        )

    posts = [threading.Thread(target=post) for _ in range(5)]
    for t in posts:
        t.start()
    for t in posts:
        t.join(timeout=30)
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 200, 201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    session_id = answers[0].json()["id"]
    assert await orm(lambda: OcppCommand.objects.filter(action="RemoteStartTransaction").count())() == 1
    replay = _http(
        "POST",
        f"{base}/sessions",
        token,
        json={"charge_point": found["id"], "connector": 1},
        headers={"Idempotency-Key": key},
    )
    assert replay.json()["id"] == session_id and replay.headers["Idempotent-Replayed"] == "true"

    live = LiveReader(f"{base}/sessions/{session_id}/live", token)
    live.start()

    async def charging_with_energy():
        body = _http("GET", f"{base}/sessions/{session_id}", token).json()
        return body if body["status"] == "ACTIVE" and body["energy_wh"] > 0 else None

    running = await eventually(charging_with_energy, timeout=30, what="the session active with energy")
    assert running["cost"]["final"] is False

    stop = _http("POST", f"{base}/sessions/{session_id}/stop", token)
    assert stop.status_code in (200, 202), stop.text

    async def completed():
        body = _http("GET", f"{base}/sessions/{session_id}", token).json()
        return body if body["status"] == "COMPLETED" else None

    final = await eventually(completed, timeout=30, what="the session completed")
    live.join(timeout=30)
    assert not live.is_alive() and live.content_type.startswith("text/event-stream")
    statuses = [e[1]["status"] for e in live.events if e[0] == "session"]
    assert statuses[0] in ("STARTING", "ACTIVE") and "ACTIVE" in statuses and statuses[-1] == "COMPLETED"
    assert any(e[1]["energy_wh"] > 0 for e in live.events if e[0] == "session")
    assert live.events[-1][0] == "end"

    # The car leaves (the simulator unplugs after the stop): wait until the server has recorded it, so that
    # nothing of this charge is still being written when the CDR is issued or the test database is emptied.
    def departed() -> bool:
        from apps.tariffs.models import SessionTariff

        charging = DriverSession.objects.get(pk=session_id).charging_session
        return SessionTariff.objects.filter(session=charging, departed_at__isnull=False).exists()

    await eventually(orm(departed), timeout=20, what="the car's departure recorded")

    # The CDR: a Celery worker runs this task when the car has left; here the test is the worker.
    def issue() -> int:
        from apps.tariffs.services import cdr_issue

        charging = DriverSession.objects.get(pk=session_id).charging_session
        cdr_issue(session_id=charging.pk)
        return charging.energy_wh

    energy_wh = await orm(issue)()
    assert energy_wh == final["energy_wh"] > 0
    net = Decimal("1.00") + Decimal(energy_wh) / 1000 * Decimal("30.00")
    expected_net = net.quantize(Decimal("0.01"), ROUND_HALF_UP)
    expected_gross = expected_net + (expected_net * Decimal("0.19")).quantize(Decimal("0.01"), ROUND_HALF_UP)

    receipt = _http("GET", f"{base}/sessions/{session_id}/receipt", token)
    assert receipt.status_code == 200, receipt.text
    kwh = (Decimal(energy_wh) / 1000).quantize(Decimal("0.001")).normalize()
    assert f"{kwh:f} kWh" in receipt.text
    assert f'<span class="gross">{expected_gross}</span> EUR' in receipt.text
    pdf = _http("GET", f"{base}/sessions/{session_id}/receipt?format=pdf", token)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    final = _http("GET", f"{base}/sessions/{session_id}", token).json()
    assert final["cost"] == {
        "currency": "EUR",
        "net": str(expected_net),
        "gross": str(expected_gross),
        "final": True,
    }


def _available(base: str, token: str) -> dict | None:
    response = _http(
        "GET", f"{base}/chargers/nearby", token, params={"lat": LAT, "lng": LNG, "available": "true"}
    )
    assert response.status_code == 200, response.text
    results = response.json()
    return results[0] if results else None
