"""/metrics: Prometheus text for allowed addresses or a bearer token, 403 for anyone else; the counts
move with what the product does."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families
from pythonjsonlogger.json import JsonFormatter

from cpo import logs, metrics

pytestmark = pytest.mark.django_db


def _samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_loopback_reads_the_metrics_and_they_move():
    client = Client(REMOTE_ADDR="127.0.0.1")
    metrics.OCPP_MESSAGES.labels("in", "Heartbeat", "1.6").inc()
    before = _samples(client.get("/metrics").content)
    metrics.OCPP_MESSAGES.labels("in", "Heartbeat", "1.6").inc(3)
    metrics.PAYMENT_FAILURES.labels("hold_declined").inc()
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    after = _samples(response.content)
    key = ("cpo_ocpp_messages_total", (("action", "Heartbeat"), ("direction", "in"), ("version", "1.6")))
    assert after[key] == before[key] + 3
    assert after[("cpo_payment_failures_total", (("kind", "hold_declined"),))] >= 1
    # read at the scrape: Celery's queue and the replay journal
    assert ("cpo_celery_queue_depth", (("queue", "celery"),)) in after
    assert ("cpo_ocpp_replay_journal_depth", ()) in after


def test_other_addresses_need_the_bearer_token(settings):
    settings.CPO_METRICS_TOKEN = "s3cret-token"
    outsider = Client(REMOTE_ADDR="203.0.113.9")
    refused = outsider.get("/metrics")
    assert refused.status_code == 403
    assert b"CPO_METRICS_ALLOWED_ADDRESSES" in refused.content
    assert outsider.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert outsider.get("/metrics", HTTP_AUTHORIZATION="Token s3cret-token").status_code == 403
    assert outsider.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 200


def test_no_token_configured_means_no_token_works(settings):
    settings.CPO_METRICS_TOKEN = ""
    outsider = Client(REMOTE_ADDR="203.0.113.9")
    assert outsider.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403


def test_allowed_networks_setting(settings):
    settings.CPO_METRICS_ALLOWED_ADDRESSES = ["10.0.0.0/8"]
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 403


def test_only_get():
    assert Client(REMOTE_ADDR="127.0.0.1").post("/metrics").status_code == 405


def test_log_records_carry_the_charger_and_message_id(caplog):
    handler_filter = logs.ContextFilter()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    tokens = logs.bind(charger="CP-1", message_id="m-42")
    try:
        handler_filter.filter(record)
    finally:
        logs.unbind(tokens)
    assert (record.charger, record.message_id) == ("CP-1", "m-42")
    outside = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    handler_filter.filter(outside)
    assert (outside.charger, outside.message_id) == ("", "")


def test_json_format_writes_one_object_per_line_with_the_context():
    formatter = JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s %(charger)s %(message_id)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    )
    record = logging.LogRecord("apps.ocpp_gateway", logging.WARNING, __file__, 1, "late %s", ("x",), None)
    tokens = logs.bind(charger="CP-9", message_id="u-1")
    try:
        logs.ContextFilter().filter(record)
    finally:
        logs.unbind(tokens)
    line = json.loads(formatter.format(record))
    assert line["level"] == "WARNING" and line["logger"] == "apps.ocpp_gateway"
    assert line["message"] == "late x" and line["charger"] == "CP-9" and line["message_id"] == "u-1"


def test_the_grafana_dashboard_only_charts_metrics_the_product_exports():
    """docker/grafana's dashboard names metrics by hand: each must be one /metrics really serves."""
    dashboard = json.loads(
        (Path(settings.BASE_DIR) / "docker/grafana/dashboards/cpo-overview.json").read_text()
    )
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    charted = {name for expr in exprs for name in re.findall(r"\bcpo_[a-z_]+", expr)}
    metrics.OCPP_HANDLER_SECONDS.labels("Heartbeat", "1.6").observe(0.01)
    metrics.OCPP_COMMAND_OUTCOMES.labels("Reset", "answered").inc()
    metrics.PAYMENT_FAILURES.labels("capture_failed").inc()
    served = {name for name, _labels in _samples(Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content)}
    assert charted and charted <= served, charted - served


def test_processes_sharing_a_multiprocess_directory_are_summed(tmp_path, monkeypatch):
    """What two other processes counted (web and a Celery worker, say) shows up summed in /metrics."""
    script = (
        "from cpo import metrics; "
        "metrics.OCPP_MESSAGES.labels('in', 'StatusNotification', '2.0.1').inc(2); "
        "metrics.PAYMENT_FAILURES.labels('capture_failed').inc()"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _process in range(2):
        subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=settings.BASE_DIR, timeout=60)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    served = _samples(Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content)
    status = (("action", "StatusNotification"), ("direction", "in"), ("version", "2.0.1"))
    assert served[("cpo_ocpp_messages_total", status)] == 4
    assert served[("cpo_payment_failures_total", (("kind", "capture_failed"),))] == 2
