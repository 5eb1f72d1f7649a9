"""Celery beat: reservations past their time are released."""

from __future__ import annotations

from celery import shared_task

from apps.reservations.services import reservations_expire


@shared_task(name="reservations.reservations_expire", ignore_result=True)
def reservations_expire_task() -> dict[str, int]:
    """Expire RESERVED reservations past expires_at (and fail PENDING ones never answered). Idempotent."""
    return reservations_expire()
