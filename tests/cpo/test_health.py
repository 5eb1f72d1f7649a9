"""/livez and /readyz: liveness depends on nothing; readiness names each server that does not answer.

The outage cases run a real daphne process whose DATABASE_URL or REDIS_URL points at a closed loopback
port, because the settings are read once at start-up.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests.processes import ROOT, database_url, free_port, http_get, http_json, tail, wait_for_status

DAPHNE = Path(sys.executable).with_name("daphne")


@pytest.mark.django_db
def test_livez_answers_200(client):
    response = client.get("/livez")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_answers_200_when_every_server_answers(client):
    response = client.get("/readyz")

    assert response.status_code == 200, response.content
    body = response.json()
    pool = body.pop("database_pool")
    assert body == {
        "status": "ok",
        "checks": {"database": "ok", "channel_layer": "ok", "broker": "ok"},
    }
    assert set(pool) == {"max", "size", "available", "waiting"}
    assert pool["max"] == settings.DATABASES["default"]["OPTIONS"]["pool"]["max_size"]


@pytest.mark.django_db
def test_healthz_is_readiness(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "channel_layer": "ok", "broker": "ok"}


@contextmanager
def running_daphne(tmp_path: Path, **env: str) -> Iterator[str]:
    """A daphne serving config.asgi:application on a free loopback port; yields its base URL."""
    port = free_port()
    log = tmp_path / f"daphne-{port}.log"
    full_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DJANGO_SECRET_KEY": "health-test-" + "k" * 50,
        "CPO_HEALTH_TIMEOUT_S": "2",
        **env,
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(DAPHNE), "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        up = wait_for_status(f"{base}/livez", 200, timeout=60, alive=lambda: proc.poll() is None)
        assert up, f"daphne did not serve /livez within 60 s:\n{tail(log)}"
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture
def test_database_url(db) -> str:
    """The URL of the test database (it exists once the `db` fixture has set it up)."""
    return database_url(connection.settings_dict)


@pytest.mark.slow
def test_readyz_503_names_the_database_when_it_is_down(tmp_path, test_database_url):
    down = database_url(connection.settings_dict, port=free_port())

    with running_daphne(tmp_path, DATABASE_URL=down, REDIS_URL=settings.REDIS_URL) as base:
        status, body = http_json(f"{base}/readyz")
        live_status, _ = http_get(f"{base}/livez")

    assert status == 503
    assert body["status"] == "unavailable"
    assert body["failing"] == ["database"]
    assert body["checks"]["database"].startswith("error:")
    assert body["checks"]["channel_layer"] == "ok"
    assert body["checks"]["broker"] == "ok"
    assert live_status == 200


@pytest.mark.slow
def test_readyz_503_names_redis_parts_when_redis_is_down(tmp_path, test_database_url):
    down = f"redis://127.0.0.1:{free_port()}/0"

    with running_daphne(tmp_path, DATABASE_URL=test_database_url, REDIS_URL=down) as base:
        status, body = http_json(f"{base}/readyz")
        live_status, _ = http_get(f"{base}/livez")

    assert status == 503
    assert body["failing"] == ["broker", "channel_layer"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["channel_layer"].startswith("error:")
    assert body["checks"]["broker"].startswith("error:")
    assert live_status == 200
