"""The operations console in a real headless Chromium against a real server (uvicorn, the product's ASGI
application) with a simulated charger connected over a real WebSocket: every role signs in and sees the
right counts; the dashboard follows a charger going Faulted without a reload; a technician resets a
charger from its page and sees Accepted; finance sees no command buttons and gets 403; a staff member of
organisation A gets 404 on organisation B's charger. Screenshots of the dashboard and of a charge point
page are saved under var/test-artefacts/console/ (CPO_TEST_ARTEFACTS overrides)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from django.conf import settings
from django.contrib.gis.geos import Point

from tests.console.conftest import charger, put_presence
from tests.e2e.browser import Page, chromium
from tests.e2e.conftest import KEY, Server, _wait_until_connections_drained, eventually, orm
from tests.factories import LocationFactory, OrganisationFactory, StaffUserFactory
from tools.simulator import Charger, ChargerOptions

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's
ARTEFACTS = (
    Path(os.environ.get("CPO_TEST_ARTEFACTS", Path(settings.BASE_DIR) / "var" / "test-artefacts")) / "console"
)


@pytest.fixture(scope="session")
def static_root(tmp_path_factory) -> Path:
    """The static files (admin, console.js) collected once: the server serves them with WhiteNoise."""
    root = tmp_path_factory.mktemp("static")
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=settings.BASE_DIR,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "DJANGO_STATIC_ROOT": str(root)},
        check=True,
        timeout=120,
    )
    return root


@pytest.fixture
def console_server(servers, static_root, transactional_db, settings) -> Iterator[Server]:
    settings.MEDIA_ROOT = servers.media_root
    server = servers.get("console", env={"DJANGO_STATIC_ROOT": str(static_root)})
    yield server
    _wait_until_connections_drained(server)


def _seed() -> dict:
    alpha, beta = (
        OrganisationFactory(name="Alpha", slug="alpha-ui"),
        OrganisationFactory(name="Beta", slug="beta-ui"),
    )
    berlin = LocationFactory(organisation=alpha, name="Berlin Mitte")
    hamburg = LocationFactory(
        organisation=alpha, name="Hamburg Hafen", city="Hamburg", point=Point(9.99, 53.55, srid=4326)
    )
    simulated = charger(alpha, berlin, "UI-SIM", "Available", "Available", ocpp_protocol="ocpp1.6")
    charger(alpha, berlin, "UI-ON", "Available")
    charger(alpha, hamburg, "UI-OFF", "Available")
    foreign = charger(beta, LocationFactory(organisation=beta, name="Beta Site"), "UI-BETA", "Available")
    put_presence("UI-ON")
    users = {
        role: StaffUserFactory(
            organisation=alpha, role=role, email=f"{role.split()[0].lower()}@alpha.example"
        )
        for role in ("Operator admin", "Technician", "Support", "Finance")
    }
    users["beta"] = StaffUserFactory(organisation=beta, role="Operator admin", email="admin@beta.example")
    return {
        "simulated": simulated.pk,
        "foreign": foreign.pk,
        "emails": {name: user.email for name, user in users.items()},
    }


@pytest_asyncio.fixture
async def network(console_server) -> AsyncIterator[dict]:
    seeded = await orm(_seed)()
    sim = Charger(
        ChargerOptions(
            identity="UI-SIM",
            url=console_server.url,
            key=KEY,
            connectors=2,
            reconnect_base_s=0.2,
            reboot_delay_s=0.2,
        )
    )
    task = asyncio.ensure_future(sim.run())
    await eventually(lambda: _now(sim.accepted and sim.link is not None), what="the simulated charger booted")
    # Its connectors reported Available (the product recorded them).
    await eventually(lambda: orm(_connectors_reported)("UI-SIM"), what="the charger's statuses recorded")
    try:
        yield {**seeded, "sim": sim, "base": f"http://127.0.0.1:{console_server.port}"}
    finally:
        sim.stop()
        await asyncio.wait_for(task, timeout=20)


async def _now(value):
    return value


def _connectors_reported(identity: str) -> bool:
    from apps.stations.models import Connector

    reported = Connector.objects.filter(
        evse__charge_point__identity=identity, status_received_at__isnull=False
    )
    return list(reported.values_list("status", flat=True)) == ["Available", "Available"]


async def _sign_in(page: Page, base: str, email: str) -> None:
    await page.send("Network.clearBrowserCookies")  # the pages of one browser share its cookies
    await page.goto(f"{base}/admin/login/?next=/admin/")
    await page.fill("#id_username", email)
    await page.fill("#id_password", PASSWORD)
    await page.click('input[type="submit"]')
    await page.wait_for("document.getElementById('console-dashboard') !== null", what=f"{email} signed in")


async def _status_of(page: Page, url: str) -> int:
    return await page.evaluate(
        f"fetch({json.dumps(url)}, {{credentials: 'same-origin'}}).then(r => r.status)"
    )


async def test_every_role_sees_the_counts_and_the_dashboard_follows_a_fault_without_reload(network):
    async with chromium() as new_page:
        for role in ("Operator admin", "Technician", "Finance", "Support"):
            page = await new_page()
            await _sign_in(page, network["base"], network["emails"][role])
            counts = {
                name: await page.text(f'[data-metric="counts.{name}"]')
                for name in ("total", "online", "offline", "faulted", "available")
            }
            assert counts == {
                "total": "3",
                "online": "2",
                "offline": "1",
                "faulted": "0",
                "available": "2",
            }, role
            assert "Beta Site" not in await page.evaluate("document.body.textContent")
        # The support page (last signed in) stays open: the charger faults, the page follows.
        await page.wait_for("document.getElementById('console-dashboard').dataset.live === '1'", what="live")
        await page.evaluate("window.__sameDocument = true")
        sim = network["sim"]
        sim.connectors[1].phase = "Faulted"
        sim.refresh_statuses()
        await page.wait_for(
            "document.querySelector('[data-metric=\"counts.faulted\"]').textContent.trim() === '1'",
            what="the dashboard shows the faulted charger",
        )
        assert await page.evaluate("window.__sameDocument === true")  # no reload happened
        assert await page.text('[data-metric="counts.available"]') == "1"
        assert await page.text('[data-metric="open_alerts"]') == "1"
        states = await page.evaluate(
            "[...document.querySelectorAll('.console-marker')].map(m => m.dataset.state).sort().join(',')"
        )
        assert states == "faulted,offline"  # Berlin takes its faulted charger; Hamburg's only one is offline
        await page.screenshot(ARTEFACTS / "dashboard.png")


async def test_a_technician_resets_a_charger_from_its_page_and_sees_accepted(network):
    async with chromium() as new_page:
        page = await new_page()
        await _sign_in(page, network["base"], network["emails"]["Technician"])
        await page.goto(f"{network['base']}/admin/stations/chargepoint/{network['simulated']}/change/")
        await page.wait_for(
            "document.getElementById('console-chargepoint') !== null", what="the console panel"
        )
        assert await page.text('[data-field="state"]') == "available"
        await page.screenshot(ARTEFACTS / "charge-point.png")
        await page.click('[data-action="Reset"]')
        await page.loaded("/admin/ocpp_gateway/ocppcommand/send/")
        await page.click('input[type="submit"].default')
        await page.wait_for(
            "document.readyState === 'complete' && location.pathname.includes('/ocppcommand/')"
            " && location.pathname.endsWith('/change/')",
            what="the command's page after sending",
        )
        message = await page.text(".messagelist .success")
        assert message is not None and 'answered {"status": "Accepted"}' in message, await page.evaluate(
            "location.href + ' ' + document.body.innerText.slice(0, 600)"
        )


async def test_finance_sees_no_command_buttons_and_gets_403_on_the_send_page(network):
    async with chromium() as new_page:
        page = await new_page()
        await _sign_in(page, network["base"], network["emails"]["Finance"])
        await page.goto(f"{network['base']}/admin/stations/chargepoint/{network['simulated']}/change/")
        await page.wait_for(
            "document.getElementById('console-chargepoint') !== null", what="the console panel"
        )
        assert await page.evaluate("document.querySelector('[data-role=\"command-buttons\"]') === null")
        assert await page.evaluate("document.querySelector('a[href*=\"/ocppcommand/send/\"]') === null")
        send = f"{network['base']}/admin/ocpp_gateway/ocppcommand/send/{network['simulated']}/?action=Reset"
        assert await _status_of(page, send) == 403


async def test_a_staff_member_of_another_organisation_gets_404(network):
    async with chromium() as new_page:
        page = await new_page()
        await _sign_in(page, network["base"], network["emails"]["Operator admin"])
        foreign = f"{network['base']}/admin/stations/chargepoint/{network['foreign']}/change/"
        assert await _status_of(page, foreign) == 404
        own = f"{network['base']}/admin/stations/chargepoint/{network['simulated']}/change/"
        assert await _status_of(page, own) == 200
