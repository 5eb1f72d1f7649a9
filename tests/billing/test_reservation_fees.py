"""A reservation's own record (a no-show fee) is charged to the driver's card off-session, once, against
localstripe; a declined card leaves it as the driver's debt, paid like any debt."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from apps.billing import payments, services, settlement
from apps.billing.choices import PaymentStatus
from apps.billing.models import Payment, StripeCall
from cpo import clock
from tests.factories import ChargeDetailRecordFactory, ChargePointFactory, DriverFactory

pytestmark = pytest.mark.django_db
_refs = itertools.count(4242)


def _record(gross: str = "6.00"):
    cp = ChargePointFactory()
    return ChargeDetailRecordFactory(
        session=None,
        reservation_ref=next(_refs),
        organisation=cp.organisation,
        charge_point=cp,
        started_at=clock.now(),
        stopped_at=clock.now(),
        energy_wh=0,
        charging_seconds=0,
        net=Decimal("5.00"),
        tax=Decimal(gross) - Decimal("5.00"),
        gross=Decimal(gross),
    )


def test_the_fee_is_charged_once_to_the_default_card(stripe_server):
    driver = DriverFactory()
    services.payment_method_attach(user=driver, payment_method_id="pm_card_visa")
    cdr = _record()
    payment = payments.reservation_fee_charge(cdr_id=cdr.pk, user_id=driver.pk)
    assert payment.status == PaymentStatus.CAPTURED and payment.cdr_id == cdr.pk
    assert (payment.amount_captured, payment.currency, payment.driver_session_id) == (600, "EUR", None)
    assert settlement.amount_due(payment) == 0
    again = payments.reservation_fee_charge(cdr_id=cdr.pk, user_id=driver.pk)
    assert again.pk == payment.pk
    assert StripeCall.objects.filter(operation="payment_intent_reservation_fee").count() == 1


def test_a_declined_card_makes_the_fee_a_debt(stripe_server):
    driver = DriverFactory()
    services.payment_method_attach(user=driver, payment_method_id="pm_card_chargeCustomerFail")
    cdr = _record()
    payment = payments.reservation_fee_charge(cdr_id=cdr.pk, user_id=driver.pk)
    assert payment.status == PaymentStatus.DEBT and payment.amount_captured == 0
    assert settlement.amount_due(payment) == 600
    assert settlement.driver_in_debt(driver.pk)


def test_nothing_without_a_card_or_without_stripe(stripe_server, settings):
    driver = DriverFactory()
    assert payments.reservation_fee_charge(cdr_id=_record().pk, user_id=driver.pk) is None
    services.payment_method_attach(user=driver, payment_method_id="pm_card_visa")
    settings.STRIPE_SECRET_KEY = ""
    assert payments.reservation_fee_charge(cdr_id=_record().pk, user_id=driver.pk) is None
    assert not Payment.objects.exists()
