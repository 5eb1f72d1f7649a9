"""Tests: the same servers as production (PostGIS and Redis on loopback), faster password hashing."""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key-not-for-production-use-0123456789")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/9")

from config.settings.base import *  # noqa: F403

# Test-only: PBKDF2 costs half a second a check on this machine.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
CELERY_TASK_ALWAYS_EAGER = False

# Every CALLRESULT the product sends is checked against the OCPP JSON schemas during tests.
CPO_OCPP_VALIDATE_RESPONSES = True

# Tests change a charger's key, profile or registration between handshakes: refusals are not remembered
# here, except in the tests of that memory (which set it).
CPO_OCPP_AUTH_REFUSAL_CACHE_S = 0
