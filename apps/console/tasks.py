"""Celery: alert deliveries (e-mail, webhook with back-off) and the periodic alert sweep."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from apps.console import services  # services imports this module too: use by attribute


@shared_task(name="console.alerts_sweep", ignore_result=True)
def alerts_sweep_task() -> dict[str, int]:
    """Offline and boot-loop alerts, connection intervals (services.alerts_sweep). Idempotent."""
    return services.alerts_sweep()


@shared_task(name="console.alert_email", bind=True, max_retries=5, ignore_result=True)
def alert_email_task(self: Any, delivery_id: int) -> bool:
    try:
        return services.alert_email_send(delivery_id=delivery_id)
    except OSError as exc:  # SMTP unreachable or refusing: try again later
        raise self.retry(exc=exc, countdown=services.webhook_backoff_s(self.request.retries + 1)) from exc


@shared_task(name="console.alert_webhook", bind=True, max_retries=None, ignore_result=True)
def alert_webhook_task(self: Any, delivery_id: int) -> bool | None:
    """POST the alert to its organisation's webhook; a failure is retried with exponential back-off until
    CPO_ALERT_WEBHOOK_MAX_ATTEMPTS attempts (the delivery then says FAILED)."""
    result = services.alert_webhook_attempt(delivery_id=delivery_id)
    if result is False:
        raise self.retry(countdown=services.webhook_backoff_s(self.request.retries + 1))
    return result
