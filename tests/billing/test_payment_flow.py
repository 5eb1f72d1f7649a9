"""The money flow after the hold, against localstripe: a session whose cost reaches its hold is stopped."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.test import Client
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from apps.accounts.models import AuditRecord
from apps.accounts.services import driver_delete
from apps.billing import payments, services, settlement, tasks
from apps.billing.choices import PaymentStatus
from apps.billing.models import Payment, PaymentCharge, PaymentMethod, Refund, StripeCall, StripeCustomer
from apps.charging import driver_services
from apps.charging import hooks as charging_hooks
from apps.charging.choices import AuthorizationStatus, DriverSessionStatus
from apps.charging.hooks import SessionPrice
from apps.charging.models import DriverSession, DriverSessionTransition
from apps.charging.services import idtoken_authorize
from apps.ocpp_gateway import localauth
from apps.ocpp_gateway.models import LocalAuthListMember, OcppCommand
from apps.tariffs.choices import CdrKind
from cpo import clock
from cpo.exceptions import Conflict, ValidationFailed
from tests.billing.test_start_holds import _held_and_charged, start
from tests.charging.test_driver_sessions import _charger, _start_16, clean_presence  # noqa: F401 - fixture
from tests.factories import (
    ChargeDetailRecordFactory,
    DriverFactory,
    IdTokenFactory,
    LocalAuthListFactory,
    OrganisationFactory,
    StaffUserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def driver(db):
    return DriverFactory(email="payer@example.com")


@pytest.fixture
def api(driver):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(driver)}")
    return client


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


def _list_sent(cp):
    command = OcppCommand.objects.filter(charge_point=cp, action="SendLocalList").order_by("-pk").first()
    assert command is not None
    return command.payload


def test_a_debt_blocks_the_drivers_tokens_until_the_driver_pays_it(
    api, driver, stripe_server, django_capture_on_commit_callbacks
):
    token = IdTokenFactory(owner=driver, uid="04DE0001")
    payment = _held_and_charged(api, driver, "61.20")  # 11.20 EUR more than the 50 EUR hold
    cp = payment.driver_session.charge_point
    local_list = LocalAuthListFactory(organisation=cp.organisation, name="Depot")
    member = LocalAuthListMember.objects.create(local_list=local_list, charge_point=cp)
    local_list = localauth.local_list_set_members(local_list=local_list, id_tokens=[token])
    LocalAuthListMember.objects.filter(pk=member.pk).update(accepted_version=local_list.version)
    assert idtoken_authorize(uid=token.uid, charge_point=cp).status == AuthorizationStatus.ACCEPTED

    with django_capture_on_commit_callbacks(execute=True):
        payments.payment_capture(payment.pk)
    payment.refresh_from_db()
    assert (payment.status, payment.amount_captured) == (PaymentStatus.DEBT, 5000)
    assert idtoken_authorize(uid=token.uid, charge_point=cp).status == AuthorizationStatus.BLOCKED
    sent = _list_sent(cp)
    assert sent["updateType"] == "Differential"
    assert sent["localAuthorizationList"] == [{"idTag": token.uid, "idTagInfo": {"status": "Blocked"}}]
    # GET sessions/{id} shows this `payment` (the factory's CDR is too bare for the rest of the body)
    shown = payments.payment_of(payment.driver_session)
    assert (shown["id"], shown["status"], shown["amount_due"]) == (payment.pk, "debt", 1120)

    with django_capture_on_commit_callbacks(execute=True):
        first = api.post(f"/api/v1/payments/{payment.pk}/retry")
        second = api.post(f"/api/v1/payments/{payment.pk}/retry")  # repeated: charged once
    assert first.status_code == second.status_code == 200, first.content
    assert first.json()["status"] == "captured" and first.json()["amount_due"] == 0
    payment.refresh_from_db()
    assert (payment.status, payment.amount_captured) == (PaymentStatus.CAPTURED, 6120)
    charge = PaymentCharge.objects.get(payment=payment)
    assert (charge.amount, charge.purpose) == (1120, "debt")
    assert stripe_server.client().v1.payment_intents.retrieve(charge.stripe_id).status == "succeeded"
    assert idtoken_authorize(uid=token.uid, charge_point=cp).status == AuthorizationStatus.ACCEPTED
    assert _list_sent(cp)["localAuthorizationList"][0]["idTagInfo"]["status"] == "Accepted"


def test_only_the_driver_pays_their_debt(api, driver, stripe_server):
    payment = _held_and_charged(api, driver, "61.20")
    payments.payment_capture(payment.pk)
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(DriverFactory())}")
    assert other.post(f"/api/v1/payments/{payment.pk}/retry").status_code == 404
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.DEBT


def test_finance_settling_a_debt_unblocks_the_driver_and_is_audited(api, driver, stripe_server):
    token = IdTokenFactory(owner=driver, uid="04DE0002")
    payment = _held_and_charged(api, driver, "61.20")
    payments.payment_capture(payment.pk)
    cp = payment.driver_session.charge_point
    assert idtoken_authorize(uid=token.uid, charge_point=cp).status == AuthorizationStatus.BLOCKED
    staff = StaffUserFactory()
    with pytest.raises(ValidationFailed):
        settlement.debt_settle(payment=payment, actor=staff, reason=" ")
    assert settlement.debt_settle(payment=payment, actor=staff, reason="paid by bank transfer")
    assert not settlement.debt_settle(payment=payment, actor=staff, reason="again")
    assert idtoken_authorize(uid=token.uid, charge_point=cp).status == AuthorizationStatus.ACCEPTED
    record = AuditRecord.objects.get(action="payment.debt_settle")
    assert record.detail["amount_due"] == 1120 and record.detail["reason"] == "paid by bank transfer"


def _correct(payment, gross: str):
    """Credit the record in force and issue the next revision for `gross` EUR (as tariffs.cdr_reissue)."""
    current = settlement.current_record(payment)
    ChargeDetailRecordFactory(
        session=current.session,
        kind=CdrKind.CREDIT,
        credits=current,
        revision=current.revision,
        gross=-current.gross,
        net=-current.net,
        tax=Decimal("0"),
    )
    return ChargeDetailRecordFactory(
        session=current.session,
        revision=current.revision + 1,
        gross=Decimal(gross),
        net=Decimal(gross),
        tax=Decimal("0"),
    )


def test_a_corrected_record_refunds_or_charges_the_difference_once(api, driver, stripe_server):
    payment = _held_and_charged(api, driver, "3.57")
    payments.payment_capture(payment.pk)
    assert settlement.payments_to_correct() == []
    first = _correct(payment, "2.00")  # 1.57 less: refunded
    assert settlement.payments_to_correct() == [payment.pk]
    tasks.payment_correct_task.apply(args=[payment.pk])
    tasks.payment_correct_task.apply(args=[payment.pk])  # run twice: one refund
    refund = Refund.objects.get(payment=payment)
    assert (refund.amount, refund.status, refund.cdr_id) == (157, Refund.Status.SUCCEEDED, first.pk)
    assert stripe_server.client().v1.refunds.retrieve(refund.stripe_id).amount == 157
    _correct(payment, "4.00")  # 2.00 more than the 2.00 now kept: a new off-session PaymentIntent
    tasks.payment_correct_task.apply(args=[payment.pk])
    tasks.payment_correct_task.apply(args=[payment.pk])  # run twice: one charge
    charge = PaymentCharge.objects.get(payment=payment)
    assert (charge.amount, charge.purpose) == (200, "correction")
    assert stripe_server.client().v1.payment_intents.retrieve(charge.stripe_id).status == "succeeded"
    payment.refresh_from_db()
    assert (payment.status, payment.amount_captured) == (PaymentStatus.CAPTURED, 557)
    assert Refund.objects.count() == 1
    assert StripeCall.objects.filter(operation="payment_charge_correction").get().attempts == 1


def test_finance_refunds_once_per_request_within_what_was_captured(api, driver, stripe_server):
    payment = _held_and_charged(api, driver, "3.57")
    staff = StaffUserFactory()
    with pytest.raises(Conflict):  # nothing captured yet
        settlement.refund_create(
            payment=payment, amount=100, reason="goodwill", request_key="r0", actor=staff
        )
    payments.payment_capture(payment.pk)
    with pytest.raises(ValidationFailed):
        settlement.refund_create(payment=payment, amount=100, reason=" ", request_key="r1", actor=staff)
    with pytest.raises(ValidationFailed):
        settlement.refund_create(
            payment=payment, amount=358, reason="too much", request_key="r1", actor=staff
        )
    partial = settlement.refund_create(
        payment=payment, amount=100, reason="goodwill", request_key="r1", actor=staff
    )
    again = settlement.refund_create(
        payment=payment, amount=100, reason="goodwill", request_key="r1", actor=staff
    )
    assert partial.pk == again.pk and partial.status == Refund.Status.SUCCEEDED
    rest = settlement.refund_create(
        payment=payment, amount=None, reason="all of it", request_key="r2", actor=staff
    )
    assert (rest.amount, rest.created_by) == (257, staff)
    assert settlement.refundable(payment) == 0
    # (localstripe records the uncaptured rest of a partial capture as a refund of its own: ask for ours)
    stripe = stripe_server.client()
    assert sorted(stripe.v1.refunds.retrieve(r.stripe_id).amount for r in Refund.objects.all()) == [100, 257]
    assert AuditRecord.objects.filter(action="payment.refund").count() == 2


def _admin(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_finance_refunds_from_the_admin_within_its_organisation(api, driver, stripe_server):
    payment = _held_and_charged(api, driver, "3.57")
    payments.payment_capture(payment.pk)
    url = f"/admin/billing/payment/{payment.pk}/refund/"
    finance = _admin(StaffUserFactory(organisation=payment.organisation, role="Finance"))
    page = finance.get(url)
    assert page.status_code == 200 and b"357" in page.content
    key = page.context["request_key"]
    bad = finance.post(url, {"amount": "", "reason": "", "request_key": key})
    assert bad.status_code == 200 and not Refund.objects.exists()  # a reason is required
    form = {"amount": "120", "reason": "charger fault", "request_key": key}
    assert finance.post(url, form).status_code == 302
    assert finance.post(url, form).status_code == 302  # the same form twice: one refund
    refund = Refund.objects.get()
    assert (refund.amount, refund.status, refund.reason) == (120, Refund.Status.SUCCEEDED, "charger fault")
    assert AuditRecord.objects.filter(action="payment.refund").count() == 1
    assert b"/refund/" in finance.get(f"/admin/billing/payment/{payment.pk}/change/").content
    # another operator's finance staff do not find it; a technician may not refund
    stranger = _admin(StaffUserFactory(organisation=OrganisationFactory(slug="elsewhere"), role="Finance"))
    assert stranger.get(url).status_code == 404
    technician = _admin(StaffUserFactory(organisation=payment.organisation, role="Technician"))
    assert technician.post(url, {**form, "request_key": "other"}).status_code == 403
    assert Refund.objects.count() == 1


def test_finance_settles_a_debt_from_the_admin(api, driver, stripe_server):
    payment = _held_and_charged(api, driver, "61.20")
    payments.payment_capture(payment.pk)
    finance = _admin(StaffUserFactory(organisation=payment.organisation, role="Finance"))
    url = f"/admin/billing/payment/{payment.pk}/settle/"
    assert b"1120" in finance.get(url).content
    assert finance.post(url, {"reason": "paid in cash"}).status_code == 302
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.CAPTURED
    assert not settlement.driver_in_debt(driver.pk)


def test_an_erased_drivers_cards_are_forgotten_and_their_customer_deleted_once_no_hold_remains(
    api, driver, stripe_server, monkeypatch, django_capture_on_commit_callbacks
):
    services.payment_method_attach(user=driver, payment_method_id="pm_card_visa")
    customer = StripeCustomer.objects.get(user=driver)
    body = start(api, _charger()).json()  # a held payment: the customer must stay for its capture
    payment = Payment.objects.get(driver_session_id=body["id"])
    dispatched: list[int] = []
    monkeypatch.setattr(tasks.customer_erase_task, "delay", dispatched.append)
    DriverSession.objects.filter(pk=body["id"]).update(status=DriverSessionStatus.COMPLETED)
    with django_capture_on_commit_callbacks(execute=True):
        driver_delete(user=driver)
    assert dispatched == [customer.pk]
    assert not PaymentMethod.objects.exists()
    with pytest.raises(services.CustomerStillHolds):
        services.customer_erase(customer_pk=customer.pk)
    assert services.customers_to_erase() == [customer.pk]
    Payment.objects.filter(pk=payment.pk).update(status=PaymentStatus.RELEASED)
    assert tasks.customer_erase_task.apply(args=[customer.pk]).get() is True
    assert tasks.customer_erase_task.apply(args=[customer.pk]).get() is False  # once
    customer.refresh_from_db()
    assert customer.deleted_at is not None
    assert customer.stripe_id not in [c["id"] for c in stripe_server.customers()]
    assert services.customers_to_erase() == []


def test_an_old_hold_is_captured_at_the_cost_so_far_and_its_record_followed_later(
    driver, stripe_server, priced, settings
):
    settings.CPO_PAYMENT_HOLD_MAX_DAYS = 6
    session, payment = _running(driver)
    priced.gross = Decimal("12.34")
    assert tasks.payments_old_holds_sweep_task.apply().get() == 0  # a fresh hold is left alone
    Payment.objects.filter(pk=payment.pk).update(created_at=clock.now() - timedelta(days=6, minutes=1))
    assert tasks.payments_old_holds_sweep_task.apply().get() == 1
    tasks.payment_hold_expire_task.apply(args=[payment.pk])
    tasks.payment_hold_expire_task.apply(args=[payment.pk])  # run twice: one capture
    payment.refresh_from_db()
    assert (payment.status, payment.amount_captured, payment.captured_before_record) == (
        PaymentStatus.CAPTURED,
        1234,
        True,
    )
    assert StripeCall.objects.get(operation="payment_intent_capture").attempts == 1
    session.refresh_from_db()
    assert session.status == DriverSessionStatus.STOPPING
    assert session.transitions.order_by("at", "pk").last().cause == "payment_hold_expiring"
    assert payments.payments_old_holds() == []
    assert settlement.payments_to_correct() == []  # no record yet
    ChargeDetailRecordFactory(session=session.charging_session, gross=Decimal("13.00"), net=Decimal("13.00"))
    assert settlement.payments_to_correct() == [payment.pk]
    tasks.payment_correct_task.apply(args=[payment.pk])
    charge = PaymentCharge.objects.get(payment=payment)
    assert (charge.amount, charge.purpose) == (66, "correction")
    assert settlement.payments_to_correct() == []


def test_an_old_hold_without_a_session_is_released(api, driver, stripe_server):
    services.payment_method_attach(user=driver, payment_method_id="pm_card_visa")
    body = start(api, _charger()).json()
    payment = Payment.objects.get(driver_session_id=body["id"])
    DriverSession.objects.filter(pk=body["id"]).update(status=DriverSessionStatus.FAILED)
    Payment.objects.filter(pk=payment.pk).update(created_at=clock.now() - timedelta(days=7))
    assert payments.payment_hold_expire(payment.pk).status == PaymentStatus.RELEASED
    assert stripe_server.client().v1.payment_intents.retrieve(payment.stripe_id).status == "canceled"
