"""Stripe webhook events that need Stripe again: processed here, retried on network errors and 5xx
(exponential back-off), never on a 4xx (webhooks.event_process marks those failed)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from apps.billing import invoices, payments, webhooks
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


@shared_task(name="billing.payments_capture_sweep", ignore_result=True)
def payments_capture_sweep_task() -> int:
    """Capture the holds whose charge detail record was issued (tariffs issues it; billing follows)."""
    due = payments.payments_to_capture()
    for pk in due:
        payment_capture_task.delay(pk)
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
