"""The driver's data export (GET /api/v1/me/export) with what billing and tariffs keep about them: saved
cards (brand, last 4, expiry; never a number), payments and receipts. Charging builds the export and asks
the apps above it through `charging.hooks.driver_export_parts` (it imports neither)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from apps.billing import payments, services, settlement
from apps.charging.models import DriverSession
from tests.charging.test_driver_sessions import _charger, clean_presence  # noqa: F401 - fixture
from tests.factories import ChargeDetailRecordFactory, ChargingSessionFactory, DriverFactory, StaffUserFactory

pytestmark = pytest.mark.django_db

CARD_NUMBER = "4000056655665556"  # Stripe's Visa debit test card


def api_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
    return client


def app_card(server, number: str = CARD_NUMBER) -> str:
    """A card the app created at Stripe (the number goes to Stripe, never to us)."""
    card = {"number": number, "exp_month": 9, "exp_year": 2032, "cvc": "123"}
    return server.client().v1.payment_methods.create({"type": "card", "card": card}).id


def charged_by_card(api, driver, server, gross: str, number: str) -> tuple[int, str]:
    """A card start, its charge completed and its record issued for `gross` EUR and captured."""
    services.payment_method_attach(user=driver, payment_method_id=app_card(server))
    response = api.post(
        "/api/v1/sessions",
        {"charge_point": _charger().pk, "connector": 1},
        format="json",
        HTTP_IDEMPOTENCY_KEY=f"export-{driver.pk}",
    )
    assert response.status_code == 201, response.json()
    session_id = response.json()["id"]
    charging = ChargingSessionFactory(status="COMPLETED", meter_stop_wh=11000)
    DriverSession.objects.filter(pk=session_id).update(charging_session=charging)
    ChargeDetailRecordFactory(
        session=charging,
        number=number,
        gross=Decimal(gross),
        net=Decimal(gross),
        tax=Decimal("0"),
        currency="EUR",
        breakdown={  # enough of a price breakdown for the export's sessions (their cost)
            "currency": "EUR",
            "net": gross,
            "vat": "0",
            "gross": gross,
            "energy_wh": "10000",
            "charging_seconds": "3600",
            "parking_seconds": "0",
            "lines": [],
            "vat_lines": [],
            "periods": [],
        },
    )
    payment = payments.payment_capture(DriverSession.objects.get(pk=session_id).payment.pk)
    return session_id, payment.stripe_id


def test_the_export_has_my_cards_payments_and_receipts_and_no_card_number(stripe_server):
    driver = DriverFactory(email="exported@example.com")
    api = api_for(driver)
    session_id, intent_id = charged_by_card(api, driver, stripe_server, "3.57", "EXP-2026-000001")
    payment = DriverSession.objects.get(pk=session_id).payment
    settlement.refund_create(
        payment=payment, amount=57, reason="goodwill", request_key="export-r1", actor=StaffUserFactory()
    )
    # someone else's card, payment and receipt
    other = DriverFactory(email="other@example.com")
    charged_by_card(api_for(other), other, stripe_server, "9.99", "EXP-2026-000002")

    response = api.get("/api/v1/me/export")

    assert response.status_code == 200
    data = response.json()
    assert data["payment_methods"] == [
        {"brand": "visa", "last4": "5556", "exp_month": 9, "exp_year": 2032, "is_default": True}
    ]
    [exported] = data["payments"]
    assert {k: v for k, v in exported.items() if k not in ("created_at", "refunds")} == {
        "id": payment.pk,
        "session": session_id,
        "status": "captured",
        "currency": "EUR",
        "amount_held": 5000,
        "amount_captured": 357,
        "amount_due": 0,
        "further_charges": [],
    }
    assert [(r["amount"], r["status"], r["reason"]) for r in exported["refunds"]] == [
        (57, "succeeded", "goodwill")
    ]
    [receipt] = data["receipts"]
    assert {k: v for k, v in receipt.items() if k != "issued_at"} == {
        "number": "EXP-2026-000001",
        "kind": "CDR",
        "revision": 0,
        "session": session_id,
        "currency": "EUR",
        "net": "3.57",
        "tax": "0.00",
        "gross": "3.57",
        "energy_wh": 10000,
    }
    text = json.dumps(data)
    assert CARD_NUMBER not in text and "5556" in text  # the last 4 only
    assert "pm_" not in text and intent_id not in text  # nor Stripe's ids
    assert "EXP-2026-000002" not in text and len(data["payments"]) == 1


def test_a_driver_without_cards_or_payments_exports_empty_lists(db):
    data = api_for(DriverFactory()).get("/api/v1/me/export").json()
    assert (data["payment_methods"], data["payments"], data["receipts"]) == ([], [], [])
