"""The Celery application. Broker and result backend are REDIS_URL (settings)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("cpo")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
