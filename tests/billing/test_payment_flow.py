"""The money flow after the hold, against localstripe: a session whose cost reaches its hold is stopped."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from apps.billing import payments, services, tasks
from apps.billing.models import Payment
from apps.charging import driver_services
from apps.charging import hooks as charging_hooks
from apps.charging.choices import DriverSessionStatus
from apps.charging.hooks import SessionPrice
from apps.charging.models import DriverSessionTransition
from apps.ocpp_gateway.models import OcppCommand
from tests.charging.test_driver_sessions import _charger, _start_16, clean_presence  # noqa: F401 - fixture
from tests.factories import DriverFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def driver(db):
    return DriverFactory(email="payer@example.com")


@pytest.fixture
def priced(monkeypatch):
    """The cost so far of every running session, as the pricing app would answer it (set `.gross`)."""

    class Reader:
        gross = Decimal("0")

        def __call__(self, *, session):
            cost = SimpleNamespace(currency="EUR", net=self.gross, gross=self.gross)
            return SessionPrice(cost=cost, final=False)

    reader = Reader()
    original = charging_hooks.session_price.provided
    charging_hooks.session_price.provide(reader)
    yield reader
    charging_hooks.session_price.provide(original)


def _running(driver):
    services.payment_method_attach(user=driver, payment_method_id="pm_card_visa")
    cp = _charger()
    session, _created = driver_services.driver_session_start(
        driver=driver, charge_point_id=cp.pk, evse_id=1, idempotency_key="run-1"
    )
    _start_16(cp, session)
    session.refresh_from_db()
    assert session.status == DriverSessionStatus.ACTIVE
    return session, Payment.objects.get(driver_session=session)


def test_a_session_whose_cost_reaches_the_hold_is_stopped_with_the_reason(driver, stripe_server, priced):
    session, payment = _running(driver)
    priced.gross = Decimal("49.99")  # under the 50 EUR hold
    assert tasks.payments_limit_sweep_task.apply().get() == 0
    session.refresh_from_db()
    assert session.status == DriverSessionStatus.ACTIVE
    priced.gross = Decimal("50.00")
    assert payments.payments_at_limit() == [payment.pk]
    assert tasks.payments_limit_sweep_task.apply().get() == 1
    assert tasks.payments_limit_sweep_task.apply().get() == 0  # run twice: one stop
    session.refresh_from_db()
    assert session.status == DriverSessionStatus.STOPPING
    step = DriverSessionTransition.objects.filter(session=session).order_by("at", "pk").last()
    assert (step.to_status, step.cause) == (DriverSessionStatus.STOPPING, "payment_limit_reached")
    assert OcppCommand.objects.filter(action="RemoteStopTransaction").count() == 1
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(driver)}")
    body = api.get(f"/api/v1/sessions/{session.pk}").json()
    assert body["transitions"][-1]["cause"] == "payment_limit_reached"
