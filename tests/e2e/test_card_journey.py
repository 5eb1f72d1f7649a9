"""A driver paying by card, end to end: a real server (uvicorn) pointed at localstripe, a simulated OCPP
1.6 charger over a real WebSocket. The driver adds a card through the API (the app confirms a SetupIntent
at Stripe with the card; the number never reaches us), starts (a hold), charges, stops, the car leaves,
the CDR is issued and the hold is captured for exactly the CDR's gross, which is the receipt's total; the
billing tasks run twice capture once. Declined cards (4000 0000 0000 0002 at attach, 4000 0000 0000 0341
at the hold) never reach the charger. Webhooks signed by localstripe reach the server once: a replay
changes nothing, a bad signature is 400. (The Celery tasks a worker would run are run here.)"""

from __future__ import annotations

import http.server
import logging
import re
import threading
import uuid
from decimal import Decimal

import pytest
import pytest_asyncio
import requests
from rest_framework_simplejwt.tokens import AccessToken

from apps.billing import services, tasks
from apps.billing.choices import PaymentStatus
from apps.billing.models import Payment, PaymentMethod, StripeCall, StripeCustomer, StripeEvent
from apps.charging.models import DriverSession
from apps.ocpp_gateway.models import OcppCommand
from cpo.units import Money
from tests.billing.conftest import (  # noqa: F401 - fixtures
    PUBLISHABLE_KEY,
    SECRET_KEY,
    WEBHOOK_SECRET,
    localstripe,
    signed,
    stripe_server,
)
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


def _driver(email: str) -> str:
    return str(AccessToken.for_user(DriverFactory(email=email)))


def _driver_with_card(email: str, card: str) -> str:
    driver = DriverFactory(email=email)
    services.payment_method_attach(user=driver, payment_method_id=card)
    return str(AccessToken.for_user(driver))


def _app_card(stripe_server, number: str) -> str:  # noqa: F811
    """What the app does with Stripe's SDK: the card goes to Stripe, we only ever see its id."""
    card = {"number": number, "exp_month": 8, "exp_year": 2031, "cvc": "123"}
    return stripe_server.client().v1.payment_methods.create({"type": "card", "card": card}).id


async def test_a_card_driver_charges_and_the_cdrs_gross_is_captured(
    card_server,
    card_charger,
    stripe_server,  # noqa: F811
    monkeypatch,
):
    base = f"http://127.0.0.1:{card_server.port}/api/v1"
    start = {"charge_point": card_charger, "connector": 1}

    # The driver adds a card: a SetupIntent from us, confirmed by the app at Stripe, then the card named.
    token = await orm(_driver)("card@example.com")
    setup = _http("POST", f"{base}/payment-methods/setup-intent", token)
    assert setup.status_code == 201, setup.text
    card = _app_card(stripe_server, "4242424242424242")
    confirmed = stripe_server.client().v1.setup_intents.confirm(
        setup.json()["setup_intent_id"], {"payment_method": card}
    )
    assert confirmed.status == "succeeded"
    added = _http("POST", f"{base}/payment-methods", token, json={"payment_method_id": card})
    assert added.status_code == 201, added.text
    listed = _http("GET", f"{base}/payment-methods", token).json()
    assert [(c["brand"], c["last4"], c["is_default"]) for c in listed] == [("visa", "4242", True)]

    started = _http(
        "POST", f"{base}/sessions", token, json=start, headers={"Idempotency-Key": str(uuid.uuid4())}
    )
    assert started.status_code == 201, started.text
    session_id = started.json()["id"]
    assert started.json()["payment"]["status"] == "authorised"
    held = started.json()["payment"]["amount_held"]
    assert held > 0

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

    # The workers' part, each task run twice: the CDR task, then the capture sweep (its capture task
    # run at once, as a worker would take it), then a late retry of the capture task.
    monkeypatch.setattr(
        tasks.payment_capture_task, "delay", lambda pk: tasks.payment_capture_task.apply(args=[pk])
    )

    def issue_and_capture() -> tuple[Decimal, Payment, list[int]]:
        from apps.tariffs.tasks import cdr_issue_task

        charging = DriverSession.objects.get(pk=session_id).charging_session
        cdr_ids = [cdr_issue_task.apply(args=[charging.pk]).get() for _ in range(2)]
        assert cdr_ids[0] is not None and cdr_ids[0] == cdr_ids[1]
        swept = [tasks.payments_capture_sweep_task.apply().get() for _ in range(2)]
        payment = Payment.objects.get(driver_session_id=session_id)
        tasks.payment_capture_task.apply(args=[payment.pk])
        payment.refresh_from_db()
        return charging.charge_detail_records.get(pk=cdr_ids[0]).gross, payment, swept

    gross, payment, swept = await orm(issue_and_capture)()
    assert swept == [1, 0]
    assert payment.status == PaymentStatus.CAPTURED
    assert payment.amount_captured == Money(gross, "EUR").rounded().to_minor_units() > 0
    assert payment.amount_captured <= held
    capture = await orm(lambda: StripeCall.objects.get(operation="payment_intent_capture"))()
    assert capture.attempts == 1  # one capture request however often the tasks ran
    assert stripe_server.client().v1.payment_intents.retrieve(payment.stripe_id).status == "succeeded"

    receipt = _http("GET", f"{base}/sessions/{session_id}/receipt", token)
    assert receipt.status_code == 200
    total = re.search(r'<span class="gross">([0-9.]+)</span> EUR', receipt.text)
    assert total is not None and Decimal(total.group(1)) == gross
    body = _http("GET", f"{base}/sessions/{session_id}", token).json()
    assert body["payment"]["status"] == "captured"
    assert body["payment"]["amount_captured"] == payment.amount_captured


async def test_declined_cards_never_start_the_charger(card_server, card_charger, stripe_server):  # noqa: F811
    base = f"http://127.0.0.1:{card_server.port}/api/v1"
    start = {"charge_point": card_charger, "connector": 1}

    # 4000 0000 0000 0002: Stripe declines the card as it is attached; the driver has no card.
    token = await orm(_driver)("declined@example.com")
    declined = _app_card(stripe_server, "4000000000000002")
    added = _http("POST", f"{base}/payment-methods", token, json={"payment_method_id": declined})
    assert (added.status_code, added.json()["code"]) == (402, "payment_declined"), added.text
    assert _http("GET", f"{base}/payment-methods", token).json() == []
    refused = _http("POST", f"{base}/sessions", token, json=start, headers={"Idempotency-Key": "d-1"})
    assert refused.status_code == 402 and refused.json()["code"] == "payment_method_required", refused.text

    # 4000 0000 0000 0341: attached fine, every charge declined: the hold is refused.
    token = await orm(_driver_with_card)("charge-fails@example.com", "pm_card_chargeCustomerFail")
    refused = _http("POST", f"{base}/sessions", token, json=start, headers={"Idempotency-Key": "d-2"})
    assert refused.status_code == 402 and refused.json()["code"] == "payment_declined", refused.text

    def nothing_started() -> tuple[int, int, int]:
        return OcppCommand.objects.count(), DriverSession.objects.count(), Payment.objects.count()

    assert await orm(nothing_started)() == (0, 0, 0)


class _Relay(http.server.ThreadingHTTPServer):
    """Stands between localstripe and our server: forwards each delivery of a customer.deleted event and
    keeps a copy (body and Stripe-Signature) to deliver again. Other events (customer.created of this
    or an earlier test, sent a second later) are acknowledged here and not passed on, so that what the
    server took in is exactly the one event."""

    def __init__(self, target: str) -> None:
        super().__init__(("127.0.0.1", 0), _RelayHandler)
        self.target = target
        self.deliveries: list[tuple[bytes, str, int]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _RelayHandler(http.server.BaseHTTPRequestHandler):
    server: _Relay

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        signature = self.headers.get("Stripe-Signature", "")
        if b'"customer.deleted"' not in body:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        answer = requests.post(
            self.server.target + self.path,
            data=body,
            headers={"Content-Type": "application/json", "Stripe-Signature": signature},
            timeout=15,
        )
        self.server.deliveries.append((body, signature, answer.status_code))
        self.send_response(answer.status_code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    def log_message(self, *args) -> None:
        pass


def _billing_rows() -> list[tuple]:
    """Every row the webhook could touch, in full."""
    rows: list[tuple] = []
    for model in (StripeEvent, StripeCustomer, PaymentMethod):
        rows.extend(tuple(values.items()) for values in model.objects.order_by("pk").values())
    return rows


async def test_localstripes_webhooks_reach_the_server_once_and_only_signed(card_server, stripe_server):  # noqa: F811
    hook = f"http://127.0.0.1:{card_server.port}/webhooks/stripe/"

    def customer_with_card() -> StripeCustomer:
        driver = DriverFactory(email="hooked-e2e@example.com")
        services.payment_method_attach(user=driver, payment_method_id="pm_card_visa")
        return StripeCustomer.objects.get(user=driver)

    customer = await orm(customer_with_card)()
    relay = _Relay(f"http://127.0.0.1:{card_server.port}")
    thread = threading.Thread(target=relay.serve_forever, daemon=True)
    thread.start()
    try:
        stripe_server.register_webhook(f"{relay.url}/webhooks/stripe/")
        stripe_server.client().v1.customers.delete(customer.stripe_id)  # Stripe's dashboard, say

        def forgotten() -> bool:
            return (
                StripeCustomer.objects.get(pk=customer.pk).deleted_at is not None
                and not PaymentMethod.objects.exists()
            )

        await eventually(orm(forgotten), timeout=20, what="customer.deleted taken in")
        await eventually(lambda: _async(relay.deliveries), what="the relay's copy")
        assert len(relay.deliveries) == 1 and relay.deliveries[0][2] == 200
        body, signature, _status = relay.deliveries[0]
        before = await orm(_billing_rows)()
        assert await orm(lambda: StripeEvent.objects.filter(type="customer.deleted").count())() == 1

        # The same delivery again (Stripe retries, or someone replays it): acknowledged, nothing changes.
        replay = requests.post(
            hook,
            data=body,
            headers={"Content-Type": "application/json", "Stripe-Signature": signature},
            timeout=15,
        )
        assert replay.status_code == 200 and replay.json()["duplicate"] is True, replay.text
        assert await orm(_billing_rows)() == before

        # A bad signature: the body changed, a wrong secret, none at all.
        changed = body.replace(customer.stripe_id.encode(), b"cus_someoneelse")
        assert changed != body
        forged = {"id": "evt_forged", "type": "customer.deleted"}
        forged_body, forged_signature = signed(forged, secret="whsec_x")
        for data, header in ((changed, signature), (forged_body, forged_signature), (body, None)):
            headers = {"Content-Type": "application/json"}
            if header is not None:
                headers["Stripe-Signature"] = header
            refused = requests.post(hook, data=data, headers=headers, timeout=15)
            assert refused.status_code == 400, refused.text
            assert refused.json()["code"] == "signature_invalid"
        assert await orm(_billing_rows)() == before
    finally:
        relay.shutdown()
        relay.server_close()
        thread.join(10)
