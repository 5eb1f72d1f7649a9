"""Settings shared by every environment. Servers and secrets come from the environment only."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from config.settings.services import (
    DEFAULT_DATABASE_URL,
    channel_layer_settings,
    database_settings,
    redis_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent.parent
ENV = os.environ


def env_bool(name: str, default: bool = False) -> bool:
    value = ENV.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {value!r}")


def env_days(name: str, default: int) -> int:
    """A retention in whole days: 0 (keep forever) or more."""
    value = ENV.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit():
        raise ImproperlyConfigured(f"{name} must be 0 (keep forever) or a number of days, got {value!r}")
    return int(value)


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in ENV.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = ENV.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is not set. `make run` generates one under var/; in production set it "
        "to a long random value."
    )
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.gis",
    "channels",
    "rest_framework",
    "rest_framework_gis",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "rest_framework_simplejwt.token_blacklist",
    "import_export",
    "cpo",
    "apps.accounts",
    "apps.stations",
    "apps.charging",
    "apps.tariffs",
    "apps.billing",
    "apps.reservations",
    "apps.smartcharging",
    "apps.roaming",
    "apps.ocpp_gateway",
    "apps.console",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- servers -------------------------------------------------------------------------------------
DATABASES = {"default": database_settings(ENV)}
# The URL as given, for messages that name it (masked): manage.py check_services.
DATABASE_URL = ENV.get("DATABASE_URL") or DEFAULT_DATABASE_URL
REDIS_URL = redis_url(ENV)
CACHE_URL = redis_url(ENV, "CACHE_URL", default=REDIS_URL)
CHANNEL_LAYERS = {"default": channel_layer_settings(REDIS_URL)}
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": CACHE_URL,
        "KEY_PREFIX": "cpo-cache",
        "TIMEOUT": 300,
        "OPTIONS": {"socket_timeout": 5, "socket_connect_timeout": 5},
    }
}
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A task whose worker died (kill -9, a lost machine) before acknowledging it goes back to the queue once
# this long has passed since it was handed out (Redis transport); every task is idempotent, so one that
# merely ran longer than this and runs twice still has its effect once. Kombu's default is an hour.
# Kombu sweeps for such tasks every `unacked_restore_interval` x `unacked_restore_throttle` seconds (its
# defaults, 10 x 10, wait 100 s beyond the timeout): here every CPO_CELERY_RESTORE_INTERVAL_S, no throttle.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(ENV.get("CPO_CELERY_VISIBILITY_TIMEOUT_S", "3600")),
    "unacked_restore_interval": int(ENV.get("CPO_CELERY_RESTORE_INTERVAL_S", "10")),
    "unacked_restore_throttle": 1,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE: dict[str, dict] = {
    "ocpp-presence-flush": {"task": "ocpp_gateway.presence_flush", "schedule": 30.0},
    "ocpp-commands-sweep": {"task": "ocpp_gateway.commands_sweep", "schedule": 15.0},
    # Monthly partitions of the message log and meter samples: next months created, expired months dropped.
    "partitions-maintain": {"task": "cpo.partitions_maintain", "schedule": 3600.0},
    "ocpp-kept-messages-replay": {"task": "ocpp_gateway.kept_messages_replay", "schedule": 60.0},
    "driver-sessions-sweep": {"task": "charging.driver_sessions_sweep", "schedule": 15.0},
    "charging-sessions-reconcile": {"task": "charging.sessions_reconcile", "schedule": 300.0},
    "tariffs-cdr-sweep": {"task": "tariffs.cdr_sweep", "schedule": 300.0},
    "billing-stripe-events-sweep": {"task": "billing.stripe_events_sweep", "schedule": 300.0},
    "billing-payments-capture-sweep": {"task": "billing.payments_capture_sweep", "schedule": 60.0},
    "reservations-expire": {"task": "reservations.reservations_expire", "schedule": 30.0},
    "reservations-fees-sweep": {"task": "reservations.reservation_fees_sweep", "schedule": 300.0},
    "billing-payments-limit-sweep": {"task": "billing.payments_limit_sweep", "schedule": 30.0},
    "billing-payments-correction-sweep": {"task": "billing.payments_correction_sweep", "schedule": 300.0},
    "billing-customers-erase-sweep": {"task": "billing.customers_erase_sweep", "schedule": 3600.0},
    "billing-old-holds-sweep": {"task": "billing.payments_old_holds_sweep", "schedule": 900.0},
    "billing-invoices-issue": {"task": "billing.invoices_issue", "schedule": 3600.0},
    "smartcharging-sites-rebalance": {"task": "smartcharging.sites_rebalance", "schedule": 300.0},
    "console-alerts-sweep": {"task": "console.alerts_sweep", "schedule": 60.0},
    "roaming-pushes-sweep": {"task": "roaming.pushes_sweep", "schedule": 60.0},
    "roaming-sessions-update": {"task": "roaming.sessions_update", "schedule": 300.0},
    "roaming-objects-sync": {"task": "roaming.objects_sync", "schedule": 60.0},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(Path(ENV.get("CPO_VAR_DIR", BASE_DIR / "var")) / "celerybeat-schedule")

# --- auth ----------------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"
PASSWORD_RESET_TIMEOUT = 60 * 60 * 24
# Brute-force protection of the admin sign-in and password reset pages (apps.accounts.login_throttle).
# Failed sign-ins per window: per (account, address) and per address, the address waits for the window to
# end; per account from everywhere, a higher ceiling past which addresses the account has not signed in
# from get one attempt per CPO_ADMIN_LOGIN_SLOWDOWN_S (a slow-down, never a lock-out of the real user).
CPO_ADMIN_LOGIN_WINDOW_S = int(ENV.get("CPO_ADMIN_LOGIN_WINDOW_S", "900"))
CPO_ADMIN_LOGIN_MAX_FAILURES_ACCOUNT_ADDRESS = int(
    ENV.get("CPO_ADMIN_LOGIN_MAX_FAILURES_ACCOUNT_ADDRESS", "5")
)
CPO_ADMIN_LOGIN_MAX_FAILURES_ADDRESS = int(ENV.get("CPO_ADMIN_LOGIN_MAX_FAILURES_ADDRESS", "20"))
CPO_ADMIN_LOGIN_MAX_FAILURES_ACCOUNT = int(ENV.get("CPO_ADMIN_LOGIN_MAX_FAILURES_ACCOUNT", "50"))
CPO_ADMIN_LOGIN_SLOWDOWN_S = int(ENV.get("CPO_ADMIN_LOGIN_SLOWDOWN_S", "30"))
CPO_ADMIN_LOGIN_KNOWN_ADDRESS_DAYS = int(ENV.get("CPO_ADMIN_LOGIN_KNOWN_ADDRESS_DAYS", "30"))
# Password reset requests per window, per (address typed, client address) and per client address.
CPO_ADMIN_PASSWORD_RESET_WINDOW_S = int(ENV.get("CPO_ADMIN_PASSWORD_RESET_WINDOW_S", "3600"))
CPO_ADMIN_PASSWORD_RESET_MAX_ACCOUNT = int(ENV.get("CPO_ADMIN_PASSWORD_RESET_MAX_ACCOUNT", "3"))
CPO_ADMIN_PASSWORD_RESET_MAX_ADDRESS = int(ENV.get("CPO_ADMIN_PASSWORD_RESET_MAX_ADDRESS", "10"))

# --- i18n / time ---------------------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("de", _("German")), ("fr", _("French"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = "UTC"
USE_TZ = True

# --- static / media ------------------------------------------------------------------------------
VAR_DIR = Path(ENV.get("CPO_VAR_DIR", BASE_DIR / "var"))
STATIC_URL = "/static/"
STATIC_ROOT = Path(ENV.get("DJANGO_STATIC_ROOT", VAR_DIR / "static"))
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(ENV.get("DJANGO_MEDIA_ROOT", VAR_DIR / "media"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- e-mail --------------------------------------------------------------------------------------
EMAIL_BACKEND = ENV.get("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = ENV.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(ENV.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = ENV.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = ENV.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = ENV.get("DEFAULT_FROM_EMAIL", "CPO <no-reply@localhost>")

# --- DRF -----------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "cpo.api.exception_handler",
    # Drivers' JWTs only: never the admin's session cookie (staff use the admin, not the driver API).
    "DEFAULT_AUTHENTICATION_CLASSES": ["apps.accounts.api.authentication.DriverJWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["cpo.parsers.JSONParser"],  # JSON nested at most CPO_API_MAX_JSON_DEPTH levels
    "DEFAULT_PAGINATION_CLASS": "cpo.api.CursorPagination",
    "PAGE_SIZE": 20,
    # Per user AND per address (cpo.api throttles); the rates are per scope.
    "DEFAULT_THROTTLE_RATES": {
        # Logins: failures per (account, address) and per account (cpo.api.LoginFailureLimit: successes do
        # not count; the account ceiling spares addresses it logged in from), all attempts per address.
        "login-failures-pair": ENV.get("CPO_API_RATE_LOGIN_FAILURES_PAIR", "10/15m"),
        "login-failures-account": ENV.get("CPO_API_RATE_LOGIN_FAILURES_ACCOUNT", "100/h"),
        "login-address": ENV.get("CPO_API_RATE_LOGIN_ADDRESS", "30/min"),
        "register-address": ENV.get("CPO_API_RATE_REGISTER_ADDRESS", "10/hour"),
        "password-address": ENV.get("CPO_API_RATE_PASSWORD_ADDRESS", "10/hour"),
        "start-user": ENV.get("CPO_API_RATE_START_USER", "20/min"),
        "start-address": ENV.get("CPO_API_RATE_START_ADDRESS", "60/min"),
        "stop-user": ENV.get("CPO_API_RATE_STOP_USER", "20/min"),
        "stop-address": ENV.get("CPO_API_RATE_STOP_ADDRESS", "60/min"),
        "token-user": ENV.get("CPO_API_RATE_TOKEN_USER", "10/min"),
        # cards a driver presented to link that cannot be linked (token_not_linkable): few, they probe
        "token-refusals-user": ENV.get("CPO_API_RATE_TOKEN_REFUSALS_USER", "10/d"),
        # card link requests: each keeps a charger waiting for the driver's card for a few minutes
        "token-links-user": ENV.get("CPO_API_RATE_TOKEN_LINKS_USER", "30/d"),
        "token-address": ENV.get("CPO_API_RATE_TOKEN_ADDRESS", "30/min"),
        # adding and removing cards (each a Stripe request)
        "payment-user": ENV.get("CPO_API_RATE_PAYMENT_USER", "20/min"),
        "payment-address": ENV.get("CPO_API_RATE_PAYMENT_ADDRESS", "60/min"),
    },
    # One proxy hop in front (nginx in docker/): the client address is the last X-Forwarded-For entry.
    # 0 (the default): the socket's address, never a client-supplied X-Forwarded-For.
    "NUM_PROXIES": int(ENV.get("CPO_NUM_PROXIES", "0")),
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=int(ENV.get("CPO_JWT_ACCESS_MINUTES", "15"))),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=int(ENV.get("CPO_JWT_REFRESH_DAYS", "30"))),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
    # Login and refresh: drivers only (staff accounts and members of an organisation are refused).
    "USER_AUTHENTICATION_RULE": "apps.accounts.api.authentication.driver_authentication_rule",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CPO driver API",
    "DESCRIPTION": (
        "The mobile app's API: accounts, charger discovery, charging sessions and receipts (drivers' JWTs). "
        "Under `/api/v1/operator/` (tag `operator`) the operator API for the CPO's integrators, with a staff "
        "API token (`Authorization: Token <key>`) acting with that staff member's roles and organisations. "
        'Errors have one shape, `{"code": ..., "detail": ..., "fields": {...}}`; apps switch on `code`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "ConnectorStatusEnum": "apps.stations.choices.ConnectorStatus",
        "SessionStatusEnum": "apps.charging.choices.DriverSessionStatus",
        "PaymentStatusEnum": "apps.billing.choices.PaymentStatus",
        "GridEventStatusEnum": "apps.smartcharging.choices.GridEventStatus",
        "ReservationOutputStatusEnum": "apps.reservations.choices.ReservationStatus",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apps.charging.api.schema.add_live_stream",
    ],
}

# --- driver API ----------------------------------------------------------------------------------
# An address a driver logged in from is spared the per-account failure ceiling for this long.
CPO_API_LOGIN_KNOWN_ADDRESS_DAYS = int(ENV.get("CPO_API_LOGIN_KNOWN_ADDRESS_DAYS", "30"))
# Past the per-account failure ceiling, other addresses get one login attempt per this many seconds.
CPO_API_LOGIN_SLOWDOWN_S = int(ENV.get("CPO_API_LOGIN_SLOWDOWN_S", "30"))
# How long the charger may take to begin a charge it accepted (the driver plugs in meanwhile).
CPO_DRIVER_START_TIMEOUT_S = float(ENV.get("CPO_DRIVER_START_TIMEOUT_S", "120"))
# Reservations (apps.reservations): the hold's default and longest length in minutes, and how early a 1.6
# connector reported Available again may be taken as the charger's own expiry of its reservation.
CPO_RESERVATION_DEFAULT_MIN = int(ENV.get("CPO_RESERVATION_DEFAULT_MIN", "15"))
CPO_RESERVATION_MAX_MIN = int(ENV.get("CPO_RESERVATION_MAX_MIN", "30"))
CPO_RESERVATION_EXPIRY_GRACE_S = float(ENV.get("CPO_RESERVATION_EXPIRY_GRACE_S", "30"))
# How long POST reservations waits for the charger's answer before it answers 202 PENDING.
CPO_RESERVATION_WAIT_S = float(ENV.get("CPO_RESERVATION_WAIT_S", "10"))
# How long a driver's card link request waits for the card to be presented at the charger they picked.
CPO_CARD_LINK_WINDOW_S = int(ENV.get("CPO_CARD_LINK_WINDOW_S", "180"))
# Reconciliation of sessions whose stop was lost (apps.charging.reconcile): minutes without a sign of
# life before the charger is asked, minutes to wait for its answer, minutes before a session of a charger
# that cannot be asked (offline, refusing) is closed anyway.
CPO_SESSION_IDLE_MINUTES = int(ENV.get("CPO_SESSION_IDLE_MINUTES", "60"))
CPO_SESSION_PROBE_WAIT_MINUTES = int(ENV.get("CPO_SESSION_PROBE_WAIT_MINUTES", "5"))
CPO_SESSION_OFFLINE_CLOSE_MINUTES = int(ENV.get("CPO_SESSION_OFFLINE_CLOSE_MINUTES", "1440"))
for _name in (
    "CPO_SESSION_IDLE_MINUTES",
    "CPO_SESSION_PROBE_WAIT_MINUTES",
    "CPO_SESSION_OFFLINE_CLOSE_MINUTES",
):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be at least 1 (minutes)")
if CPO_SESSION_OFFLINE_CLOSE_MINUTES < CPO_SESSION_IDLE_MINUTES + CPO_SESSION_PROBE_WAIT_MINUTES:
    raise ImproperlyConfigured(
        "CPO_SESSION_OFFLINE_CLOSE_MINUTES must be at least "
        "CPO_SESSION_IDLE_MINUTES + CPO_SESSION_PROBE_WAIT_MINUTES"
    )
# A live stream (GET sessions/{id}/live) holds no database connection while it waits: changes arrive
# with their session body over the channel layer. It sends a keep-alive comment every POLL_S seconds
# (and re-reads that often only while the channel layer fails), and re-reads the session briefly about
# every REREAD_S seconds in case a message was lost.
CPO_DRIVER_LIVE_POLL_S = float(ENV.get("CPO_DRIVER_LIVE_POLL_S", "15"))
CPO_DRIVER_LIVE_REREAD_S = float(ENV.get("CPO_DRIVER_LIVE_REREAD_S", "300"))
# A live stream ends (event `timeout`) after this long; the app reconnects for more.
CPO_DRIVER_LIVE_MAX_S = float(ENV.get("CPO_DRIVER_LIVE_MAX_S", "3600"))
# Open live streams allowed per driver (over all processes, counted in Redis) and per process; beyond
# them the API answers 429 too_many_streams.
CPO_DRIVER_LIVE_MAX_PER_DRIVER = int(ENV.get("CPO_DRIVER_LIVE_MAX_PER_DRIVER", "5"))
CPO_DRIVER_LIVE_MAX_PER_PROCESS = int(ENV.get("CPO_DRIVER_LIVE_MAX_PER_PROCESS", "5000"))
# /metrics (cpo.metrics): who may read it, by address or network, or with this bearer token.
_metrics_addresses = ENV.get("CPO_METRICS_ALLOWED_ADDRESSES", "127.0.0.1/32,::1/128")
CPO_METRICS_ALLOWED_ADDRESSES = [a.strip() for a in _metrics_addresses.split(",") if a.strip()]
CPO_METRICS_TOKEN = ENV.get("CPO_METRICS_TOKEN", "")
CPO_LIVE_REDIS_CONNECTIONS = int(ENV.get("CPO_LIVE_REDIS_CONNECTIONS", "32"))

IMPORT_EXPORT_SKIP_ADMIN_LOG = False
IMPORT_EXPORT_IMPORT_PERMISSION_CODE = "add"
IMPORT_EXPORT_EXPORT_PERMISSION_CODE = "view"

# --- product -------------------------------------------------------------------------------------
CPO_HEALTH_TIMEOUT_S = float(ENV.get("CPO_HEALTH_TIMEOUT_S", "2"))
# Called by cpo.admin.BaseModelAdmin for every admin add/change/delete (an AuditRecord, source="admin").
CPO_AUDIT_HOOK = "apps.accounts.services.audit_record_create_from_admin"

# CPO_LOG_FORMAT=json: one JSON object per line (python-json-logger), with the charger identity and OCPP
# message id a record was written for (cpo.logs); "plain" (default): text for people.
CPO_LOG_FORMAT = ENV.get("CPO_LOG_FORMAT", "plain")
if CPO_LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured("CPO_LOG_FORMAT must be plain or json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "cpo.logs.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s %(charger)s %(message_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": CPO_LOG_FORMAT, "filters": ["context"]}
    },
    "root": {"handlers": ["console"], "level": ENV.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# Debian 12 ships GDAL 3.6; geometries here come from our own forms and imports (points), never from
# uploaded spatial files, so the GDAL >= 3.9 file-access guard is not needed.
SILENCED_SYSTEM_CHECKS = ["gis.W001"]

# --- OCPP gateway ------------------------------------------------------------------------------
CPO_OCPP_HEARTBEAT_INTERVAL_S = int(ENV.get("CPO_OCPP_HEARTBEAT_INTERVAL_S", "300"))
CPO_OCPP_ALLOW_PROFILE_0 = env_bool("CPO_OCPP_ALLOW_PROFILE_0", False)
CPO_OCPP_UNKNOWN_CHARGERS = ENV.get("CPO_OCPP_UNKNOWN_CHARGERS", "reject")
if CPO_OCPP_UNKNOWN_CHARGERS not in ("reject", "pending", "accept"):
    raise ImproperlyConfigured("CPO_OCPP_UNKNOWN_CHARGERS must be reject, pending or accept")
CPO_OCPP_AUTO_REGISTER_ORGANISATION = ENV.get("CPO_OCPP_AUTO_REGISTER_ORGANISATION", "")
CPO_OCPP_COMMAND_TIMEOUT_S = float(ENV.get("CPO_OCPP_COMMAND_TIMEOUT_S", "30"))
CPO_OCPP_MAX_FRAME_BYTES = int(ENV.get("CPO_OCPP_MAX_FRAME_BYTES", str(1024 * 1024)))
CPO_OCPP_MESSAGE_LOG = env_bool("CPO_OCPP_MESSAGE_LOG", True)
# Kept at least this many days, at most a month longer (whole monthly partitions are dropped); 0: forever.
CPO_OCPP_MESSAGE_LOG_DAYS = env_days("CPO_OCPP_MESSAGE_LOG_DAYS", 30)
CPO_OCPP_VALIDATE_RESPONSES = env_bool("CPO_OCPP_VALIDATE_RESPONSES", False)
# The gateway's database threads (0: the connection pool's size less two) and group commit of
# data-carrying messages (extra wait in ms before a batch, 0 = none; batch size, 1 = off; batches at
# once, 0 = half the database threads).
CPO_OCPP_DB_WORKERS = int(ENV.get("CPO_OCPP_DB_WORKERS", "0"))
CPO_OCPP_GROUP_COMMIT_MS = float(ENV.get("CPO_OCPP_GROUP_COMMIT_MS", "0"))
# Off by default (1): on this machine it gained nothing (1,032 vs 1,083 msgs/s) and it is the newest part of
# the path that must never lose an acknowledged message; set e.g. 200 where commits are expensive.
CPO_OCPP_GROUP_COMMIT_MAX = int(ENV.get("CPO_OCPP_GROUP_COMMIT_MAX", "1"))
CPO_OCPP_GROUP_COMMIT_IN_FLIGHT = int(ENV.get("CPO_OCPP_GROUP_COMMIT_IN_FLIGHT", "0"))
CPO_OCPP_AUTH_REFUSAL_CACHE_S = float(ENV.get("CPO_OCPP_AUTH_REFUSAL_CACHE_S", "5"))
# Connections of the gateway's async Redis client per process (a burst waits for a free one).
CPO_OCPP_REDIS_MAX_CONNECTIONS = int(ENV.get("CPO_OCPP_REDIS_MAX_CONNECTIONS", "64"))
# Where chargers reach us from outside (diagnostics upload and firmware URLs); empty: the admin request's
# host.
CPO_PUBLIC_BASE_URL = ENV.get("CPO_PUBLIC_BASE_URL", "")
CPO_DIAGNOSTICS_MAX_BYTES = int(ENV.get("CPO_DIAGNOSTICS_MAX_BYTES", str(50 * 1024 * 1024)))
CPO_DIAGNOSTICS_UPLOAD_TTL_S = int(ENV.get("CPO_DIAGNOSTICS_UPLOAD_TTL_S", str(24 * 3600)))
CPO_ADMIN_COMMAND_WAIT_S = float(ENV.get("CPO_ADMIN_COMMAND_WAIT_S", "5"))

# --- charging ------------------------------------------------------------------------------------
# Meter samples are the evidence behind every CDR and invoice line: kept forever by default (0). An
# operator who sets a retention should cover the period in which a bill can still be disputed (in much
# of the EU three years from the end of the year, so at least 1,200 days); whole monthly partitions of
# `sampled_at` are dropped once they end before now minus this many days.
CPO_METER_SAMPLES_RETENTION_DAYS = env_days("CPO_METER_SAMPLES_RETENTION_DAYS", 0)

# --- request body limits (cpo.asgi_limits, in front of Django) ------------------------------------
# A body over its route's limit gets 413 before it is read (Content-Length) or as soon as it passes the
# limit (chunked). The API takes small JSON documents; the admin takes import files (CSV/XLSX/JSON) and,
# on the firmware page, firmware images; chargers upload diagnostics (CPO_DIAGNOSTICS_MAX_BYTES, plus room
# for a multipart envelope, so that the upload view's own 413 applies at its limit); everything else
# (language switch, password reset confirmation, health) is a small form or nothing.
CPO_HTTP_MAX_BODY_BYTES = int(ENV.get("CPO_HTTP_MAX_BODY_BYTES", str(64 * 1024)))
CPO_HTTP_MAX_BODY_API_BYTES = int(ENV.get("CPO_HTTP_MAX_BODY_API_BYTES", str(64 * 1024)))
CPO_HTTP_MAX_BODY_ADMIN_BYTES = int(ENV.get("CPO_HTTP_MAX_BODY_ADMIN_BYTES", str(10 * 1024 * 1024)))
CPO_HTTP_MAX_BODY_FIRMWARE_BYTES = int(ENV.get("CPO_HTTP_MAX_BODY_FIRMWARE_BYTES", str(256 * 1024 * 1024)))
CPO_HTTP_BODY_LIMITS = [  # (path prefix, bytes[, "signed_in"]): the longest matching prefix applies
    ("/api/", CPO_HTTP_MAX_BODY_API_BYTES),
    # the admin's uploads only from a signed-in session: anonymous admin forms (sign-in, password reset) are
    # small, and get CPO_HTTP_MAX_BODY_BYTES; firmware images likewise
    ("/admin/", CPO_HTTP_MAX_BODY_ADMIN_BYTES, "signed_in"),
    ("/admin/ocpp_gateway/firmwarefile/", CPO_HTTP_MAX_BODY_FIRMWARE_BYTES, "signed_in"),
    ("/ocpp/uploads/diagnostics/", CPO_DIAGNOSTICS_MAX_BYTES + 64 * 1024),
]
# API JSON nested deeper than this is a 400 parse_error (cpo.parsers.JSONParser); the API's inputs are flat.
CPO_API_MAX_JSON_DEPTH = int(ENV.get("CPO_API_MAX_JSON_DEPTH", "32"))
# Django's own limits behind it: form fields / request.body (RequestDataTooBig, 413 in the API) and the
# size above which a body or an uploaded file goes to a temporary file instead of memory.
DATA_UPLOAD_MAX_MEMORY_SIZE = int(ENV.get("DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE", str(1024 * 1024)))
FILE_UPLOAD_MAX_MEMORY_SIZE = int(ENV.get("DJANGO_FILE_UPLOAD_MAX_MEMORY_SIZE", str(1024 * 1024)))

# --- tariffs -------------------------------------------------------------------------------------
# A completed session whose car was never reported leaving gets its CDR after this many hours, with
# parking counted only up to the end of the transaction (we cannot prove more).
CPO_TARIFFS_DEPARTURE_TIMEOUT_H = float(ENV.get("CPO_TARIFFS_DEPARTURE_TIMEOUT_H", "24"))
# A session at a charge point with no tariff in force is free; its zero CDR is in the currency of the
# operator's latest tariff, or in this one when the operator has none.
CPO_TARIFFS_FREE_CURRENCY = ENV.get("CPO_TARIFFS_FREE_CURRENCY", "EUR")

# --- smart charging (apps.smartcharging) ---------------------------------------------------------
# A site's rebalance runs once its changes (starts, stops, changes in draw) have been quiet for
# CPO_SMART_QUIET_S, and at most CPO_SMART_COALESCE_S after the first: a burst of starts makes one run.
CPO_SMART_QUIET_S = float(ENV.get("CPO_SMART_QUIET_S", "0.3"))
CPO_SMART_COALESCE_S = float(ENV.get("CPO_SMART_COALESCE_S", "2.0"))
# validTo of our TxProfiles (refreshed at half of it) and of the static profiles (TxDefaultProfile, the
# fail-safe; ChargePointMaxProfile, the cap): a charger that loses us falls back to what is safe.
CPO_SMART_PROFILE_VALID_S = int(ENV.get("CPO_SMART_PROFILE_VALID_S", "3600"))
CPO_SMART_STATIC_PROFILE_VALID_S = int(ENV.get("CPO_SMART_STATIC_PROFILE_VALID_S", str(7 * 86400)))
# A charger that rejected our profile counts at its maximum; it is offered one again after this long.
CPO_SMART_REJECT_RETRY_S = int(ENV.get("CPO_SMART_REJECT_RETRY_S", "300"))
# A change in what a car draws (A per phase, from MeterValues Current.Import) that rebalances its site.
CPO_SMART_DRAW_CHANGE_A = float(ENV.get("CPO_SMART_DRAW_CHANGE_A", "2.0"))

# --- billing (Stripe) ------------------------------------------------------------------------------
# Keys from the Stripe dashboard (test keys in development). STRIPE_API_BASE points the client at another
# server: `make run` starts localstripe on loopback when no STRIPE_SECRET_KEY is set (README, Payments).
STRIPE_SECRET_KEY = ENV.get("STRIPE_SECRET_KEY", "")
STRIPE_PUBLISHABLE_KEY = ENV.get("STRIPE_PUBLISHABLE_KEY", "")
STRIPE_WEBHOOK_SECRET = ENV.get("STRIPE_WEBHOOK_SECRET", "")
STRIPE_API_BASE = ENV.get("STRIPE_API_BASE", "https://api.stripe.com")
# Every Stripe request gives up after this many seconds (connect and read each); the API then answers 503
# payment_provider_unavailable and webhook processing retries later.
STRIPE_TIMEOUT_S = float(ENV.get("STRIPE_TIMEOUT_S", "10"))
# Retries of one request inside the Stripe library (same idempotency key) before it counts as failed.
STRIPE_MAX_NETWORK_RETRIES = int(ENV.get("STRIPE_MAX_NETWORK_RETRIES", "1"))
# The card hold a driver's start takes (per currency, in major units: "EUR=50,CHF=50"); a tariff with a
# maximum price holds less. Only when STRIPE_SECRET_KEY is set; drivers in a customer account are invoiced.
CPO_PAYMENT_HOLD_AMOUNT = ENV.get(
    "CPO_PAYMENT_HOLD_AMOUNT", "EUR=50,CHF=50,GBP=40,DKK=375,SEK=550,NOK=550,PLN=220"
)
# Holds older than this many days are captured (at the record's gross, or a running session's cost so far,
# which stops it) or released, well before card networks expire them (about 7 days).
CPO_PAYMENT_HOLD_MAX_DAYS = float(ENV.get("CPO_PAYMENT_HOLD_MAX_DAYS", "6"))
# Webhook signatures older than this are refused (replay protection; Stripe's default tolerance).
STRIPE_WEBHOOK_TOLERANCE_S = int(ENV.get("STRIPE_WEBHOOK_TOLERANCE_S", "300"))

# --- operations console ----------------------------------------------------------------------------
# The dashboard's map draws tiles from this server when set ("https://tiles.example.net/{z}/{x}/{y}.png");
# without it (staff networks that block the internet) the map shows the locations on a plain background.
CPO_MAP_TILE_URL = ENV.get("CPO_MAP_TILE_URL", "")
# A connected charger without a frame for this long is listed as silent on the dashboard.
CPO_CONSOLE_SILENT_AFTER_S = float(ENV.get("CPO_CONSOLE_SILENT_AFTER_S", "600"))
# A live dashboard reads again at most this often, however many changes are announced.
CPO_CONSOLE_LIVE_MIN_INTERVAL_S = float(ENV.get("CPO_CONSOLE_LIVE_MIN_INTERVAL_S", "0.5"))
# Alerts: a charger offline this long; this many boots within the window is a boot loop.
CPO_ALERT_OFFLINE_MINUTES = float(ENV.get("CPO_ALERT_OFFLINE_MINUTES", "15"))
CPO_ALERT_BOOT_LOOP_COUNT = int(ENV.get("CPO_ALERT_BOOT_LOOP_COUNT", "5"))
CPO_ALERT_BOOT_LOOP_WINDOW_S = float(ENV.get("CPO_ALERT_BOOT_LOOP_WINDOW_S", "600"))
# Outbound alert webhooks: attempts before giving up, first back-off (doubling, at most an hour), timeout.
CPO_ALERT_WEBHOOK_MAX_ATTEMPTS = int(ENV.get("CPO_ALERT_WEBHOOK_MAX_ATTEMPTS", "8"))
CPO_ALERT_WEBHOOK_BACKOFF_S = float(ENV.get("CPO_ALERT_WEBHOOK_BACKOFF_S", "30"))
CPO_ALERT_WEBHOOK_TIMEOUT_S = float(ENV.get("CPO_ALERT_WEBHOOK_TIMEOUT_S", "10"))
# --- roaming (OCPI 2.2.1, apps.roaming; README, Roaming) -------------------------------------------
# Our identity towards roaming parties (ISO 3166-1 alpha-2 country code and 3-character party id), the
# business name in our credentials, and the public base URL parties reach /ocpi/ under (e.g.
# https://cpo.example.com; empty: the URL of the request being answered, and registering with a party
# from the admin or a command is refused).
CPO_OCPI_COUNTRY_CODE = ENV.get("CPO_OCPI_COUNTRY_CODE", "DE").upper()
CPO_OCPI_PARTY_ID = ENV.get("CPO_OCPI_PARTY_ID", "CPO").upper()
CPO_OCPI_BUSINESS_NAME = ENV.get("CPO_OCPI_BUSINESS_NAME", "CPO")
CPO_OCPI_BASE_URL = ENV.get("CPO_OCPI_BASE_URL", "")
# Every request to a party gives up after this many seconds; real-time authorisation (a driver waits at
# the charger) after CPO_OCPI_REALTIME_TIMEOUT_S. An eMSP that did not answer is not asked again for
# CPO_OCPI_REALTIME_BACKOFF_S; an answer is reused for CPO_OCPI_REALTIME_CACHE_S (Authorize, then start).
CPO_OCPI_HTTP_TIMEOUT_S = float(ENV.get("CPO_OCPI_HTTP_TIMEOUT_S", "10"))
CPO_OCPI_REALTIME_TIMEOUT_S = float(ENV.get("CPO_OCPI_REALTIME_TIMEOUT_S", "3"))
CPO_OCPI_REALTIME_BACKOFF_S = int(ENV.get("CPO_OCPI_REALTIME_BACKOFF_S", "60"))
CPO_OCPI_REALTIME_CACHE_S = int(ENV.get("CPO_OCPI_REALTIME_CACHE_S", "120"))
# When the eMSP cannot be reached: "WHITELIST" accepts its ALLOWED_OFFLINE tokens from the stored token,
# "REJECT" refuses them too (NEVER tokens are always refused then).
CPO_OCPI_REALTIME_FALLBACK = ENV.get("CPO_OCPI_REALTIME_FALLBACK", "WHITELIST").upper()
if CPO_OCPI_REALTIME_FALLBACK not in ("WHITELIST", "REJECT"):
    raise ImproperlyConfigured("CPO_OCPI_REALTIME_FALLBACK must be WHITELIST or REJECT")
# Pushes: attempts before a push is FAILED (the admin can retry it), the first back-off (doubling), its cap.
CPO_OCPI_PUSH_MAX_ATTEMPTS = int(ENV.get("CPO_OCPI_PUSH_MAX_ATTEMPTS", "8"))
CPO_OCPI_PUSH_BACKOFF_S = float(ENV.get("CPO_OCPI_PUSH_BACKOFF_S", "15"))
CPO_OCPI_PUSH_BACKOFF_MAX_S = float(ENV.get("CPO_OCPI_PUSH_BACKOFF_MAX_S", "3600"))
# The most objects one page of a GET list holds (X-Limit), and the CommandResponse timeout we announce.
CPO_OCPI_PAGE_LIMIT = int(ENV.get("CPO_OCPI_PAGE_LIMIT", "50"))
CPO_OCPI_COMMAND_TIMEOUT_S = int(ENV.get("CPO_OCPI_COMMAND_TIMEOUT_S", "60"))
