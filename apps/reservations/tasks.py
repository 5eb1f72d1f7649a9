"""Celery: reservations past their time are released (beat), and a reservation no charge followed is
priced (dispatched on commit when it ends). Idempotent."""

from __future__ import annotations

from celery import shared_task

from apps.reservations import services


@shared_task(name="reservations.reservations_expire", ignore_result=True)
def reservations_expire_task() -> dict[str, int]:
    """Expire RESERVED reservations past expires_at (and fail PENDING ones never answered). Idempotent."""
    return services.reservations_expire()


@shared_task(name="reservations.reservation_fee", ignore_result=True)
def reservation_fee_task(reservation_id: int) -> int | None:
    """Issue (and have billing charge) the record of a reservation no charge followed, where priced."""
    cdr = services.reservation_fee_issue(reservation_id=reservation_id)
    return cdr.pk if cdr is not None else None


@shared_task(name="reservations.reservation_fees_sweep", ignore_result=True)
def reservation_fees_sweep_task() -> int:
    """Price the ended reservations whose fee task was lost."""
    return services.reservation_fees_sweep()
