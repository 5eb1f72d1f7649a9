"""Pre-authorisation of a driver's start against localstripe: a card hold taken before the charger is
asked (charging asks billing through the start_payment port), 402s without one, released when the start
does not happen."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from apps.billing import payments, services, settlement, stripe_client, tasks
from apps.billing.choices import PaymentStatus
from apps.billing.models import Dispute, Payment, StripeCall
from apps.charging import driver_services
from apps.charging.choices import DriverSessionStatus
from apps.charging.models import DriverSession
from apps.ocpp_gateway.models import OcppCommand
from apps.stations.choices import ConnectorStatus
from apps.tariffs.selectors import place_for, vat_rate_for
from cpo import clock
from cpo.units import Money
from tests.billing.conftest import event, signed
from tests.charging.test_driver_sessions import _charger, clean_presence  # noqa: F401 - fixture
from tests.factories import (
    ChargeDetailRecordFactory,
    ChargingSessionFactory,
    CustomerAccountFactory,
    DriverFactory,
    TariffAssignmentFactory,
    TariffFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def driver(db):
    return DriverFactory(email="holder@example.com")


@pytest.fixture
def api(driver):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(driver)}")
    return client


@pytest.fixture
def released_at_once(monkeypatch):
    """The release task runs in the test (no worker) when it is dispatched on commit."""
    monkeypatch.setattr(
        tasks.payment_release_task, "delay", lambda pk: tasks.payment_release_task.apply(args=[pk])
    )


def start(api, cp, key="start-1", connector=1):
    return api.post(
        "/api/v1/sessions",
        {"charge_point": cp.pk, "connector": connector},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def intent_status(server, payment):
    return server.client().v1.payment_intents.retrieve(payment.stripe_id).status


def test_no_card_is_402_and_the_charger_is_never_asked(api, stripe_server):
    cp = _charger()
    response = start(api, cp)
    assert response.status_code == 402
    assert response.json()["code"] == "payment_method_required"
    assert not DriverSession.objects.exists()
    assert not OcppCommand.objects.exists()


def test_a_card_start_holds_before_the_charger_is_asked(api, driver, stripe_server):
    services.payment_method_attach(user=driver, payment_method_id="pm_card_visa")
    cp = _charger()
    response = start(api, cp)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == DriverSessionStatus.STARTING
    assert body["payment"] == {
        "id": Payment.objects.get().pk,
        "status": "authorised",
        "amount_held": 5000,
        "amount_captured": 0,
        "amount_due": 0,
        "currency": "EUR",
    }
    payment = Payment.objects.get()
    assert payment.driver_session_id == body["id"] and payment.organisation_id == cp.organisation_id
    assert intent_status(stripe_server, payment) == "requires_capture"
    assert OcppCommand.objects.count() == 1
    assert api.get(f"/api/v1/sessions/{body['id']}").json()["payment"]["status"] == "authorised"
    authorising = DriverSession.objects.get().transitions.get(to_status=DriverSessionStatus.AUTHORISING)
    assert authorising.detail == {"payment": "card", "amount_held": 5000, "currency": "EUR"}

    replay = start(api, cp)
    assert replay.status_code == 200 and replay.json()["id"] == body["id"]
    assert Payment.objects.count() == 1
    assert StripeCall.objects.filter(operation="payment_intent_hold").count() == 1


def test_a_declined_card_is_402_and_the_charger_is_never_asked(api, driver, stripe_server):
    # attaches fine, every charge on it is declined (Stripe's test card 4000 0000 0000 0341)
    services.payment_method_attach(user=driver, payment_method_id="pm_card_chargeCustomerFail")
    cp = _charger()
    response = start(api, cp)
    assert response.status_code == 402
    assert response.json()["code"] == "payment_declined"
    assert not DriverSession.objects.exists() and not Payment.objects.exists()
    assert not OcppCommand.objects.exists()


def test_an_offline_charger_releases_the_hold(
    api, driver, stripe_server, released_at_once, django_capture_on_commit_callbacks
):
    services.payment_method_attach(user=driver, payment_method_id="pm_card_visa")
    cp = _charger(online=False)
    with django_capture_on_commit_callbacks(execute=True):
        response = start(api, cp)
    assert response.status_code == 409
    assert response.json()["code"] == "charger_offline"
    payment = Payment.objects.get()
    assert payment.status == PaymentStatus.RELEASED
    assert intent_status(stripe_server, payment) == "canceled"
    assert response.json()["session"]["payment"]["status"] in ("authorised", "released")


def test_a_refused_start_releases_the_hold(
    api, driver, stripe_server, released_at_once, django_capture_on_commit_callbacks
):
    services.payment_method_attach(user=driver, payment_method_id="pm_card_visa")
    cp = _charger()
    cp.evses.get(evse_id=1).connectors.update(status=ConnectorStatus.OCCUPIED)
    with django_capture_on_commit_callbacks(execute=True):
        response = start(api, cp)
    assert response.status_code == 409
    payment = Payment.objects.get()
    assert payment.driver_session_id is None
    assert payment.status == PaymentStatus.RELEASED
    assert intent_status(stripe_server, payment) == "canceled"


def test_a_start_the_charger_never_begins_releases_the_hold(
    api, driver, stripe_server, released_at_once, django_capture_on_commit_callbacks
):
    services.payment_method_attach(user=driver, payment_method_id="pm_card_visa")
    cp = _charger()
    assert start(api, cp).status_code == 201
    payment = Payment.objects.get()
    assert payment.status == PaymentStatus.AUTHORISED
    with django_capture_on_commit_callbacks(execute=True):
        driver_services.driver_sessions_sweep(now=clock.now() + timedelta(hours=1))
    assert DriverSession.objects.get().status == DriverSessionStatus.FAILED
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.RELEASED
    assert intent_status(stripe_server, payment) == "canceled"


def test_a_running_session_keeps_its_hold(driver, stripe_server, released_at_once):
    services.payment_method_attach(user=driver, payment_method_id="pm_card_visa")
    session, _created = driver_services.driver_session_start(
        driver=driver, charge_point_id=_charger().pk, evse_id=1, idempotency_key="k"
    )
    payment = Payment.objects.get(driver_session=session)
    assert payments.payment_release(payment.pk).status == PaymentStatus.AUTHORISED  # not a failed start
    assert intent_status(stripe_server, payment) == "requires_capture"


def test_drivers_of_a_customer_account_are_not_held(db, stripe_server):
    fleet_driver = DriverFactory(
        email="fleet@example.com", driver_profile__customer_account=CustomerAccountFactory()
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(fleet_driver)}")
    response = start(client, _charger())
    assert response.status_code == 201
    assert response.json()["payment"] is None
    assert not Payment.objects.exists()


def test_without_stripe_starts_are_paid_on_account(api, settings, db):
    settings.STRIPE_SECRET_KEY = ""
    response = start(api, _charger())
    assert response.status_code == 201
    assert response.json()["payment"] is None


def test_hold_maximums_are_read_per_currency(settings):
    settings.CPO_PAYMENT_HOLD_AMOUNT = "EUR=50, CHF=45.5"
    assert payments.hold_maximums() == {"EUR": 50, "CHF": 45.5}


def test_the_hold_follows_the_tariffs_currency_and_maximum_price(settings, db):
    settings.CPO_PAYMENT_HOLD_AMOUNT = "EUR=50,CHF=45"
    cp = _charger()
    assert payments.hold_amount(charge_point=cp) == Money(Decimal("50.00"), "EUR")  # no tariff: the maximum
    tariff = TariffFactory(organisation=cp.organisation, currency="CHF")
    TariffAssignmentFactory(tariff=tariff)
    assert payments.hold_amount(charge_point=cp) == Money(Decimal("45.00"), "CHF")
    tariff.max_price = Decimal("20.00")
    tariff.save()
    place = place_for(charge_point=cp, connector_id=None)
    vat = vat_rate_for(country=place.country, on=clock.now().date())
    expected = Money(Decimal("20.00") * (1 + vat / 100), "CHF").rounded()
    assert payments.hold_amount(charge_point=cp) == expected
    assert expected.amount < 45


def test_a_card_that_needs_3d_secure_is_402_with_the_client_secret(api, driver, stripe_server):
    card = {"number": "4000002500003155", "exp_month": 1, "exp_year": 2031, "cvc": "123"}
    method = stripe_server.client().v1.payment_methods.create({"type": "card", "card": card})
    services.payment_method_attach(user=driver, payment_method_id=method.id)
    response = start(api, _charger())
    assert response.status_code == 402
    body = response.json()
    assert body["code"] == "payment_action_required"
    assert body["fields"]["client_secret"][0].startswith("pi_")
    assert not DriverSession.objects.exists() and not OcppCommand.objects.exists()


def test_a_dispute_of_a_held_payment_belongs_to_the_chargers_operator(api, driver, stripe_server):
    services.payment_method_attach(user=driver, payment_method_id="pm_card_visa")
    cp = _charger()
    assert start(api, cp).status_code == 201
    payment = Payment.objects.get()
    obj = {
        "id": "dp_held",
        "object": "dispute",
        "amount": 1200,
        "currency": "eur",
        "charge": "ch_x",
        "payment_intent": payment.stripe_id,
        "reason": "general",
        "status": "needs_response",
        "created": 1764000000,
    }
    body, header = signed(event("evt_held_dispute", "charge.dispute.created", obj))
    response = Client().post(
        "/webhooks/stripe/", body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )
    assert response.status_code == 200
    dispute = Dispute.objects.get()
    assert dispute.organisation_id == cp.organisation_id
    assert dispute.customer_id == payment.customer_id


def _held_and_charged(api, driver, gross: str, currency: str = "EUR"):
    """A card start whose charge completed and whose CDR was issued for `gross` (in EUR, the hold's)."""
    services.payment_method_attach(user=driver, payment_method_id="pm_card_visa")
    cp = _charger()
    body = start(api, cp).json()
    charging = ChargingSessionFactory(charge_point=cp, status="COMPLETED", meter_stop_wh=11000)
    DriverSession.objects.filter(pk=body["id"]).update(charging_session=charging)
    ChargeDetailRecordFactory(
        session=charging, gross=Decimal(gross), net=Decimal(gross), tax=Decimal("0"), currency=currency
    )
    return Payment.objects.get(driver_session_id=body["id"])


def test_the_cdrs_gross_is_captured_once(api, driver, stripe_server):
    payment = _held_and_charged(api, driver, "3.57")
    assert payments.payments_to_capture() == [payment.pk]
    tasks.payment_capture_task.apply(args=[payment.pk])
    tasks.payment_capture_task.apply(args=[payment.pk])  # run twice: one capture
    payment.refresh_from_db()
    assert (payment.status, payment.amount_captured, payment.amount_held) == (
        PaymentStatus.CAPTURED,
        357,
        5000,
    )
    assert intent_status(stripe_server, payment) == "succeeded"
    assert StripeCall.objects.get(operation="payment_intent_capture").attempts == 1
    assert payments.payments_to_capture() == []
    # what GET sessions/{id} shows as `payment` (the factory's CDR is too bare for the rest of the body)
    assert payments.payment_of(DriverSession.objects.get(pk=payment.driver_session_id)) == {
        "id": payment.pk,
        "status": "captured",
        "amount_held": 5000,
        "amount_captured": 357,
        "amount_due": 0,
        "currency": "EUR",
    }


def test_a_capture_whose_answer_was_lost_is_recorded_not_made_a_debt(api, driver, stripe_server):
    """The capture reached Stripe but its answer was never written down (the worker died): the next run's
    capture is refused (the intent is captured already) and read back, so the payment is captured, not a
    debt that would block the driver."""
    payment = _held_and_charged(api, driver, "3.57")
    stripe_server.client().v1.payment_intents.capture(payment.stripe_id, {"amount_to_capture": 357})
    tasks.payment_capture_task.apply(args=[payment.pk])
    payment.refresh_from_db()
    assert (payment.status, payment.amount_captured) == (PaymentStatus.CAPTURED, 357)
    assert not settlement.driver_in_debt(driver.pk)


@pytest.mark.django_db(transaction=True)
def test_two_workers_capturing_one_payment_at_once_capture_it_once(api, driver, stripe_server, monkeypatch):
    """The sweep's task and a retry run together: the second's capture reaches Stripe after the first's
    and before the first wrote it down. One capture at Stripe, the payment captured, no debt."""
    payment = _held_and_charged(api, driver, "3.57")
    first_at_stripe, second_done = threading.Event(), threading.Event()
    original = stripe_client.call

    def call(operation, key, fn, **kwargs):
        if operation != "payment_intent_capture":
            return original(operation, key, fn, **kwargs)
        if threading.current_thread().name == "first":
            try:
                return original(operation, key, fn, **kwargs)
            finally:
                first_at_stripe.set()
                second_done.wait(30)  # the first writes its answer only after the second finished
        assert first_at_stripe.wait(30)
        return original(operation, key, fn, **kwargs)

    monkeypatch.setattr(stripe_client, "call", call)
    errors: list[BaseException] = []

    def worker(done: threading.Event | None) -> None:
        try:
            payments.payment_capture(payment.pk)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)
        finally:
            if done is not None:
                done.set()
            connection.close()

    threads = [
        threading.Thread(target=worker, args=(None,), name="first"),
        threading.Thread(target=worker, args=(second_done,), name="second"),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    payment.refresh_from_db()
    assert (payment.status, payment.amount_captured) == (PaymentStatus.CAPTURED, 357)
    assert not settlement.driver_in_debt(driver.pk)
    assert intent_status(stripe_server, payment) == "succeeded"


def test_a_release_refused_because_the_hold_is_gone_already_is_released(api, driver, stripe_server):
    """A start that failed: its hold's cancel reached Stripe but its answer was lost. Released, not failed."""
    services.payment_method_attach(user=driver, payment_method_id="pm_card_visa")
    body = start(api, _charger()).json()
    DriverSession.objects.filter(pk=body["id"]).update(status=DriverSessionStatus.FAILED)
    payment = Payment.objects.get()
    stripe_server.client().v1.payment_intents.cancel(payment.stripe_id)
    assert payments.payment_release(payment.pk).status == PaymentStatus.RELEASED


def test_more_than_the_hold_captures_the_hold_and_the_rest_is_a_debt(api, driver, stripe_server):
    payment = _held_and_charged(api, driver, "61.20")
    payments.payment_capture(payment.pk)
    payment.refresh_from_db()
    assert (payment.status, payment.amount_captured) == (PaymentStatus.DEBT, 5000)


def test_a_record_of_nothing_releases_the_hold(api, driver, stripe_server):
    payment = _held_and_charged(api, driver, "0.00")
    payments.payment_capture(payment.pk)
    payment.refresh_from_db()
    assert (payment.status, payment.amount_captured) == (PaymentStatus.RELEASED, 0)
    assert intent_status(stripe_server, payment) == "canceled"


def test_nothing_is_captured_before_the_cdr(api, driver, stripe_server):
    services.payment_method_attach(user=driver, payment_method_id="pm_card_visa")
    body = start(api, _charger()).json()
    payment = Payment.objects.get(driver_session_id=body["id"])
    assert payments.payments_to_capture() == []
    assert payments.payment_capture(payment.pk).status == PaymentStatus.AUTHORISED


def test_a_capture_that_cannot_happen_is_told_to_the_apps_above_and_raises_an_alert(
    api, driver, stripe_server
):
    """The record is in another currency than the hold: a debt, and billing's payment_capture_failed hook
    fires once (the console raises its failed-capture alert)."""
    from apps.console.models import Alert

    payment = _held_and_charged(api, driver, "3.57", currency="CHF")
    payments.payment_capture(payment.pk)
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.DEBT
    alert = Alert.objects.get(kind="capture_failed")
    assert (alert.organisation_id, alert.subject, alert.detail["reason"]) == (
        payment.organisation_id,
        f"payment {payment.pk}",
        "currency_mismatch",
    )
    payments.payment_capture(payment.pk)  # not authorised any more: nothing happens, no second alert
    assert Alert.objects.filter(kind="capture_failed").count() == 1
