"""A driver paying by card, end to end: a real server pointed at localstripe, a simulated OCPP 1.6
charger over a real WebSocket. The driver with a card starts (a hold), charges, stops, the car leaves, the
CDR is issued and the hold is captured for exactly the CDR's gross, which is the receipt's total. A
declined card never reaches the charger. (The Celery tasks a worker would run are run here.)"""

from __future__ import annotations

import logging
import re
import uuid
from decimal import Decimal

import pytest
import pytest_asyncio
import requests
from rest_framework_simplejwt.tokens import AccessToken

from apps.billing import payments, services
from apps.billing.choices import PaymentStatus
from apps.billing.models import Payment
from apps.charging.models import DriverSession
from apps.ocpp_gateway.models import OcppCommand
from cpo.units import Money
from tests.billing.conftest import PUBLISHABLE_KEY, SECRET_KEY, WEBHOOK_SECRET, localstripe, stripe_server  # noqa: F401
from tests.e2e.conftest import KEY, eventually, orm
from tests.factories import (
    ChargePointFactory,
    DriverFactory,
    LocationFactory,
    OrganisationFactory,
    TariffAssignmentFactory,
    TariffElementFactory,
    TariffFactory,
)
from tools.simulator import Fleet

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

IDENTITY = "SIM-CARD-00001"  # the fleet names its first charger prefix + 00001


@pytest.fixture
def card_server(servers, transactional_db, settings, stripe_server):  # noqa: F811
    settings.MEDIA_ROOT = servers.media_root
    return servers.get(
        "payments",
        env={
            "STRIPE_SECRET_KEY": SECRET_KEY,
            "STRIPE_PUBLISHABLE_KEY": PUBLISHABLE_KEY,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_API_BASE": stripe_server.url,
            "STRIPE_MAX_NETWORK_RETRIES": "0",
        },
    )


@pytest_asyncio.fixture
async def card_charger(card_server, caplog):
    caplog.set_level(logging.WARNING, logger="ocpp")

    def register() -> int:
        org = OrganisationFactory(slug="card-journey-org", country="DE")
        location = LocationFactory(organisation=org, city="München")
        cp = ChargePointFactory(identity=IDENTITY, organisation=org, location=location)
        tariff = TariffFactory(organisation=org)
        TariffElementFactory(
            tariff=tariff,
            flat_price=Decimal("1.00"),
            energy_price=Decimal("30.00"),
            energy_vat=Decimal("19"),
            flat_vat=Decimal("19"),
        )
        TariffAssignmentFactory(tariff=tariff)
        return cp.pk

    cp_id = await orm(register)()
    fleet = Fleet(
        url=card_server.url,
        count=1,
        key=KEY,
        prefix="SIM-CARD-",
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
    yield cp_id
    await fleet.stop()


async def _async(value):
    return value


def _http(method: str, url: str, token: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    return requests.request(method, url, headers=headers, timeout=15, **kwargs)


def _driver_with_card(email: str, card: str) -> str:
    driver = DriverFactory(email=email)
    services.payment_method_attach(user=driver, payment_method_id=card)
    return str(AccessToken.for_user(driver))


async def test_a_card_driver_charges_and_the_cdrs_gross_is_captured(card_server, card_charger, stripe_server):  # noqa: F811
    base = f"http://127.0.0.1:{card_server.port}/api/v1"
    start = {"charge_point": card_charger, "connector": 1}

    declined = await orm(_driver_with_card)("declined@example.com", "pm_card_chargeCustomerFail")
    refused = _http("POST", f"{base}/sessions", declined, json=start, headers={"Idempotency-Key": "d-1"})
    assert refused.status_code == 402 and refused.json()["code"] == "payment_declined", refused.text
    assert await orm(lambda: OcppCommand.objects.count())() == 0

    token = await orm(_driver_with_card)("card@example.com", "pm_card_visa")
    started = _http(
        "POST", f"{base}/sessions", token, json=start, headers={"Idempotency-Key": str(uuid.uuid4())}
    )
    assert started.status_code == 201, started.text
    session_id = started.json()["id"]
    assert started.json()["payment"]["status"] == "authorised"

    async def charging_with_energy():
        body = _http("GET", f"{base}/sessions/{session_id}", token).json()
        return body if body["status"] == "ACTIVE" and body["energy_wh"] > 0 else None

    await eventually(charging_with_energy, timeout=30, what="the session active with energy")
    assert _http("POST", f"{base}/sessions/{session_id}/stop", token).status_code in (200, 202)

    async def completed():
        body = _http("GET", f"{base}/sessions/{session_id}", token).json()
        return body if body["status"] == "COMPLETED" else None

    await eventually(completed, timeout=30, what="the session completed")

    def departed() -> bool:
        from apps.tariffs.models import SessionTariff

        charging = DriverSession.objects.get(pk=session_id).charging_session
        return SessionTariff.objects.filter(session=charging, departed_at__isnull=False).exists()

    await eventually(orm(departed), timeout=20, what="the car's departure recorded")

    # The workers' part: the CDR task, then the capture sweep and its task.
    def issue_and_capture() -> tuple[Decimal, Payment]:
        from apps.tariffs.services import cdr_issue

        charging = DriverSession.objects.get(pk=session_id).charging_session
        cdr = cdr_issue(session_id=charging.pk)
        payment = Payment.objects.get(driver_session_id=session_id)
        assert payments.payments_to_capture() == [payment.pk]
        payments.payment_capture(payment.pk)
        payments.payment_capture(payment.pk)  # twice: one capture
        payment.refresh_from_db()
        return cdr.gross, payment

    gross, payment = await orm(issue_and_capture)()
    assert payment.status == PaymentStatus.CAPTURED
    assert payment.amount_captured == Money(gross, "EUR").to_minor_units() > 0
    assert stripe_server.client().v1.payment_intents.retrieve(payment.stripe_id).status == "succeeded"

    receipt = _http("GET", f"{base}/sessions/{session_id}/receipt", token)
    assert receipt.status_code == 200
    total = re.search(r'<span class="gross">([0-9.]+)</span> EUR', receipt.text)
    assert total is not None and Decimal(total.group(1)) == gross
    body = _http("GET", f"{base}/sessions/{session_id}", token).json()
    assert body["payment"]["status"] == "captured"
    assert body["payment"]["amount_captured"] == payment.amount_captured
