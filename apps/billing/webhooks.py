"""Stripe's webhook events: verified, taken in once, processed once.

`event_receive` checks the signature (`Stripe-Signature`, STRIPE_WEBHOOK_SECRET) and records the event by
its id in `StripeEvent`; a replay finds the row and changes nothing. What needs no further Stripe request
is applied in the same transaction (a failure rolls the record back, so Stripe delivers it again). What
needs one (`NETWORK`) is processed by the Celery task `billing.stripe_event_process` after commit, which
retries network errors and Stripe's 5xx and never a 4xx (the event is then marked failed). Types we do not
handle are acknowledged and ignored."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe
from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils.translation import gettext_lazy as _

from apps.billing import services, stripe_client
from apps.billing.choices import StripeEventStatus
from apps.billing.models import Dispute, Payment, StripeCustomer, StripeEvent
from apps.billing.stripe_client import PaymentProviderUnavailable, PaymentRequestRefused
from cpo import clock
from cpo.exceptions import ApplicationError, ServiceUnavailable

logger = logging.getLogger(__name__)


class SignatureInvalid(ApplicationError):
    code = "signature_invalid"
    http_status = 400
    default_detail = _("The Stripe-Signature header is missing or does not match.")


class EventInvalid(ApplicationError):
    code = "event_invalid"
    http_status = 400
    default_detail = _("The body is not a Stripe event.")


class WebhooksNotConfigured(ServiceUnavailable):
    code = "webhooks_not_configured"
    default_detail = _("STRIPE_WEBHOOK_SECRET is not set: events cannot be verified.")


def _object(payload: dict[str, Any]) -> dict[str, Any]:
    obj = (payload.get("data") or {}).get("object")
    if not isinstance(obj, dict):
        raise EventInvalid()
    return obj


def _timestamp(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), tz=UTC) if value else None


def _dispute_record(payload: dict[str, Any]) -> None:
    """charge.dispute.*: the dispute as Stripe says it is now (created, updated, closed)."""
    obj = _object(payload)
    customer_id = obj.get("customer")
    customer = StripeCustomer.objects.filter(stripe_id=customer_id).first() if customer_id else None
    charge = obj.get("charge")
    intent = obj.get("payment_intent")
    intent_id = str((intent.get("id") if isinstance(intent, dict) else intent) or "")
    # the operator whose session the disputed payment paid for
    payment = Payment.objects.filter(stripe_id=intent_id).first() if intent_id else None
    if payment is not None:
        customer = customer or payment.customer
    Dispute.objects.update_or_create(
        stripe_id=str(obj["id"]),
        defaults={
            "charge_id": str((charge.get("id") if isinstance(charge, dict) else charge) or ""),
            "payment_intent_id": intent_id,
            "amount": int(obj.get("amount") or 0),
            "currency": str(obj.get("currency") or "").upper()[:3],
            "reason": str(obj.get("reason") or "")[:64],
            "status": str(obj.get("status") or "")[:64],
            "evidence_due_by": _timestamp((obj.get("evidence_details") or {}).get("due_by")),
            "customer": customer,
            "organisation": payment.organisation if payment is not None else None,
            "opened_at": _timestamp(obj.get("created")) or clock.now(),
        },
    )


def _payment_method_attached(payload: dict[str, Any]) -> None:
    services.payment_method_attached_record(payment_method=_object(payload))


def _payment_method_detached(payload: dict[str, Any]) -> None:
    services.payment_method_detached_record(payment_method_id=str(_object(payload)["id"]))


def _customer_deleted(payload: dict[str, Any]) -> None:
    services.customer_deleted_record(customer_id=str(_object(payload)["id"]))


def _setup_intent_succeeded(payload: dict[str, Any]) -> None:
    """The app confirmed a SetupIntent of one of our customers: the card it attached is recorded (read from
    Stripe: the event names only its id)."""
    obj = _object(payload)
    method_id, customer_id = obj.get("payment_method"), obj.get("customer")
    if not method_id or not StripeCustomer.objects.filter(stripe_id=customer_id, deleted_at=None).exists():
        return
    client = stripe_client.client()
    method = stripe_client.request(lambda: client.v1.payment_methods.retrieve(str(method_id)))
    services.payment_method_attached_record(payment_method=method)


# Applied on receipt, in the receiving transaction.
INLINE: dict[str, Callable[[dict[str, Any]], None]] = {
    "payment_method.attached": _payment_method_attached,
    "payment_method.updated": _payment_method_attached,
    "payment_method.detached": _payment_method_detached,
    "customer.deleted": _customer_deleted,
    "charge.dispute.created": _dispute_record,
    "charge.dispute.updated": _dispute_record,
    "charge.dispute.closed": _dispute_record,
}
# Processed by the Celery task (they ask Stripe for more).
NETWORK: dict[str, Callable[[dict[str, Any]], None]] = {
    "setup_intent.succeeded": _setup_intent_succeeded,
}


def verify(*, payload: bytes, signature: str | None) -> dict[str, Any]:
    """The event in `payload` once its signature is checked; SignatureInvalid or EventInvalid."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise WebhooksNotConfigured()
    if not signature:
        raise SignatureInvalid()
    try:
        stripe.WebhookSignature.verify_header(
            payload.decode("utf-8"), signature, secret, settings.STRIPE_WEBHOOK_TOLERANCE_S
        )
    except (stripe.SignatureVerificationError, UnicodeDecodeError) as exc:
        raise SignatureInvalid() from exc
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise EventInvalid() from exc
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not event.get("type"):
        raise EventInvalid()
    return event


def event_receive(*, payload: bytes, signature: str | None) -> tuple[StripeEvent, bool]:
    """Verify and take in one delivery. Returns (event, created); created is False for a replay."""
    data = verify(payload=payload, signature=signature)
    event_type = str(data["type"])[:128]
    with transaction.atomic():
        event, created = StripeEvent.objects.get_or_create(
            event_id=data["id"][:255], defaults={"type": event_type, "payload": data}
        )
        if not created:
            return event, False
        handler = INLINE.get(event_type)
        if handler is not None:
            handler(data)
            event.status, event.processed_at, event.attempts = StripeEventStatus.PROCESSED, clock.now(), 1
            event.save(update_fields=["status", "processed_at", "attempts"])
        elif event_type in NETWORK:
            transaction.on_commit(lambda: _dispatch(event.pk))
        else:
            event.status, event.processed_at = StripeEventStatus.IGNORED, clock.now()
            event.save(update_fields=["status", "processed_at"])
    return event, True


PROCESS_TASK = "billing.stripe_event_process"


def _dispatch(event_pk: int) -> None:
    current_app.send_task(PROCESS_TASK, args=[event_pk])


def event_process(event_pk: int) -> StripeEvent:
    """Process a received NETWORK event once. A refused request (4xx) marks it failed (never retried); an
    unreachable Stripe or a 5xx raises PaymentProviderUnavailable for the task to retry."""
    StripeEvent.objects.filter(pk=event_pk).update(attempts=F("attempts") + 1)
    event = StripeEvent.objects.get(pk=event_pk)
    if event.status != StripeEventStatus.RECEIVED:
        return event
    handler = NETWORK.get(event.type)
    try:
        if handler is not None:
            handler(event.payload)
    except PaymentProviderUnavailable as exc:
        StripeEvent.objects.filter(pk=event_pk).update(error=str(exc)[:1000])
        raise
    except (PaymentRequestRefused, ApplicationError) as exc:
        logger.warning("Stripe event %s (%s) failed for good: %s", event.event_id, event.type, exc)
        StripeEvent.objects.filter(pk=event_pk, status=StripeEventStatus.RECEIVED).update(
            status=StripeEventStatus.FAILED, error=str(exc)[:1000], processed_at=clock.now()
        )
        event.refresh_from_db()
        return event
    StripeEvent.objects.filter(pk=event_pk, status=StripeEventStatus.RECEIVED).update(
        status=StripeEventStatus.PROCESSED, error="", processed_at=clock.now()
    )
    event.refresh_from_db()
    return event


def events_pending(*, older_than_s: float = 300) -> list[int]:
    """NETWORK events still waiting after `older_than_s` (their task was lost): for the sweep."""
    cutoff = clock.now() - timedelta(seconds=older_than_s)
    return list(
        StripeEvent.objects.filter(status=StripeEventStatus.RECEIVED, received_at__lt=cutoff).values_list(
            "pk", flat=True
        )
    )
