"""Where the servers are: DATABASE_URL, REDIS_URL and CACHE_URL, read from the environment.

One code path: the database is always PostgreSQL with PostGIS, the channel layer and the Celery broker
are always Redis. With nothing set, the loopback defaults below are used; `make run` exports URLs for
the servers it found or started before Django starts (see scripts/services.sh).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from cpo.redact import mask_url

DEFAULT_DATABASE_URL = "postgis://postgres@127.0.0.1:5432/cpo"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

_POSTGRES_SCHEMES = {"postgis", "postgres", "postgresql", "pgsql"}
_REDIS_SCHEMES = {"redis", "rediss", "unix"}


def database_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The `DATABASES["default"]` entry for the environment; ImproperlyConfigured names a bad URL."""
    url = env.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a non-numeric port
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is malformed ({mask_url(url)}): {exc}") from exc
    if parts.scheme not in _POSTGRES_SCHEMES:
        raise ImproperlyConfigured(
            f"DATABASE_URL must name a PostgreSQL server with PostGIS (postgis://user@host:port/name), "
            f"got scheme {parts.scheme!r} in {mask_url(url)}"
        )
    if not parts.hostname and "host=" not in (parts.query or ""):
        raise ImproperlyConfigured(f"DATABASE_URL names no host: {mask_url(url)}")
    if not parts.path.strip("/"):
        raise ImproperlyConfigured(f"DATABASE_URL names no database: {mask_url(url)}")
    if port is not None and not 0 < port < 65536:
        raise ImproperlyConfigured(f"DATABASE_URL has an invalid port {port}: {mask_url(url)}")
    pool_size = int(env.get("DB_POOL_MAX_SIZE", "10"))
    config: dict[str, Any] = dict(
        dj_database_url.parse(
            url.replace(f"{parts.scheme}://", "postgres://", 1),
            # With a pool, Django returns connections to it instead of closing them (CONN_MAX_AGE must be 0).
            conn_max_age=0 if pool_size else int(env.get("DB_CONN_MAX_AGE", "0")),
            conn_health_checks=not pool_size,
        )
    )
    config["ENGINE"] = "django.contrib.gis.db.backends.postgis"
    config.setdefault("OPTIONS", {})
    if pool_size:
        # A new PostgreSQL connection costs ~9 ms here (PostGIS type look-ups included) against ~0.5 ms
        # for a query; without a pool every ORM call of the OCPP gateway would pay it. DB_POOL_MAX_SIZE=0
        # switches the pool off (e.g. behind PgBouncer in transaction mode).
        # DB_POOL_TIMEOUT_S: how long a request waits for a free connection before it fails.
        config["OPTIONS"]["pool"] = {
            "min_size": 1,
            "max_size": pool_size,
            "timeout": float(env.get("DB_POOL_TIMEOUT_S", "10")),
        }
    config["OPTIONS"].setdefault("connect_timeout", int(env.get("DB_CONNECT_TIMEOUT", "5")))
    config["OPTIONS"].setdefault("application_name", env.get("DB_APPLICATION_NAME", "cpo"))
    return config


def redis_url(env: Mapping[str, str], name: str = "REDIS_URL", default: str = DEFAULT_REDIS_URL) -> str:
    """A validated Redis URL from the environment variable `name`."""
    url = env.get(name) or default
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is malformed ({mask_url(url)}): {exc}") from exc
    if parts.scheme not in _REDIS_SCHEMES:
        raise ImproperlyConfigured(f"{name} must be a redis:// or rediss:// URL, got {mask_url(url)}")
    if parts.scheme != "unix" and not parts.hostname:
        raise ImproperlyConfigured(f"{name} names no host: {mask_url(url)}")
    return url


def channel_layer_settings(url: str) -> dict[str, Any]:
    """channels-redis settings. Redis-py's defaults (5 s socket timeout, 100-connection pool) drop idle
    consumers and fail connect bursts (FIELD-NOTES), so both are raised here. The backend is channels-redis's
    layer receiving process-specific channels in one round trip instead of four (ocpp_gateway/layers.py)."""
    return {
        "BACKEND": "apps.ocpp_gateway.layers.RedisChannelLayer",
        "CONFIG": {
            "hosts": [{"address": url, "socket_timeout": 15, "max_connections": 10000}],
            "capacity": 1000,
            "expiry": 60,
        },
    }
