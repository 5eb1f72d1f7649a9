"""The driver's cards against localstripe: customer once, SetupIntent, attach, list, default, remove,
ownership, and Stripe's failures in the API's one error shape."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from apps.billing import services, stripe_client
from apps.billing.choices import StripeCallStatus
from apps.billing.models import PaymentMethod, StripeCall, StripeCustomer
from tests.billing.conftest import PUBLISHABLE_KEY
from tests.factories import DriverFactory
from tests.processes import free_port

pytestmark = pytest.mark.django_db


def api_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
    return client


@pytest.fixture
def driver(db):
    return DriverFactory(email="payer@example.com")


@pytest.fixture
def api(driver):
    return api_for(driver)


def add_card(api, pm="pm_card_visa"):
    return api.post("/api/v1/payment-methods", {"payment_method_id": pm}, format="json")


def app_card(server, number="4000056655665556"):
    """A card the app created at Stripe (with Stripe's SDK: the number never reaches us)."""
    card = {"number": number, "exp_month": 9, "exp_year": 2032, "cvc": "123"}
    return server.client().v1.payment_methods.create({"type": "card", "card": card}).id


def test_setup_intent_creates_the_customer_once(api, driver, stripe_server):
    first = api.post("/api/v1/payment-methods/setup-intent")
    assert first.status_code == 201, first.json()
    body = first.json()
    assert body["client_secret"].startswith(body["setup_intent_id"] + "_secret_")
    assert body["publishable_key"] == PUBLISHABLE_KEY
    customer = StripeCustomer.objects.get(user=driver)
    assert body["customer_id"] == customer.stripe_id
    second = api.post("/api/v1/payment-methods/setup-intent")
    assert second.status_code == 201
    assert second.json()["setup_intent_id"] != body["setup_intent_id"]
    assert StripeCustomer.objects.filter(user=driver).count() == 1
    assert [c["id"] for c in stripe_server.customers()] == [customer.stripe_id]
    call = StripeCall.objects.get(operation="customer_create")
    assert call.idempotency_key == f"cpo-customer-user-{driver.pk}-0"
    assert (call.status, call.result_id, call.attempts) == (StripeCallStatus.SUCCEEDED, customer.stripe_id, 1)


def test_setup_intent_replayed_with_the_same_idempotency_key(api, stripe_server):
    first = api.post("/api/v1/payment-methods/setup-intent", HTTP_IDEMPOTENCY_KEY="app-key-1")
    again = api.post("/api/v1/payment-methods/setup-intent", HTTP_IDEMPOTENCY_KEY="app-key-1")
    assert first.json()["setup_intent_id"] == again.json()["setup_intent_id"]
    assert StripeCall.objects.filter(operation="setup_intent_create").count() == 1


def test_a_customer_created_at_stripe_before_a_crash_is_reused_not_created_again(driver, stripe_server):
    """The call succeeded at Stripe but our customer row was never written (the process died): the
    recorded call's result is read back instead of creating a second customer."""
    services.customer_for(user=driver)
    StripeCustomer.objects.filter(user=driver).delete()
    again = services.customer_for(user=driver)
    assert len(stripe_server.customers()) == 1
    assert again.stripe_id == stripe_server.customers()[0]["id"]


def test_the_app_confirms_a_setup_intent_then_adds_its_card(api, driver, stripe_server):
    intent = api.post("/api/v1/payment-methods/setup-intent").json()
    app = stripe_server.client()  # the app, talking to Stripe with the card (never to us)
    card = app.v1.payment_methods.create(
        {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 8, "exp_year": 2031, "cvc": "123"},
        }
    )
    confirmed = app.v1.setup_intents.confirm(intent["setup_intent_id"], {"payment_method": card.id})
    assert confirmed.status == "succeeded"
    response = add_card(api, card.id)
    assert response.status_code == 201, response.json()
    assert response.json() == {
        "id": PaymentMethod.objects.get().pk,
        "payment_method_id": card.id,
        "brand": "visa",
        "last4": "4242",
        "exp_month": 8,
        "exp_year": 2031,
        "is_default": True,
    }
    assert (
        app.v1.payment_methods.retrieve(card.id).customer == StripeCustomer.objects.get(user=driver).stripe_id
    )
    again = add_card(api, card.id)
    assert again.status_code == 200
    assert PaymentMethod.objects.count() == 1


def test_list_default_and_remove(api, driver, stripe_server):
    first = add_card(api).json()
    # the test token again is the same request (same idempotency key): the first card, not a new one
    assert add_card(api).json()["id"] == first["id"]
    second = add_card(api, app_card(stripe_server)).json()
    assert first["is_default"] and not second["is_default"]
    listed = api.get("/api/v1/payment-methods").json()
    assert [(m["id"], m["is_default"], m["last4"]) for m in listed] == [
        (first["id"], True, "4242"),
        (second["id"], False, "5556"),
    ]
    made_default = api.post(f"/api/v1/payment-methods/{second['id']}/default")
    assert made_default.status_code == 200 and made_default.json()["is_default"]
    assert [m["is_default"] for m in api.get("/api/v1/payment-methods").json()] == [False, True]

    removed = api.delete(f"/api/v1/payment-methods/{second['id']}")
    assert removed.status_code == 204
    assert stripe_server.client().v1.payment_methods.retrieve(second["payment_method_id"]).customer is None
    remaining = api.get("/api/v1/payment-methods").json()
    assert [(m["id"], m["is_default"]) for m in remaining] == [(first["id"], True)]
    assert api.delete(f"/api/v1/payment-methods/{second['id']}").status_code == 404


def test_a_driver_sees_and_touches_only_their_own_cards(api, driver, stripe_server):
    mine = add_card(api).json()
    other = DriverFactory(email="other@example.com")
    other_api = api_for(other)
    theirs = add_card(other_api).json()

    assert [m["id"] for m in api.get("/api/v1/payment-methods").json()] == [mine["id"]]
    for request in (
        lambda: api.get(f"/api/v1/payment-methods/{theirs['id']}"),
        lambda: api.delete(f"/api/v1/payment-methods/{theirs['id']}"),
        lambda: api.post(f"/api/v1/payment-methods/{theirs['id']}/default"),
    ):
        response = request()
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
    # their card by its Stripe id: refused, and still theirs
    taken = add_card(api, theirs["payment_method_id"])
    assert taken.status_code == 400
    assert taken.json()["code"] == "payment_method_invalid"
    assert PaymentMethod.objects.get(pk=theirs["id"]).customer.user == other
    assert PaymentMethod.objects.filter(customer__user=driver).count() == 1


def test_a_card_attached_to_another_stripe_customer_is_refused(api, stripe_server):
    app = stripe_server.client()
    stranger = app.v1.customers.create({"email": "stranger@example.com"})
    card = app.v1.payment_methods.attach("pm_card_visa", {"customer": stranger.id})
    response = add_card(api, card.id)
    assert response.status_code == 400
    assert response.json()["code"] == "payment_method_invalid"
    assert not PaymentMethod.objects.exists()


def test_unknown_and_malformed_payment_method_ids(api, stripe_server):
    unknown = add_card(api, "pm_doesnotexist")
    assert (unknown.status_code, unknown.json()["code"]) == (400, "payment_method_invalid")
    malformed = add_card(api, "4242424242424242")
    assert malformed.status_code == 400
    assert malformed.json()["code"] == "validation_failed"
    assert "payment_method_id" in malformed.json()["fields"]
    assert not PaymentMethod.objects.exists()


def test_a_declined_card_is_402_payment_declined(api, stripe_server):
    response = add_card(api, "pm_card_visa_chargeDeclined")
    assert response.status_code == 402
    assert response.json()["code"] == "payment_declined"
    assert not PaymentMethod.objects.exists()
    assert StripeCall.objects.get(operation="payment_method_attach").status == StripeCallStatus.FAILED


def test_stripe_unreachable_is_503_payment_provider_unavailable(api, settings, stripe_server):
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{free_port()}"
    for response in (api.post("/api/v1/payment-methods/setup-intent"), add_card(api)):
        assert response.status_code == 503
        assert set(response.json()) == {"code", "detail", "fields"}
        assert response.json()["code"] == "payment_provider_unavailable"
    assert not StripeCustomer.objects.exists()
    call = StripeCall.objects.get(operation="customer_create")
    assert call.status == StripeCallStatus.FAILED and call.attempts == 2  # the same key, tried twice


def test_without_a_secret_key_cards_are_unavailable(api, settings):
    settings.STRIPE_SECRET_KEY = ""
    response = api.post("/api/v1/payment-methods/setup-intent")
    assert response.status_code == 503
    assert response.json()["code"] == "payment_provider_unavailable"


def test_removing_a_card_stripe_cannot_reach_keeps_it(api, settings, stripe_server):
    card = add_card(api).json()
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{free_port()}"
    response = api.delete(f"/api/v1/payment-methods/{card['id']}")
    assert response.status_code == 503
    assert PaymentMethod.objects.filter(pk=card["id"]).exists()


def test_idempotency_keys_are_derived_from_our_ids():
    assert stripe_client.idempotency_key("attach", "pm_1", "customer", 7) == "cpo-attach-pm_1-customer-7"


def test_anonymous_requests_are_refused(db):
    response = APIClient().get("/api/v1/payment-methods")
    assert response.status_code == 401
