"""manage.py billing_demo_cards: the demo drivers who pay by card get Stripe's test card, once."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from apps.billing.models import PaymentMethod
from tests.factories import CustomerAccountFactory, DriverFactory
from tests.processes import free_port

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("billing_demo_cards", *args, stdout=out)
    return out.getvalue()


def test_demo_drivers_paying_by_card_get_the_test_card_once(stripe_server):
    lena = DriverFactory(email="lena.fischer@demo.cpo")
    DriverFactory(email="fleet@demo.cpo", driver_profile__customer_account=CustomerAccountFactory())
    DriverFactory(email="someone@example.com")
    assert "demo cards: 1 added" in run()
    method = PaymentMethod.objects.get()
    assert method.customer.user == lena and (method.last4, method.is_default) == ("4242", True)
    assert "demo cards: 0 added" in run()
    assert PaymentMethod.objects.count() == 1


def test_named_drivers(stripe_server):
    DriverFactory(email="someone@example.com")
    assert "demo cards: 1 added" in run("--email", "someone@example.com")
    with pytest.raises(CommandError, match=r"No such driver: nobody@example\.com"):
        run("--email", "nobody@example.com")


def test_stripe_unreachable_is_a_command_error(settings, stripe_server):
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{free_port()}"
    DriverFactory(email="lena.fischer@demo.cpo")
    with pytest.raises(CommandError, match="payment_provider_unavailable"):
        run()
