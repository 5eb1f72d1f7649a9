"""Prometheus metrics: what every process counts, and the /metrics endpoint that shows them.

Processes count into prometheus-client's metrics defined here (the kernel, so that any app may count).
Several processes (uvicorn workers, Celery workers) share one view of them when PROMETHEUS_MULTIPROC_DIR
names a directory they all write to (set before the process starts, emptied before the first one
starts: `make run` and docker/ do both); without it each process shows its own. Figures that live
elsewhere (the replay journal's depth, Celery's queues) are read when scraped, from readers the apps
register (`gauge_register`), so that the kernel imports no app.

/metrics answers only the addresses in CPO_METRICS_ALLOWED_ADDRESSES (addresses or networks, loopback by
default) or a request bearing `Authorization: Bearer <CPO_METRICS_TOKEN>`; anyone else gets 403.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

OCPP_CONNECTIONS = Gauge(
    "cpo_ocpp_connections",
    "Chargers connected (WebSocket accepted) to this process, summed over live processes.",
    multiprocess_mode="livesum",
)
OCPP_MESSAGES = Counter(
    "cpo_ocpp_messages",
    "OCPP frames received (in) and sent (out), by action and OCPP version.",
    ["direction", "action", "version"],
)
OCPP_HANDLER_SECONDS = Histogram(
    "cpo_ocpp_handler_seconds",
    "Time from a charger's request leaving the queue to its answer being sent, by action and version.",
    ["action", "version"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
OCPP_COMMAND_OUTCOMES = Counter(
    "cpo_ocpp_command_outcomes",
    "Remote commands by final outcome (answered, rejected, timed out, offline, ...).",
    ["action", "status"],
)
PAYMENT_FAILURES = Counter(
    "cpo_payment_failures",
    "Payments that failed: a declined or refused hold, a failed capture (a debt), a failed charge.",
    ["kind"],
)


@dataclass(frozen=True, slots=True)
class ScrapeGauge:
    name: str
    documentation: str
    read: Callable[[], float | dict[str, float]]
    label: str = ""


_scrape_gauges: dict[str, ScrapeGauge] = {}


def gauge_register(
    name: str, documentation: str, read: Callable[[], float | dict[str, float]], *, label: str = ""
) -> None:
    """A figure read at every scrape: `read` returns a number, or {label value: number} with `label`.
    Registered once per name (an app's ready() may run twice in tests: the last one wins)."""
    _scrape_gauges[name] = ScrapeGauge(name, documentation, read, label)


class _ScrapeCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        for gauge in list(_scrape_gauges.values()):
            try:
                value = gauge.read()
            except Exception as exc:  # a figure we cannot read is left out, never a failed scrape
                logger.warning("metrics: could not read %s: %r", gauge.name, exc)
                continue
            if isinstance(value, dict):
                family = GaugeMetricFamily(gauge.name, gauge.documentation, labels=[gauge.label])
                for label_value, number in sorted(value.items()):
                    family.add_metric([label_value], float(number))
            else:
                family = GaugeMetricFamily(gauge.name, gauge.documentation, value=float(value))
            yield family


def celery_queue_depths() -> dict[str, float]:
    """Messages waiting in each Celery queue (the broker is Redis: one list per queue)."""
    queues = list(getattr(settings, "CPO_METRICS_CELERY_QUEUES", ["celery"]))
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        pipe = client.pipeline(transaction=False)
        for queue in queues:
            pipe.llen(queue)
        return {queue: float(depth) for queue, depth in zip(queues, pipe.execute(), strict=True)}
    finally:
        client.close()


gauge_register(
    "cpo_celery_queue_depth", "Tasks waiting in each Celery queue.", celery_queue_depths, label="queue"
)


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = CollectorRegistry()
        for collector in list(REGISTRY._collector_to_names):
            registry.register(collector)
    registry.register(_ScrapeCollector())
    return registry


def _address_allowed(address: str) -> bool:
    allowed = getattr(settings, "CPO_METRICS_ALLOWED_ADDRESSES", ["127.0.0.1/32", "::1/128"])
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for network in allowed:
        try:
            if ip in ipaddress.ip_network(network, strict=False):
                return True
        except ValueError:
            logger.warning("CPO_METRICS_ALLOWED_ADDRESSES: %r is not an address or network", network)
    return False


def _token_allowed(request: HttpRequest) -> bool:
    token = str(getattr(settings, "CPO_METRICS_TOKEN", "") or "")
    header = request.headers.get("Authorization", "")
    if not token or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer ") :].encode(), token.encode())


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    address = str(request.META.get("REMOTE_ADDR") or "")
    if not (_token_allowed(request) or _address_allowed(address)):
        return HttpResponse(
            "metrics: this address may not read them (CPO_METRICS_ALLOWED_ADDRESSES) and no valid "
            "bearer token (CPO_METRICS_TOKEN) was sent\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
