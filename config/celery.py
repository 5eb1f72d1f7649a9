"""The Celery application. Broker and result backend are REDIS_URL (settings)."""

import os

from celery import Celery
from celery.signals import worker_init

from cpo.runtime import tune_gc

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("cpo")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _tune_worker_gc(**_kwargs: object) -> None:
    """Before the worker forks its pool: what start-up created is frozen and shared (cpo.runtime)."""
    tune_gc()
