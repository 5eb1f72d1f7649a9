"""Periodic charging housekeeping (Celery beat). Each task is idempotent and safe to run concurrently."""

from celery import shared_task

from apps.charging import driver_services, reconcile


@shared_task(name="charging.driver_sessions_sweep", ignore_result=True)
def driver_sessions_sweep_task() -> dict[str, int]:
    """Fail driver starts the charger never began; forget Idempotency-Keys older than 24 h."""
    return driver_services.driver_sessions_sweep()


@shared_task(name="charging.sessions_reconcile", ignore_result=True)
def sessions_reconcile_task() -> dict[str, int]:
    """Ask about, and close, active sessions whose stop seems lost (apps.charging.reconcile)."""
    return reconcile.sessions_reconcile()
