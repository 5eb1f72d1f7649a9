"""Periodic gateway housekeeping (Celery beat). Each task is idempotent and safe to run concurrently."""

from celery import shared_task

from apps.ocpp_gateway import replay, services


@shared_task(name="ocpp_gateway.presence_flush", ignore_result=True)
def presence_flush_task() -> dict[str, int]:
    """Copy presence (last seen, online) from Redis to PostgreSQL; mark lapsed chargers offline."""
    return services.presence_flush()


@shared_task(name="ocpp_gateway.commands_sweep", ignore_result=True)
def commands_sweep_task() -> int:
    return services.commands_sweep()


@shared_task(name="ocpp_gateway.kept_messages_replay", ignore_result=True)
def kept_messages_replay_task() -> dict[str, int]:
    """Replay (once) the requests kept for chargers that did not reconnect to have them replayed."""
    return replay.kept_messages_replay_due()
