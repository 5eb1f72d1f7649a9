"""Kernel housekeeping (Celery beat). Idempotent and safe to run concurrently."""

from typing import Any

from celery import shared_task

from cpo import partitions


@shared_task(name="cpo.partitions_maintain", ignore_result=True)
def partitions_maintain_task() -> list[dict[str, Any]]:
    """Every registered monthly partitioned table: next months' partitions created, expired ones dropped."""
    return [report.as_dict() for report in partitions.partitions_maintain_all()]
