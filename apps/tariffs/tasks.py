"""CDR tasks: issue one session's CDR (dispatched on commit when a session may be complete) and a
periodic sweep for sessions whose car left or whose departure was never reported. Idempotent."""

from celery import shared_task

from apps.tariffs import services


@shared_task(name="tariffs.cdr_issue", ignore_result=True)
def cdr_issue_task(session_id: int) -> int | None:
    cdr = services.cdr_issue(session_id=session_id)
    return cdr.pk if cdr is not None else None


@shared_task(name="tariffs.cdr_sweep", ignore_result=True)
def cdr_sweep_task() -> int:
    return services.cdr_sweep()
