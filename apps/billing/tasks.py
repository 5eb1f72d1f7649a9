"""Stripe webhook events that need Stripe again: processed here, retried on network errors and 5xx
(exponential back-off), never on a 4xx (webhooks.event_process marks those failed)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from apps.billing import invoices, payments, services, settlement, webhooks
from apps.billing.stripe_client import PaymentProviderUnavailable

MAX_RETRIES = 8


@shared_task(name=webhooks.PROCESS_TASK, bind=True, max_retries=MAX_RETRIES, ignore_result=True)
def stripe_event_process_task(self: Any, event_pk: int) -> str:
    try:
        return str(webhooks.event_process(event_pk).status)
    except PaymentProviderUnavailable as exc:
        if not exc.retryable:
            raise
        raise self.retry(exc=exc, countdown=min(3600, 10 * 2**self.request.retries)) from exc


@shared_task(name="billing.stripe_events_sweep", ignore_result=True)
def stripe_events_sweep_task() -> int:
    """Dispatch again the events whose processing task was lost (broker down at receipt)."""
    pending = webhooks.events_pending()
    for pk in pending:
        stripe_event_process_task.delay(pk)
    return len(pending)


@shared_task(name="billing.payment_release", bind=True, max_retries=MAX_RETRIES, ignore_result=True)
def payment_release_task(self: Any, payment_id: int) -> str:
    try:
        return str(payments.payment_release(payment_id).status)
    except PaymentProviderUnavailable as exc:
        if not exc.retryable:
            raise
        raise self.retry(exc=exc, countdown=min(3600, 10 * 2**self.request.retries)) from exc


@shared_task(name="billing.payment_capture", bind=True, max_retries=MAX_RETRIES, ignore_result=True)
def payment_capture_task(self: Any, payment_id: int) -> str:
    try:
        return str(payments.payment_capture(payment_id).status)
    except PaymentProviderUnavailable as exc:
        if not exc.retryable:
            raise
        raise self.retry(exc=exc, countdown=min(3600, 10 * 2**self.request.retries)) from exc


@shared_task(name="billing.reservation_fee_charge", bind=True, max_retries=MAX_RETRIES, ignore_result=True)
def reservation_fee_charge_task(self: Any, cdr_id: int, user_id: int) -> str:
    """Charge a reservation's own record to the driver's card (apps.reservations issues it)."""
    try:
        payment = payments.reservation_fee_charge(cdr_id=cdr_id, user_id=user_id)
    except PaymentProviderUnavailable as exc:
        if not exc.retryable:
            raise
        raise self.retry(exc=exc, countdown=min(3600, 10 * 2**self.request.retries)) from exc
    return str(payment.status) if payment is not None else ""


@shared_task(name="billing.payments_capture_sweep", ignore_result=True)
def payments_capture_sweep_task() -> int:
    """Capture the holds whose charge detail record was issued (tariffs issues it; billing follows)."""
    due = payments.payments_to_capture()
    for pk in due:
        payment_capture_task.delay(pk)
    return len(due)


@shared_task(name="billing.payments_limit_sweep", ignore_result=True)
def payments_limit_sweep_task() -> int:
    """Stop the running sessions whose cost so far reached their card hold (reason payment_limit_reached).
    Each stop only queues the charger's command: the worker never waits for the charger."""
    stopped = 0
    for pk in payments.payments_at_limit():
        stopped += payments.payment_limit_stop(pk)
    return stopped


@shared_task(name="billing.payment_correct", bind=True, max_retries=MAX_RETRIES, ignore_result=True)
def payment_correct_task(self: Any, payment_id: int) -> str:
    try:
        return str(settlement.payment_correct(payment_id).status)
    except PaymentProviderUnavailable as exc:
        if not exc.retryable:
            raise
        raise self.retry(exc=exc, countdown=min(3600, 10 * 2**self.request.retries)) from exc


@shared_task(name="billing.payments_correction_sweep", ignore_result=True)
def payments_correction_sweep_task() -> int:
    """Follow corrected charge detail records: refund or charge the difference (once per record)."""
    due = settlement.payments_to_correct()
    for pk in due:
        payment_correct_task.delay(pk)
    return len(due)


HOLD_WAIT_S = 3600
HOLD_WAIT_RETRIES = 24 * 10  # holds end within days (captured, released, or by the old-holds sweep)


@shared_task(name="billing.customer_erase", bind=True, max_retries=HOLD_WAIT_RETRIES, ignore_result=True)
def customer_erase_task(self: Any, customer_pk: int) -> bool:
    """Delete an erased driver's Stripe customer: later while a payment of theirs is held, retried on
    network errors and 5xx, never on a 4xx."""
    try:
        return services.customer_erase(customer_pk=customer_pk)
    except services.CustomerStillHolds as exc:
        raise self.retry(exc=exc, countdown=HOLD_WAIT_S) from exc
    except PaymentProviderUnavailable as exc:
        if not exc.retryable:
            raise
        raise self.retry(exc=exc, countdown=min(3600, 10 * 2**self.request.retries)) from exc


@shared_task(name="billing.customers_erase_sweep", ignore_result=True)
def customers_erase_sweep_task() -> int:
    """Dispatch again the erasure of customers whose task was lost (broker down when the driver left)."""
    due = services.customers_to_erase()
    for pk in due:
        customer_erase_task.delay(pk)
    return len(due)


@shared_task(name="billing.payment_hold_expire", bind=True, max_retries=MAX_RETRIES, ignore_result=True)
def payment_hold_expire_task(self: Any, payment_id: int) -> str:
    try:
        return str(payments.payment_hold_expire(payment_id).status)
    except PaymentProviderUnavailable as exc:
        if not exc.retryable:
            raise
        raise self.retry(exc=exc, countdown=min(3600, 10 * 2**self.request.retries)) from exc


@shared_task(name="billing.payments_old_holds_sweep", ignore_result=True)
def payments_old_holds_sweep_task() -> int:
    """Capture or release holds older than CPO_PAYMENT_HOLD_MAX_DAYS, before the card network expires them."""
    due = payments.payments_old_holds()
    for pk in due:
        payment_hold_expire_task.delay(pk)
    return len(due)


@shared_task(name="billing.invoice_send", bind=True, max_retries=MAX_RETRIES, ignore_result=True)
def invoice_send_task(self: Any, invoice_id: int) -> str:
    try:
        return str(invoices.invoice_send(invoice_id).status)
    except PaymentProviderUnavailable as exc:
        if not exc.retryable:
            raise
        raise self.retry(exc=exc, countdown=min(3600, 10 * 2**self.request.retries)) from exc


@shared_task(name="billing.invoices_issue", ignore_result=True)
def invoices_issue_task() -> int:
    """Hourly: store the previous month's invoices of every organisation whose month has ended in its own
    time zone (on the 1st, or on the next run after it), then send every invoice not yet finalised at
    Stripe. Running it twice gives one invoice and one number."""
    invoices.invoices_draft_due()
    pending = invoices.invoices_pending()
    for pk in pending:
        invoice_send_task.delay(pk)
    return len(pending)
