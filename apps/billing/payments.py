"""Card pre-authorisation of drivers' starts: billing's implementation of `charging.hooks.start_payment`.

Before the locked part of a start, a driver without a customer account gets a PaymentIntent with manual
capture (a hold) on their default card, sized from the configured maximum (`CPO_PAYMENT_HOLD_AMOUNT`, per
currency) and the charger's tariff (its maximum price, VAT included, when it has one). The idempotency key
comes from the driver and the request's Idempotency-Key. No card: 402 payment_method_required; declined:
402 payment_declined; 3-D Secure needed: 402 payment_action_required (the client secret in `fields`).
A start that fails, or a request that made no session, releases the hold after commit (Celery task
`billing.payment_release`, retried on network errors and 5xx).

Only while STRIPE_SECRET_KEY is set: without it starts are paid on account, as before billing existed.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils.translation import gettext_lazy as _

from apps.accounts.models import DriverProfile, User
from apps.billing import (
    hooks,
    services,
    settlement,
    stripe_client,
    tasks,
)  # tasks imports this module too: use by attribute
from apps.billing.choices import PaymentStatus
from apps.billing.models import Payment
from apps.charging import driver_services
from apps.charging.choices import DriverSessionStatus
from apps.charging.hooks import PaymentHold, session_price
from apps.charging.models import DriverSession
from apps.stations.models import ChargePoint
from apps.tariffs.choices import CdrKind
from apps.tariffs.models import ChargeDetailRecord
from apps.tariffs.selectors import local_date, place_for, tariff_in_force, vat_rate_for
from cpo import clock, metrics
from cpo.exceptions import ApplicationError, Conflict
from cpo.units import Money

logger = logging.getLogger(__name__)


class PaymentMethodRequired(ApplicationError):
    code = "payment_method_required"
    http_status = 402
    default_detail = _("Add a card before you start charging.")


class PaymentActionRequired(ApplicationError):
    code = "payment_action_required"
    http_status = 402
    default_detail = _("Your bank asks you to confirm this payment in the app.")


def hold_maximums() -> dict[str, Decimal]:
    """CPO_PAYMENT_HOLD_AMOUNT ("EUR=50,CHF=50") as {currency: amount}."""
    result: dict[str, Decimal] = {}
    for part in str(settings.CPO_PAYMENT_HOLD_AMOUNT).split(","):
        if not part.strip():
            continue
        currency, _sep, amount = part.partition("=")
        try:
            result[currency.strip().upper()] = Decimal(amount.strip())
        except ArithmeticError as exc:
            raise ImproperlyConfigured(f"CPO_PAYMENT_HOLD_AMOUNT: not an amount: {part!r}") from exc
    return result


def hold_amount(*, charge_point: ChargePoint) -> Money:
    """What a start at `charge_point` holds: the configured maximum in the tariff's currency, less when the
    tariff's maximum price (VAT included) is lower."""
    tariff = tariff_in_force(charge_point=charge_point)
    currency = tariff.currency if tariff is not None else "EUR"
    maximum = hold_maximums().get(currency)
    if maximum is None:
        raise ImproperlyConfigured(f"CPO_PAYMENT_HOLD_AMOUNT names no amount for {currency}")
    amount = maximum
    if tariff is not None and tariff.max_price is not None:
        place = place_for(charge_point=charge_point, connector_id=None)
        vat = vat_rate_for(country=place.country, on=local_date(clock.now(), place.time_zone))
        amount = min(maximum, tariff.max_price * (1 + vat / 100))
    return Money(amount, currency).rounded()


def _on_account(driver: User) -> bool:
    return DriverProfile.objects.filter(user=driver, customer_account__isnull=False).exists()


class CardHolds:
    """charging.hooks.StartPayment with Stripe card holds."""

    def authorise(
        self, *, driver: User, charge_point: ChargePoint, evse_id: int, idempotency_key: str
    ) -> PaymentHold | None:
        if not settings.STRIPE_SECRET_KEY or _on_account(driver):
            return None
        method = (
            services.payment_methods_of(user=driver)
            .filter(is_default=True)
            .select_related("customer")
            .first()
        )
        if method is None:
            raise PaymentMethodRequired()
        money = hold_amount(charge_point=charge_point)
        amount = money.to_minor_units()
        request = hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
        client = stripe_client.client()
        params: Any = {
            "amount": amount,
            "currency": money.currency.lower(),
            "customer": method.customer.stripe_id,
            "payment_method": method.stripe_id,
            "capture_method": "manual",
            "confirm": True,
            "off_session": True,
            "metadata": {
                "cpo_user_id": str(driver.pk),
                "cpo_charge_point_id": str(charge_point.pk),
                "cpo_organisation_id": str(charge_point.organisation_id),
            },
        }
        try:
            intent = stripe_client.call(
                "payment_intent_hold",
                stripe_client.idempotency_key("hold", "user", driver.pk, request),
                lambda options: client.v1.payment_intents.create(params, options),
                retrieve=lambda intent_id: client.v1.payment_intents.retrieve(intent_id),
            )
        except stripe_client.PaymentDeclined:
            metrics.PAYMENT_FAILURES.labels("hold_declined").inc()
            raise
        if intent.status == "requires_action":
            raise PaymentActionRequired(fields={"client_secret": [str(intent.client_secret)]})
        if intent.status != "requires_capture":
            metrics.PAYMENT_FAILURES.labels("hold_declined").inc()
            raise stripe_client.PaymentDeclined()
        payment, _created = Payment.objects.get_or_create(
            stripe_id=str(intent.id),
            defaults={
                "customer": method.customer,
                "organisation_id": charge_point.organisation_id,
                "payment_method_id": method.stripe_id,
                "currency": money.currency,
                "amount_held": amount,
            },
        )
        return PaymentHold(
            payment_id=payment.pk,
            detail={"payment": "card", "amount_held": amount, "currency": money.currency},
        )

    def attach(self, *, hold: PaymentHold, session: DriverSession) -> None:
        Payment.objects.filter(pk=hold.payment_id, driver_session__isnull=True).update(driver_session=session)

    def start_failed(self, *, session: DriverSession | None, hold: PaymentHold | None = None) -> None:
        if hold is not None:
            payment_id: int | None = hold.payment_id
        elif session is not None:
            payment_id = Payment.objects.filter(driver_session=session).values_list("pk", flat=True).first()
        else:
            payment_id = None
        if payment_id is None:
            return

        def send() -> None:
            tasks.payment_release_task.delay(payment_id)

        # robust: a broker that does not answer must not fail the start; the hold expires at the card network
        transaction.on_commit(send, robust=True)


def payment_release(payment_id: int) -> Payment:
    """Cancel the hold of a payment whose start did not happen (no session holds it, or its session
    FAILED). Anything else is left alone. Stripe unreachable or 5xx: PaymentProviderUnavailable (the task
    retries); a 4xx: the payment is marked failed, unless Stripe shows the hold canceled already."""
    payment = Payment.objects.select_related("driver_session").get(pk=payment_id)
    session = payment.driver_session
    if payment.status != PaymentStatus.AUTHORISED or (
        session is not None and session.status != DriverSessionStatus.FAILED
    ):
        return payment
    return _release(payment)


def _debt(payment: Payment) -> None:
    """A held payment becomes a debt (once): the driver is blocked until it is paid."""
    if Payment.objects.filter(pk=payment.pk, status=PaymentStatus.AUTHORISED).update(
        status=PaymentStatus.DEBT
    ):
        metrics.PAYMENT_FAILURES.labels("capture_failed").inc()
        settlement.standing_changed(payment.customer.user_id)


def payment_capture(payment_id: int) -> Payment:
    """Capture a held payment once its session's charge detail record is issued: exactly the record's gross
    amount (minor units), never more than the hold (the rest is the driver's debt: status `debt`); Stripe
    releases what is not captured. A record of nothing releases the hold. A capture Stripe refuses is a debt
    too. Idempotent: the capture's key is the payment's, and only an authorised payment is captured.
    Stripe unreachable or 5xx: PaymentProviderUnavailable (the task retries)."""
    payment = Payment.objects.select_related("driver_session", "customer").get(pk=payment_id)
    session = payment.driver_session
    if payment.status != PaymentStatus.AUTHORISED or session is None or session.charging_session_id is None:
        return payment
    cdr = settlement.current_record(payment)
    if cdr is None:
        return payment
    if cdr.currency != payment.currency:
        logger.error(
            "payment %s holds %s but its CDR %s is in %s", payment.pk, payment.currency, cdr.pk, cdr.currency
        )
        _debt(payment)
        hooks.payment_capture_failed.emit(
            payment_id=payment.pk, organisation_id=payment.organisation_id, reason="currency_mismatch"
        )
        payment.refresh_from_db()
        return payment
    gross = settlement.record_gross(cdr)
    if gross <= 0:
        return _release(payment)
    return _capture(payment, gross=gross)


PAYMENT_LIMIT_REACHED = "payment_limit_reached"


def cost_so_far(session: DriverSession, currency: str) -> int | None:
    """What the running session costs so far in minor units (the cost the driver API shows, through
    charging's `session_price` port), None when it is not priced or not priced in `currency`."""
    if session.charging_session is None:
        return None
    price = session_price.get()(session=session.charging_session)
    if price is None or price.cost.currency != currency:
        return None
    return int(Money(price.cost.gross, price.cost.currency).rounded().to_minor_units())


def payments_at_limit() -> list[int]:
    """Held payments of ACTIVE sessions whose cost so far reached the hold (for the limit sweep)."""
    due = []
    for payment in Payment.objects.filter(
        status=PaymentStatus.AUTHORISED, driver_session__status=DriverSessionStatus.ACTIVE
    ).select_related("driver_session__charging_session"):
        cost = cost_so_far(payment.driver_session, payment.currency)  # type: ignore[arg-type]  # filtered on it above
        if cost is not None and cost >= payment.amount_held:
            due.append(payment.pk)
    return due


def payment_limit_stop(payment_id: int) -> bool:
    """Stop the session of a held payment whose cost reached the hold, through the command service (the
    command is queued for the charger: nothing waits for its answer). The driver sees the reason
    `payment_limit_reached` as the cause of the stop. False when nothing was sent: the session is no longer
    ACTIVE, under the hold, or its charger is offline (the next sweep tries again)."""
    payment = Payment.objects.select_related("driver_session__charging_session").get(pk=payment_id)
    session = payment.driver_session
    if payment.status != PaymentStatus.AUTHORISED or session is None:
        return False
    if session.status != DriverSessionStatus.ACTIVE:
        return False
    cost = cost_so_far(session, payment.currency)
    if cost is None or cost < payment.amount_held:
        return False
    try:
        stopped = driver_services.driver_session_stop(session=session, reason=PAYMENT_LIMIT_REACHED)
    except Conflict as exc:
        logger.warning("payment %s reached its hold but its session cannot be stopped: %s", payment.pk, exc)
        return False
    logger.info(
        "session %s stopped: its cost %s reached the hold of payment %s", session.pk, cost, payment.pk
    )
    return stopped.status == DriverSessionStatus.STOPPING


HOLD_EXPIRING = "payment_hold_expiring"


def payments_old_holds() -> list[int]:
    """Held payments older than CPO_PAYMENT_HOLD_MAX_DAYS (for the old-holds sweep)."""
    since = clock.now() - timedelta(days=float(settings.CPO_PAYMENT_HOLD_MAX_DAYS))
    return list(
        Payment.objects.filter(status=PaymentStatus.AUTHORISED, created_at__lt=since).values_list(
            "pk", flat=True
        )
    )


def payment_hold_expire(payment_id: int) -> Payment:
    """A hold with no end in sight, before the card network expires it (about 7 days):

    - its session's record is issued: captured as usual (`payment_capture`);
    - its session is still running (or stopping): a running one is stopped (cause `payment_hold_expiring`,
      the command queued), and the cost so far is captured now (never more than the hold; more is a
      debt), marked `captured_before_record`: the record, once issued, is followed like a corrected one
      (`settlement.payment_correct` refunds or charges the difference);
    - a completed session without a record (not priced): captured at its cost so far when it has one,
      else released; no session, or a failed start: released.
    """
    payment = Payment.objects.select_related("driver_session__charging_session", "customer").get(
        pk=payment_id
    )
    session = payment.driver_session
    if payment.status != PaymentStatus.AUTHORISED:
        return payment
    if settlement.current_record(payment) is not None:
        return payment_capture(payment.pk)
    if session is None or session.status == DriverSessionStatus.FAILED or session.charging_session is None:
        return _release(payment)
    if session.status == DriverSessionStatus.ACTIVE:
        try:
            driver_services.driver_session_stop(session=session, reason=HOLD_EXPIRING)
        except Conflict as exc:
            logger.warning(
                "payment %s: hold expiring, session %s not stopped: %s", payment.pk, session.pk, exc
            )
    cost = cost_so_far(session, payment.currency)
    if not cost:
        return _release(payment)
    return _capture(payment, gross=cost, before_record=True)


def _release(payment: Payment) -> Payment:
    """Cancel the hold once (the payment's cancel key). A refused cancel is read back: an intent already
    canceled (a concurrent or earlier attempt whose answer was lost) is released; anything else failed."""
    client = stripe_client.client()
    status = PaymentStatus.RELEASED
    try:
        stripe_client.call(
            "payment_intent_cancel",
            stripe_client.idempotency_key("hold-cancel", payment.pk),
            lambda options: client.v1.payment_intents.cancel(payment.stripe_id, None, options),
        )
    except stripe_client.PaymentRequestRefused as exc:
        intent = _intent_now(payment)
        if intent.status == "requires_capture" and exc.stripe_http_status == 409:
            raise stripe_client.PaymentProviderUnavailable() from exc  # another attempt is in flight
        if intent.status != "canceled":
            logger.warning("Stripe refused to release %s: %s", payment.stripe_id, exc.stripe_code)
            status = PaymentStatus.FAILED
    Payment.objects.filter(pk=payment.pk, status=PaymentStatus.AUTHORISED).update(status=status)
    payment.refresh_from_db()
    return payment


def _intent_now(payment: Payment) -> Any:
    """The payment's PaymentIntent as Stripe has it now (a read: no idempotency key)."""
    client = stripe_client.client()
    return stripe_client.request(lambda: client.v1.payment_intents.retrieve(payment.stripe_id))


def _capture(payment: Payment, *, gross: int, before_record: bool = False) -> Payment:
    """Capture `gross` (never more than the hold: the rest is a debt) once (the payment's capture key).

    A refused capture is read back before it is called a debt: when the intent is already captured
    (another worker's capture of the same payment won the race, or an earlier attempt's answer was lost
    before it was written down; Stripe answers a concurrent use of the key with 409, localstripe a
    second capture with 400), it is recorded as captured; while the other attempt is still in flight
    (the intent still held), PaymentProviderUnavailable lets the task retry."""
    client = stripe_client.client()
    amount = min(gross, payment.amount_held)
    params: Any = {"amount_to_capture": amount}
    try:
        stripe_client.call(
            "payment_intent_capture",
            stripe_client.idempotency_key("capture", payment.pk),
            lambda options: client.v1.payment_intents.capture(payment.stripe_id, params, options),
        )
    except (stripe_client.PaymentRequestRefused, stripe_client.PaymentDeclined) as exc:
        intent = _intent_now(payment)
        if intent.status == "succeeded":
            logger.info("capture of %s refused (%s): it was captured already", payment.stripe_id, exc.code)
            received = getattr(intent, "amount_received", None)  # localstripe leaves it out
            _captured(payment, gross=gross, amount=int(received or amount), before_record=before_record)
        elif intent.status == "requires_capture" and getattr(exc, "stripe_http_status", None) == 409:
            raise stripe_client.PaymentProviderUnavailable() from exc  # another attempt is in flight
        else:
            logger.warning("capture of %s refused (%s): a debt", payment.stripe_id, exc.code)
            _debt(payment)
            hooks.payment_capture_failed.emit(
                payment_id=payment.pk,
                organisation_id=payment.organisation_id,
                reason=str(exc.code or "refused"),
            )
    else:
        _captured(payment, gross=gross, amount=amount, before_record=before_record)
    payment.refresh_from_db()
    return payment


def _captured(payment: Payment, *, gross: int, amount: int, before_record: bool) -> None:
    """Record a capture of `amount` for a cost of `gross` (once: only from authorised)."""
    status = PaymentStatus.CAPTURED if gross <= payment.amount_held else PaymentStatus.DEBT
    updated = Payment.objects.filter(pk=payment.pk, status=PaymentStatus.AUTHORISED).update(
        status=status, amount_captured=amount, captured_before_record=before_record
    )
    if updated and status == PaymentStatus.DEBT:
        metrics.PAYMENT_FAILURES.labels("cost_above_hold").inc()
        settlement.standing_changed(payment.customer.user_id)


def payments_to_capture() -> list[int]:
    """Held payments whose session's charge detail record is issued (for the capture sweep)."""
    return list(
        Payment.objects.filter(
            status=PaymentStatus.AUTHORISED,
            driver_session__charging_session__charge_detail_records__kind=CdrKind.CDR,
        )
        .values_list("pk", flat=True)
        .distinct()
    )


def payment_of(session: DriverSession) -> dict[str, Any] | None:
    """The `payment` of a driver session in the API: status, amounts held and captured, currency."""
    try:
        payment = session.payment  # type: ignore[attr-defined]  # billing's reverse one-to-one
    except Payment.DoesNotExist:
        return None
    return payment_body(payment)


def payment_body(payment: Payment) -> dict[str, Any]:
    """A payment as the driver API shows it (amounts in minor units)."""
    return {
        "id": payment.pk,
        "status": payment.status,
        "amount_held": payment.amount_held,
        "amount_captured": payment.amount_captured,
        "amount_due": settlement.amount_due(payment) if payment.status == PaymentStatus.DEBT else 0,
        "currency": payment.currency,
    }


def reservation_fee_charge(*, cdr_id: int, user_id: int) -> Payment | None:
    """Charge a reservation's own record (a no-show or a driver's cancellation, where the tariff prices
    reservations) to the driver's default card: one off-session PaymentIntent for the record's gross
    amount, made once (its key names the record). Declined: the payment is the driver's debt (status
    `debt`, paid like any debt; they may not charge until then). Nothing without Stripe, for a driver on
    account, for a driver without a card, or for a record of nothing. Idempotent: the record's payment
    is returned. Stripe unreachable or 5xx: PaymentProviderUnavailable (the task retries)."""
    existing = Payment.objects.filter(cdr_id=cdr_id).first()
    if existing is not None:
        return existing
    cdr = ChargeDetailRecord.objects.get(pk=cdr_id)
    user = User.objects.get(pk=user_id)
    if not settings.STRIPE_SECRET_KEY or _on_account(user):
        return None
    amount = settlement.record_gross(cdr)
    method = services.payment_methods_of(user=user).filter(is_default=True).select_related("customer").first()
    if amount <= 0 or method is None:
        if method is None and amount > 0:
            logger.warning("reservation record %s of driver %s: no card to charge", cdr.pk, user.pk)
        return None
    key = stripe_client.idempotency_key("reservation-fee", cdr.pk)
    client = stripe_client.client()
    params: Any = {
        "amount": amount,
        "currency": cdr.currency.lower(),
        "customer": method.customer.stripe_id,
        "payment_method": method.stripe_id,
        "confirm": True,
        "off_session": True,
        "metadata": {"cpo_cdr_id": str(cdr.pk), "cpo_purpose": "reservation_fee"},
    }
    fields: dict[str, Any] = {
        "customer": method.customer,
        "organisation_id": cdr.organisation_id,
        "payment_method_id": method.stripe_id,
        "currency": cdr.currency,
        "amount_held": amount,
    }
    try:
        intent = stripe_client.call(
            "payment_intent_reservation_fee",
            key,
            lambda options: client.v1.payment_intents.create(params, options),
            retrieve=lambda intent_id: client.v1.payment_intents.retrieve(intent_id),
        )
    except (stripe_client.PaymentDeclined, stripe_client.PaymentRequestRefused) as exc:
        logger.warning("reservation record %s: the card was declined (%s): a debt", cdr.pk, exc.code)
        intent = None
    with transaction.atomic():
        if intent is not None and intent.status == "succeeded":
            payment, _created = Payment.objects.get_or_create(
                cdr=cdr,
                defaults={
                    **fields,
                    "stripe_id": str(intent.id),
                    "status": PaymentStatus.CAPTURED,
                    "amount_captured": amount,
                },
            )
            return payment
        # No PaymentIntent took the money: the payment is recorded under its key, owed.
        payment, created = Payment.objects.get_or_create(
            cdr=cdr,
            defaults={
                **fields,
                "stripe_id": str(intent.id) if intent is not None else key,
                "status": PaymentStatus.DEBT,
            },
        )
        if created:
            settlement.standing_changed(user.pk)
        return payment
