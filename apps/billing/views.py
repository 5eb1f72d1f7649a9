"""Stripe's webhook endpoint, /webhooks/stripe/: no JWT, no CSRF token (Stripe signs each delivery
instead, see webhooks.verify). Answers in the API's one error shape; 2xx tells Stripe not to deliver
again."""

from __future__ import annotations

import logging

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.billing import webhooks
from cpo.exceptions import ApplicationError

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    try:
        event, created = webhooks.event_receive(
            payload=request.body, signature=request.headers.get("Stripe-Signature")
        )
    except ApplicationError as exc:
        if exc.http_status >= 500:
            logger.error("Stripe webhook refused: %s", exc.detail)
        return JsonResponse(exc.as_dict(), status=exc.http_status)
    return JsonResponse({"received": True, "duplicate": not created, "status": event.status})
