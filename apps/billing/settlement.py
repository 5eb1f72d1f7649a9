"""After the capture: debts (a capture that failed or fell short of the charge detail record), their
payment, corrected records and finance's refunds.

- A driver with a payment in `debt` may not charge: billing answers charging's `driver_standing` port, so
  `idtoken_authorize` says Blocked at once, and `driver_standing_changed` (after commit) has the gateway
  send chargers with a local list a differential update. Paying the debt (the driver's retry on their
  default card, or finance marking it settled in the admin) unblocks them the same way.
- A corrected record (tariffs: credit + re-issue) is followed once per record: less than was collected is
  refunded (a partial Stripe refund of the captured intent), more is charged by a new off-session
  PaymentIntent. Idempotency keys come from the payment and the record.
- Finance refunds (full or partial) with a reason, audited, once per request key.

Stripe calls are never made inside a transaction: each function calls first and records after.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Sum
from django.utils.translation import gettext_lazy as _

from apps.accounts.models import User
from apps.accounts.services import audit_record_create
from apps.billing import services, stripe_client
from apps.billing.choices import PaymentStatus, StripeCallStatus
from apps.billing.models import Payment, PaymentCharge, Refund, StripeCall
from apps.charging.hooks import driver_standing_changed
from apps.tariffs.choices import CdrKind
from apps.tariffs.models import ChargeDetailRecord
from cpo import clock
from cpo.exceptions import ApplicationError, Conflict, NotFound, ValidationFailed
from cpo.units import Money

logger = logging.getLogger(__name__)


class PaymentMethodMissing(ApplicationError):
    code = "payment_method_required"
    http_status = 402
    default_detail = _("Add a card to pay what you owe.")


# --- standing -------------------------------------------------------------------------------------------


def driver_in_debt(user_id: int) -> bool:
    return Payment.objects.filter(customer__user_id=user_id, status=PaymentStatus.DEBT).exists()


class DebtStanding:
    """charging.hooks.DriverStanding: a driver with an unpaid debt is blocked."""

    def blocked(self, *, user_id: int) -> bool:
        return driver_in_debt(user_id)


def standing_changed(user_id: int) -> None:
    """Tell charging (and through it the gateway's local lists) after commit that the driver's standing
    changed. Robust: a charger that cannot be told now learns it at the next list update."""
    transaction.on_commit(lambda: driver_standing_changed.emit(user_id=user_id), robust=True)


# --- amounts --------------------------------------------------------------------------------------------


def current_record(payment: Payment) -> ChargeDetailRecord | None:
    """The session's charge detail record in force: the latest revision (None before the first); for the
    payment of a record of its own (a reservation's fee), that record."""
    if payment.cdr_id is not None:
        return ChargeDetailRecord.objects.filter(pk=payment.cdr_id).first()
    session = payment.driver_session
    if session is None or session.charging_session_id is None:
        return None
    return (
        ChargeDetailRecord.objects.filter(session_id=session.charging_session_id, kind=CdrKind.CDR)
        .order_by("-revision")
        .first()
    )


def record_gross(cdr: ChargeDetailRecord) -> int:
    """What the record asks, in minor units: nothing once it is credited (without a new revision)."""
    if ChargeDetailRecord.objects.filter(credits=cdr).exists():
        return 0
    return int(Money(cdr.gross, cdr.currency).rounded().to_minor_units())


def correction_refunds(payment: Payment) -> int:
    """What was given back for corrected records (finance's refunds are not counted: a goodwill refund
    is no reason to charge the driver again)."""
    total = payment.refunds.filter(cdr_id__isnull=False).exclude(status=Refund.Status.FAILED)
    return int(total.aggregate(s=Sum("amount"))["s"] or 0)


def refunded(payment: Payment) -> int:
    total = payment.refunds.exclude(status=Refund.Status.FAILED).aggregate(s=Sum("amount"))["s"]
    return int(total or 0)


def amount_due(payment: Payment) -> int:
    """What the driver still owes for the session: the record in force less what was collected."""
    cdr = current_record(payment)
    if cdr is None:
        return 0
    return max(0, record_gross(cdr) - (payment.amount_captured - correction_refunds(payment)))


# --- paying a debt --------------------------------------------------------------------------------------


def _charge(payment: Payment, *, amount: int, key: str, purpose: str, cdr_id: int | None) -> PaymentCharge:
    """An off-session PaymentIntent on the driver's default card for `amount`, made once under `key`."""
    method = (
        services.payment_methods_of(user=payment.customer.user)
        .filter(is_default=True)
        .select_related("customer")
        .first()
    )
    if method is None:
        raise PaymentMethodMissing()
    client = stripe_client.client()
    params: Any = {
        "amount": amount,
        "currency": payment.currency.lower(),
        "customer": method.customer.stripe_id,
        "payment_method": method.stripe_id,
        "confirm": True,
        "off_session": True,
        "metadata": {"cpo_payment_id": str(payment.pk), "cpo_purpose": purpose},
    }
    intent = stripe_client.call(
        f"payment_charge_{purpose}",
        key,
        lambda options: client.v1.payment_intents.create(params, options),
        retrieve=lambda intent_id: client.v1.payment_intents.retrieve(intent_id),
    )
    if intent.status != "succeeded":
        raise stripe_client.PaymentDeclined()
    with transaction.atomic():
        locked = Payment.objects.select_for_update(no_key=True).get(pk=payment.pk)
        charge, created = PaymentCharge.objects.get_or_create(
            stripe_id=str(intent.id),
            defaults={
                "payment": locked,
                "purpose": purpose,
                "amount": amount,
                "currency": payment.currency,
                "cdr_id": cdr_id,
            },
        )
        if created:  # counted once, however often the same charge is recorded
            locked.amount_captured += amount
            locked.save(update_fields=["amount_captured", "updated_at"])
    return charge


def _settle(payment: Payment) -> bool:
    """Mark a payment in debt captured (once: only from `debt`) and unblock the driver."""
    with transaction.atomic():
        updated = Payment.objects.filter(pk=payment.pk, status=PaymentStatus.DEBT).update(
            status=PaymentStatus.CAPTURED
        )
        if updated:
            standing_changed(payment.customer.user_id)
    return bool(updated)


def _failed_attempts(prefix: str) -> int:
    return StripeCall.objects.filter(
        idempotency_key__startswith=f"{prefix}-", status=StripeCallStatus.FAILED
    ).count()


def debt_pay(*, user: User, payment_id: int) -> Payment:
    """The driver pays a debt with their default card: the amount due is charged once (the key names the
    payment, the amount and the card, and how many attempts Stripe declined before: a retry after a
    decline, with another card or not, is a new attempt; a repeated request after success changes
    nothing). A payment not in debt is returned as it is. Declined: PaymentDeclined (402)."""
    payment = (
        Payment.objects.select_related("customer__user", "driver_session")
        .filter(pk=payment_id, customer__user=user)
        .first()
    )
    if payment is None:
        raise NotFound(_("No such payment."))
    if payment.status != PaymentStatus.DEBT:
        return payment
    due = amount_due(payment)
    if due <= 0:
        _settle(payment)
        payment.refresh_from_db()
        return payment
    prefix = stripe_client.idempotency_key("debt", payment.pk, due)
    declined = _failed_attempts(prefix)
    method_id = (
        services.payment_methods_of(user=user)
        .filter(is_default=True)
        .values_list("stripe_id", flat=True)
        .first()
    )
    key = stripe_client.idempotency_key("debt", payment.pk, due, method_id or "none", declined)
    _charge(payment, amount=due, key=key, purpose=PaymentCharge.Purpose.DEBT, cdr_id=None)
    _settle(payment)
    payment.refresh_from_db()
    return payment


def debt_settle(*, payment: Payment, actor: Any, reason: str, source: str = "admin") -> bool:
    """Finance marks a debt settled (paid another way, or written off), with a reason: audited; the
    driver is unblocked. False when the payment is not in debt (nothing happens, nothing is audited)."""
    reason = reason.strip()
    if not reason:
        raise ValidationFailed(fields={"reason": [str(_("Say why the debt is settled."))]})
    payment = Payment.objects.select_related("customer", "driver_session").get(pk=payment.pk)
    due = amount_due(payment)
    with transaction.atomic():
        if not _settle(payment):
            return False
        audit_record_create(
            actor=actor,
            action="payment.debt_settle",
            target=payment,
            organisation_id=payment.organisation_id,
            source=source,
            detail={"amount_due": due, "currency": payment.currency, "reason": reason},
        )
    return True


# --- refunds --------------------------------------------------------------------------------------------


def refundable(payment: Payment) -> int:
    """What can still be refunded of the payment's own PaymentIntent: its capture less its refunds (the
    further charges, a debt paid or a correction, are separate intents and not refunded here)."""
    further = int(payment.charges.aggregate(s=Sum("amount"))["s"] or 0)
    return max(0, payment.amount_captured - further - refunded(payment))


def _refund(
    payment: Payment, *, amount: int | None, reason: str, request_key: str, cdr_id: int | None, actor: Any
) -> Refund:
    """Give back `amount` (None: all that is refundable) of the payment's captured PaymentIntent, once per
    `request_key`: the Refund row is written first (the payment's row locked while the amount is checked
    against what is left), the Stripe refund made after commit of that row, under a key from its id."""
    with transaction.atomic():
        locked = Payment.objects.select_for_update(no_key=True).get(pk=payment.pk)
        existing = Refund.objects.filter(request_key=request_key).first()
        if existing is not None:
            refund = existing
        else:
            if locked.status not in (PaymentStatus.CAPTURED, PaymentStatus.DEBT):
                raise Conflict(_("Only a captured payment can be refunded."), code="payment_not_captured")
            left = refundable(locked)
            amount = left if amount is None else amount
            if amount <= 0 or amount > left:
                raise ValidationFailed(
                    fields={
                        "amount": [
                            str(_("Between 1 and %(left)s (minor units) can be refunded.") % {"left": left})
                        ]
                    }
                )
            refund = Refund.objects.create(
                payment=locked,
                amount=amount,
                currency=locked.currency,
                reason=reason[:255],
                cdr_id=cdr_id,
                request_key=request_key,
                created_by=actor if getattr(actor, "pk", None) else None,
            )
    if refund.status != Refund.Status.PENDING:
        return refund
    client = stripe_client.client()
    params: Any = {
        "payment_intent": payment.stripe_id,
        "amount": refund.amount,
        "metadata": {"cpo_refund_id": str(refund.pk)},
    }
    try:
        result = stripe_client.call(
            "refund_create",
            stripe_client.idempotency_key("refund", refund.pk),
            lambda options: client.v1.refunds.create(params, options),
            retrieve=lambda refund_id: client.v1.refunds.retrieve(refund_id),
        )
    except (stripe_client.PaymentRequestRefused, stripe_client.PaymentDeclined) as exc:
        logger.warning("Stripe refused refund %s of %s: %s", refund.pk, payment.stripe_id, exc.code)
        Refund.objects.filter(pk=refund.pk, status=Refund.Status.PENDING).update(status=Refund.Status.FAILED)
        refund.refresh_from_db()
        return refund
    Refund.objects.filter(pk=refund.pk, status=Refund.Status.PENDING).update(
        status=Refund.Status.SUCCEEDED, stripe_id=str(result.id)
    )
    refund.refresh_from_db()
    return refund


def refund_create(
    *, payment: Payment, amount: int | None, reason: str, request_key: str, actor: Any, source: str = "admin"
) -> Refund:
    """Finance refunds a captured payment, fully (`amount` None) or in part, with a reason: once per
    `request_key` (the admin form's), audited. Stripe unreachable: PaymentProviderUnavailable and the
    refund stays pending (submitting the same form again finishes it)."""
    reason = reason.strip()
    if not reason:
        raise ValidationFailed(fields={"reason": [str(_("Say why the payment is refunded."))]})
    if not request_key.strip():
        raise ValidationFailed(fields={"request_key": [str(_("Missing request key."))]})
    before = Refund.objects.filter(request_key=request_key).exists()
    refund = _refund(payment, amount=amount, reason=reason, request_key=request_key, cdr_id=None, actor=actor)
    if not before:
        audit_record_create(
            actor=actor,
            action="payment.refund",
            target=payment,
            organisation_id=payment.organisation_id,
            source=source,
            detail={
                "refund_id": refund.pk,
                "amount": refund.amount,
                "currency": refund.currency,
                "reason": reason,
                "status": refund.status,
            },
        )
    return refund


# --- corrected records ----------------------------------------------------------------------------------


CORRECTION_WINDOW_DAYS = 60


def payments_to_correct() -> list[int]:
    """Captured payments (or debts) whose session's record was corrected (credited, maybe re-issued) in
    the last CORRECTION_WINDOW_DAYS days (each sweep looks again; nothing is done twice), and payments
    captured before their record (an expiring hold) once the record is issued."""
    settled = (PaymentStatus.CAPTURED, PaymentStatus.DEBT)
    corrected = Payment.objects.filter(
        status__in=settled,
        driver_session__charging_session__charge_detail_records__kind=CdrKind.CREDIT,
        driver_session__charging_session__charge_detail_records__issued_at__gte=clock.now()
        - timedelta(days=CORRECTION_WINDOW_DAYS),
    )
    early = Payment.objects.filter(
        status__in=settled,
        captured_before_record=True,
        driver_session__charging_session__charge_detail_records__kind=CdrKind.CDR,
    )
    return sorted(set(corrected.values_list("pk", flat=True)) | set(early.values_list("pk", flat=True)))


def payment_correct(payment_id: int) -> Payment:
    """Follow a corrected record: what the record in force asks against what was collected for the
    session (captures and further charges, less earlier corrections' refunds). Less: the difference is
    refunded (a partial Stripe refund); more: charged by a new off-session PaymentIntent (a payment still in
    debt just owes more). Each once per record (keys from the payment and the record). A debt that the
    correction pays off unblocks the driver."""
    payment = Payment.objects.select_related("customer", "driver_session").get(pk=payment_id)
    if payment.status not in (PaymentStatus.CAPTURED, PaymentStatus.DEBT):
        return payment
    cdr = current_record(payment)
    if cdr is None or cdr.currency != payment.currency:
        return payment
    for pending in payment.refunds.filter(status=Refund.Status.PENDING, cdr_id__isnull=False):
        # an earlier attempt recorded its refund but Stripe did not answer: finish it (same key)
        _refund(payment, amount=None, reason="", request_key=pending.request_key, cdr_id=None, actor=None)
    target = record_gross(cdr)
    collected = payment.amount_captured - correction_refunds(payment)
    delta = target - collected
    give_back = min(-delta, refundable(payment))
    if delta < 0 and give_back > 0:
        _refund(
            payment,
            amount=give_back,
            reason=f"corrected record {cdr.number or cdr.pk}",
            request_key=f"correction-{payment.pk}-{cdr.pk}",
            cdr_id=cdr.pk,
            actor=None,
        )
    elif delta > 0 and payment.status == PaymentStatus.CAPTURED:
        key = stripe_client.idempotency_key("correction", payment.pk, cdr.pk)
        if not PaymentCharge.objects.filter(payment=payment, cdr_id=cdr.pk).exists():
            try:
                _charge(
                    payment, amount=delta, key=key, purpose=PaymentCharge.Purpose.CORRECTION, cdr_id=cdr.pk
                )
            except (stripe_client.PaymentDeclined, stripe_client.PaymentRequestRefused, PaymentMethodMissing):
                logger.warning("payment %s: the corrected record's %s more is a debt", payment.pk, delta)
                with transaction.atomic():
                    if Payment.objects.filter(pk=payment.pk, status=PaymentStatus.CAPTURED).update(
                        status=PaymentStatus.DEBT
                    ):
                        standing_changed(payment.customer.user_id)
    Payment.objects.filter(pk=payment.pk, captured_before_record=True).update(captured_before_record=False)
    payment.refresh_from_db()
    if payment.status == PaymentStatus.DEBT and amount_due(payment) == 0:
        _settle(payment)
        payment.refresh_from_db()
    return payment
