"""The one way the product talks to Stripe.

- One `stripe.StripeClient` per configuration (key, API base, timeout), with an explicit timeout for every
  request (`STRIPE_TIMEOUT_S`) and `STRIPE_API_BASE` as its address (localstripe in tests and `make run`).
- Every request that creates or changes something at Stripe goes through `call()` with an idempotency key
  derived from our ids (`idempotency_key("customer", user.pk, ...)`). The key is a unique row of
  `StripeCall`: a second attempt of the same operation reuses the key (Stripe answers the first result),
  and when the first attempt already succeeded, `call(..., retrieve=...)` reads the object it made instead
  of asking Stripe to make it again (localstripe ignores Idempotency-Key; Stripe forgets keys after 24 h).
  Reads (GET) carry no key: Stripe ignores one there.
- Stripe's errors become the product's: network trouble, rate limits, 5xx and a wrong key are
  `PaymentProviderUnavailable` (503, `retryable` except for the key); a declined card is `PaymentDeclined`
  (402); any other 4xx is `PaymentRequestRefused` (400), which is never retried.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils.translation import gettext_lazy as _

from apps.billing.choices import StripeCallStatus
from apps.billing.models import StripeCall
from cpo import clock
from cpo.exceptions import ApplicationError, ServiceUnavailable

logger = logging.getLogger(__name__)
T = TypeVar("T")


class PaymentProviderUnavailable(ServiceUnavailable):
    code = "payment_provider_unavailable"
    default_detail = _("The payment provider cannot be reached. Please try again shortly.")

    def __init__(self, detail: Any = None, *, retryable: bool = True, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.retryable = retryable


class PaymentDeclined(ApplicationError):
    code = "payment_declined"
    http_status = 402
    default_detail = _("The card was declined.")


class PaymentRequestRefused(ApplicationError):
    """Stripe refused the request itself (4xx): retrying it unchanged cannot succeed."""

    code = "payment_request_refused"
    http_status = 400
    default_detail = _("The payment provider refused the request.")

    def __init__(self, detail: Any = None, *, stripe_code: str = "", http_status: int = 400, **kw: Any):
        super().__init__(detail, **kw)
        self.stripe_code = stripe_code
        self.stripe_http_status = http_status


class PaymentsNotConfigured(PaymentProviderUnavailable):
    default_detail = _("Card payments are not available.")


@functools.lru_cache(maxsize=4)
def _client(api_key: str, api_base: str, timeout: float, retries: int) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base},
        http_client=stripe.RequestsClient(timeout=timeout),
        max_network_retries=retries,
    )


def client() -> stripe.StripeClient:
    """The configured client; PaymentsNotConfigured without STRIPE_SECRET_KEY."""
    if not settings.STRIPE_SECRET_KEY:
        raise PaymentsNotConfigured(retryable=False)
    return _client(
        settings.STRIPE_SECRET_KEY,
        settings.STRIPE_API_BASE.rstrip("/"),
        float(settings.STRIPE_TIMEOUT_S),
        int(settings.STRIPE_MAX_NETWORK_RETRIES),
    )


def idempotency_key(operation: str, *ids: object) -> str:
    """`cpo-<operation>-<id>-<id>...`: the same operation on the same objects always gets the same key."""
    return "-".join(["cpo", operation, *(str(i) for i in ids)])[:255]


def translate(exc: stripe.StripeError) -> ApplicationError:
    """Stripe's error as the product's (see the module docstring)."""
    status = exc.http_status
    if isinstance(exc, stripe.CardError):
        return PaymentDeclined()
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        logger.error("Stripe refused our API key: %s", exc)
        return PaymentProviderUnavailable(retryable=False)
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError):
        return PaymentProviderUnavailable()
    if status is None or status >= 500 or status == 429:
        return PaymentProviderUnavailable()
    if status == 402:
        return PaymentDeclined()
    return PaymentRequestRefused(stripe_code=str(exc.code or ""), http_status=status)


def request(fn: Callable[[], T]) -> T:
    """A read (no idempotency key), with Stripe's errors translated."""
    try:
        return fn()
    except stripe.StripeError as exc:
        raise translate(exc) from exc


def _record(key: str, operation: str) -> StripeCall:
    try:
        with transaction.atomic():
            record, _created = StripeCall.objects.get_or_create(
                idempotency_key=key, defaults={"operation": operation}
            )
    except IntegrityError:  # created by a concurrent attempt between the read and the insert
        record = StripeCall.objects.get(idempotency_key=key)
    if record.operation != operation:
        raise ValueError(f"idempotency key {key} belongs to {record.operation}, not {operation}")
    return record


def call(
    operation: str,
    key: str,
    fn: Callable[[stripe.RequestOptions], T],
    *,
    retrieve: Callable[[str], T] | None = None,
) -> T:
    """Make one write request to Stripe under `key` (recorded in StripeCall first).

    `fn(options)` makes the request; pass `options` on (it holds the idempotency key). With `retrieve`,
    a key whose call already succeeded returns `retrieve(result_id)` instead of calling again."""
    record = _record(key, operation)
    if retrieve is not None and record.status == StripeCallStatus.SUCCEEDED and record.result_id:
        return request(lambda: retrieve(record.result_id))
    StripeCall.objects.filter(pk=record.pk).update(attempts=F("attempts") + 1)
    try:
        result = fn({"idempotency_key": key})
    except stripe.StripeError as exc:
        error = translate(exc)
        StripeCall.objects.filter(pk=record.pk).exclude(status=StripeCallStatus.SUCCEEDED).update(
            status=StripeCallStatus.FAILED,
            error_code=(getattr(exc, "code", None) or error.code)[:64],
            finished_at=clock.now(),
        )
        raise error from exc
    StripeCall.objects.filter(pk=record.pk).update(
        status=StripeCallStatus.SUCCEEDED,
        result_id=str(getattr(result, "id", "") or "")[:255],
        error_code="",
        finished_at=clock.now(),
    )
    return result
