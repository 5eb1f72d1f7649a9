"""Roaming tasks: send one push (dispatched on commit, re-dispatched with back-off), the periodic sweep of
due pushes, and the periodic update of running roaming sessions. Idempotent; they take ids."""

from celery import shared_task

from apps.roaming import pushes, sessions, sync


@shared_task(name="roaming.push_send", ignore_result=True)
def push_send_task(push_id: int) -> str:
    return pushes.push_send(push_id=push_id)


@shared_task(name="roaming.pushes_sweep", ignore_result=True)
def pushes_sweep_task() -> int:
    return pushes.pushes_send_due()


@shared_task(name="roaming.sessions_update", ignore_result=True)
def sessions_update_task() -> int:
    return sessions.roaming_sessions_update()


@shared_task(name="roaming.objects_sync", ignore_result=True)
def objects_sync_task() -> int:
    return sync.objects_sync()
