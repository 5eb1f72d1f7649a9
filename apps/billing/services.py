"""Drivers' cards at Stripe: their customer (created lazily, once), a SetupIntent for the app, attaching,
listing, choosing the default and removing cards. Card data never reaches us: the app sends the card to
Stripe and gives us the payment method's id; we keep brand, last 4 digits and expiry to show.

Calls to Stripe never run inside a transaction that holds row locks: each service makes its Stripe calls
first and then records the result in one short transaction."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import IntegrityError, transaction
from django.utils.translation import gettext_lazy as _

from apps.accounts.models import User
from apps.billing import stripe_client, tasks  # tasks imports this module too: use by attribute
from apps.billing.choices import PaymentStatus
from apps.billing.models import PaymentMethod, StripeCustomer
from apps.billing.stripe_client import PaymentRequestRefused
from cpo import clock
from cpo.exceptions import ApplicationError, NotFound, ValidationFailed


class PaymentMethodInvalid(ApplicationError):
    code = "payment_method_invalid"
    http_status = 400
    default_detail = _("This payment method cannot be added: create it again in the app.")


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    return dict(obj.to_dict())


def card_fields(payment_method: Any) -> dict[str, Any]:
    """What we keep of a payment method (a Stripe object or a webhook's dict): brand, last 4, expiry."""
    data = _as_dict(payment_method)
    card = data.get("card") or {}
    return {
        "brand": str(card.get("brand") or data.get("type") or "")[:32],
        "last4": str(card.get("last4") or "")[:4],
        "exp_month": int(card["exp_month"]) if card.get("exp_month") else None,
        "exp_year": int(card["exp_year"]) if card.get("exp_year") else None,
    }


def _customer_id_of(obj: Any) -> str | None:
    customer = _as_dict(obj).get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    return str(customer) if customer else None


def customer_active(*, user: User) -> StripeCustomer | None:
    return StripeCustomer.objects.filter(user=user, deleted_at__isnull=True).first()


def customer_for(*, user: User) -> StripeCustomer:
    """The driver's Stripe customer, created at Stripe the first time (idempotently: the key is the
    driver's id and how many customers they had before, so a retry or a concurrent request reuses the
    first one's customer)."""
    existing = customer_active(user=user)
    if existing is not None:
        return existing
    generation = StripeCustomer.objects.filter(user=user).count()
    stripe = stripe_client.client()
    customer = stripe_client.call(
        "customer_create",
        stripe_client.idempotency_key("customer", "user", user.pk, generation),
        lambda options: stripe.v1.customers.create(
            {"email": user.email, "metadata": {"cpo_user_id": str(user.pk)}}, options
        ),
        retrieve=lambda customer_id: stripe.v1.customers.retrieve(customer_id),
    )
    try:
        with transaction.atomic():
            return StripeCustomer.objects.create(user=user, stripe_id=customer.id)
    except IntegrityError:  # a concurrent request recorded it first (the same customer: same key)
        found = customer_active(user=user)
        if found is None:
            raise
        return found


def setup_intent_create(*, user: User, request_key: str = "") -> dict[str, str]:
    """A SetupIntent for the driver's customer: the app confirms it with the card (Stripe's SDK), which
    attaches the card to the customer. `request_key` (the request's Idempotency-Key) makes a repeated
    request return the same SetupIntent."""
    customer = customer_for(user=user)
    stripe = stripe_client.client()
    key = stripe_client.idempotency_key(
        "setup-intent", "customer", customer.pk, request_key.strip()[:100] or uuid.uuid4().hex
    )
    params: Any = {
        "customer": customer.stripe_id,
        "usage": "off_session",
        "payment_method_types": ["card"],
        "metadata": {"cpo_user_id": str(user.pk)},
    }
    intent = stripe_client.call(
        "setup_intent_create",
        key,
        lambda options: stripe.v1.setup_intents.create(params, options),
        retrieve=lambda intent_id: stripe.v1.setup_intents.retrieve(intent_id),
    )
    return {
        "setup_intent_id": str(intent.id),
        "client_secret": str(intent.client_secret),
        "customer_id": customer.stripe_id,
    }


def _record_method(*, customer: StripeCustomer, payment_method: Any) -> tuple[PaymentMethod, bool]:
    """Our row for a payment method attached to `customer` (created, or updated from Stripe's data);
    the driver's first card becomes the default."""
    data = _as_dict(payment_method)
    fields = card_fields(data)
    with transaction.atomic():
        StripeCustomer.objects.select_for_update(no_key=True).filter(pk=customer.pk).first()
        method, created = PaymentMethod.objects.update_or_create(
            stripe_id=str(data["id"]), customer=customer, defaults=fields
        )
        if not PaymentMethod.objects.filter(customer=customer, is_default=True).exists():
            PaymentMethod.objects.filter(pk=method.pk).update(is_default=True)
            method.is_default = True
    return method, created


def payment_method_attach(*, user: User, payment_method_id: str) -> tuple[PaymentMethod, bool]:
    """Attach a payment method the app created at Stripe to the driver's customer and record it.
    Returns (method, created). Already attached to this driver: recorded, nothing else happens. Another
    customer's, unknown or unusable: PaymentMethodInvalid; declined: PaymentDeclined (402)."""
    payment_method_id = payment_method_id.strip()
    if not payment_method_id.startswith("pm_"):
        raise ValidationFailed(fields={"payment_method_id": [str(_("Not a payment method id (pm_...)."))]})
    customer = customer_for(user=user)
    known = PaymentMethod.objects.filter(customer=customer, stripe_id=payment_method_id).first()
    if known is not None:
        return known, False
    if PaymentMethod.objects.filter(stripe_id=payment_method_id).exists():
        raise PaymentMethodInvalid()
    stripe = stripe_client.client()
    try:
        current = stripe_client.request(lambda: stripe.v1.payment_methods.retrieve(payment_method_id))
        owner = _customer_id_of(current)
        if owner == customer.stripe_id:
            return _record_method(customer=customer, payment_method=current)
        if owner is not None:
            raise PaymentMethodInvalid()
        attached = stripe_client.call(
            "payment_method_attach",
            stripe_client.idempotency_key("attach", payment_method_id, "customer", customer.pk),
            lambda options: stripe.v1.payment_methods.attach(
                payment_method_id, {"customer": customer.stripe_id}, options
            ),
            retrieve=lambda method_id: stripe.v1.payment_methods.retrieve(method_id),
        )
    except PaymentRequestRefused as exc:
        raise PaymentMethodInvalid() from exc
    if _customer_id_of(attached) != customer.stripe_id:
        raise PaymentMethodInvalid()
    return _record_method(customer=customer, payment_method=attached)


def payment_methods_of(*, user: User) -> Any:
    """The driver's cards (only theirs: of their active customer)."""
    return PaymentMethod.objects.filter(customer__user=user, customer__deleted_at__isnull=True)


def payment_method_get(*, user: User, pk: int) -> PaymentMethod:
    method = payment_methods_of(user=user).filter(pk=pk).first()
    if method is None:
        raise NotFound(_("No such payment method."))
    return method


def payment_method_set_default(*, user: User, pk: int) -> PaymentMethod:
    """Make one of the driver's cards the one charged by default (ours to decide: no Stripe call)."""
    method = payment_method_get(user=user, pk=pk)
    with transaction.atomic():
        StripeCustomer.objects.select_for_update(no_key=True).filter(pk=method.customer_id).first()
        PaymentMethod.objects.filter(customer_id=method.customer_id, is_default=True).exclude(
            pk=method.pk
        ).update(is_default=False)
        PaymentMethod.objects.filter(pk=method.pk).update(is_default=True)
    method.refresh_from_db()
    return method


def _forget_method(method: PaymentMethod) -> None:
    """Delete our row; when it was the default, the newest remaining card becomes the default."""
    with transaction.atomic():
        StripeCustomer.objects.select_for_update(no_key=True).filter(pk=method.customer_id).first()
        was_default = PaymentMethod.objects.filter(pk=method.pk, is_default=True).exists()
        PaymentMethod.objects.filter(pk=method.pk).delete()
        if was_default:
            successor = (
                PaymentMethod.objects.filter(customer_id=method.customer_id).order_by("-created_at").first()
            )
            if successor is not None:
                PaymentMethod.objects.filter(pk=successor.pk).update(is_default=True)


def payment_method_remove(*, user: User, pk: int) -> None:
    """Detach the card at Stripe and forget it. Already detached at Stripe: forgotten all the same."""
    method = payment_method_get(user=user, pk=pk)
    stripe = stripe_client.client()
    try:
        stripe_client.call(
            "payment_method_detach",
            stripe_client.idempotency_key("detach", method.stripe_id),
            lambda options: stripe.v1.payment_methods.detach(method.stripe_id, None, options),
        )
    except PaymentRequestRefused as exc:
        if exc.stripe_http_status != 404:
            raise PaymentMethodInvalid() from exc
    _forget_method(method)


# --- what webhooks tell us (apps.billing.webhooks) ------------------------------------------------------


def payment_method_attached_record(*, payment_method: Any) -> PaymentMethod | None:
    """A card attached at Stripe to one of our customers (by the app's SetupIntent, say): recorded."""
    customer_id = _customer_id_of(payment_method)
    customer = StripeCustomer.objects.filter(stripe_id=customer_id, deleted_at__isnull=True).first()
    if customer_id is None or customer is None:
        return None
    method, _created = _record_method(customer=customer, payment_method=payment_method)
    return method


def payment_method_detached_record(*, payment_method_id: str) -> bool:
    method = PaymentMethod.objects.filter(stripe_id=payment_method_id).first()
    if method is None:
        return False
    _forget_method(method)
    return True


def customer_deleted_record(*, customer_id: str) -> bool:
    """The customer was deleted at Stripe (with its cards): keep the row, marked, and forget its cards;
    the driver's next card gets a new customer."""
    with transaction.atomic():
        customer = StripeCustomer.objects.select_for_update(no_key=True).filter(stripe_id=customer_id).first()
        if customer is None or customer.deleted_at is not None:
            return False
        PaymentMethod.objects.filter(customer=customer).delete()
        StripeCustomer.objects.filter(pk=customer.pk).update(deleted_at=clock.now())
    return True


# --- a driver's erasure (accounts.hooks.driver_erased) ---------------------------------------------------


class CustomerStillHolds(Exception):
    """The customer still has a held (authorised) payment: deleting it at Stripe must wait for its end."""


def driver_erase(*, user: User) -> None:
    """The driver's account is being erased (inside accounts' transaction): their cards are forgotten now,
    and after commit each of their Stripe customers (which holds their e-mail address) is deleted at Stripe
    by the task `billing.customer_erase`, retried until no payment of theirs is held any more."""
    PaymentMethod.objects.filter(customer__user=user).delete()
    pks = list(StripeCustomer.objects.filter(user=user, deleted_at__isnull=True).values_list("pk", flat=True))

    def send() -> None:
        for pk in pks:
            tasks.customer_erase_task.delay(pk)

    if pks:
        transaction.on_commit(send, robust=True)  # a lost dispatch is found by billing.customers_erase_sweep


def customers_to_erase() -> list[int]:
    """Stripe customers of erased drivers (inactive, their e-mail address replaced) not yet deleted."""
    return list(
        StripeCustomer.objects.filter(
            deleted_at__isnull=True, user__is_active=False, user__email__endswith="@invalid.invalid"
        ).values_list("pk", flat=True)
    )


def customer_erase(*, customer_pk: int) -> bool:
    """Delete an erased driver's customer at Stripe (with their cards there) and mark it deleted here.
    CustomerStillHolds while one of their payments is still held (the capture needs it); already deleted
    at Stripe (404): marked deleted all the same. Stripe unreachable or 5xx: PaymentProviderUnavailable."""
    customer = StripeCustomer.objects.filter(pk=customer_pk).first()
    if customer is None or customer.deleted_at is not None:
        return False
    if customer.payments.filter(status=PaymentStatus.AUTHORISED).exists():
        raise CustomerStillHolds(customer.stripe_id)
    stripe = stripe_client.client()
    try:
        stripe_client.call(
            "customer_delete",
            stripe_client.idempotency_key("customer-delete", customer.pk),
            lambda options: stripe.v1.customers.delete(customer.stripe_id, None, options),
        )
    except PaymentRequestRefused as exc:
        if exc.stripe_http_status != 404:
            raise
    return customer_deleted_record(customer_id=customer.stripe_id)
