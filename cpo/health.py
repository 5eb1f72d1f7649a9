"""Liveness and readiness.

/livez answers 200 whenever the process serves requests and depends on nothing else, so an outage of
PostgreSQL or Redis never makes an orchestrator restart every process (and reconnect every charger).
/readyz checks the database, the channel layer and the Celery broker in parallel, each within
CPO_HEALTH_TIMEOUT_S, and answers 503 naming each failing part. It also shows this process's database
pool (connections open, free, requests waiting for one), read before the checks take a connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

import redis
from celery import current_app
from django.conf import settings
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from cpo.redact import mask_url

logger = logging.getLogger(__name__)
_pool = ThreadPoolExecutor(max_workers=6, thread_name_prefix="health")


def check_database() -> None:
    connection = connections["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()


def _ping_redis(url: str) -> None:
    timeout = settings.CPO_HEALTH_TIMEOUT_S
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.ping()
    finally:
        client.close()


def check_channel_layer() -> None:
    host = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]
    _ping_redis(host["address"] if isinstance(host, dict) else host)


def check_broker() -> None:
    # The project's Celery app (config/celery.py) is the current one once settings are loaded.
    with current_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=settings.CPO_HEALTH_TIMEOUT_S)


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "channel_layer": check_channel_layer,
    "broker": check_broker,
}


def database_pool_stats() -> dict[str, int] | None:
    """This process's psycopg pool: max, open (size), free (available) connections and waiting requests;
    None without a pool (DB_POOL_MAX_SIZE=0)."""
    pool = connections["default"].pool
    if pool is None:
        return None
    stats = pool.get_stats()
    return {
        "max": stats.get("pool_max", 0),
        "size": stats.get("pool_size", 0),
        "available": stats.get("pool_available", 0),
        "waiting": stats.get("requests_waiting", 0),
    }


def run_checks() -> dict[str, str]:
    """{part: "ok" | "error: ..."}; a part that does not answer in time is reported as a timeout."""
    futures = {name: _pool.submit(check) for name, check in CHECKS.items()}
    wait(futures.values(), timeout=settings.CPO_HEALTH_TIMEOUT_S + 0.5)
    results: dict[str, str] = {}
    for name, future in futures.items():
        if not future.done():
            results[name] = f"error: no answer within {settings.CPO_HEALTH_TIMEOUT_S:g} s"
            continue
        exc = future.exception()
        results[name] = "ok" if exc is None else f"error: {type(exc).__name__}: {mask_url(str(exc))[:300]}"
    return results


@never_cache
@require_GET
def livez(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    pool = database_pool_stats()
    results = run_checks()
    failing = sorted(name for name, result in results.items() if result != "ok")
    if failing:
        logger.warning("not ready: %s", results)
        return JsonResponse(
            {"status": "unavailable", "failing": failing, "checks": results, "database_pool": pool},
            status=503,
        )
    return JsonResponse({"status": "ok", "checks": results, "database_pool": pool})
